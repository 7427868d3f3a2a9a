// The C API (include/lazyllm_edge/lazyllm_edge.h): a thin layer over the C++ API. Every entry point runs
// inside capi::guarded, so exceptions become status codes and the message goes to le_last_error().
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "api/c_api_guard.h"
#include "api/chat_format.h"
#include "lazyllm_edge/lazyllm_edge.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "tokenizer/tokenizer.h"

using namespace lazyllm_edge;
using namespace lazyllm_edge::capi;

struct le_model {
    std::shared_ptr<Model> model;
};

struct le_session {
    std::shared_ptr<Model> model;        // keeps the weights alive after le_model_free
    std::unique_ptr<Session> session;
    // Held for a whole C call. The C++ session refuses a second thread during one session call, and a Generation
    // notices another call between its steps; a C call needs more: le_session_generate spans many session calls
    // with the caller's callback in between (a concurrent feed must get LE_ERR_BUSY, not end the generation), and
    // the sampler and logits below are this struct's own state.
    std::atomic<bool> busy{false};
    std::atomic<bool> cancel{false};     // lock-free, so le_session_cancel is async-signal-safe
    const float* logits = nullptr;       // of the last feed; nullptr when nothing was fed since reset
    std::unique_ptr<Sampler> sampler;    // kept across calls so a seeded stream continues, not restarts
    SamplingParams sampler_params;
};

namespace {

// Marks the C session in use for one call; a concurrent caller gets LE_ERR_BUSY.
class CallUse {
public:
    explicit CallUse(le_session* s) : s_(require(s, "session")) {
        if (s_->busy.exchange(true, std::memory_order_acquire))
            fail(LE_ERR_BUSY, "this session is already in use by another thread (use one session per thread)");
    }
    ~CallUse() { s_->busy.store(false, std::memory_order_release); }

private:
    le_session* s_;
};

const Model& model_of(const le_model* m) { return *require(require(m, "model")->model.get(), "model"); }

ModelParams to_model_params(const le_model_params* p) {
    ModelParams out;
    if (!p) return out;
    check_struct_version(p->api_version, "le_model_params");
    out.n_threads = p->n_threads;
    out.backend = p->backend ? p->backend : "cpu";
    out.use_mmap = p->use_mmap != 0;
    return out;
}

SamplingParams to_sampling_params(const le_sampling_params* p) {
    SamplingParams out;
    if (!p) return out;
    check_struct_version(p->api_version, "le_sampling_params");
    out.temperature = p->temperature;
    out.top_k = p->top_k;
    out.top_p = p->top_p;
    out.min_p = p->min_p;
    out.repeat_penalty = p->repeat_penalty;
    out.repeat_last_n = p->repeat_last_n;
    out.seed = p->seed;
    out.has_seed = p->has_seed != 0;
    return out;
}

bool same_params(const SamplingParams& a, const SamplingParams& b) {
    return a.temperature == b.temperature && a.top_k == b.top_k && a.top_p == b.top_p && a.min_p == b.min_p &&
           a.repeat_penalty == b.repeat_penalty && a.repeat_last_n == b.repeat_last_n && a.seed == b.seed &&
           a.has_seed == b.has_seed;
}

// The session's sampler for these params: reused while they stay the same, rebuilt (reseeded) otherwise.
Sampler& sampler_for(le_session* s, const le_sampling_params* params) {
    SamplingParams p = to_sampling_params(params);
    if (!s->sampler || !same_params(p, s->sampler_params)) {
        s->sampler = std::make_unique<Sampler>(p, s->model->info().n_vocab);
        s->sampler_params = p;
    }
    return *s->sampler;
}

// A feed that le_session_cancel stops between layers (LE_ERR_CANCELLED, the session unchanged); the request is
// consumed by it, as a generate consumes one.
const float* append_cancellable(le_session* s, const le_token* ids, size_t n) {
    try {
        return s->session->append(ids, static_cast<int>(n), nullptr, &s->cancel);
    } catch (const Error& e) {
        if (e.code() == ErrorCode::cancelled) {
            s->cancel.store(false);
            fail(LE_ERR_CANCELLED, "cancelled by le_session_cancel: nothing was fed");
        }
        throw;
    }
}

const float* require_logits(const le_session* s) {
    if (!s->logits) fail(LE_ERR_INVALID_ARGUMENT, "nothing was fed since the session was created or reset: feed a prompt first");
    return s->logits;
}

le_finish_reason to_finish_reason(FinishReason reason) {
    switch (reason) {
        case FinishReason::none: return LE_FINISH_NONE;
        case FinishReason::stop: return LE_FINISH_STOP;
        case FinishReason::length: return LE_FINISH_LENGTH;
        case FinishReason::cancelled: return LE_FINISH_CANCELLED;
    }
    return LE_FINISH_NONE;
}

// The caller's struct, defaults where it is NULL or older than a field: a struct from an earlier minor version is
// shorter, so fields added since are not read from it.
le_session_params read_session_params(const le_session_params* params) {
    le_session_params p;
    le_session_params_init(&p);
    if (!params) return p;
    check_struct_version(params->api_version, "le_session_params");
    // the 1.0 fields
    p.api_version = params->api_version;
    p.n_ctx = params->n_ctx;
    p.lazy = params->lazy;
    p.schedule = params->schedule;
    p.n_schedule = params->n_schedule;
    p.prune_decode = params->prune_decode;
    // 1.2
    if ((params->api_version & 0xFFFF) >= 2) p.numerics = params->numerics;
    return p;
}

Numerics to_numerics(int32_t numerics) {
    switch (numerics) {
        case LE_NUMERICS_FAST: return Numerics::fast;
        case LE_NUMERICS_FP32: return Numerics::fp32;
        case LE_NUMERICS_LLAMA_CPP: return Numerics::llama_cpp;
        case LE_NUMERICS_INT8: return Numerics::int8;
        default: fail(LE_ERR_INVALID_ARGUMENT, "numerics must be LE_NUMERICS_FAST, LE_NUMERICS_FP32, LE_NUMERICS_LLAMA_CPP or "
                                               "LE_NUMERICS_INT8, got " +
                                                   std::to_string(numerics));
    }
}

LazyConfig to_lazy(const le_session_params& p, const ModelInfo& info) {
    LazyConfig lazy;
    if (p.lazy) {
        lazy = parse_lazy_spec(p.lazy, info.n_layer, info.stage_layers);
    } else if (p.n_schedule > 0) {
        require(p.schedule, "schedule");
        for (size_t i = 0; i < p.n_schedule; ++i) lazy.schedule.push_back({p.schedule[i].layer, p.schedule[i].keep_fraction});
    }
    if (p.prune_decode >= 0) lazy.prune_decode = p.prune_decode != 0;
    return lazy;
}

// Token ids (or layer indices, `what`) into the caller's buffer of `cap`; LE_ERR_BUFFER_TOO_SMALL (with *n_out set)
// when they do not fit.
void write_ids(const std::vector<int32_t>& ids, int32_t* out, size_t cap, size_t* n_out, const char* what = "token") {
    *n_out = ids.size();
    if (cap < ids.size())
        fail(LE_ERR_BUFFER_TOO_SMALL, std::string(what) + " buffer of " + std::to_string(cap) + " is too small: need " + std::to_string(ids.size()));
    if (!ids.empty()) std::copy(ids.begin(), ids.end(), require(out, "out"));
}

std::vector<ChatMessage> chat_messages(const le_chat_message* messages, size_t n) {
    if (n > 0) require(messages, "messages");
    std::vector<ChatMessage> msgs;
    for (size_t i = 0; i < n; ++i)
        msgs.push_back({require(messages[i].role, "role"), require(messages[i].content, "content")});
    return msgs;
}

}  // namespace

extern "C" {

uint32_t le_api_version(void) { return LE_API_VERSION; }

le_status le_check_abi(uint32_t header_version) {
    return guarded([&] { check_struct_version(header_version, "the caller"); });
}

const char* le_last_error(void) { return last_error_message(); }

const char* le_status_name(le_status status) {
    switch (status) {
        case LE_OK: return "ok";
        case LE_ERR_MODEL_LOAD: return "model_load";
        case LE_ERR_INVALID_ARGUMENT: return "invalid_argument";
        case LE_ERR_OUT_OF_MEMORY: return "out_of_memory";
        case LE_ERR_CONTEXT_FULL: return "context_full";
        case LE_ERR_CANCELLED: return "cancelled";
        case LE_ERR_UNSUPPORTED: return "unsupported";
        case LE_ERR_INTERNAL: return "internal";
        case LE_ERR_BUSY: return "busy";
        case LE_ERR_ABI: return "abi";
        case LE_ERR_BUFFER_TOO_SMALL: return "buffer_too_small";
        case LE_ERR_STATE_FILE: return "state_file";
    }
    return "unknown";
}

// ---- model ----

le_status le_model_load(const char* path, const le_model_params* params, le_model** out) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(path, "path");
        auto handle = std::make_unique<le_model>();
        handle->model = Model::load(path, to_model_params(params));
        *out = handle.release();
    });
}

void le_model_free(le_model* model) { delete model; }

le_status le_model_describe(const le_model* model, le_model_info* out) {
    return guarded([&] {
        const Model& m = model_of(model);
        require(out, "out");
        const ModelInfo& i = m.info();
        out->architecture = i.architecture.c_str();
        out->name = i.name.c_str();
        out->chat_template = i.chat_template.c_str();
        out->n_layer = i.n_layer;
        out->d_model = i.d_model;
        out->n_head = i.n_head;
        out->n_head_kv = i.n_head_kv;
        out->head_dim = i.head_dim;
        out->ffn_dim = i.ffn_dim;
        out->n_vocab = i.n_vocab;
        out->n_ctx_train = i.n_ctx_train;
        out->n_threads = m.params().n_threads;
        out->bos_id = m.tokenizer().bos_id();
        out->eos_id = m.tokenizer().eos_id();
    });
}

le_status le_model_stage_layers(const le_model* model, int32_t* out, size_t cap, size_t* n_out) {
    return guarded([&] {
        const ModelInfo& i = model_of(model).info();
        require(n_out, "n_out");
        // ModelInfo's per-layer marks; none: every layer takes a stage
        std::vector<int32_t> layers;
        for (int32_t l = 0; l < i.n_layer; ++l)
            if (i.stage_layers.empty() || i.stage_layers[static_cast<size_t>(l)]) layers.push_back(l);
        write_ids(layers, out, cap, n_out, "layer");
    });
}

// ---- tokenizer ----

le_status le_tokenize(const le_model* model, const char* text, size_t text_len, int add_special, int parse_special,
                      le_token* out, size_t cap, size_t* n_out) {
    return guarded([&] {
        const Model& m = model_of(model);
        require(n_out, "n_out");
        if (text_len > 0) require(text, "text");
        write_ids(m.tokenizer().encode(std::string_view(text ? text : "", text_len), add_special != 0, parse_special != 0),
                  out, cap, n_out);
    });
}

le_status le_detokenize(const le_model* model, const le_token* ids, size_t n, int render_special, char* buf, size_t cap,
                        size_t* len) {
    return guarded([&] {
        const Model& m = model_of(model);
        if (n > 0) require(ids, "ids");
        write_text(m.tokenizer().decode(ids, n, render_special != 0), buf, cap, len);
    });
}

le_status le_token_to_piece(const le_model* model, le_token id, int render_special, char* buf, size_t cap, size_t* len) {
    return guarded([&] { write_text(model_of(model).tokenizer().token_to_piece(id, render_special != 0), buf, cap, len); });
}

le_status le_token_is_end_of_generation(const le_model* model, le_token id, int* out) {
    return guarded([&] {
        const Tokenizer& t = model_of(model).tokenizer();
        require(out, "out");
        if (id < 0 || id >= t.n_vocab()) fail(LE_ERR_INVALID_ARGUMENT, "token id " + std::to_string(id) + " is out of range");
        *out = t.is_end_of_generation(id) ? 1 : 0;
    });
}

le_status le_chat_render(const le_model* model, const le_chat_message* messages, size_t n, char* buf, size_t cap,
                         size_t* len) {
    return guarded([&] {
        const Model& m = model_of(model);
        write_text(render_chat(m.info().chat_template, chat_messages(messages, n)), buf, cap, len);
    });
}

le_status le_chat_tokenize(const le_model* model, const le_chat_message* messages, size_t n, le_token* out, size_t cap,
                           size_t* n_out) {
    return guarded([&] {
        const Model& m = model_of(model);
        require(n_out, "n_out");
        const std::vector<ChatPart> parts = render_chat_parts(m.info().chat_template, chat_messages(messages, n));
        write_ids(encode_chat(m.tokenizer(), parts, true), out, cap, n_out);
    });
}

// ---- session ----

le_status le_session_create(le_model* model, const le_session_params* params, le_session** out) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        model_of(model);
        const le_session_params p = read_session_params(params);
        SessionParams sp;
        sp.n_ctx = p.n_ctx;
        sp.lazy = to_lazy(p, model->model->info());
        sp.numerics = to_numerics(p.numerics);
        auto handle = std::make_unique<le_session>();
        handle->model = model->model;
        handle->session = std::make_unique<Session>(model->model, sp);
        *out = handle.release();
    });
}

void le_session_free(le_session* session) { delete session; }

le_status le_session_reset(le_session* session) {
    return guarded([&] {
        CallUse use(session);
        session->session->reset();
        session->logits = nullptr;
        session->sampler.reset();  // a seeded sampler restarts with the conversation
    });
}

le_status le_session_feed_tokens(le_session* session, const le_token* ids, size_t n) {
    return guarded([&] {
        CallUse use(session);
        if (n == 0) fail(LE_ERR_INVALID_ARGUMENT, "feed needs at least one token");
        require(ids, "ids");
        if (n > static_cast<size_t>(session->session->n_ctx()))
            fail(LE_ERR_CONTEXT_FULL, std::to_string(n) + " tokens exceed n_ctx " + std::to_string(session->session->n_ctx()));
        session->logits = append_cancellable(session, ids, n);
    });
}

le_status le_session_feed_text(le_session* session, const char* text, size_t text_len, int add_special, int parse_special) {
    return guarded([&] {
        CallUse use(session);
        if (text_len > 0) require(text, "text");
        const std::vector<int32_t> ids = session->model->tokenizer().encode(std::string_view(text ? text : "", text_len),
                                                                            add_special != 0, parse_special != 0);
        if (ids.empty()) fail(LE_ERR_INVALID_ARGUMENT, "the text gives no tokens");
        if (ids.size() > static_cast<size_t>(session->session->n_ctx()))
            fail(LE_ERR_CONTEXT_FULL, "the text has " + std::to_string(ids.size()) + " tokens, more than n_ctx " +
                                          std::to_string(session->session->n_ctx()));
        session->logits = append_cancellable(session, ids.data(), ids.size());
    });
}

le_status le_session_feed_prompt(le_session* session, const le_token* ids, size_t n, int32_t* n_reused) {
    return guarded([&] {
        CallUse use(session);
        if (n_reused) *n_reused = 0;
        if (n == 0) fail(LE_ERR_INVALID_ARGUMENT, "a prompt needs at least one token");
        require(ids, "ids");
        Session& s = *session->session;
        if (n > static_cast<size_t>(s.n_ctx()))
            fail(LE_ERR_CONTEXT_FULL, std::to_string(n) + " tokens exceed n_ctx " + std::to_string(s.n_ctx()));
        const int kept = s.reuse_prefix(ids, static_cast<int>(n));
        session->logits = nullptr;  // (the context changed; the feed below gives new ones)
        session->logits = s.append(ids + kept, static_cast<int>(n) - kept);
        if (n_reused) *n_reused = kept;
    });
}
le_status le_session_truncate(le_session* session, int32_t n) {
    return guarded([&] {
        CallUse use(session);
        session->session->truncate(n);
        session->logits = nullptr;
    });
}
le_status le_session_save(le_session* session, const char* path) {
    return guarded([&] {
        CallUse use(session);
        session->session->save_state(require(path, "path"));
    });
}
le_status le_session_load(le_session* session, const char* path) {
    return guarded([&] {
        CallUse use(session);
        session->session->load_state(require(path, "path"));
        session->logits = nullptr;  // a loaded session continues with a feed
    });
}
le_status le_session_sample(le_session* session, const le_sampling_params* params, le_token* out) {
    return guarded([&] {
        CallUse use(session);
        require(out, "out");
        Sampler& sampler = sampler_for(session, params);
        const std::vector<int32_t>& ctx = session->session->tokens();
        *out = sampler.sample(require_logits(session), ctx.data(), static_cast<int>(ctx.size()));
    });
}

le_status le_session_generate(le_session* session, const le_sampling_params* params, int32_t max_tokens,
                              le_piece_callback callback, void* user_data, le_finish_reason* finish, int32_t* n_generated) {
    return le_session_generate_until(session, params, max_tokens, nullptr, 0, callback, user_data, finish, n_generated);
}

le_status le_session_generate_until(le_session* session, const le_sampling_params* params, int32_t max_tokens,
                                    const char* const* stop, size_t n_stop, le_piece_callback callback, void* user_data,
                                    le_finish_reason* finish, int32_t* n_generated) {
    le_finish_reason reason = LE_FINISH_NONE;
    int32_t n = 0;
    le_status st = guarded([&] {
        CallUse use(session);
        GenerationParams gp;
        gp.max_tokens = max_tokens;
        gp.cancel = &session->cancel;
        if (n_stop > 0) require(stop, "stop");
        for (size_t i = 0; i < n_stop; ++i) gp.stop.push_back(require(stop[i], "stop string"));
        Generation generation(*session->session, require_logits(session), sampler_for(session, params), gp);
        GeneratedPiece piece;
        while (generation.next(piece)) {
            n = generation.n_generated();
            // non-zero: "stop" once the token shown is fed, so a later generate continues the text
            if (callback && callback(piece.text.data(), piece.text.size(), piece.token, user_data) != 0) generation.stop();
        }
        session->logits = generation.logits();
        n = generation.n_generated();
        reason = to_finish_reason(generation.finish_reason());
    });
    if (finish) *finish = reason;
    if (n_generated) *n_generated = n;
    return st;
}

le_status le_session_cancel(le_session* session) {
    // nothing here allocates or throws: a signal handler may call it (a NULL session is a caller's bug, not a signal)
    if (!session) {
        set_last_error_literal("session is NULL");
        return LE_ERR_INVALID_ARGUMENT;
    }
    session->cancel.store(true, std::memory_order_release);
    return LE_OK;
}

le_status le_session_get_stats(const le_session* session, le_session_stats* out) {
    return guarded([&] {
        auto* s = const_cast<le_session*>(session);
        CallUse use(s);  // stats are written by feeds: read them when none runs
        require(out, "out");
        const Session& ss = *s->session;
        const SessionStats& st = ss.stats();
        out->n_past = ss.n_past();
        out->n_ctx = ss.n_ctx();
        out->n_prompt_tokens = st.n_prompt_tokens;
        out->ttft_s = st.ttft_s;
        out->prefill_tokens_per_s = st.prefill_tokens_per_s;
        out->decode_tokens_per_s = st.decode_tokens_per_s;
        out->n_decode_tokens = st.n_decode_tokens;
        out->decode_time_s = st.decode_time_s;
        out->prefill_pairs_computed = st.prefill_pairs_computed;
        out->prefill_pairs_dense = st.prefill_pairs_dense;
        out->total_pairs_computed = st.total_pairs_computed;
        out->total_pairs_dense = st.total_pairs_dense;
    });
}

le_status le_session_layer_tokens(const le_session* session, int32_t* out, size_t cap, size_t* n_out) {
    return guarded([&] {
        auto* s = const_cast<le_session*>(session);
        CallUse use(s);
        require(n_out, "n_out");
        write_ids(s->session->stats().layer_kv_tokens, out, cap, n_out, "layer");
    });
}

}  // extern "C"
