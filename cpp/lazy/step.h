// The LazyLLM step: one forward pass over the new tokens of a session, pruning by a schedule, written once
// over the backend interface (lazy/backend.h). The semantics:
//  - The active set at layer 0 is the whole context. At layer l an active token either has KV there already
//    (frontier > l: reused as is) or is computed now (frontier == l: a new token, or one revived from the
//    aux cache, which holds exactly its input to layer l).
//  - Computed tokens attend over the active tokens at positions <= their own, so attention at layer l only
//    sees tokens that are active at l.
//  - After a pruning layer l the last token's attention, averaged over heads, ranks the active tokens (or the
//    query window's, maximum over heads, pooled over neighbouring positions: the config says); the top keep
//    fraction stay active. On a sliding-window layer only the last token's window is ranked and
//    the tokens before it stay (their zero attention there says nothing about them). Dropped tokens that
//    were computed at l park h[l+1] in the aux cache.
//  - With a revival budget (decode steps), tokens that already have KV at the next layer stay active for
//    free, and of those that would have to be computed there (revived, or revived earlier in this step) only
//    the `budget` most attended at this layer are; the others stay pruned, their aux-cache state intact.
//  - Linear-attention layers (qwen35's gated delta nets) keep a recurrent state that must consume every token of the
//    context once, in order: a stage may only cut tokens after the last such layer (PrunePlan refuses others), so
//    they always compute exactly the new tokens and revival only happens at the attention layers after them.
//  - The frontier only grows, one layer per computation: each (token, layer) pair is computed at most once
//    per session (counted: recomputed_pairs must stay 0), so the work never exceeds the dense engine's.
#pragma once
#include <cstdint>
#include <vector>

#include "lazy/backend.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "model/model.h"

namespace lazyllm_edge {

// A session's prune schedule as per-layer keep tables, for prefill (multi-token) and decode steps.
struct PrunePlan {
    LazyConfig config;
    std::vector<float> prefill_keep;  // (n_layer) keep fraction after each layer; 1 = no pruning there
    std::vector<float> decode_keep;   // (n_layer) the same for one-token steps

    // Validates the config for the model (Error(invalid_argument)) and builds the tables.
    PrunePlan(const LazyConfig& lazy, const ModelHparams& hp);
    // The keep table of a step of n_new tokens, or nullptr for a dense step (no stages and no revival budget,
    // or all-position logits, which need every row).
    const float* keep_table(int n_new, bool all_logits) const;
    // The revival budget of a step of n_new tokens (-1: none).
    int revival_budget(int n_new, bool all_logits) const { return all_logits ? -1 : config.budget(n_new == 1); }
};

struct StepRequest {
    const int32_t* tokens = nullptr;    // the context, new tokens last (n_total)
    int n_total = 0;
    int n_new = 0;
    const float* keep_per_layer = nullptr;  // PrunePlan::keep_table; nullptr = dense
    int revival_budget = -1;            // PrunePlan::revival_budget
    ImportanceSignal importance = ImportanceSignal::mean_heads;
    int query_window = 1;
    int pool_radius = 0;
    int min_kept_tokens = 0;            // a stage keeps at least this many tokens (LazyConfig)
    float* all_logits = nullptr;        // (n_new, n_vocab) when every position's logits are wanted (dense)
    const int32_t* frontier = nullptr;  // (n_total) the host frontier (read before the step)
    std::vector<Session::ImportanceRecord>* importance_log = nullptr;  // records each ranking when set
    int* layer_scratch = nullptr;       // (n_layer + 1) ints
    CancelFlags cancel;                 // polled before each layer and micro-batch: Error(cancelled)
};

// Runs the step; returns the last position's logits (n_vocab). Adds the step's pair counts, revivals and
// invariant counters to `stats` and refreshes its per-layer KV token counts. A cancel request ends it with
// Error(cancelled) after the backend's abort_step(): the caller then forgets the new tokens.
const float* run_step(SessionBackend& backend, const ModelHparams& hp, const StepRequest& request, SessionStats& stats);

}  // namespace lazyllm_edge
