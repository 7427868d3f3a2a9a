// The CPU forward pass: one loop over layers for the tokens being computed, with LazyLLM pruning.
//
// Semantics (see runtime/session_state.h for the caches):
//  - The active set at layer 0 is the whole context. At layer l, an active token either has KV there
//    already (frontier > l: reused as is) or is computed now (frontier == l: a new token, or a token
//    revived from the aux cache, which holds exactly its input to layer l).
//  - Computed tokens attend over the active tokens at positions <= their own (causal), so attention at
//    layer l only sees tokens that are active at l.
//  - After a pruning layer l the last token's attention, averaged over heads, ranks the active tokens;
//    the top keep_fraction stay active. Dropped tokens that were computed at l park h[l+1] in the aux cache.
//  - frontier only grows, one layer per computation: each (token, layer) pair is computed at most once.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "lazy/prune_schedule.h"
#include "runtime/session_state.h"

namespace lazyllm_edge {
namespace {

// Adds the active tokens whose next layer is `layer` but which are not being computed yet (they were
// pruned earlier and are now selected again) to the compute set, loading their hidden state from the
// aux cache. Both lists are sorted by position; the merge runs from the back so it can work in place.
int revive_from_aux(SessionImpl& s, int layer, int n_active, int n_compute) {
    Workspace& ws = s.ws;
    const int32_t* frontier = s.kv_cache.frontier;
    int n_wanted = 0;
    for (int i = 0; i < n_active; ++i) n_wanted += frontier[ws.active_positions[i]] == layer;
    if (n_wanted == n_compute) return n_compute;
    const int d = s.hp->d_model;
    int out = n_wanted - 1, in = n_compute - 1;
    for (int i = n_active - 1; i >= 0; --i) {
        const int32_t pos = ws.active_positions[i];
        if (frontier[pos] != layer) continue;
        float* dst = ws.hidden + static_cast<int64_t>(out) * d;
        if (in >= 0 && ws.compute_positions[in] == pos) {
            if (out != in) std::memcpy(dst, ws.hidden + static_cast<int64_t>(in) * d, sizeof(float) * d);
            --in;
        } else {
            std::memcpy(dst, s.aux_cache.hidden + static_cast<int64_t>(pos) * d, sizeof(float) * d);
            ++s.stats.revived_tokens;
        }
        ws.compute_positions[out] = pos;
        --out;
    }
    return n_wanted;
}

// Runs layer `l` for compute rows [c0, c0 + nb).
void layer_micro_batch(SessionImpl& s, int l, int c0, int nb, int n_active, int32_t last_pos) {
    const ModelHparams& hp = *s.hp;
    const LayerWeights& w = s.m->layers[l];
    Workspace& ws = s.ws;
    ThreadPool& pool = *s.pool;
    const int d = hp.d_model, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.ffn_dim, hd = hp.head_dim;
    float* x = ws.hidden + static_cast<int64_t>(c0) * d;  // (nb, d) residual stream
    const int32_t* pos = ws.compute_positions + c0;       // (nb)
    const bool sliding = hp.is_sliding(l);

    // attention norm
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) rms_norm(x + r * d, w.attn_norm, ws.norm + r * d, d, hp.rms_eps);
    });
    // q, k, v projections
    {
        const WeightMatrix* qkv[] = {&w.wq, &w.wk, &w.wv};
        float* out[] = {ws.q, ws.k, ws.v};
        matmul_shared_input(qkv, out, 3, ws.norm, nb, pool);
    }
    // biases, per-head norms, RoPE, then K/V into the cache as fp16
    const float* rope_table = sliding ? ws.rope_local : ws.rope_global;
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            float* q = ws.q + r * qd;
            float* k = ws.k + r * kvd;
            float* v = ws.v + r * kvd;
            if (w.bq) add_in_place(q, w.bq, qd);
            if (w.bk) add_in_place(k, w.bk, kvd);
            if (w.bv) add_in_place(v, w.bv, kvd);
            if (w.q_norm)
                for (int h = 0; h < hp.n_head; ++h) rms_norm(q + h * hd, w.q_norm, q + h * hd, hd, hp.rms_eps);
            if (w.k_norm)
                for (int h = 0; h < hp.n_head_kv; ++h) rms_norm(k + h * hd, w.k_norm, k + h * hd, hd, hp.rms_eps);
            apply_rope(q, 1, hp.n_head, hd, hp.rope_dim, pos + r, rope_table, hp.rope_neox);
            apply_rope(k, 1, hp.n_head_kv, hd, hp.rope_dim, pos + r, rope_table, hp.rope_neox);
            if (hp.scale_q)
                for (int i = 0; i < qd; ++i) q[i] *= hp.attention_scale;
            fp32_to_fp16_row(k, s.kv_cache.k_at(l, pos[r], kvd), kvd);
            fp32_to_fp16_row(v, s.kv_cache.v_at(l, pos[r], kvd), kvd);
            // each query sees the active positions <= its own (and, on sliding layers, inside the window)
            const int32_t* active_begin = ws.active_positions;
            const int32_t* active_end = active_begin + n_active;
            ws.attend_end[r] = static_cast<int32_t>(std::upper_bound(active_begin, active_end, pos[r]) - active_begin);
            ws.attend_begin[r] = sliding ? static_cast<int32_t>(std::lower_bound(active_begin, active_end,
                                                                                 pos[r] - hp.sliding_window + 1) - active_begin)
                                         : 0;
            if (pos[r] == last_pos) std::memcpy(ws.last_q, q, sizeof(float) * qd);
        }
    });
    // attention over the active set
    AttentionParams ap;
    ap.q = ws.q;
    ap.k_cache = s.kv_cache.k_at(l, 0, kvd);
    ap.v_cache = s.kv_cache.v_at(l, 0, kvd);
    ap.kv_positions = ws.active_positions;
    ap.attend_begin = ws.attend_begin;
    ap.attend_end = ws.attend_end;
    ap.n_q = nb;
    ap.n_head = hp.n_head;
    ap.n_head_kv = hp.n_head_kv;
    ap.head_dim = hd;
    ap.scale = hp.softmax_scale();
    ap.out = ws.attn_out;
    attention(ap, ws.attention_scratch, s.n_ctx, pool);
    // output projection and residual
    matmul(w.wo, ws.attn_out, nb, ws.proj, pool);
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            if (w.post_attn_norm) rms_norm(ws.proj + r * d, w.post_attn_norm, ws.proj + r * d, d, hp.rms_eps);
            add_in_place(x + r * d, ws.proj + r * d, d);
            rms_norm(x + r * d, w.ffn_norm, ws.norm + r * d, d, hp.rms_eps);
        }
    });
    // gated FFN and residual
    {
        const WeightMatrix* gate_up[] = {&w.gate, &w.up};
        float* out[] = {ws.gate, ws.up};
        matmul_shared_input(gate_up, out, 2, ws.norm, nb, pool);
    }
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            if (hp.gelu_ffn) geglu(ws.gate + r * ff, ws.up + r * ff, ff);
            else swiglu(ws.gate + r * ff, ws.up + r * ff, ff);
        }
    });
    matmul(w.down, ws.gate, nb, ws.proj, pool);
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            if (w.post_ffn_norm) rms_norm(ws.proj + r * d, w.post_ffn_norm, ws.proj + r * d, d, hp.rms_eps);
            add_in_place(x + r * d, ws.proj + r * d, d);
        }
    });
}

// Ranks the active set by the last token's attention at layer l and keeps the most important.
// Returns the new active count; compute rows that are dropped park their hidden state in the aux cache.
int prune_after_layer(SessionImpl& s, int l, float keep_fraction, int n_active, int* n_compute, int32_t last_pos) {
    const ModelHparams& hp = *s.hp;
    Workspace& ws = s.ws;
    const int d = hp.d_model;
    // On a sliding-window layer the last token's attention covers only its window, so only the window is
    // ranked and the keep fraction applies to it. Tokens before the window are kept (importance +inf):
    // their zero attention there says nothing about them, and dropping them would hide them from the
    // global layers that follow. Stages on global layers rank the whole active set.
    int first = 0;  // index into the active set of the first token the last token attends to at l
    if (hp.is_sliding(l))
        first = static_cast<int>(std::lower_bound(ws.active_positions, ws.active_positions + n_active,
                                                  last_pos - hp.sliding_window + 1) - ws.active_positions);
    last_token_importance(ws.last_q, s.kv_cache.k_at(l, 0, hp.kv_dim()), ws.active_positions + first, n_active - first,
                          hp.n_head, hp.n_head_kv, hp.head_dim, hp.softmax_scale(), ws.importance_scores,
                          ws.importance + first);
    std::fill(ws.importance, ws.importance + first, INFINITY);
    if (s.record_importance) {  // the ranked (in-window) tokens only
        Session::ImportanceRecord rec;
        rec.layer = l;
        rec.positions.assign(ws.active_positions + first, ws.active_positions + n_active);
        rec.scores.assign(ws.importance + first, ws.importance + n_active);
        s.importance_log.push_back(std::move(rec));
    }
    const int n_keep = first + tokens_to_keep(n_active - first, keep_fraction);
    const int n_kept = select_most_important(ws.active_positions, ws.importance, n_active, n_keep, last_pos,
                                             ws.order, ws.kept_positions);
    // compact the compute rows to the kept ones (both lists sorted by position)
    int out = 0, k = 0;
    for (int i = 0; i < *n_compute; ++i) {
        const int32_t pos = ws.compute_positions[i];
        while (k < n_kept && ws.kept_positions[k] < pos) ++k;
        float* row = ws.hidden + static_cast<int64_t>(i) * d;
        if (k < n_kept && ws.kept_positions[k] == pos) {
            if (out != i) std::memcpy(ws.hidden + static_cast<int64_t>(out) * d, row, sizeof(float) * d);
            ws.compute_positions[out++] = pos;
        } else {
            std::memcpy(s.aux_cache.hidden + static_cast<int64_t>(pos) * d, row, sizeof(float) * d);  // h[l+1]
        }
    }
    *n_compute = out;
    std::memcpy(ws.active_positions, ws.kept_positions, sizeof(int32_t) * n_kept);
    return n_kept;
}

// Final norm and output projection for `n` hidden rows.
void output_logits(SessionImpl& s, const float* hidden, int n, float* logits) {
    const ModelHparams& hp = *s.hp;
    Workspace& ws = s.ws;
    const int d = hp.d_model;
    for (int c0 = 0; c0 < n; c0 += ws.n_ubatch) {
        const int nb = std::min(ws.n_ubatch, n - c0);
        s.pool->parallel_for(nb, [&](long b, long e, int) {
            for (long r = b; r < e; ++r)
                rms_norm(hidden + (c0 + r) * static_cast<int64_t>(d), s.m->output_norm, ws.norm + r * d, d, hp.rms_eps);
        });
        float* out = logits + static_cast<int64_t>(c0) * hp.n_vocab;  // (nb, n_vocab)
        matmul(s.m->output, ws.norm, nb, out, *s.pool);
        // final logit soft-capping (gemma2-style; only when the metadata asks for it)
        if (hp.final_logit_softcap > 0) {
            const float cap = hp.final_logit_softcap;
            s.pool->parallel_for(nb, [&](long b, long e, int) {
                for (float* y = out + b * hp.n_vocab; y < out + e * hp.n_vocab; ++y) *y = cap * std::tanh(*y / cap);
            });
        }
    }
}

}  // namespace

const float* cpu_forward(SessionImpl& s, int n_new, float* all_logits, const float* keep_per_layer) {
    const ModelHparams& hp = *s.hp;
    const ModelImpl& m = *s.m;
    Workspace& ws = s.ws;
    const int d = hp.d_model;
    const int n_total = static_cast<int>(s.tokens.size());
    const int n_past = n_total - n_new;
    const int32_t last_pos = n_total - 1;

    // the active set at layer 0 is the whole context; the new tokens start at layer 0
    int n_active = n_total;
    for (int i = 0; i < n_total; ++i) ws.active_positions[i] = i;
    int n_compute = n_new;
    for (int i = 0; i < n_new; ++i) ws.compute_positions[i] = n_past + i;
    // token embeddings
    s.pool->parallel_for(n_new, [&](long b, long e, int) {
        for (long i = b; i < e; ++i) {
            const int32_t id = s.tokens[n_past + i];
            const uint8_t* row = static_cast<const uint8_t*>(m.token_embd.data) + static_cast<int64_t>(id) * m.token_embd.row_bytes;
            float* h = ws.hidden + i * d;
            dequantize_row(m.token_embd.type, row, h, d);
            if (hp.embedding_scale != 1.0f)
                for (int j = 0; j < d; ++j) h[j] *= hp.embedding_scale;
        }
    });

    int64_t pairs = 0;
    for (int l = 0; l < hp.n_layer; ++l) {
        n_compute = revive_from_aux(s, l, n_active, n_compute);
        for (int c0 = 0; c0 < n_compute; c0 += ws.n_ubatch)
            layer_micro_batch(s, l, c0, std::min(ws.n_ubatch, n_compute - c0), n_active, last_pos);
        for (int i = 0; i < n_compute; ++i) {
            int32_t& f = s.kv_cache.frontier[ws.compute_positions[i]];
            if (f != l) ++s.stats.recomputed_pairs;  // would break the at-most-once invariant
            f = l + 1;
        }
        pairs += n_compute;
        if (keep_per_layer && keep_per_layer[l] < 1.0f && l + 1 < hp.n_layer)
            n_active = prune_after_layer(s, l, keep_per_layer[l], n_active, &n_compute, last_pos);
    }

    s.stats.total_pairs_computed += pairs;
    s.stats.total_pairs_dense += static_cast<int64_t>(n_new) * hp.n_layer;
    if (n_new > 1) {
        s.stats.prefill_pairs_computed = pairs;
        s.stats.prefill_pairs_dense = static_cast<int64_t>(n_new) * hp.n_layer;
    }

    // the last token is always computed through every layer and is the last compute row
    if (all_logits) {
        if (n_compute != n_new) throw_error(ErrorCode::invalid_argument, "all-position logits need a dense session");
        output_logits(s, ws.hidden, n_new, all_logits);
        return all_logits + static_cast<int64_t>(n_new - 1) * hp.n_vocab;
    }
    output_logits(s, ws.hidden + static_cast<int64_t>(n_compute - 1) * d, 1, ws.logits);
    return ws.logits;
}

}  // namespace lazyllm_edge
