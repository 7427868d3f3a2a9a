// What a session holds: the context, the host frontier, the prune plan, the stats, and the backend that
// owns the caches and buffers (cpp/cpu/ or cpp/cuda/).
#pragma once
#include <atomic>
#include <memory>
#include <vector>

#include "base/error.h"
#include "lazy/backend.h"
#include "lazy/step.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "model/model.h"

namespace lazyllm_edge {

struct SessionImpl {
    std::shared_ptr<Model> model;
    ModelImpl* m = nullptr;
    const ModelHparams* hp = nullptr;
    int n_ctx = 0;
    Numerics numerics = Numerics::fast;  // what the backend computes with
    std::unique_ptr<PrunePlan> prune_plan;
    std::vector<int32_t> tokens;    // (n_ctx capacity) the context
    std::vector<int32_t> frontier;  // (n_ctx) layers with KV per position: token p has KV at [0, frontier[p]);
                                    // a prefix, because a token only ever advances one layer at a time
    std::vector<int> layer_scratch;  // (n_layer + 1) for the step
    const float* last_logits = nullptr;  // (n_vocab) the last step's, valid until the next step
    SessionStats stats;
    std::vector<Session::ImportanceRecord> importance_log;
    bool record_importance = false;
    std::unique_ptr<SessionBackend> backend;
    std::atomic<bool> busy{false};  // set while a call mutates the session (see SessionUse)
    uint64_t epoch = 0;  // counts the calls that changed the context (resets, appends, truncations, loads): a Generation notices others'
    // What the cached tokens were computed with: a prompt reuses them (reuse_prefix) only under the same schedule
    // and numerics, so a new call with other settings computes everything in its own.
    LazyConfig cache_lazy;
    Numerics cache_numerics = Numerics::fast;
    bool cache_mixed = false;     // steps with different settings since the context was empty: nothing is reused
    bool prompt_pending = false;  // reuse_prefix kept a prefix: the next append is the rest of a prompt (stats)
};

// Shortens the context to its first n tokens (n <= n_past): the frontier of the others goes to 0, so their KV and
// aux rows are as if never computed; what the kept tokens have (KV layers, pruned state in the aux cache) stays.
// Refreshes the per-layer KV counts. The one way a context shrinks: reset, reuse_prefix, a failed step's rollback.
void truncate_context(SessionImpl& s, size_t n);

// Session::reuse_prefix without the in-use guard (the callers hold it): keeps the longest common prefix of the
// context and the prompt ids (at most n - 1 tokens, under the settings that computed it), drops the rest; returns
// the number kept. The next append is the rest of the prompt.
int reuse_prompt_prefix(SessionImpl& s, const int32_t* ids, int n);

// Marks the session in use for one call; a second thread entering meanwhile gets Error(busy) instead of
// racing on the caches.
class SessionUse {
public:
    explicit SessionUse(SessionImpl& s) : s_(s) {
        if (s_.busy.exchange(true, std::memory_order_acquire))
            throw_error(ErrorCode::busy, "this session is already in use by another thread (use one session per thread)");
    }
    ~SessionUse() { s_.busy.store(false, std::memory_order_release); }
    SessionUse(const SessionUse&) = delete;
    SessionUse& operator=(const SessionUse&) = delete;

private:
    SessionImpl& s_;
};

// What one append is: a prompt (its stats are the prefill's: TTFT, prompt tokens) or one decode step.
enum class AppendKind { automatic, prompt };  // automatic: a prompt when it has more than one token or starts the context

// Session::append without the in-use guard (the callers hold a SessionUse). `cancel` is polled between layers and
// micro-batches: Error(cancelled), and the session is as before the call (the flags are left as they are).
const float* append_tokens(SessionImpl& s, const int32_t* ids, int n, float* all_logits_out, const CancelFlags& cancel,
                           AppendKind kind = AppendKind::automatic);

}  // namespace lazyllm_edge
