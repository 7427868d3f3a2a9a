#include "lazy/step.h"

#include <algorithm>

#include "lazy/prune_schedule.h"
#include "lazy/selection.h"

namespace lazyllm_edge {

PrunePlan::PrunePlan(const LazyConfig& lazy, const ModelHparams& hp) : config(lazy) {
    validate_lazy_config(lazy, hp.n_layer);
    validate_stages_after_recurrent_layers(lazy, hp.first_prunable_layer(), hp.n_layer, architecture_name(hp.arch));
    prefill_keep = keep_fraction_per_layer(lazy.stages(false), hp.n_layer);
    decode_keep = keep_fraction_per_layer(lazy.stages(true), hp.n_layer);
}

const float* PrunePlan::keep_table(int n_new, bool all_logits) const {
    const bool decode = n_new == 1;  // a one-token step is a decode step, anything longer a prefill
    if (all_logits || (config.stages(decode).empty() && config.budget(decode) < 0)) return nullptr;
    return decode ? decode_keep.data() : prefill_keep.data();
}

void throw_cancelled() { throw_error(ErrorCode::cancelled, "cancelled"); }

namespace {

// The layers of one step, from begin_step to the last layer's keep (run_step's body).
int run_layers(SessionBackend& backend, const ModelHparams& hp, const StepRequest& r, int64_t* pairs_out) {
    const int n_past = r.n_total - r.n_new;
    const int32_t last_pos = r.n_total - 1;
    // pruned tokens of earlier steps may be revived at any layer; without them no layer gathers
    const bool context_has_aux = std::any_of(r.frontier, r.frontier + n_past, [&](int32_t f) { return f < hp.n_layer; });
    // earlier tokens whose next layer is l, by l (a revival budget ranks only where they could exceed it)
    const bool budgeted = r.revival_budget >= 0 && context_has_aux;
    int* next_layer_count = r.layer_scratch;
    if (budgeted) {
        std::fill(next_layer_count, next_layer_count + hp.n_layer + 1, 0);
        for (int p = 0; p < n_past; ++p) ++next_layer_count[r.frontier[p]];
    }

    // the active set at layer 0 is the whole context; the new tokens start at layer 0
    backend.begin_step(r.tokens, r.n_total, r.n_new, r.query_window);
    int n_active = r.n_total, n_compute = r.n_new;
    // ranks the active tokens [first, n_active) at layer l, recording the ranking when the log is on
    auto rank = [&](int l, int first) {
        backend.rank(l, first, r.importance);
        if (r.pool_radius > 0) backend.pool_importance(first, r.pool_radius);
        if (!r.importance_log) return;
        Session::ImportanceRecord record;
        record.layer = l;
        backend.read_ranking(first, &record.positions, &record.scores);
        r.importance_log->push_back(std::move(record));
    };
    int64_t pairs = 0;
    for (int l = 0; l < hp.n_layer; ++l) {
        if (r.cancel.requested()) throw_cancelled();  // (the backend polls again per micro-batch)
        // revive the active tokens whose next layer is l from the aux cache
        if (context_has_aux) n_compute = backend.gather_revived(l);
        // the layer over the compute rows
        backend.run_layer(l, r.cancel);
        pairs += n_compute;
        if (l + 1 >= hp.n_layer) break;
        // prune at a stage: rank by the last token's attention, keep the most important
        const float keep_fraction = r.keep_per_layer ? r.keep_per_layer[l] : 1.0f;
        if (keep_fraction < 1.0f) {
            const int first = hp.is_sliding(l) ? backend.active_lower_bound(last_pos - hp.sliding_window + 1) : 0;
            rank(l, first);  // (on a sliding layer, the in-window tokens only)
            // (a stage that keeps every token still goes through selection and compaction, which then move nothing)
            const int n_keep = first + tokens_to_keep(n_active - first, keep_fraction, r.min_kept_tokens);
            n_compute = backend.keep(l, n_keep, first);
            n_active = n_keep;
        }
        // revival budget: of the tokens layer l + 1 would compute besides the last, only the most attended
        // `budget`; those with KV there stay for free. (Ranked over the whole active set, on sliding layers too:
        // tokens outside the window matter to the global layers above.)
        // (layer l + 1 computes at most the compute rows and the earlier tokens whose next layer it is)
        if (budgeted && n_compute + next_layer_count[l + 1] - 1 > r.revival_budget) {
            rank(l, 0);
            const int n_free = backend.protect_computed(l);
            const int n_keep = std::min(n_active, n_free + 1 + r.revival_budget);
            if (n_keep < n_active) {
                n_compute = backend.keep(l, n_keep, 0);
                n_active = n_keep;
            }
        }
    }
    *pairs_out = pairs;
    return n_compute;
}

}  // namespace

const float* run_step(SessionBackend& backend, const ModelHparams& hp, const StepRequest& r, SessionStats& stats) {
    int64_t pairs = 0;
    int n_compute = 0;
    try {
        n_compute = run_layers(backend, hp, r, &pairs);
    } catch (const Error& e) {
        // a step stopped between layers or micro-batches: what it computed of the earlier tokens is kept, consistent
        if (e.code() == ErrorCode::cancelled) backend.abort_step();
        throw;
    }
    // the last token is always computed through every layer and is the last compute row
    if (r.all_logits && n_compute != r.n_new)
        throw_error(ErrorCode::invalid_argument, "all-position logits need a dense session");
    const float* logits = backend.logits(r.all_logits);
    const StepCounters counters = backend.end_step();

    stats.revived_tokens += counters.revived_tokens;
    stats.recomputed_pairs += counters.recomputed_pairs;
    stats.total_pairs_computed += pairs;
    stats.total_pairs_dense += static_cast<int64_t>(r.n_new) * hp.n_layer;
    if (r.n_new > 1) {
        stats.prefill_pairs_computed = pairs;
        stats.prefill_pairs_dense = static_cast<int64_t>(r.n_new) * hp.n_layer;
    }
    stats.layer_kv_tokens.assign(static_cast<size_t>(hp.n_layer), 0);
    for (int p = 0; p < r.n_total; ++p)
        for (int l = 0; l < r.frontier[p]; ++l) ++stats.layer_kv_tokens[l];
    return logits;
}

}  // namespace lazyllm_edge
