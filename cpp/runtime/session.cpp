#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu/cpu_session.h"
#include "cuda/cuda_backend.h"
#include "lazy/prune_schedule.h"
#include "runtime/session_file.h"
#include "runtime/session_state.h"

namespace lazyllm_edge {

// ---- Session ----

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Session::Session(std::shared_ptr<Model> model, const SessionParams& params) : impl_(new SessionImpl()) {
    if (!model) throw_error(ErrorCode::invalid_argument, "session needs a model");
    SessionImpl& s = *impl_;
    s.model = std::move(model);
    s.m = &s.model->impl();
    s.hp = &s.m->hparams;
    if (params.n_ctx < 1) throw_error(ErrorCode::invalid_argument, "n_ctx must be at least 1");
    if (params.n_ctx > (1 << 24)) throw_error(ErrorCode::invalid_argument, "n_ctx is too large");
    s.n_ctx = params.n_ctx;
    s.numerics = params.numerics;
    s.prune_plan = std::make_unique<PrunePlan>(params.lazy, *s.hp);
    s.frontier.assign(static_cast<size_t>(s.n_ctx), 0);
    s.layer_scratch.assign(static_cast<size_t>(s.hp->n_layer) + 1, 0);
    // the backend owns the caches and work buffers: on the device for "cuda", else in one host arena
    s.backend = s.m->cuda ? cuda_create_session(*s.m, s.n_ctx, s.frontier.data(), s.numerics)
                          : create_cpu_session(*s.m, s.n_ctx, s.frontier.data(), s.numerics);
    s.tokens.reserve(static_cast<size_t>(s.n_ctx));
    reset();
}

Session::~Session() = default;

namespace {
// A model with recurrent layers (qwen35's linear attention) keeps a state of its whole context that dropping K/V
// rows cannot rewind: such a context can grow or be emptied, not cut back.
bool has_recurrent_state(const SessionImpl& s) { return s.hp->n_recurrent_layers() > 0; }
std::string recurrent_state_note(const SessionImpl& s) {
    return std::string(architecture_name(s.hp->arch)) + " keeps a recurrent state of its whole context (its linear-attention layers)";
}
}  // namespace

void truncate_context(SessionImpl& s, size_t n) {
    for (size_t p = n; p < s.tokens.size(); ++p) s.frontier[p] = 0;
    s.tokens.resize(n);
    if (n == 0) s.cache_mixed = false;
    s.stats.layer_kv_tokens.assign(static_cast<size_t>(s.hp->n_layer), 0);
    for (size_t p = 0; p < n; ++p)
        for (int l = 0; l < s.frontier[p]; ++l) ++s.stats.layer_kv_tokens[l];
    s.backend->frontier_changed();
}

void Session::reset() {
    SessionImpl& s = *impl_;
    SessionUse use(s);
    ++s.epoch;
    std::fill(s.frontier.begin(), s.frontier.end(), 0);  // (also positions a failed device step may have left)
    truncate_context(s, 0);
    s.stats = SessionStats();
    s.stats.layer_kv_tokens.assign(static_cast<size_t>(s.hp->n_layer), 0);
    s.importance_log.clear();
    s.prompt_pending = false;
}

namespace {

// Notes the settings of a step that succeeded: the first after an empty context sets the cache's, a step with
// others mixes them.
void record_cache_settings(SessionImpl& s, bool context_was_empty) {
    const LazyConfig& lazy = s.prune_plan->config;
    if (context_was_empty) {
        s.cache_lazy = lazy;
        s.cache_numerics = s.numerics;
        s.cache_mixed = false;
    } else if (!s.cache_mixed && (s.numerics != s.cache_numerics || !same_lazy_config(lazy, s.cache_lazy))) {
        s.cache_mixed = true;
    }
}

void check_token_ids(const SessionImpl& s, const int32_t* ids, int n) {
    for (int i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= s.hp->n_vocab)
            throw_error(ErrorCode::invalid_argument, "token id " + std::to_string(ids[i]) + " is out of range [0, " +
                                                         std::to_string(s.hp->n_vocab) + ")");
}

void record_step_stats(SessionStats& st, int n, bool prompt, bool rest_of_prompt, double dt) {
    if (prompt) {
        if (!rest_of_prompt) st.n_reused_tokens = 0;
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
}

}  // namespace

const float* append_tokens(SessionImpl& s, const int32_t* ids, int n, float* all_logits_out, const CancelFlags& cancel,
                           AppendKind kind) {
    if (n <= 0) throw_error(ErrorCode::invalid_argument, "append needs at least one token");
    if (static_cast<int64_t>(s.tokens.size()) + n > s.n_ctx)
        throw_error(ErrorCode::context_full, "context is full: " + std::to_string(s.tokens.size()) + " cached + " +
                                                 std::to_string(n) + " new tokens > n_ctx " + std::to_string(s.n_ctx));
    check_token_ids(s, ids, n);
    const size_t n_before = s.tokens.size();
    const bool rest_of_prompt = s.prompt_pending;  // (consumed by this append, whatever its outcome)
    s.prompt_pending = false;
    s.tokens.insert(s.tokens.end(), ids, ids + n);
    s.importance_log.clear();
    StepRequest request;
    request.tokens = s.tokens.data();
    request.n_total = static_cast<int>(s.tokens.size());
    request.n_new = n;
    request.keep_per_layer = s.prune_plan->keep_table(n, all_logits_out != nullptr);
    request.revival_budget = s.prune_plan->revival_budget(n, all_logits_out != nullptr);
    request.all_logits = all_logits_out;
    request.frontier = s.frontier.data();
    request.importance_log = s.record_importance ? &s.importance_log : nullptr;
    request.layer_scratch = s.layer_scratch.data();
    request.importance = s.prune_plan->config.importance;
    request.query_window = s.prune_plan->config.query_window;
    request.pool_radius = s.prune_plan->config.pool(n == 1);
    request.min_kept_tokens = s.prune_plan->config.min_kept_tokens;
    request.cancel = cancel;
    const auto t0 = std::chrono::steady_clock::now();
    const float* logits;
    try {
        logits = run_step(*s.backend, *s.hp, request, s.stats);
    } catch (...) {
        // leave the session as it was before the call: the new tokens are forgotten (the backend has made what the
        // step computed of the earlier ones consistent, see SessionBackend::abort_step)
        try {
            truncate_context(s, n_before);
        } catch (...) {  // the device itself failed; report the first error
        }
        throw;
    }
    record_cache_settings(s, n_before == 0);
    // a prompt: more than one token, or what reuse_prefix left of one, or a one-token prompt
    const bool prompt = kind == AppendKind::prompt || n > 1 || n_before == 0 || rest_of_prompt;
    record_step_stats(s.stats, n, prompt, rest_of_prompt, seconds_since(t0));
    ++s.epoch;
    s.last_logits = logits;
    return logits;
}

const float* Session::append(const int32_t* ids, int n, float* all_logits_out, const std::atomic<bool>* cancel) {
    SessionUse use(*impl_);
    return append_tokens(*impl_, ids, n, all_logits_out, CancelFlags{cancel, nullptr});
}

int32_t Session::append_and_sample(const int32_t* ids, int n, Sampler& sampler) {
    SessionUse use(*impl_);  // held across both, so no other thread's append can replace the logits in between
    const float* logits = append_tokens(*impl_, ids, n, nullptr, CancelFlags{});
    const std::vector<int32_t>& t = impl_->tokens;
    return sampler.sample(logits, t.data(), static_cast<int>(t.size()));
}

void Session::truncate(int n) {
    SessionImpl& s = *impl_;
    SessionUse use(s);
    if (n < 0 || n > static_cast<int>(s.tokens.size()))
        throw_error(ErrorCode::invalid_argument, "truncate: n must be in [0, n_past = " + std::to_string(s.tokens.size()) +
                                                     "], got " + std::to_string(n));
    if (has_recurrent_state(s) && n != 0 && n != static_cast<int>(s.tokens.size()))
        throw_error(ErrorCode::unsupported, "truncate: " + recurrent_state_note(s) + ", which cannot be cut back to " +
                                                std::to_string(n) + " tokens: truncate(0) or reset() instead");
    ++s.epoch;
    truncate_context(s, static_cast<size_t>(n));
    s.importance_log.clear();
}

int reuse_prompt_prefix(SessionImpl& s, const int32_t* ids, int n) {
    if (n <= 0) throw_error(ErrorCode::invalid_argument, "reuse_prefix needs a prompt of at least one token");
    // a prompt that cannot be fed leaves the context as it is
    if (n > s.n_ctx)
        throw_error(ErrorCode::context_full, "context is full: a prompt of " + std::to_string(n) + " tokens > n_ctx " +
                                                 std::to_string(s.n_ctx));
    check_token_ids(s, ids, n);
    size_t keep = 0;
    const bool same_settings = !s.cache_mixed && s.numerics == s.cache_numerics &&
                               same_lazy_config(s.prune_plan->config, s.cache_lazy);
    if (same_settings) {
        const size_t limit = std::min(s.tokens.size(), static_cast<size_t>(n));
        while (keep < limit && s.tokens[keep] == ids[keep]) ++keep;
        // the last prompt token is always computed, for its logits: a token with KV at every layer cannot be
        // computed again (each (token, layer) pair at most once), so it goes with the rest
        keep = std::min(keep, static_cast<size_t>(n) - 1);
        // a recurrent state cannot be cut back: the whole context is reused, or nothing
        if (has_recurrent_state(s) && keep < s.tokens.size()) keep = 0;
    }
    ++s.epoch;
    truncate_context(s, keep);
    s.importance_log.clear();
    s.stats.n_reused_tokens = static_cast<int>(keep);
    s.prompt_pending = true;
    return static_cast<int>(keep);
}

int Session::reuse_prefix(const int32_t* ids, int n) {
    SessionUse use(*impl_);
    return reuse_prompt_prefix(*impl_, ids, n);
}

void Session::save_state(const std::string& path) {
    SessionUse use(*impl_);
    if (has_recurrent_state(*impl_))
        throw_error(ErrorCode::unsupported, "saved sessions: " + recurrent_state_note(*impl_) + ", which the file does not hold");
    save_session_file(*impl_, path);
}

void Session::load_state(const std::string& path) {
    SessionUse use(*impl_);
    if (has_recurrent_state(*impl_))
        throw_error(ErrorCode::unsupported, "saved sessions: " + recurrent_state_note(*impl_) + ", which the file does not hold");
    load_session_file(*impl_, path);  // (a bad file throws before the session changes)
    ++impl_->epoch;
}

int Session::n_past() const { return static_cast<int>(impl_->tokens.size()); }
int Session::n_ctx() const { return impl_->n_ctx; }
const std::vector<int32_t>& Session::tokens() const { return impl_->tokens; }
const SessionStats& Session::stats() const { return impl_->stats; }
const LazyConfig& Session::lazy_config() const { return impl_->prune_plan->config; }
const std::shared_ptr<Model>& Session::model() const { return impl_->model; }

void Session::set_lazy_config(const LazyConfig& lazy) {
    auto plan = std::make_unique<PrunePlan>(lazy, *impl_->hp);  // validated before anything changes
    SessionUse use(*impl_);
    impl_->prune_plan = std::move(plan);
}

Numerics Session::numerics() const { return impl_->numerics; }

void Session::set_numerics(Numerics numerics) {
    SessionUse use(*impl_);
    impl_->backend->set_numerics(numerics);  // may refuse: then nothing changed
    impl_->numerics = numerics;
}

void Session::set_record_importance(bool on) { impl_->record_importance = on; }
const std::vector<Session::ImportanceRecord>& Session::last_importance() const { return impl_->importance_log; }

int Session::token_frontier(int position) const {
    if (position < 0 || position >= n_past()) throw_error(ErrorCode::invalid_argument, "position out of range");
    return impl_->frontier[position];
}

std::vector<float> Session::aux_hidden(int position, int* layer) const {
    const SessionImpl& s = *impl_;
    const int f = token_frontier(position);
    if (layer) *layer = f;
    if (f <= 0 || f >= s.hp->n_layer) return {};
    std::vector<float> h(static_cast<size_t>(s.hp->d_model));
    s.backend->read_aux(position, h.data());
    return h;
}

int Session::kv_dim(int layer) const {
    const SessionImpl& s = *impl_;
    if (layer < 0 || layer >= s.hp->n_layer) throw_error(ErrorCode::invalid_argument, "layer out of range");
    return s.hp->shape(layer).kv_dim();
}

bool Session::read_kv(int layer, int position, float* k_out, float* v_out) const {
    const SessionImpl& s = *impl_;
    if (layer < 0 || layer >= s.hp->n_layer) throw_error(ErrorCode::invalid_argument, "layer out of range");
    if (token_frontier(position) <= layer) return false;
    s.backend->read_kv(layer, position, k_out, v_out);
    return true;
}

}  // namespace lazyllm_edge
