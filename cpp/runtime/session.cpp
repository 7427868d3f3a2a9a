#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu/cpu_session.h"
#include "cuda/cuda_backend.h"
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

void Session::reset() {
    SessionImpl& s = *impl_;
    SessionUse use(s);
    ++s.epoch;
    s.tokens.clear();
    std::fill(s.frontier.begin(), s.frontier.end(), 0);
    s.backend->frontier_changed();
    s.stats = SessionStats();
    s.stats.layer_kv_tokens.assign(static_cast<size_t>(s.hp->n_layer), 0);
    s.importance_log.clear();
}

namespace {

// Leaves the session as it was before a failed step: the new tokens are forgotten (the backend has made what the step
// computed of the earlier ones consistent, see SessionBackend::abort_step).
void forget_new_tokens(SessionImpl& s, size_t n_before) {
    for (size_t p = n_before; p < s.tokens.size(); ++p) s.frontier[p] = 0;
    s.tokens.resize(n_before);
    try {
        s.backend->frontier_changed();
    } catch (...) {  // the device itself failed; report the first error
    }
}

void record_step_stats(SessionStats& st, int n, bool prompt, double dt) {
    if (prompt) {
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
    for (int i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= s.hp->n_vocab)
            throw_error(ErrorCode::invalid_argument, "token id " + std::to_string(ids[i]) + " is out of range [0, " +
                                                         std::to_string(s.hp->n_vocab) + ")");
    const size_t n_before = s.tokens.size();
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
    request.cancel = cancel;
    const auto t0 = std::chrono::steady_clock::now();
    const float* logits;
    try {
        logits = run_step(*s.backend, *s.hp, request, s.stats);
    } catch (...) {
        forget_new_tokens(s, n_before);
        throw;
    }
    // (a one-token prompt is a prompt too: the stats then show its prefill, not a decode step)
    record_step_stats(s.stats, n, kind == AppendKind::prompt || n > 1 || n_before == 0, seconds_since(t0));
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

bool Session::read_kv(int layer, int position, float* k_out, float* v_out) const {
    const SessionImpl& s = *impl_;
    if (layer < 0 || layer >= s.hp->n_layer) throw_error(ErrorCode::invalid_argument, "layer out of range");
    if (token_frontier(position) <= layer) return false;
    s.backend->read_kv(layer, position, k_out, v_out);
    return true;
}

}  // namespace lazyllm_edge
