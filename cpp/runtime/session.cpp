#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cuda/cuda_backend.h"
#include "lazy/prune_schedule.h"
#include "runtime/session_state.h"

namespace lazyllm_edge {

// ---- Session ----

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Validates a lazy config and builds its per-layer keep tables (prefill and decode steps).
void use_lazy_config(SessionImpl& s, const LazyConfig& lazy) {
    validate_lazy_config(lazy, s.hp->n_layer);
    s.lazy = lazy;
    s.keep_per_layer = keep_fraction_per_layer(lazy.stages(false), s.hp->n_layer);
    s.keep_per_layer_decode = keep_fraction_per_layer(lazy.stages(true), s.hp->n_layer);
}
}  // namespace

Session::Session(std::shared_ptr<Model> model, const SessionParams& params) : impl_(new SessionImpl()) {
    if (!model) throw_error(ErrorCode::invalid_argument, "session needs a model");
    SessionImpl& s = *impl_;
    s.model = std::move(model);
    s.m = &s.model->impl();
    s.hp = &s.m->hparams;
    const ModelHparams& hp = *s.hp;
    if (params.n_ctx < 1) throw_error(ErrorCode::invalid_argument, "n_ctx must be at least 1");
    if (params.n_ctx > (1 << 24)) throw_error(ErrorCode::invalid_argument, "n_ctx is too large");
    s.n_ctx = params.n_ctx;
    use_lazy_config(s, params.lazy);
    // On the CUDA backend the caches and work buffers live on the device (cuda_create_session); the host
    // keeps the frontier mirror, the RoPE tables it builds for the device, and the logits (and no workers).
    const bool on_device = s.m->cuda != nullptr;
    const int64_t host = on_device ? 0 : 1;
    s.pool = std::make_unique<ThreadPool>(on_device ? 1 : s.m->params.n_threads);

    const int64_t n_ctx = s.n_ctx, d = hp.d_model, kvd = hp.kv_dim(), qd = hp.q_dim(), ff = hp.ffn_dim;
    const int64_t ub = std::min<int64_t>(n_ctx, 512) * host;
    const int64_t att = attention_scratch_floats(s.n_ctx, hp.n_head, hp.n_head_kv, hp.head_dim) * s.pool->size() * host;
    const int64_t kv_elems = static_cast<int64_t>(hp.n_layer) * n_ctx * kvd * host;
    Arena& a = s.arena;
    a.reserve<uint16_t>(kv_elems);
    a.reserve<uint16_t>(kv_elems);
    a.reserve<int32_t>(n_ctx);
    // The KV cache is backed up front; the buffers after it fill in proportion to the prompt (aux cache,
    // prefill hidden rows) and are backed on first touch, so a large n_ctx costs memory only for its KV.
    const size_t commit_bytes = a.planned_bytes();
    a.reserve<float>(n_ctx * d * host);  // aux cache
    a.reserve<float>(n_ctx * d * host);  // hidden
    for (int i = 0; i < 4; ++i) a.reserve<int32_t>(n_ctx * host);
    a.reserve<float>(n_ctx * host);
    a.reserve<float>(n_ctx * host);
    a.reserve<int32_t>(ub);
    a.reserve<int32_t>(ub);
    a.reserve<float>(ub * d);
    a.reserve<float>(ub * qd);
    a.reserve<float>(ub * kvd);
    a.reserve<float>(ub * kvd);
    a.reserve<float>(ub * qd);
    a.reserve<float>(ub * d);
    a.reserve<float>(ub * ff);
    a.reserve<float>(ub * ff);
    a.reserve<float>(att);
    a.reserve<float>(qd * host);
    const bool has_local_rope = hp.sliding_window > 0;
    a.reserve<float>(n_ctx * hp.rope_dim);
    a.reserve<float>(has_local_rope ? n_ctx * hp.rope_dim : 0);
    a.reserve<float>(hp.n_vocab);
    a.allocate("session (KV cache, aux cache, work buffers)", commit_bytes);

    s.kv_cache.k = a.carve<uint16_t>(kv_elems);
    s.kv_cache.v = a.carve<uint16_t>(kv_elems);
    s.kv_cache.frontier = a.carve<int32_t>(n_ctx);
    s.kv_cache.layer_stride = n_ctx * kvd;
    s.aux_cache.hidden = a.carve<float>(n_ctx * d * host);
    Workspace& ws = s.ws;
    ws.n_ubatch = static_cast<int>(ub);
    ws.hidden = a.carve<float>(n_ctx * d * host);
    ws.compute_positions = a.carve<int32_t>(n_ctx * host);
    ws.active_positions = a.carve<int32_t>(n_ctx * host);
    ws.kept_positions = a.carve<int32_t>(n_ctx * host);
    ws.order = a.carve<int32_t>(n_ctx * host);
    ws.importance = a.carve<float>(n_ctx * host);
    ws.importance_scores = a.carve<float>(n_ctx * host);
    ws.attend_end = a.carve<int32_t>(ub);
    ws.attend_begin = a.carve<int32_t>(ub);
    ws.norm = a.carve<float>(ub * d);
    ws.q = a.carve<float>(ub * qd);
    ws.k = a.carve<float>(ub * kvd);
    ws.v = a.carve<float>(ub * kvd);
    ws.attn_out = a.carve<float>(ub * qd);
    ws.proj = a.carve<float>(ub * d);
    ws.gate = a.carve<float>(ub * ff);
    ws.up = a.carve<float>(ub * ff);
    ws.attention_scratch = a.carve<float>(att);
    ws.last_q = a.carve<float>(qd * host);
    ws.rope_global = a.carve<float>(n_ctx * hp.rope_dim);
    ws.rope_local = has_local_rope ? a.carve<float>(n_ctx * hp.rope_dim) : ws.rope_global;
    ws.logits = a.carve<float>(hp.n_vocab);

    build_rope_table(ws.rope_global, s.n_ctx, hp.rope_dim, hp.rope_freq_base, hp.rope_freq_scale, s.m->rope_freqs);
    if (has_local_rope)
        build_rope_table(ws.rope_local, s.n_ctx, hp.rope_dim, hp.rope_freq_base_local, 1.0f, nullptr);
    if (on_device) s.cuda = cuda_create_session(s);
    s.tokens.reserve(static_cast<size_t>(n_ctx));
    reset();
}

Session::~Session() = default;

void Session::reset() {
    SessionImpl& s = *impl_;
    SessionUse use(s);
    s.tokens.clear();
    std::fill(s.kv_cache.frontier, s.kv_cache.frontier + s.n_ctx, 0);
    if (s.cuda) cuda_upload_frontier(s);
    s.stats = SessionStats();
    s.stats.layer_kv_tokens.assign(static_cast<size_t>(s.hp->n_layer), 0);
    s.importance_log.clear();
}

namespace {

// Session::append without the in-use guard (the callers hold it).
const float* append_tokens(SessionImpl& s, const int32_t* ids, int n, float* all_logits_out) {
    if (n <= 0) throw_error(ErrorCode::invalid_argument, "append needs at least one token");
    if (static_cast<int64_t>(s.tokens.size()) + n > s.n_ctx)
        throw_error(ErrorCode::context_full, "context is full: " + std::to_string(s.tokens.size()) + " cached + " +
                                                 std::to_string(n) + " new tokens > n_ctx " + std::to_string(s.n_ctx));
    for (int i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= s.hp->n_vocab)
            throw_error(ErrorCode::invalid_argument, "token id " + std::to_string(ids[i]) + " is out of range [0, " +
                                                         std::to_string(s.hp->n_vocab) + ")");
    const bool prefill = n > 1;
    const bool prunes = !all_logits_out && !s.lazy.stages(!prefill).empty();
    const float* keep_per_layer = !prunes ? nullptr : prefill ? s.keep_per_layer.data() : s.keep_per_layer_decode.data();
    const size_t n_before = s.tokens.size();
    s.tokens.insert(s.tokens.end(), ids, ids + n);
    s.importance_log.clear();
    const auto t0 = std::chrono::steady_clock::now();
    const float* logits;
    try {
        logits = s.cuda ? cuda_forward(s, n, all_logits_out, keep_per_layer)
                        : cpu_forward(s, n, all_logits_out, keep_per_layer);
    } catch (...) {
        // leave the session as it was before the call
        for (size_t p = n_before; p < s.tokens.size(); ++p) s.kv_cache.frontier[p] = 0;
        s.tokens.resize(n_before);
        if (s.cuda) {
            try {
                cuda_upload_frontier(s);
            } catch (...) {  // the device itself failed; report the first error
            }
        }
        throw;
    }
    const double dt = seconds_since(t0);
    SessionStats& st = s.stats;
    if (prefill) {
        st.n_prompt_tokens = n;
        st.ttft_s = dt;
        st.prefill_tokens_per_s = dt > 0 ? n / dt : 0;
        st.n_decode_tokens = 0;
        st.decode_time_s = 0;
        st.decode_tokens_per_s = 0;
    } else {
        st.n_decode_tokens += 1;
        st.decode_time_s += dt;
        st.decode_tokens_per_s = st.decode_time_s > 0 ? st.n_decode_tokens / st.decode_time_s : 0;
    }
    std::fill(st.layer_kv_tokens.begin(), st.layer_kv_tokens.end(), 0);
    for (size_t p = 0; p < s.tokens.size(); ++p)
        for (int l = 0; l < s.kv_cache.frontier[p]; ++l) ++st.layer_kv_tokens[l];
    return logits;
}

}  // namespace

const float* Session::append(const int32_t* ids, int n, float* all_logits_out) {
    SessionUse use(*impl_);
    return append_tokens(*impl_, ids, n, all_logits_out);
}

int32_t Session::append_and_sample(const int32_t* ids, int n, Sampler& sampler) {
    SessionUse use(*impl_);  // held across both, so no other thread's append can replace the logits in between
    const float* logits = append_tokens(*impl_, ids, n, nullptr);
    const std::vector<int32_t>& t = impl_->tokens;
    return sampler.sample(logits, t.data(), static_cast<int>(t.size()));
}

int Session::n_past() const { return static_cast<int>(impl_->tokens.size()); }
int Session::n_ctx() const { return impl_->n_ctx; }
const std::vector<int32_t>& Session::tokens() const { return impl_->tokens; }
const SessionStats& Session::stats() const { return impl_->stats; }
const LazyConfig& Session::lazy_config() const { return impl_->lazy; }
const std::shared_ptr<Model>& Session::model() const { return impl_->model; }

void Session::set_lazy_config(const LazyConfig& lazy) {
    SessionUse use(*impl_);
    use_lazy_config(*impl_, lazy);
}

void Session::set_record_importance(bool on) { impl_->record_importance = on; }
const std::vector<Session::ImportanceRecord>& Session::last_importance() const { return impl_->importance_log; }

int Session::token_frontier(int position) const {
    if (position < 0 || position >= n_past()) throw_error(ErrorCode::invalid_argument, "position out of range");
    return impl_->kv_cache.frontier[position];
}

std::vector<float> Session::aux_hidden(int position, int* layer) const {
    const SessionImpl& s = *impl_;
    const int f = token_frontier(position);
    if (layer) *layer = f;
    if (f <= 0 || f >= s.hp->n_layer) return {};
    if (s.cuda) {
        std::vector<float> h(static_cast<size_t>(s.hp->d_model));
        cuda_read_aux(s, position, h.data());
        return h;
    }
    const float* h = s.aux_cache.hidden + static_cast<int64_t>(position) * s.hp->d_model;
    return std::vector<float>(h, h + s.hp->d_model);
}

bool Session::read_kv(int layer, int position, float* k_out, float* v_out) const {
    const SessionImpl& s = *impl_;
    if (layer < 0 || layer >= s.hp->n_layer) throw_error(ErrorCode::invalid_argument, "layer out of range");
    if (token_frontier(position) <= layer) return false;
    if (s.cuda) {
        cuda_read_kv(s, layer, position, k_out, v_out);
        return true;
    }
    const int kvd = s.hp->kv_dim();
    fp16_to_fp32_row(s.kv_cache.k_at(layer, position, kvd), k_out, kvd);
    fp16_to_fp32_row(s.kv_cache.v_at(layer, position, kvd), v_out, kvd);
    return true;
}

}  // namespace lazyllm_edge
