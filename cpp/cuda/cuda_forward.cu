// The CUDA backend: the same forward pass as the CPU's (cpp/cpu/cpu_forward.cpp), driven by the same LazyLLM
// step (lazy/step.cpp), run on the device. The active set, compute rows, frontier and aux cache live on the
// device; the host reads back only the sizes that shape the next launches (after a pruning layer, and per
// layer while the context holds pruned tokens that may be revived), then the logits and the frontier at the
// end of a step.
#include <algorithm>
#include <cstring>
#include <vector>

#include "base/buffer_plan.h"
#include "cpu/ops.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_state.cuh"
#include "cuda/sorted_search.cuh"
#include "lazy/backend.h"
#include "model/model.h"

namespace lazyllm_edge {
namespace {

using cuda::check;

__global__ void window_start_kernel(const int32_t* active, int n, int32_t first_pos, int32_t* out) {
    *out = cuda::lower_bound(active, n, first_pos);
}

class CudaSessionBackend final : public SessionBackend {
public:
    CudaSessionBackend(const ModelImpl& model, int n_ctx, int32_t* frontier, Numerics numerics);

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
    void set_numerics(Numerics numerics) override;
    void frontier_changed() override;
    void read_kv(int layer, int position, float* k, float* v) const override;
    void read_aux(int position, float* hidden) const override;
    void read_kv_rows(int layer, int n, uint16_t* k, uint16_t* v) const override;
    void write_kv_rows(int layer, int n, const uint16_t* k, const uint16_t* v) override;
    int aux_row_width() const override { return m_.hparams.d_model; }  // (gemma4's per-layer inputs: CPU only)
    void read_aux_rows(int n, float* hidden) const override;
    void write_aux_rows(int n, const float* hidden) override;

private:
    void read_counts();  // copies the step's counts to the host and waits for them
    void layer_micro_batch(int l, int c0, int nb);
    void output_logits(const float* hidden, int n, float* logits_host);

    const ModelImpl& m_;
    const int n_ctx_;
    int32_t* frontier_;  // (n_ctx) the session's host frontier
    Numerics numerics_;  // fast or fp32: the precision of the prefill GEMMs
    CudaSession g_;
    std::vector<float> host_logits_;  // (n_vocab) the last row's logits
    // the step: which of the two buffers hold the compute rows (cur_) and the active set (act_), their sizes
    int cur_ = 0;
    int act_ = 0;
    int n_active_ = 0;
    int n_compute_ = 0;
    int n_total_ = 0;
    int32_t last_pos_ = 0;
    int32_t window_begin_ = 0;  // first position of the query window
};

CudaSessionBackend::CudaSessionBackend(const ModelImpl& model, int n_ctx, int32_t* frontier, Numerics numerics)
    : m_(model), n_ctx_(n_ctx), frontier_(frontier), numerics_(Numerics::fast),
      host_logits_(static_cast<size_t>(model.hparams.n_vocab)) {
    set_numerics(numerics);  // refused before anything is allocated
    const ModelHparams& hp = m_.hparams;
    CudaSession& g = g_;
    g.device = m_.cuda->device;
    check(cudaSetDevice(g.device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking), "creating a stream");
    const int64_t n = n_ctx, d = hp.d_model, kvd = hp.kv_dim(), qd = hp.q_dim(), ff = hp.ffn_dim;
    const int64_t ub = std::min<int64_t>(n, 2048);
    const int64_t logit_rows = std::min<int64_t>(n, 64);
    const int64_t kv_elems = static_cast<int64_t>(hp.n_layer) * n * kvd;
    const bool has_local_rope = hp.sliding_window > 0;
    g.n_ubatch = static_cast<int>(ub);
    g.logit_rows = static_cast<int>(logit_rows);
    g.layer_stride = n * kvd;
    g.gemm_scratch.elems = m_.cuda->largest_layer_matrix;
    g.gemm_scratch.bf16 = m_.cuda->bf16_gemm;
    BufferPlan plan(256);
    plan.add(g.k, kv_elems);
    plan.add(g.v, kv_elems);
    plan.add(g.frontier, n);
    plan.add(g.aux, n * d);
    for (int i = 0; i < 2; ++i) plan.add(g.hidden[i], n * d);
    for (int i = 0; i < 2; ++i) plan.add(g.rows[i], n);
    for (int i = 0; i < 2; ++i) plan.add(g.active[i], n);
    plan.add(g.row_of, n);
    plan.add(g.keep_mark, n);
    plan.add(g.scan, n);
    plan.add(g.importance, n);
    plan.add(g.scores, hp.n_head * (n + 2));
    plan.add(g.ids, n);
    plan.add(g.norm, ub * d);
    plan.add(g.q, ub * qd);
    plan.add(g.k_new, ub * kvd);
    plan.add(g.v_new, ub * kvd);
    plan.add(g.attn_out, ub * qd);
    plan.add(g.proj, ub * d);
    plan.add(g.gate, ub * ff);
    plan.add(g.up, ub * ff);
    plan.add(g.attn_partial, cuda::attention_partial_floats(hp.head_dim));
    plan.add(g.window_q, kMaxQueryWindow * qd);
    plan.add(g.window_has, kMaxQueryWindow);
    plan.add(g.window_acc, hp.n_head * n);
    plan.add(g.rope_global, n * hp.rope_dim);
    if (has_local_rope) plan.add(g.rope_local, n * hp.rope_dim);
    plan.add(g.logits, logit_rows * hp.n_vocab);
    plan.add(g.counts, 4);
    plan.add(g.counters, 2);
    uint16_t* gemm_scratch = nullptr;  // fp16 or bf16 elements
    plan.add(gemm_scratch, g.gemm_scratch.elems);
    g.bytes = plan.bytes();
    const cudaError_t status = cudaMalloc(&g.block, g.bytes);
    if (status != cudaSuccess) {
        cudaGetLastError();
        throw_error(ErrorCode::out_of_memory, "the session needs " + std::to_string(g.bytes >> 20) +
                                                  " MiB of device memory (try a smaller n_ctx): " + cudaGetErrorString(status));
    }
    plan.carve(g.block);
    g.gemm_scratch.data = gemm_scratch;
    if (!has_local_rope) g.rope_local = g.rope_global;
    check(cudaMallocHost(&g.host_counts, 4 * sizeof(int32_t)), "pinned host memory");
    check(cudaMallocHost(&g.host_counters, 2 * sizeof(int64_t)), "pinned host memory");
    // RoPE tables, built on the host as the CPU backend builds them
    std::vector<float> rope(static_cast<size_t>(n) * hp.rope_dim);
    build_model_rope_table(m_, n_ctx, rope.data());
    check(cudaMemcpy(g.rope_global, rope.data(), sizeof(float) * rope.size(), cudaMemcpyHostToDevice), "uploading RoPE tables");
    if (has_local_rope) {
        build_rope_table(rope.data(), n_ctx, hp.rope_dim, hp.rope_freq_base_local, 1.0f, nullptr);
        check(cudaMemcpy(g.rope_local, rope.data(), sizeof(float) * rope.size(), cudaMemcpyHostToDevice), "uploading RoPE tables");
    }
    check(cudaMemset(g.frontier, 0, sizeof(int32_t) * n), "clearing the frontier");
}

void CudaSessionBackend::read_counts() {
    check(cudaMemcpyAsync(g_.host_counts, g_.counts, 4 * sizeof(int32_t), cudaMemcpyDeviceToHost, g_.stream), "reading counts");
    check(cudaStreamSynchronize(g_.stream), "forward pass");
}

void CudaSessionBackend::begin_step(const int32_t* tokens, int n_total, int n_new, int query_window) {
    const ModelHparams& hp = m_.hparams;
    CudaSession& g = g_;
    check(cudaSetDevice(g.device), "cudaSetDevice");
    const int n_past = n_total - n_new;
    cur_ = act_ = 0;
    n_total_ = n_total;
    last_pos_ = n_total - 1;
    window_begin_ = std::max(0, n_total - std::min(std::max(query_window, 1), kMaxQueryWindow));
    // the active set is the whole context, the compute rows the new tokens
    check(cudaMemcpyAsync(g.ids, tokens + n_past, sizeof(int32_t) * n_new, cudaMemcpyHostToDevice, g.stream), "ids");
    check(cudaMemsetAsync(g.counters, 0, 2 * sizeof(int64_t), g.stream), "counters");
    cuda::init_step(g.active[0], g.rows[0], g.row_of, n_past, n_new, g.stream);
    n_active_ = n_total;
    n_compute_ = n_new;
    // token embeddings
    cuda::embed_rows(m_.cuda->token_embd, g.ids, n_new, hp.embedding_scale, g.hidden[0], g.stream);
}

int CudaSessionBackend::gather_revived(int layer) {
    CudaSession& g = g_;
    cuda::gather_compute_rows(g.active[act_], n_active_, g.frontier, layer, g.hidden[cur_], g.aux, m_.hparams.d_model,
                              g.hidden[1 - cur_], g.rows[1 - cur_], g.row_of, g.counts + 1, g.counters + 0, g.scan,
                              g.stream);
    cur_ = 1 - cur_;
    read_counts();
    n_compute_ = g.host_counts[1];
    return n_compute_;
}

void CudaSessionBackend::run_layer(int layer, const CancelFlags& cancel) {
    check(cudaMemsetAsync(g_.window_has, 0, sizeof(int32_t) * kMaxQueryWindow, g_.stream), "clearing the window");
    for (int c0 = 0; c0 < n_compute_; c0 += g_.n_ubatch) {
        if (cancel.requested()) {
            // the rows launched so far hold h[layer + 1] once the stream gets there
            cuda::advance_frontier(g_.rows[cur_], c0, layer, g_.frontier, g_.counters + 1, g_.stream);
            throw_cancelled();
        }
        layer_micro_batch(layer, c0, std::min(g_.n_ubatch, n_compute_ - c0));
    }
    cuda::advance_frontier(g_.rows[cur_], n_compute_, layer, g_.frontier, g_.counters + 1, g_.stream);
}

// Runs layer l for compute rows [c0, c0 + nb).
void CudaSessionBackend::layer_micro_batch(int l, int c0, int nb) {
    const ModelHparams& hp = m_.hparams;
    const CudaLayer& w = m_.cuda->layers[l];
    CudaSession& g = g_;
    cudaStream_t stream = g.stream;
    const int d = hp.d_model, ff = hp.ffn_dim;
    float* x = g.hidden[cur_] + static_cast<int64_t>(c0) * d;  // (nb, d) residual stream
    const int32_t* pos = g.rows[cur_] + c0;                    // (nb)
    const bool sliding = hp.is_sliding(l);
    __half* k_cache = g.k + l * g.layer_stride;
    __half* v_cache = g.v + l * g.layer_stride;

    // attention norm, q/k/v projections
    cuda::rms_norm(x, w.attn_norm, g.norm, nb, d, hp.rms_eps, stream);
    cuda::matmul(w.wq, g.norm, nb, g.q, g.gemm_scratch, numerics_, stream);
    cuda::matmul(w.wk, g.norm, nb, g.k_new, g.gemm_scratch, numerics_, stream);
    cuda::matmul(w.wv, g.norm, nb, g.v_new, g.gemm_scratch, numerics_, stream);
    // biases, head norms, RoPE, K/V into the cache as fp16, the last token's query kept for pruning
    cuda::QkvParams qp;
    qp.q = g.q;
    qp.k = g.k_new;
    qp.v = g.v_new;
    qp.pos = pos;
    qp.bq = w.bq;
    qp.bk = w.bk;
    qp.bv = w.bv;
    qp.q_norm = w.q_norm;
    qp.k_norm = w.k_norm;
    qp.rope = sliding ? g.rope_local : g.rope_global;
    qp.k_cache = k_cache;
    qp.v_cache = v_cache;
    qp.window_q = g.window_q;
    qp.window_has = g.window_has;
    qp.window_begin = window_begin_;
    qp.n = nb;
    qp.n_head = hp.n_head;
    qp.n_head_kv = hp.n_head_kv;
    qp.head_dim = hp.head_dim;
    qp.rope_dim = hp.uses_rope(l) ? hp.rope_dim : 0;  // smollm3's NoPE layers: no rotation
    qp.neox = hp.rope_neox;
    qp.q_scale = hp.scale_q ? hp.attention_scale : 1.0f;
    qp.eps = hp.rms_eps;
    cuda::qkv_finish(qp, stream);
    // attention over the active set
    cuda::AttentionArgs a;
    a.q = g.q;
    a.q_pos = pos;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.kv_positions = g.active[act_];
    a.n_kv = n_active_;
    a.n_q = nb;
    a.n_head = hp.n_head;
    a.n_head_kv = hp.n_head_kv;
    a.head_dim = hp.head_dim;
    a.window = sliding ? hp.sliding_window : 0;
    a.scale = hp.softmax_scale();
    a.out = g.attn_out;
    a.partial = g.attn_partial;
    cuda::attention(a, stream);
    // output projection, residual, FFN norm
    cuda::matmul(w.wo, g.attn_out, nb, g.proj, g.gemm_scratch, numerics_, stream);
    cuda::add_residual(x, g.proj, w.post_attn_norm, w.ffn_norm, g.norm, nb, d, hp.rms_eps, stream);
    // gated FFN and residual
    cuda::matmul(w.gate, g.norm, nb, g.gate, g.gemm_scratch, numerics_, stream);
    cuda::matmul(w.up, g.norm, nb, g.up, g.gemm_scratch, numerics_, stream);
    cuda::gated_activation(g.gate, g.up, static_cast<int64_t>(nb) * ff, hp.gelu_ffn, stream);
    cuda::matmul(w.down, g.gate, nb, g.proj, g.gemm_scratch, numerics_, stream);
    cuda::add_residual(x, g.proj, w.post_ffn_norm, nullptr, nullptr, nb, d, hp.rms_eps, stream);
}

int CudaSessionBackend::active_lower_bound(int32_t position) {
    window_start_kernel<<<1, 1, 0, g_.stream>>>(g_.active[act_], n_active_, position, g_.counts + 2);
    cuda::check_launch("window start");
    read_counts();
    return g_.host_counts[2];
}

void CudaSessionBackend::rank(int layer, int first, ImportanceSignal signal) {
    const ModelHparams& hp = m_.hparams;
    CudaSession& g = g_;
    const bool max_heads = signal == ImportanceSignal::max_heads;
    const __half* k_cache = g.k + layer * g.layer_stride;
    const int32_t* keys = g.active[act_] + first;
    const int n = n_active_ - first;
    if (last_pos_ == window_begin_) {  // the last token alone (slot 0; it is always computed): the paper's signal
        cuda::last_token_importance(g.window_q, k_cache, keys, n, hp.n_head, hp.n_head_kv, hp.head_dim, hp.softmax_scale(),
                                    g.scores, g.importance + first, g.stream, max_heads);
        return;
    }
    cuda::window_importance(g.window_q, g.window_has, window_begin_, last_pos_ - window_begin_ + 1, k_cache, keys, n,
                            hp.n_head, hp.n_head_kv, hp.head_dim, hp.softmax_scale(), g.scores, g.window_acc,
                            g.importance + first, g.stream, max_heads);
}

void CudaSessionBackend::pool_importance(int first, int radius) {
    CudaSession& g = g_;
    const int n = n_active_ - first;
    // into rank()'s scratch (free again), then back
    cuda::max_pool_importance(g.active[act_] + first, g.importance + first, n, radius, g.scores, g.stream);
    check(cudaMemcpyAsync(g.importance + first, g.scores, sizeof(float) * n, cudaMemcpyDeviceToDevice, g.stream),
          "pooling importance");
}

void CudaSessionBackend::read_ranking(int first, std::vector<int32_t>* positions, std::vector<float>* importance) {
    CudaSession& g = g_;
    const int n = n_active_ - first;
    positions->resize(n);
    importance->resize(n);
    check(cudaMemcpyAsync(positions->data(), g.active[act_] + first, sizeof(int32_t) * n, cudaMemcpyDeviceToHost, g.stream),
          "reading importance");
    check(cudaMemcpyAsync(importance->data(), g.importance + first, sizeof(float) * n, cudaMemcpyDeviceToHost, g.stream),
          "reading importance");
    check(cudaStreamSynchronize(g.stream), "forward pass");
}

int CudaSessionBackend::protect_computed(int layer) {
    cuda::protect_computed(g_.active[act_], n_active_, g_.frontier, layer, g_.importance, g_.counts + 3, g_.stream);
    read_counts();
    return g_.host_counts[3];
}

int CudaSessionBackend::keep(int layer, int n_keep, int first) {
    CudaSession& g = g_;
    cuda::select_top_k(g.active[act_], g.importance, n_active_, n_keep, first, last_pos_, g.keep_mark, g.active[1 - act_],
                       g.counts + 0, g.scan, g.stream);
    cuda::compact_rows(g.rows[cur_], g.hidden[cur_], n_compute_, m_.hparams.d_model, g.keep_mark, g.hidden[1 - cur_],
                       g.rows[1 - cur_], g.row_of, g.aux, g.counts + 1, g.scan, g.stream);
    act_ = 1 - act_;
    cur_ = 1 - cur_;
    read_counts();
    n_active_ = g.host_counts[0];
    n_compute_ = g.host_counts[1];
    return n_compute_;
}

// Final norm and output projection of n hidden rows into host logits (n, n_vocab).
void CudaSessionBackend::output_logits(const float* hidden, int n, float* logits_host) {
    const ModelHparams& hp = m_.hparams;
    CudaSession& g = g_;
    const CudaModel& m = *m_.cuda;
    for (int c0 = 0; c0 < n; c0 += g.logit_rows) {
        const int nb = std::min(g.logit_rows, n - c0);
        cuda::rms_norm(hidden + static_cast<int64_t>(c0) * hp.d_model, m.output_norm, g.norm, nb, hp.d_model, hp.rms_eps,
                       g.stream);
        cuda::matmul(m.output, g.norm, nb, g.logits, g.stream);
        if (hp.final_logit_softcap > 0)
            cuda::softcap(g.logits, static_cast<int64_t>(nb) * hp.n_vocab, hp.final_logit_softcap, g.stream);
        check(cudaMemcpyAsync(logits_host + static_cast<int64_t>(c0) * hp.n_vocab, g.logits,
                              sizeof(float) * static_cast<size_t>(nb) * hp.n_vocab, cudaMemcpyDeviceToHost, g.stream),
              "reading logits");
    }
}

const float* CudaSessionBackend::logits(float* all_logits) {
    const ModelHparams& hp = m_.hparams;
    if (all_logits) {
        output_logits(g_.hidden[cur_], n_compute_, all_logits);
        return all_logits + static_cast<int64_t>(n_compute_ - 1) * hp.n_vocab;
    }
    output_logits(g_.hidden[cur_] + static_cast<int64_t>(n_compute_ - 1) * hp.d_model, 1, host_logits_.data());
    return host_logits_.data();
}

StepCounters CudaSessionBackend::end_step() {
    CudaSession& g = g_;
    check(cudaMemcpyAsync(frontier_, g.frontier, sizeof(int32_t) * n_total_, cudaMemcpyDeviceToHost, g.stream),
          "reading the frontier");
    check(cudaMemcpyAsync(g.host_counters, g.counters, 2 * sizeof(int64_t), cudaMemcpyDeviceToHost, g.stream), "counters");
    check(cudaStreamSynchronize(g.stream), "forward pass");
    StepCounters counters;
    counters.revived_tokens = g.host_counters[0];
    counters.recomputed_pairs = g.host_counters[1];
    return counters;
}

void CudaSessionBackend::abort_step() {
    CudaSession& g = g_;
    cuda::park_rows(g.rows[cur_], g.hidden[cur_], n_compute_, m_.hparams.d_model, g.aux, g.stream);
    end_step();  // the host frontier from the device's (the session then forgets the new tokens)
}

void CudaSessionBackend::set_numerics(Numerics numerics) {
    if (numerics == Numerics::llama_cpp || numerics == Numerics::int8)
        throw_error(ErrorCode::unsupported, std::string("numerics '") + numerics_name(numerics) +
                                                "' is a CPU arithmetic: the CUDA backend computes with 'fast' or 'fp32' numerics");
    numerics_ = numerics;
}

void CudaSessionBackend::frontier_changed() {
    check(cudaSetDevice(g_.device), "cudaSetDevice");
    check(cudaMemcpy(g_.frontier, frontier_, sizeof(int32_t) * n_ctx_, cudaMemcpyHostToDevice), "frontier");
}

void CudaSessionBackend::read_kv(int layer, int position, float* k, float* v) const {
    const CudaSession& g = g_;
    const int kvd = m_.hparams.kv_dim();
    std::vector<__half> row(2 * static_cast<size_t>(kvd));
    const size_t offset = layer * g.layer_stride + static_cast<int64_t>(position) * kvd;
    check(cudaSetDevice(g.device), "cudaSetDevice");
    check(cudaMemcpy(row.data(), g.k + offset, sizeof(__half) * kvd, cudaMemcpyDeviceToHost), "reading K");
    check(cudaMemcpy(row.data() + kvd, g.v + offset, sizeof(__half) * kvd, cudaMemcpyDeviceToHost), "reading V");
    for (int i = 0; i < kvd; ++i) {
        k[i] = __half2float(row[i]);
        v[i] = __half2float(row[kvd + i]);
    }
}

void CudaSessionBackend::read_aux(int position, float* hidden) const {
    const int d = m_.hparams.d_model;
    check(cudaSetDevice(g_.device), "cudaSetDevice");
    check(cudaMemcpy(hidden, g_.aux + static_cast<int64_t>(position) * d, sizeof(float) * d, cudaMemcpyDeviceToHost),
          "reading the aux cache");
}

// rows [0, n) of a layer are contiguous in the (n_layer, n_ctx, kv_dim) caches; __half is stored as its fp16 bits
void CudaSessionBackend::read_kv_rows(int layer, int n, uint16_t* k, uint16_t* v) const {
    const CudaSession& g = g_;
    const size_t bytes = sizeof(__half) * static_cast<size_t>(n) * m_.hparams.kv_dim();
    check(cudaSetDevice(g.device), "cudaSetDevice");
    check(cudaMemcpy(k, g.k + layer * g.layer_stride, bytes, cudaMemcpyDeviceToHost), "reading the K cache");
    check(cudaMemcpy(v, g.v + layer * g.layer_stride, bytes, cudaMemcpyDeviceToHost), "reading the V cache");
}

void CudaSessionBackend::write_kv_rows(int layer, int n, const uint16_t* k, const uint16_t* v) {
    CudaSession& g = g_;
    const size_t bytes = sizeof(__half) * static_cast<size_t>(n) * m_.hparams.kv_dim();
    check(cudaSetDevice(g.device), "cudaSetDevice");
    check(cudaMemcpy(g.k + layer * g.layer_stride, k, bytes, cudaMemcpyHostToDevice), "writing the K cache");
    check(cudaMemcpy(g.v + layer * g.layer_stride, v, bytes, cudaMemcpyHostToDevice), "writing the V cache");
}

void CudaSessionBackend::read_aux_rows(int n, float* hidden) const {
    check(cudaSetDevice(g_.device), "cudaSetDevice");
    check(cudaMemcpy(hidden, g_.aux, sizeof(float) * static_cast<size_t>(n) * m_.hparams.d_model, cudaMemcpyDeviceToHost),
          "reading the aux cache");
}

void CudaSessionBackend::write_aux_rows(int n, const float* hidden) {
    check(cudaSetDevice(g_.device), "cudaSetDevice");
    check(cudaMemcpy(g_.aux, hidden, sizeof(float) * static_cast<size_t>(n) * m_.hparams.d_model, cudaMemcpyHostToDevice),
          "writing the aux cache");
}

}  // namespace

std::unique_ptr<SessionBackend> cuda_create_session(const ModelImpl& m, int n_ctx, int32_t* frontier, Numerics numerics) {
    return std::make_unique<CudaSessionBackend>(m, n_ctx, frontier, numerics);
}

}  // namespace lazyllm_edge
