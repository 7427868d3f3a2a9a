// What a session asks of a compute backend (cpp/cpu/, cpp/cuda/). A backend owns its KV cache, aux cache
// and work buffers and runs the kernels; the LazyLLM policy (which rows are computed at which layer, where
// the model prunes, how many tokens stay, what is counted) is lazy/step.cpp's, written once for both.
//
// State a backend keeps during a step: the active set (sorted positions every computed token attends over
// at the current layer) and the compute rows (sorted positions being computed at the current layer, with
// their hidden states). Between steps the host frontier (layers with KV per position, owned by the session
// and passed at creation) is the truth; a device backend mirrors it.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "lazyllm_edge/lazyllm_edge.hpp"

namespace lazyllm_edge {

// What a backend counted during one step (a device counts without a round-trip per layer).
struct StepCounters {
    int64_t revived_tokens = 0;    // (token, layer) pairs resumed from the aux cache
    int64_t recomputed_pairs = 0;  // pairs computed although they already had KV (the invariant: stays 0)
};

constexpr int kMaxQueryWindow = 64;
constexpr int kMaxPoolRadius = 64;

// Stop requests a step polls between layers and between a layer's micro-batches (a caller's flag and a
// generation's own, either may be null). A set flag is only read here: whoever set it decides what it means.
struct CancelFlags {
    const std::atomic<bool>* first = nullptr;
    const std::atomic<bool>* second = nullptr;
    bool requested() const {
        return (first && first->load(std::memory_order_relaxed)) || (second && second->load(std::memory_order_relaxed));
    }
};

// Thrown by run_step and the backends' layer loops when a CancelFlags is set.
[[noreturn]] void throw_cancelled();

class SessionBackend {
public:
    virtual ~SessionBackend() = default;

    // ---- one step (lazy/step.cpp drives these in order) ----
    // Starts a step over the context tokens[0, n_total): the active set becomes every position, the compute
    // rows the n_new newest tokens, embedded. The layers keep the queries of the last `query_window` positions
    // (at most kMaxQueryWindow) for rank().
    virtual void begin_step(const int32_t* tokens, int n_total, int n_new, int query_window) = 0;
    // Adds to the compute rows the active tokens whose next layer is `layer` but that are not being computed
    // (pruned by an earlier step and active again), loading their hidden state from the aux cache. Returns
    // the number of compute rows.
    virtual int gather_revived(int layer) = 0;
    // Runs `layer` over the compute rows, each attending over the active tokens at positions <= its own (and
    // inside the window on sliding layers), and advances their frontier to layer + 1. Polls `cancel` before
    // each micro-batch: when set, the rows already computed advance their frontier and throw_cancelled().
    virtual void run_layer(int layer, const CancelFlags& cancel) = 0;
    // Index in the active set of the first position >= `position` (where a sliding window starts).
    virtual int active_lower_bound(int32_t position) = 0;
    // Importance of the active tokens [first, n_active) at `layer`: the attention of the query window's tokens
    // computed at this layer (softmax per query and head over those tokens, averaged over the queries), then
    // averaged over the heads or their maximum (`signal`). Kept until keep().
    virtual void rank(int layer, int first, ImportanceSignal signal) = 0;
    // Pools the importance of the last rank() over [first, n_active): each token takes the largest importance of the
    // active tokens within `radius` positions of it (lazy/selection.h's max_pool_importance).
    virtual void pool_importance(int first, int radius) = 0;
    // The positions and importance of the last rank() (the session's importance log).
    virtual void read_ranking(int first, std::vector<int32_t>* positions, std::vector<float>* importance) = 0;
    // After rank(layer, 0): marks the active tokens that already have KV at layer + 1 (keeping them costs
    // nothing) as most important. Returns how many there are.
    virtual int protect_computed(int layer) = 0;
    // Keeps n_keep active tokens: active[0, first) and the last position always, the others by importance
    // (lazy/selection.h's rule). Compute rows dropped park their hidden state, h[layer + 1], in the aux
    // cache and stop being computed. Returns the number of compute rows left.
    virtual int keep(int layer, int n_keep, int first) = 0;
    // Final norm and output projection. With all_logits (a dense step) the logits of every compute row go
    // there, (n_rows, n_vocab); returns the last row's logits (n_vocab), valid until the next step.
    virtual const float* logits(float* all_logits) = 0;
    // Ends the step: the host frontier is current again. Returns the step's counters.
    virtual StepCounters end_step() = 0;
    // Ends a step that stopped between layers or micro-batches (cancelled): every compute row parks its hidden
    // state, which is its input to the layer its frontier names, in the aux cache, so the earlier tokens the step
    // revived stay consistent (resumable from where they got); the host frontier is current again. The session
    // then forgets the step's new tokens.
    virtual void abort_step() = 0;

    // ---- between steps ----
    // The arithmetic of the next steps (lazyllm_edge/numerics.hpp). Error(unsupported), nothing changed, where
    // the backend lacks it.
    virtual void set_numerics(Numerics numerics) = 0;
    // The host frontier was changed by the session (reset, or a failed step rolled back).
    virtual void frontier_changed() = 0;
    // One cached K/V row (kv_dim floats each) and one aux-cache row (d_model floats), as fp32.
    virtual void read_kv(int layer, int position, float* k, float* v) const = 0;
    virtual void read_aux(int position, float* hidden) const = 0;
    // Saved sessions (runtime/session_file.cpp) move the caches as stored, so a loaded session continues bit for
    // bit: rows [0, n) of one layer's K and V caches as fp16 bits, (n, kv_dim(layer)) each, and rows [0, n) of
    // the aux state, (n, aux_row_width()) fp32: the aux cache's hidden state (d_model), then what else a revived
    // token needs of its position (gemma4's per-layer inputs). The writes replace those rows.
    virtual int aux_row_width() const = 0;
    virtual void read_kv_rows(int layer, int n, uint16_t* k, uint16_t* v) const = 0;
    virtual void write_kv_rows(int layer, int n, const uint16_t* k, const uint16_t* v) = 0;
    virtual void read_aux_rows(int n, float* rows) const = 0;
    virtual void write_aux_rows(int n, const float* rows) = 0;
};

}  // namespace lazyllm_edge
