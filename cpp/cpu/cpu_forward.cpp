// The CPU backend: one forward pass over the compute rows per layer (layer_micro_batch), and the data
// movement the LazyLLM step (lazy/step.cpp) asks for: revival from the aux cache, ranking, keeping.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/arena.h"
#include "base/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/cpu_session.h"
#include "cpu/gated_delta_net.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "lazy/selection.h"

namespace lazyllm_edge {
namespace {

class CpuSession final : public SessionBackend {
public:
    CpuSession(const ModelImpl& model, int n_ctx, int32_t* frontier, Numerics numerics);

    void begin_step(const int32_t* tokens, int n_total, int n_new, int query_window) override;
    int gather_revived(int layer) override;
    void run_layer(int layer, const CancelFlags& cancel) override;
    int active_lower_bound(int32_t position) override;
    void rank(int layer, int first, ImportanceSignal signal) override;
    void pool_importance(int first, int radius) override;
    void read_ranking(int first, std::vector<int32_t>* positions, std::vector<float>* importance) override;
    int protect_computed(int layer) override;
    int keep(int layer, int n_keep, int first) override;
    const float* logits(float* all_logits) override;
    StepCounters end_step() override;
    void abort_step() override;
    void set_numerics(Numerics numerics) override { numerics_ = numerics; }  // every value runs on the CPU
    void frontier_changed() override {}
    void read_kv(int layer, int position, float* k, float* v) const override;
    void read_aux(int position, float* hidden) const override;
    void read_kv_rows(int layer, int n, uint16_t* k, uint16_t* v) const override;
    void write_kv_rows(int layer, int n, const uint16_t* k, const uint16_t* v) override;
    int aux_row_width() const override;
    void read_aux_rows(int n, float* rows) const override;
    void write_aux_rows(int n, const float* rows) override;

private:
    // Every buffer of the session, carved from one arena (the table in the constructor names each once).
    struct Buffers {
        uint16_t* k_cache = nullptr;           // (n_ctx, kv_dim(l)) fp16 for each attention layer l computing K/V, one after another
        uint16_t* v_cache = nullptr;           // the same for V
        float* aux_cache = nullptr;            // (n_ctx, d_model) h[frontier[p]] of pruned tokens
        float* hidden = nullptr;               // (n_ctx, d_model) residual stream of the compute rows
        int32_t* compute_positions = nullptr;  // (n_ctx) positions of the compute rows, sorted
        int32_t* active_positions = nullptr;   // (n_ctx) the active set at this layer, sorted
        int32_t* kept_positions = nullptr;     // (n_ctx) selection output
        int32_t* order = nullptr;              // (n_ctx) selection scratch
        float* importance = nullptr;           // (n_ctx) aligned with the active set
        float* importance_scores = nullptr;    // (2 * n_head * n_ctx) importance scratch
        int32_t* attend_end = nullptr;         // (n_ubatch)
        int32_t* attend_begin = nullptr;       // (n_ubatch)
        float* norm = nullptr;                 // (n_ubatch, d_model)
        float* q = nullptr;                    // (n_ubatch, q_dim) (the largest of the layers': q_dim, kv_dim, ffn_dim)
        float* k = nullptr;                    // (n_ubatch, kv_dim)
        float* v = nullptr;                    // (n_ubatch, kv_dim)
        float* attn_out = nullptr;             // (n_ubatch, q_dim)
        float* proj = nullptr;                 // (n_ubatch, d_model)
        float* gate = nullptr;                 // (n_ubatch, ffn_dim)
        float* up = nullptr;                   // (n_ubatch, ffn_dim)
        float* attention_scratch = nullptr;    // (n_threads, attention_scratch_floats)
        float* window_q = nullptr;             // (kMaxQueryWindow, q_dim) queries of the window's tokens at this layer
        float* rope_global = nullptr;          // (n_ctx, rope_dim) cos/sin
        float* rope_local = nullptr;           // (n_ctx, rope_dim_local) sliding-window layers (gemma3, gemma4); = rope_global otherwise
        float* ple_inputs = nullptr;           // (n_ctx, n_layer * per_layer_dim) gemma4: each position's per-layer inputs
        float* ple_token = nullptr;            // (n_threads, n_layer * per_layer_dim) one token's per-layer embedding row
        float* ple = nullptr;                  // (n_ubatch, per_layer_dim) the compute rows' per-layer branch
        // gemma4 mixture of experts (n_expert > 0; gate and up above hold the larger of ffn_dim and expert_ffn_dim)
        float* expert_in = nullptr;            // (n_ubatch, d_model) the router's input, then the experts', then their sum
        float* router_logits = nullptr;        // (n_ubatch, n_expert)
        int32_t* expert_choice = nullptr;      // (n_ubatch, n_expert_used) each row's experts, by decreasing weight
        float* expert_weight = nullptr;        // (n_ubatch, n_expert_used)
        int32_t* expert_slots = nullptr;       // (n_ubatch * n_expert_used) the (row, slot)s routed to one expert
        float* expert_x = nullptr;             // (n_ubatch * n_expert_used, d_model) their inputs, then outputs
        float* expert_out = nullptr;           // (n_ubatch * n_expert_used, d_model) each (row, slot)'s weighted output
        float* logits = nullptr;               // (n_vocab)
        // linear-attention (gated delta net) layers, qwen35; each state has a committed and a working slot
        float* conv_state = nullptr;           // (2, n_recurrent, conv_kernel - 1, conv_dim) the last tokens' q|k|v
        float* delta_state = nullptr;          // (2, n_recurrent, n_v_heads, head_dim, head_dim) each v head's state
        float* conv_window = nullptr;          // (conv_kernel - 1 + n_ubatch, conv_dim) conv state rows, then new rows
        float* conv_out = nullptr;             // (n_ubatch, conv_dim) q | k | v: projected, then convolved and normed
        float* ssm_z = nullptr;                // (n_ubatch, value_dim) output gate
        float* ssm_beta = nullptr;             // (n_ubatch, n_v_heads) write strength
        float* ssm_decay = nullptr;            // (n_ubatch, n_v_heads) state decay
        float* ssm_out = nullptr;              // (n_ubatch, value_dim) the delta net's output
        // full-attention layers with an output gate (qwen35)
        float* q_gate = nullptr;               // (n_ubatch, 2 * q_dim) attn_q's output: q, then the gate, per head
        float* attn_gate = nullptr;            // (n_ubatch, q_dim)
    };

    // The K/V a layer attends over (a shared-KV layer's are its source layer's), at a position.
    int64_t kv_index(int layer, int pos) const { return kv_offset_[layer] + int64_t{pos} * m_.hparams.shape(layer).kv_dim(); }
    uint16_t* k_at(int layer, int pos) const { return buf_.k_cache + kv_index(layer, pos); }
    uint16_t* v_at(int layer, int pos) const { return buf_.v_cache + kv_index(layer, pos); }
    void embed_per_layer_inputs(int n_past, int n_new);
    float* conv_state_at(int layer, int slot) const {
        return buf_.conv_state + (static_cast<int64_t>(slot) * n_recurrent_ + recurrent_index_[layer]) * conv_state_floats_;
    }
    float* delta_state_at(int layer, int slot) const {
        return buf_.delta_state + (static_cast<int64_t>(slot) * n_recurrent_ + recurrent_index_[layer]) * delta_state_floats_;
    }
    void layer_micro_batch(int l, int c0, int nb);
    void attention_block(int l, int c0, int nb);
    void delta_net_block(int l, int c0, int nb);
    void per_layer_embedding(int l, int c0, int nb);
    void mixture_of_experts(int l, int c0, int nb);
    void advance_frontier(int layer, int n_rows);
    void output_logits(const float* hidden, int n, float* logits);

    const ModelImpl& m_;
    const int n_ctx_;
    int32_t* frontier_;  // (n_ctx) the session's
    Numerics numerics_;  // the kernels' arithmetic, passed to each call
    ThreadPool pool_;
    Arena arena_;
    Buffers buf_;
    int n_ubatch_ = 0;      // compute rows per layer micro-batch
    std::vector<int64_t> kv_offset_;  // (n_layer) where each layer's K/V start in k_cache / v_cache (elements)
    std::vector<int> recurrent_index_;  // (n_layer) index of a linear-attention layer's states; -1: an attention layer
    int n_recurrent_ = 0;
    int64_t conv_state_floats_ = 0;     // per layer and slot: (conv_kernel - 1) * conv_dim
    int64_t delta_state_floats_ = 0;    // per layer and slot: n_v_heads * head_dim^2
    int committed_slot_ = 0;            // the states' slot holding the whole context; the other is the step's
    int state_tokens_ = 0;              // tokens the committed states have consumed
    int n_past_ = 0;                    // the step's context before its new tokens
    int n_total_ = 0;
    // the step
    const int32_t* tokens_ = nullptr;
    int n_active_ = 0;
    int n_compute_ = 0;
    int32_t last_pos_ = 0;
    int32_t window_begin_ = 0;             // first position of the query window
    uint8_t window_has_[kMaxQueryWindow];  // which window positions were computed at this layer
    StepCounters counters_;
};

CpuSession::CpuSession(const ModelImpl& model, int n_ctx, int32_t* frontier, Numerics numerics)
    : m_(model), n_ctx_(n_ctx), frontier_(frontier), numerics_(numerics), pool_(model.params.n_threads) {
    const ModelHparams& hp = m_.hparams;
    const int64_t n = n_ctx, d = hp.d_model, ub = std::min<int64_t>(n, 512), ple_row = int64_t{hp.n_layer} * hp.per_layer_dim;
    // the largest layer sizes (gemma4's layers differ); K/V only for the layers that compute them
    int64_t kvd = 0, qd = 0, ff = 0, attention_floats = 0, kv_elems = 0;
    kv_offset_.resize(hp.n_layer);
    recurrent_index_.assign(hp.n_layer, -1);
    for (int l = 0; l < hp.n_layer; ++l) {
        const LayerShape& s = hp.shape(l);
        if (hp.is_recurrent(l)) {  // qwen35's linear-attention layers: recurrent states instead of K/V
            recurrent_index_[l] = n_recurrent_++;
            kv_offset_[l] = -1;
            continue;
        }
        kvd = std::max<int64_t>(kvd, s.kv_dim());
        qd = std::max<int64_t>(qd, int64_t{hp.n_head} * s.head_dim);
        ff = std::max<int64_t>(ff, std::max(s.ffn_dim, hp.expert_ffn_dim));
        attention_floats = std::max(attention_floats, attention_scratch_floats(n_ctx, hp.n_head, s.n_head_kv, s.head_dim));
        kv_offset_[l] = hp.computes_kv(l) ? kv_elems : kv_offset_[s.kv_source];
        if (hp.computes_kv(l)) kv_elems += n * s.kv_dim();
    }
    const bool has_local_rope = hp.sliding_window > 0;
    n_ubatch_ = static_cast<int>(ub);
    // The KV cache is backed up front; the buffers after it fill in proportion to the prompt (aux cache,
    // hidden rows) and are backed on first touch, so a large n_ctx costs memory only for its KV.
    BufferPlan plan(Arena::kAlignment);
    Buffers& b = buf_;
    plan.add(b.k_cache, kv_elems, /*commit=*/true);
    plan.add(b.v_cache, kv_elems, /*commit=*/true);
    plan.add(b.aux_cache, n * d);
    plan.add(b.hidden, n * d);
    plan.add(b.compute_positions, n);
    plan.add(b.active_positions, n);
    plan.add(b.kept_positions, n);
    plan.add(b.order, n);
    plan.add(b.importance, n);
    plan.add(b.importance_scores, 2 * hp.n_head * n);
    plan.add(b.attend_end, ub);
    plan.add(b.attend_begin, ub);
    plan.add(b.norm, ub * d);
    plan.add(b.q, ub * qd);
    plan.add(b.k, ub * kvd);
    plan.add(b.v, ub * kvd);
    plan.add(b.attn_out, ub * qd);
    plan.add(b.proj, ub * d);
    plan.add(b.gate, ub * ff);
    plan.add(b.up, ub * ff);
    plan.add(b.attention_scratch, attention_floats * pool_.size());
    plan.add(b.window_q, kMaxQueryWindow * qd);
    plan.add(b.rope_global, n * hp.rope_dim);
    if (has_local_rope) plan.add(b.rope_local, n * hp.rope_dim_local);
    if (hp.per_layer_dim > 0) {
        plan.add(b.ple_inputs, n * ple_row);
        plan.add(b.ple_token, ple_row * pool_.size());
        plan.add(b.ple, ub * hp.per_layer_dim);
    }
    if (hp.n_expert > 0) {
        const int64_t slots = ub * hp.n_expert_used;
        plan.add(b.expert_in, ub * d);
        plan.add(b.router_logits, ub * hp.n_expert);
        plan.add(b.expert_choice, slots);
        plan.add(b.expert_weight, slots);
        plan.add(b.expert_slots, slots);
        plan.add(b.expert_x, slots * d);
        plan.add(b.expert_out, slots * d);
    }
    plan.add(b.logits, hp.n_vocab);
    if (n_recurrent_ > 0) {
        const int64_t conv_dim = hp.ssm_conv_dim(), value_dim = hp.ssm_value_dim(), nv = hp.ssm_n_v_heads;
        conv_state_floats_ = static_cast<int64_t>(hp.ssm_conv_kernel - 1) * conv_dim;
        delta_state_floats_ = nv * hp.ssm_head_dim * hp.ssm_head_dim;
        plan.add(b.conv_state, 2 * n_recurrent_ * conv_state_floats_);
        plan.add(b.delta_state, 2 * n_recurrent_ * delta_state_floats_);
        plan.add(b.conv_window, (hp.ssm_conv_kernel - 1 + ub) * conv_dim);
        plan.add(b.conv_out, ub * conv_dim);
        plan.add(b.ssm_z, ub * value_dim);
        plan.add(b.ssm_beta, ub * nv);
        plan.add(b.ssm_decay, ub * nv);
        plan.add(b.ssm_out, ub * value_dim);
    }
    if (hp.attn_output_gate) {
        plan.add(b.q_gate, ub * 2 * qd);
        plan.add(b.attn_gate, ub * qd);
    }
    arena_.allocate(plan, "session (KV cache, aux cache, work buffers)");
    build_model_rope_table(m_, n_ctx, b.rope_global);
    if (has_local_rope) build_rope_table(b.rope_local, n_ctx, hp.rope_dim_local, hp.rope_freq_base_local, 1.0f, nullptr);
    else b.rope_local = b.rope_global;
}

void CpuSession::begin_step(const int32_t* tokens, int n_total, int n_new, int query_window) {
    const ModelHparams& hp = m_.hparams;
    const int d = hp.d_model;
    const int n_past = n_total - n_new;
    // a recurrent state holds its whole context: it goes on from where the last step left it, or starts empty
    if (n_recurrent_ > 0 && n_past > 0 && n_past != state_tokens_)
        throw_error(ErrorCode::unsupported, std::string(architecture_name(hp.arch)) + ": the linear-attention layers' "
                    "recurrent state has consumed " + std::to_string(state_tokens_) + " tokens but the context holds " +
                    std::to_string(n_past) + "; a recurrent state cannot be truncated or rewound (reset the session)");
    n_past_ = n_past;
    n_total_ = n_total;
    tokens_ = tokens;
    last_pos_ = n_total - 1;
    window_begin_ = std::max(0, n_total - std::min(std::max(query_window, 1), kMaxQueryWindow));
    counters_ = StepCounters();
    // the active set is the whole context, the compute rows the new tokens
    n_active_ = n_total;
    for (int i = 0; i < n_total; ++i) buf_.active_positions[i] = i;
    n_compute_ = n_new;
    for (int i = 0; i < n_new; ++i) buf_.compute_positions[i] = n_past + i;
    // token embeddings
    pool_.parallel_for(n_new, [&](long b, long e, int) {
        for (long i = b; i < e; ++i) {
            const int32_t id = tokens[n_past + i];
            const uint8_t* row = static_cast<const uint8_t*>(m_.token_embd.data) + static_cast<int64_t>(id) * m_.token_embd.row_bytes;
            float* h = buf_.hidden + i * d;
            dequantize_row(m_.token_embd.type, row, h, d);
            if (hp.embedding_scale != 1.0f)
                for (int j = 0; j < d; ++j) h[j] *= hp.embedding_scale;
        }
    });
    if (hp.per_layer_dim > 0) embed_per_layer_inputs(n_past, n_new);
}

// gemma4: the per-layer inputs of the new tokens (their hidden rows hold the scaled embeddings x0), kept by
// position for every layer (a token pruned now may be revived at a later layer in a later step):
// (per_layer_token_embd[id] * sqrt(ple) + RMSNorm(per_layer_model_proj . x0 / sqrt(d))) / sqrt(2), per layer.
void CpuSession::embed_per_layer_inputs(int n_past, int n_new) {
    const ModelHparams& hp = m_.hparams;
    const int d = hp.d_model, ple = hp.per_layer_dim, n_layer = hp.n_layer, row = n_layer * ple;
    const float proj_scale = 1.0f / std::sqrt(static_cast<float>(d)), token_scale = std::sqrt(static_cast<float>(ple));
    const float input_scale = 1.0f / std::sqrt(2.0f);
    for (int c0 = 0; c0 < n_new; c0 += n_ubatch_) {
        const int nb = std::min(n_ubatch_, n_new - c0);
        float* inputs = buf_.ple_inputs + static_cast<int64_t>(n_past + c0) * row;  // (nb, n_layer * ple)
        // the projection of the embeddings, straight into the rows of these positions
        matmul(m_.per_layer_model_proj, buf_.hidden + static_cast<int64_t>(c0) * d, nb, inputs, numerics_, pool_);
        pool_.parallel_for(nb, [&](long b, long e, int thread) {
            float* token_row = buf_.ple_token + static_cast<int64_t>(thread) * row;  // (n_layer * ple)
            for (long r = b; r < e; ++r) {
                const int32_t id = tokens_[n_past + c0 + r];
                const WeightMatrix& embd = m_.per_layer_token_embd;
                dequantize_row(embd.type, static_cast<const uint8_t*>(embd.data) + static_cast<int64_t>(id) * embd.row_bytes, token_row, row);
                float* x = inputs + r * row;
                for (int l = 0; l < n_layer; ++l) {
                    float* xl = x + l * ple;
                    for (int j = 0; j < ple; ++j) xl[j] *= proj_scale;
                    rms_norm(xl, m_.per_layer_proj_norm, xl, ple, hp.rms_eps);
                    for (int j = 0; j < ple; ++j) xl[j] = (xl[j] + token_row[l * ple + j] * token_scale) * input_scale;
                }
            }
        });
    }
}

// Both lists are sorted by position; the merge runs from the back so it can work in place.
int CpuSession::gather_revived(int layer) {
    Buffers& ws = buf_;
    int n_wanted = 0;
    for (int i = 0; i < n_active_; ++i) n_wanted += frontier_[ws.active_positions[i]] == layer;
    if (n_wanted == n_compute_) return n_compute_;
    const int d = m_.hparams.d_model;
    int out = n_wanted - 1, in = n_compute_ - 1;
    for (int i = n_active_ - 1; i >= 0; --i) {
        const int32_t pos = ws.active_positions[i];
        if (frontier_[pos] != layer) continue;
        float* dst = ws.hidden + static_cast<int64_t>(out) * d;
        if (in >= 0 && ws.compute_positions[in] == pos) {
            if (out != in) std::memcpy(dst, ws.hidden + static_cast<int64_t>(in) * d, sizeof(float) * d);
            --in;
        } else {
            std::memcpy(dst, ws.aux_cache + static_cast<int64_t>(pos) * d, sizeof(float) * d);
            ++counters_.revived_tokens;
        }
        ws.compute_positions[out] = pos;
        --out;
    }
    n_compute_ = n_wanted;
    return n_compute_;
}

void CpuSession::run_layer(int layer, const CancelFlags& cancel) {
    // a recurrent state must consume every new token, in order, and nothing else (the LazyLLM rule, lazy/step.h)
    if (m_.hparams.is_recurrent(layer) && (n_compute_ != n_total_ - n_past_ || buf_.compute_positions[0] != n_past_))
        throw_error(ErrorCode::invalid_argument, "linear-attention layer " + std::to_string(layer) +
                    " must compute every new token (a LazyLLM stage before it pruned some)");
    std::fill(window_has_, window_has_ + kMaxQueryWindow, 0);
    for (int c0 = 0; c0 < n_compute_; c0 += n_ubatch_) {
        if (cancel.requested()) {
            advance_frontier(layer, c0);  // the rows computed so far hold h[layer + 1]
            throw_cancelled();
        }
        layer_micro_batch(layer, c0, std::min(n_ubatch_, n_compute_ - c0));
    }
    advance_frontier(layer, n_compute_);
}

// The first n_rows compute rows were computed at `layer`: the frontier only grows, one layer per computation.
void CpuSession::advance_frontier(int layer, int n_rows) {
    for (int i = 0; i < n_rows; ++i) {
        int32_t& f = frontier_[buf_.compute_positions[i]];
        if (f != layer) ++counters_.recomputed_pairs;
        f = layer + 1;
    }
}

// Runs layer `l` for compute rows [c0, c0 + nb).
void CpuSession::layer_micro_batch(int l, int c0, int nb) {
    const ModelHparams& hp = m_.hparams;
    const LayerWeights& w = m_.layers[l];
    Buffers& ws = buf_;
    ThreadPool& pool = pool_;
    const int d = hp.d_model, ff = hp.shape(l).ffn_dim;
    float* x = ws.hidden + static_cast<int64_t>(c0) * d;  // (nb, d) residual stream

    // attention norm
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) rms_norm(x + r * d, w.attn_norm, ws.norm + r * d, d, hp.rms_eps);
    });
    // attention (a gated delta net on linear-attention layers) into ws.proj
    if (hp.is_recurrent(l)) delta_net_block(l, c0, nb);
    else attention_block(l, c0, nb);
    // residual, then the FFN norm
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            if (w.post_attn_norm) rms_norm(ws.proj + r * d, w.post_attn_norm, ws.proj + r * d, d, hp.rms_eps);
            add_in_place(x + r * d, ws.proj + r * d, d);
            rms_norm(x + r * d, w.ffn_norm, ws.norm + r * d, d, hp.rms_eps);
        }
    });
    // gemma4 mixture of experts: the routed experts' weighted sum (the FFN below is the shared expert)
    const bool moe = w.router.data != nullptr;
    if (moe) mixture_of_experts(l, c0, nb);
    // gated FFN and residual
    {
        const WeightMatrix* gate_up[] = {&w.gate, &w.up};
        float* out[] = {ws.gate, ws.up};
        matmul_shared_input(gate_up, out, 2, ws.norm, nb, numerics_, pool);
    }
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            if (hp.gelu_ffn) geglu(ws.gate + r * ff, ws.up + r * ff, ff);
            else swiglu(ws.gate + r * ff, ws.up + r * ff, ff);
        }
    });
    matmul(w.down, ws.gate, nb, ws.proj, numerics_, pool);
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            if (moe) {  // shared expert normed, plus the experts
                rms_norm(ws.proj + r * d, w.shared_post_norm, ws.proj + r * d, d, hp.rms_eps);
                add_in_place(ws.proj + r * d, ws.expert_in + r * d, d);
            }
            if (w.post_ffn_norm) rms_norm(ws.proj + r * d, w.post_ffn_norm, ws.proj + r * d, d, hp.rms_eps);
            add_in_place(x + r * d, ws.proj + r * d, d);
        }
    });
    // gemma4: per-layer embedding branch, then the layer output scale
    if (hp.per_layer_dim > 0) per_layer_embedding(l, c0, nb);
    if (w.output_scale) {
        const float scale = *w.output_scale;
        pool.parallel_for(nb, [&](long b, long e, int) {
            for (float* y = x + b * d; y < x + e * d; ++y) *y *= scale;
        });
    }
}

// Attention of layer `l` for compute rows [c0, c0 + nb) over the active set, from ws.norm; the output
// projection goes to ws.proj (nb, d_model).
void CpuSession::attention_block(int l, int c0, int nb) {
    const ModelHparams& hp = m_.hparams;
    const LayerWeights& w = m_.layers[l];
    const LayerShape& shape = hp.shape(l);
    Buffers& ws = buf_;
    ThreadPool& pool = pool_;
    const int hd = shape.head_dim, n_head_kv = shape.n_head_kv, qd = hp.n_head * hd, kvd = shape.kv_dim();
    const int32_t* pos = ws.compute_positions + c0;  // (nb)
    const bool sliding = hp.is_sliding(l);
    const bool own_kv = hp.computes_kv(l);  // gemma4's shared-KV layers attend over their source layer's K/V
    // q, k, v projections (q only on a shared-KV layer; V = K where the layer has no attn_v)
    {
        const WeightMatrix* qkv[] = {&w.wq, &w.wk, &w.wv};
        float* out[] = {ws.q, ws.k, ws.v};
        float* out_q_gate[] = {ws.q_gate, ws.k, ws.v};
        matmul_shared_input(qkv, hp.attn_output_gate ? out_q_gate : out, !own_kv ? 1 : w.wv.data ? 3 : 2, ws.norm, nb,
                            numerics_, pool);
    }
    // qwen35: q and the output gate, interleaved per head, apart
    if (hp.attn_output_gate) {
        pool.parallel_for(nb, [&](long b, long e, int) {
            for (long r = b; r < e; ++r)
                for (int h = 0; h < hp.n_head; ++h) {
                    const float* both = ws.q_gate + (r * hp.n_head + h) * 2 * hd;
                    std::memcpy(ws.q + r * qd + h * hd, both, sizeof(float) * hd);
                    std::memcpy(ws.attn_gate + r * qd + h * hd, both + hd, sizeof(float) * hd);
                }
        });
    }
    // biases, per-head norms, RoPE, then K/V into the cache as fp16
    const float* rope_table = sliding ? ws.rope_local : ws.rope_global;
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            float* q = ws.q + r * qd;
            float* k = ws.k + r * kvd;
            float* v = ws.v + r * kvd;
            if (own_kv && !w.wv.data) std::memcpy(v, k, sizeof(float) * kvd);
            if (w.bq) add_in_place(q, w.bq, qd);
            if (w.bk) add_in_place(k, w.bk, kvd);
            if (w.bv) add_in_place(v, w.bv, kvd);
            if (w.q_norm)
                for (int h = 0; h < hp.n_head; ++h) rms_norm(q + h * hd, w.q_norm, q + h * hd, hd, hp.rms_eps);
            if (own_kv && w.k_norm)
                for (int h = 0; h < n_head_kv; ++h) rms_norm(k + h * hd, w.k_norm, k + h * hd, hd, hp.rms_eps);
            if (own_kv && hp.v_norm)  // gemma4: V RMS-normed without weight
                for (int h = 0; h < n_head_kv; ++h) rms_norm(v + h * hd, nullptr, v + h * hd, hd, hp.rms_eps);
            if (hp.uses_rope(l)) {  // smollm3's NoPE layers skip it
                apply_rope(q, 1, hp.n_head, hd, shape.rope_dim, pos + r, rope_table, hp.rope_neox);
                if (own_kv) apply_rope(k, 1, n_head_kv, hd, shape.rope_dim, pos + r, rope_table, hp.rope_neox);
            }
            if (hp.scale_q)
                for (int i = 0; i < qd; ++i) q[i] *= hp.attention_scale;
            if (own_kv) {
                fp32_to_fp16_row(k, k_at(l, pos[r]), kvd);
                fp32_to_fp16_row(v, v_at(l, pos[r]), kvd);
            }
            // each query sees the active positions <= its own (and, on sliding layers, inside the window)
            const int32_t* active_begin = ws.active_positions;
            const int32_t* active_end = active_begin + n_active_;
            ws.attend_end[r] = static_cast<int32_t>(std::upper_bound(active_begin, active_end, pos[r]) - active_begin);
            ws.attend_begin[r] = sliding ? static_cast<int32_t>(std::lower_bound(active_begin, active_end,
                                                                                 pos[r] - hp.sliding_window + 1) - active_begin)
                                         : 0;
            if (pos[r] >= window_begin_) {  // a query of the window: kept for ranking
                std::memcpy(ws.window_q + static_cast<int64_t>(pos[r] - window_begin_) * qd, q, sizeof(float) * qd);
                window_has_[pos[r] - window_begin_] = 1;
            }
        }
    });
    // attention over the active set (every active token has K/V at the source layer: it was computed there)
    AttentionParams ap;
    ap.q = ws.q;
    ap.k_cache = k_at(l, 0);
    ap.v_cache = v_at(l, 0);
    ap.kv_positions = ws.active_positions;
    ap.attend_begin = ws.attend_begin;
    ap.attend_end = ws.attend_end;
    ap.n_q = nb;
    ap.n_head = hp.n_head;
    ap.n_head_kv = n_head_kv;
    ap.head_dim = hd;
    ap.scale = hp.softmax_scale();
    ap.out = ws.attn_out;
    ap.numerics = numerics_;
    attention(ap, ws.attention_scratch, n_ctx_, pool);
    // qwen35: the output times sigmoid(gate)
    if (hp.attn_output_gate) {
        pool.parallel_for(nb, [&](long b, long e, int) {
            for (long i = b * qd; i < e * qd; ++i) ws.attn_out[i] *= 1.0f / (1.0f + std::exp(-ws.attn_gate[i]));
        });
    }
    // output projection
    matmul(w.wo, ws.attn_out, nb, ws.proj, numerics_, pool);
}

// The gated delta net of linear-attention layer `l` for compute rows [c0, c0 + nb), from ws.norm: the step's new
// tokens in order (run_layer checks), which the conv and the recurrent state consume one by one; the output
// projection goes to ws.proj (nb, d_model). The step works on the states' working slot, which end_step commits.
void CpuSession::delta_net_block(int l, int c0, int nb) {
    const ModelHparams& hp = m_.hparams;
    const LayerWeights& w = m_.layers[l];
    Buffers& ws = buf_;
    ThreadPool& pool = pool_;
    const int kernel = hp.ssm_conv_kernel, conv_dim = hp.ssm_conv_dim(), key_dim = hp.ssm_key_dim();
    const int value_dim = hp.ssm_value_dim(), hd = hp.ssm_head_dim, nv = hp.ssm_n_v_heads, nk = hp.ssm_n_k_heads;
    float* conv_state = conv_state_at(l, 1 - committed_slot_);  // (kernel - 1, conv_dim)
    float* state = delta_state_at(l, 1 - committed_slot_);      // (nv, hd, hd)
    // the step's first rows start from the committed states (empty for an empty context)
    if (c0 == 0) {
        if (n_past_ == 0) {
            std::fill(conv_state, conv_state + conv_state_floats_, 0.0f);
            std::fill(state, state + delta_state_floats_, 0.0f);
        } else {
            std::memcpy(conv_state, conv_state_at(l, committed_slot_), sizeof(float) * conv_state_floats_);
            std::memcpy(state, delta_state_at(l, committed_slot_), sizeof(float) * delta_state_floats_);
        }
    }
    // q|k|v, output gate, write strength and decay projections
    {
        const WeightMatrix* mats[] = {&w.ssm_in, &w.ssm_z, &w.ssm_beta, &w.ssm_alpha};
        float* out[] = {ws.conv_out, ws.ssm_z, ws.ssm_beta, ws.ssm_decay};
        matmul_shared_input(mats, out, 4, ws.norm, nb, numerics_, pool);
    }
    // the conv window: the state rows, then the new rows; its last kernel - 1 rows are the next conv state
    float* window = ws.conv_window;  // (kernel - 1 + nb, conv_dim)
    std::memcpy(window, conv_state, sizeof(float) * conv_state_floats_);
    std::memcpy(window + conv_state_floats_, ws.conv_out, sizeof(float) * nb * conv_dim);
    std::memcpy(conv_state, window + static_cast<int64_t>(nb) * conv_dim, sizeof(float) * conv_state_floats_);
    // causal conv and SiLU, l2-normed q and k heads, beta and decay per v head
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            float* qkv = ws.conv_out + r * conv_dim;
            causal_conv1d_silu(window + r * conv_dim, w.ssm_conv1d, conv_dim, kernel, qkv);
            for (int h = 0; h < 2 * nk; ++h) l2_norm(qkv + h * hd, hd, hp.rms_eps);  // q heads, then k heads
            for (int h = 0; h < nv; ++h) {
                float& beta = ws.ssm_beta[r * nv + h];
                float& decay = ws.ssm_decay[r * nv + h];
                beta = delta_net_beta(beta);
                decay = delta_net_decay(decay, w.ssm_dt_bias[h], w.ssm_a[h]);
            }
        }
    });
    // the delta rule, token by token, each v head on its own state (q/k head h % nk, as llama.cpp)
    pool.parallel_for(nv, [&](long b, long e, int) {
        for (long h = b; h < e; ++h) {
            float* head_state = state + h * hd * hd;
            const int kh = static_cast<int>(h % nk);
            for (int r = 0; r < nb; ++r) {
                const float* qkv = ws.conv_out + static_cast<int64_t>(r) * conv_dim;
                gated_delta_net_token(head_state, qkv + kh * hd, qkv + key_dim + kh * hd, qkv + 2 * key_dim + h * hd,
                                      ws.ssm_beta[r * nv + h], ws.ssm_decay[r * nv + h], hd,
                                      ws.ssm_out + static_cast<int64_t>(r) * value_dim + h * hd);
            }
        }
    });
    // gated RMSNorm per v head, then the output projection
    pool.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r)
            for (int h = 0; h < nv; ++h)
                gated_rms_norm(ws.ssm_out + r * value_dim + h * hd, w.ssm_norm, ws.ssm_z + r * value_dim + h * hd, hd, hp.rms_eps);
    });
    matmul(w.ssm_out, ws.ssm_out, nb, ws.proj, numerics_, pool);
}

// gemma4, rows [c0, c0 + nb) after attention (x: its residual sum): the router (on RMSNorm(x) / sqrt(d) *
// router_scale) picks n_expert_used experts per row with normalized softmax weights; each expert runs the rows
// routed to it (GELU-gated, on RMSNorm(x) * expert_norm) and its output, times its down scale and the row's
// weight, goes to the row's slot; the slots are summed in order and normed into expert_in (nb, d).
void CpuSession::mixture_of_experts(int l, int c0, int nb) {
    const ModelHparams& hp = m_.hparams;
    const LayerWeights& w = m_.layers[l];
    Buffers& ws = buf_;
    const int d = hp.d_model, n_used = hp.n_expert_used, ff = hp.expert_ffn_dim;
    const float* x = ws.hidden + static_cast<int64_t>(c0) * d;  // (nb, d)
    const float router_in_scale = 1.0f / std::sqrt(static_cast<float>(d));
    // routing
    pool_.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            float* y = ws.expert_in + r * d;
            rms_norm(x + r * d, nullptr, y, d, hp.rms_eps);
            for (int j = 0; j < d; ++j) y[j] = y[j] * router_in_scale * w.router_scale[j];
        }
    });
    matmul(w.router, ws.expert_in, nb, ws.router_logits, numerics_, pool_);  // (nb, n_expert)
    pool_.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r)
            moe_route(ws.router_logits + r * hp.n_expert, hp.n_expert, n_used, ws.expert_choice + r * n_used,
                      ws.expert_weight + r * n_used);
    });
    // the experts' input
    pool_.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) rms_norm(x + r * d, w.expert_norm, ws.expert_in + r * d, d, hp.rms_eps);
    });
    // each expert over the (row, slot)s routed to it
    for (int expert = 0; expert < hp.n_expert; ++expert) {
        int n = 0;
        for (int slot = 0; slot < nb * n_used; ++slot)
            if (ws.expert_choice[slot] == expert) ws.expert_slots[n++] = slot;
        if (n == 0) continue;
        pool_.parallel_for(n, [&](long b, long e, int) {
            for (long i = b; i < e; ++i)
                std::memcpy(ws.expert_x + i * d, ws.expert_in + static_cast<int64_t>(ws.expert_slots[i] / n_used) * d,
                            sizeof(float) * d);
        });
        const WeightMatrix* gate_up[] = {&w.expert_gate[expert], &w.expert_up[expert]};
        float* out[] = {ws.gate, ws.up};
        matmul_shared_input(gate_up, out, 2, ws.expert_x, n, numerics_, pool_);  // (n, ff) each
        pool_.parallel_for(n, [&](long b, long e, int) {
            for (long i = b; i < e; ++i) geglu(ws.gate + i * ff, ws.up + i * ff, ff);
        });
        matmul(w.expert_down[expert], ws.gate, n, ws.expert_x, numerics_, pool_);  // (n, d)
        const float scale = w.expert_down_scale ? w.expert_down_scale[expert] : 1.0f;
        pool_.parallel_for(n, [&](long b, long e, int) {
            for (long i = b; i < e; ++i) {
                const int slot = ws.expert_slots[i];
                const float weight = ws.expert_weight[slot];
                const float* y = ws.expert_x + i * d;
                float* o = ws.expert_out + static_cast<int64_t>(slot) * d;
                for (int j = 0; j < d; ++j) o[j] = y[j] * scale * weight;
            }
        });
    }
    // the slots summed in order, normed
    pool_.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            float* sum = ws.expert_in + r * d;
            std::memcpy(sum, ws.expert_out + r * n_used * static_cast<int64_t>(d), sizeof(float) * d);
            for (int k = 1; k < n_used; ++k) add_in_place(sum, ws.expert_out + (r * n_used + k) * static_cast<int64_t>(d), d);
            rms_norm(sum, w.experts_post_norm, sum, d, hp.rms_eps);
        }
    });
}

// gemma4, rows [c0, c0 + nb) after the FFN: x += RMSNorm(proj . (gelu(inp_gate . x) * per-layer input l)).
void CpuSession::per_layer_embedding(int l, int c0, int nb) {
    const ModelHparams& hp = m_.hparams;
    const LayerWeights& w = m_.layers[l];
    const int d = hp.d_model, ple = hp.per_layer_dim;
    const int64_t row = int64_t{hp.n_layer} * ple;
    float* x = buf_.hidden + static_cast<int64_t>(c0) * d;  // (nb, d)
    const int32_t* pos = buf_.compute_positions + c0;       // (nb)
    matmul(w.ple_gate, x, nb, buf_.ple, numerics_, pool_);  // (nb, ple)
    pool_.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            gelu(buf_.ple + r * ple, ple);
            mul_in_place(buf_.ple + r * ple, buf_.ple_inputs + pos[r] * row + static_cast<int64_t>(l) * ple, ple);
        }
    });
    matmul(w.ple_proj, buf_.ple, nb, buf_.proj, numerics_, pool_);  // (nb, d)
    pool_.parallel_for(nb, [&](long b, long e, int) {
        for (long r = b; r < e; ++r) {
            rms_norm(buf_.proj + r * d, w.ple_post_norm, buf_.proj + r * d, d, hp.rms_eps);
            add_in_place(x + r * d, buf_.proj + r * d, d);
        }
    });
}

int CpuSession::active_lower_bound(int32_t position) {
    return static_cast<int>(std::lower_bound(buf_.active_positions, buf_.active_positions + n_active_, position) -
                            buf_.active_positions);
}

void CpuSession::rank(int layer, int first, ImportanceSignal signal) {
    const ModelHparams& hp = m_.hparams;
    const LayerShape& shape = hp.shape(layer);
    const int qd = hp.n_head * shape.head_dim;
    const bool max_heads = signal == ImportanceSignal::max_heads;
    const int32_t* keys = buf_.active_positions + first;
    const int n = n_active_ - first;
    float* importance = buf_.importance + first;
    // the window's queries computed at this layer, packed (the last one always is; alone, the paper's signal)
    int32_t q_pos[kMaxQueryWindow];
    int n_q = 0;
    for (int32_t p = window_begin_; p <= last_pos_; ++p) {
        if (!window_has_[p - window_begin_]) continue;
        if (n_q != p - window_begin_)
            std::memmove(buf_.window_q + static_cast<int64_t>(n_q) * qd,
                         buf_.window_q + static_cast<int64_t>(p - window_begin_) * qd, sizeof(float) * qd);
        q_pos[n_q++] = p;
    }
    window_importance_fast(buf_.window_q, q_pos, n_q, k_at(layer, 0), keys, n, hp.n_head, shape.n_head_kv,
                           shape.head_dim, hp.softmax_scale(), buf_.importance_scores, importance, max_heads, pool_);
}

void CpuSession::pool_importance(int first, int radius) {
    const int n = n_active_ - first;
    float* pooled = buf_.importance_scores;  // (rank()'s scratch, free again)
    max_pool_importance(buf_.active_positions + first, buf_.importance + first, n, radius, pooled);
    std::memcpy(buf_.importance + first, pooled, sizeof(float) * n);
}

void CpuSession::read_ranking(int first, std::vector<int32_t>* positions, std::vector<float>* importance) {
    positions->assign(buf_.active_positions + first, buf_.active_positions + n_active_);
    importance->assign(buf_.importance + first, buf_.importance + n_active_);
}

int CpuSession::protect_computed(int layer) {
    int n = 0;
    for (int i = 0; i < n_active_; ++i)
        if (frontier_[buf_.active_positions[i]] > layer + 1) {
            buf_.importance[i] = INFINITY;
            ++n;
        }
    return n;
}

int CpuSession::keep(int layer, int n_keep, int first) {
    Buffers& ws = buf_;
    const int d = m_.hparams.d_model;
    std::fill(ws.importance, ws.importance + first, INFINITY);  // before the window: kept
    const int n_kept = select_most_important(ws.active_positions, ws.importance, n_active_, n_keep, last_pos_, ws.order,
                                             ws.kept_positions);
    // compact the compute rows to the kept ones (both lists sorted by position); dropped rows park h[l+1]
    int out = 0, k = 0;
    for (int i = 0; i < n_compute_; ++i) {
        const int32_t pos = ws.compute_positions[i];
        while (k < n_kept && ws.kept_positions[k] < pos) ++k;
        float* row = ws.hidden + static_cast<int64_t>(i) * d;
        if (k < n_kept && ws.kept_positions[k] == pos) {
            if (out != i) std::memcpy(ws.hidden + static_cast<int64_t>(out) * d, row, sizeof(float) * d);
            ws.compute_positions[out++] = pos;
        } else {
            std::memcpy(ws.aux_cache + static_cast<int64_t>(pos) * d, row, sizeof(float) * d);
        }
    }
    n_compute_ = out;
    std::memcpy(ws.active_positions, ws.kept_positions, sizeof(int32_t) * n_kept);
    n_active_ = n_kept;
    return n_compute_;
}

// Final norm and output projection for `n` hidden rows.
void CpuSession::output_logits(const float* hidden, int n, float* logits) {
    const ModelHparams& hp = m_.hparams;
    const int d = hp.d_model;
    for (int c0 = 0; c0 < n; c0 += n_ubatch_) {
        const int nb = std::min(n_ubatch_, n - c0);
        pool_.parallel_for(nb, [&](long b, long e, int) {
            for (long r = b; r < e; ++r)
                rms_norm(hidden + (c0 + r) * static_cast<int64_t>(d), m_.output_norm, buf_.norm + r * d, d, hp.rms_eps);
        });
        float* out = logits + static_cast<int64_t>(c0) * hp.n_vocab;  // (nb, n_vocab)
        matmul(m_.output, buf_.norm, nb, out, numerics_, pool_);
        // final logit soft-capping (gemma2-style; only when the metadata asks for it)
        if (hp.final_logit_softcap > 0) {
            const float cap = hp.final_logit_softcap;
            pool_.parallel_for(nb, [&](long b, long e, int) {
                for (float* y = out + b * hp.n_vocab; y < out + e * hp.n_vocab; ++y) *y = cap * std::tanh(*y / cap);
            });
        }
    }
}

const float* CpuSession::logits(float* all_logits) {
    const int n_vocab = m_.hparams.n_vocab;
    if (all_logits) {
        output_logits(buf_.hidden, n_compute_, all_logits);
        return all_logits + static_cast<int64_t>(n_compute_ - 1) * n_vocab;
    }
    output_logits(buf_.hidden + static_cast<int64_t>(n_compute_ - 1) * m_.hparams.d_model, 1, buf_.logits);
    return buf_.logits;
}

StepCounters CpuSession::end_step() {
    // the step's recurrent states hold the whole context now
    if (n_recurrent_ > 0) {
        committed_slot_ = 1 - committed_slot_;
        state_tokens_ = n_total_;
    }
    return counters_;
}

// (the recurrent states stay as committed: the session forgets the step's new tokens)
void CpuSession::abort_step() {
    const int d = m_.hparams.d_model;
    for (int i = 0; i < n_compute_; ++i)
        std::memcpy(buf_.aux_cache + static_cast<int64_t>(buf_.compute_positions[i]) * d,
                    buf_.hidden + static_cast<int64_t>(i) * d, sizeof(float) * d);
}

void CpuSession::read_kv(int layer, int position, float* k, float* v) const {
    if (m_.hparams.is_recurrent(layer))
        throw_error(ErrorCode::invalid_argument, "layer " + std::to_string(layer) + " is a linear-attention layer: it keeps no K/V");
    fp16_to_fp32_row(k_at(layer, position), k, m_.hparams.shape(layer).kv_dim());
    fp16_to_fp32_row(v_at(layer, position), v, m_.hparams.shape(layer).kv_dim());
}

void CpuSession::read_aux(int position, float* hidden) const {
    const int d = m_.hparams.d_model;
    std::memcpy(hidden, buf_.aux_cache + static_cast<int64_t>(position) * d, sizeof(float) * d);
}

// rows [0, n) of a layer are contiguous in its (n_ctx, kv_dim(layer)) caches
void CpuSession::read_kv_rows(int layer, int n, uint16_t* k, uint16_t* v) const {
    const int64_t elements = int64_t{n} * m_.hparams.shape(layer).kv_dim();
    std::memcpy(k, k_at(layer, 0), sizeof(uint16_t) * elements);
    std::memcpy(v, v_at(layer, 0), sizeof(uint16_t) * elements);
}

void CpuSession::write_kv_rows(int layer, int n, const uint16_t* k, const uint16_t* v) {
    const int64_t elements = int64_t{n} * m_.hparams.shape(layer).kv_dim();
    std::memcpy(k_at(layer, 0), k, sizeof(uint16_t) * elements);
    std::memcpy(v_at(layer, 0), v, sizeof(uint16_t) * elements);
}

int CpuSession::aux_row_width() const { return m_.hparams.d_model + m_.hparams.n_layer * m_.hparams.per_layer_dim; }

// each row: the aux cache's (d_model), then the position's per-layer inputs (n_layer * per_layer_dim; gemma4)
void CpuSession::read_aux_rows(int n, float* rows) const {
    const int64_t d = m_.hparams.d_model, inputs = aux_row_width() - d;
    for (int64_t p = 0; p < n; ++p) {
        std::memcpy(rows + p * (d + inputs), buf_.aux_cache + p * d, sizeof(float) * d);
        if (inputs > 0) std::memcpy(rows + p * (d + inputs) + d, buf_.ple_inputs + p * inputs, sizeof(float) * inputs);
    }
}

void CpuSession::write_aux_rows(int n, const float* rows) {
    const int64_t d = m_.hparams.d_model, inputs = aux_row_width() - d;
    for (int64_t p = 0; p < n; ++p) {
        std::memcpy(buf_.aux_cache + p * d, rows + p * (d + inputs), sizeof(float) * d);
        if (inputs > 0) std::memcpy(buf_.ple_inputs + p * inputs, rows + p * (d + inputs) + d, sizeof(float) * inputs);
    }
}

}  // namespace

std::unique_ptr<SessionBackend> create_cpu_session(const ModelImpl& model, int n_ctx, int32_t* frontier, Numerics numerics) {
    return std::make_unique<CpuSession>(model, n_ctx, frontier, numerics);
}

}  // namespace lazyllm_edge
