// The CUDA forward pass: the same loop as cpu_forward (cpp/cpu/cpu_forward.cpp), with the same LazyLLM
// semantics, run on the device. The active set, compute rows, frontier and aux cache live on the device;
// the host reads back only the sizes that shape the next launches (after a pruning layer, and per layer
// while the context holds pruned tokens that may be revived), then the logits and the frontier at the end.
#include <algorithm>
#include <cstring>

#include "cuda/cuda_check.h"
#include "cuda/cuda_state.cuh"
#include "cuda/sorted_search.cuh"
#include "lazy/prune_schedule.h"
#include "runtime/session_state.h"

namespace lazyllm_edge {
namespace {

using cuda::check;

// Copies the step's counts to the host and waits for them.
void read_counts(CudaSession& g) {
    check(cudaMemcpyAsync(g.host_counts, g.counts, 4 * sizeof(int32_t), cudaMemcpyDeviceToHost, g.stream), "reading counts");
    check(cudaStreamSynchronize(g.stream), "forward pass");
}

__global__ void window_start_kernel(const int32_t* active, int n, int32_t first_pos, int32_t* out) {
    *out = cuda::lower_bound(active, n, first_pos);
}

struct Step {
    int cur = 0;       // which hidden/rows buffer holds the compute rows
    int act = 0;       // which active buffer holds the active set
    int n_active = 0;
    int n_compute = 0;
    int32_t last_pos = 0;
};

// Runs layer l for compute rows [c0, c0 + nb).
void layer_micro_batch(SessionImpl& s, int l, int c0, int nb, const Step& st) {
    const ModelHparams& hp = *s.hp;
    const CudaLayer& w = s.m->cuda->layers[l];
    CudaSession& g = *s.cuda;
    cudaStream_t stream = g.stream;
    const int d = hp.d_model, ff = hp.ffn_dim;
    float* x = g.hidden[st.cur] + static_cast<int64_t>(c0) * d;  // (nb, d) residual stream
    const int32_t* pos = g.rows[st.cur] + c0;                    // (nb)
    const bool sliding = hp.is_sliding(l);
    __half* k_cache = g.k + l * g.layer_stride;
    __half* v_cache = g.v + l * g.layer_stride;

    // attention norm, q/k/v projections
    cuda::rms_norm(x, w.attn_norm, g.norm, nb, d, hp.rms_eps, stream);
    cuda::matmul(w.wq, g.norm, nb, g.q, g.gemm_scratch, stream);
    cuda::matmul(w.wk, g.norm, nb, g.k_new, g.gemm_scratch, stream);
    cuda::matmul(w.wv, g.norm, nb, g.v_new, g.gemm_scratch, stream);
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
    qp.last_q = g.last_q;
    qp.last_pos = st.last_pos;
    qp.n = nb;
    qp.n_head = hp.n_head;
    qp.n_head_kv = hp.n_head_kv;
    qp.head_dim = hp.head_dim;
    qp.rope_dim = hp.rope_dim;
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
    a.kv_positions = g.active[st.act];
    a.n_kv = st.n_active;
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
    cuda::matmul(w.wo, g.attn_out, nb, g.proj, g.gemm_scratch, stream);
    cuda::add_residual(x, g.proj, w.post_attn_norm, w.ffn_norm, g.norm, nb, d, hp.rms_eps, stream);
    // gated FFN and residual
    cuda::matmul(w.gate, g.norm, nb, g.gate, g.gemm_scratch, stream);
    cuda::matmul(w.up, g.norm, nb, g.up, g.gemm_scratch, stream);
    cuda::gated_activation(g.gate, g.up, static_cast<int64_t>(nb) * ff, hp.gelu_ffn, stream);
    cuda::matmul(w.down, g.gate, nb, g.proj, g.gemm_scratch, stream);
    cuda::add_residual(x, g.proj, w.post_ffn_norm, nullptr, nullptr, nb, d, hp.rms_eps, stream);
}

// Ranks the active set by the last token's attention at layer l, keeps the most important, compacts the
// compute rows (dropped ones park h[l+1] in the aux cache). Same rules as the CPU's prune_after_layer.
void prune_after_layer(SessionImpl& s, int l, float keep_fraction, Step& st) {
    const ModelHparams& hp = *s.hp;
    CudaSession& g = *s.cuda;
    cudaStream_t stream = g.stream;
    const int32_t* active = g.active[st.act];
    // on a sliding-window layer only the last token's window is ranked; earlier tokens stay
    int first = 0;
    if (hp.is_sliding(l)) {
        window_start_kernel<<<1, 1, 0, stream>>>(active, st.n_active, st.last_pos - hp.sliding_window + 1, g.counts + 2);
        cuda::check_launch("window start");
        read_counts(g);
        first = g.host_counts[2];
    }
    const int n_ranked = st.n_active - first;
    cuda::last_token_importance(g.last_q, g.k + l * g.layer_stride, active + first, n_ranked, hp.n_head, hp.n_head_kv,
                                hp.head_dim, hp.softmax_scale(), g.scores, g.importance + first, stream);
    if (s.record_importance) {
        Session::ImportanceRecord rec;
        rec.layer = l;
        rec.positions.resize(n_ranked);
        rec.scores.resize(n_ranked);
        check(cudaMemcpyAsync(rec.positions.data(), active + first, sizeof(int32_t) * n_ranked, cudaMemcpyDeviceToHost, stream),
              "reading importance");
        check(cudaMemcpyAsync(rec.scores.data(), g.importance + first, sizeof(float) * n_ranked, cudaMemcpyDeviceToHost, stream),
              "reading importance");
        check(cudaStreamSynchronize(stream), "forward pass");
        s.importance_log.push_back(std::move(rec));
    }
    const int n_keep = first + tokens_to_keep(n_ranked, keep_fraction);
    if (n_keep >= st.n_active) return;  // everything stays
    cuda::select_top_k(active, g.importance, st.n_active, n_keep, first, st.last_pos, g.keep_mark, g.active[1 - st.act],
                       g.counts + 0, g.scan, stream);
    cuda::compact_rows(g.rows[st.cur], g.hidden[st.cur], st.n_compute, hp.d_model, g.keep_mark, g.hidden[1 - st.cur],
                       g.rows[1 - st.cur], g.row_of, g.aux, g.counts + 1, g.scan, stream);
    st.act = 1 - st.act;
    st.cur = 1 - st.cur;
    read_counts(g);
    st.n_active = g.host_counts[0];
    st.n_compute = g.host_counts[1];
}

// Final norm and output projection of n hidden rows into host logits (n, n_vocab).
void output_logits(SessionImpl& s, const float* hidden, int n, float* logits_host) {
    const ModelHparams& hp = *s.hp;
    CudaSession& g = *s.cuda;
    const CudaModel& m = *s.m->cuda;
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

}  // namespace

std::shared_ptr<CudaSession> cuda_create_session(const SessionImpl& s) {
    const ModelHparams& hp = *s.hp;
    auto g = std::make_shared<CudaSession>();
    g->device = s.m->cuda->device;
    check(cudaSetDevice(g->device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), "creating a stream");
    const int64_t n_ctx = s.n_ctx, d = hp.d_model, kvd = hp.kv_dim(), qd = hp.q_dim(), ff = hp.ffn_dim;
    const int64_t ub = std::min<int64_t>(n_ctx, 2048);
    const int64_t logit_rows = std::min<int64_t>(n_ctx, 64);
    const int64_t kv_elems = static_cast<int64_t>(hp.n_layer) * n_ctx * kvd;
    const bool has_local_rope = hp.sliding_window > 0;
    DevicePlan plan;
    plan.reserve<__half>(kv_elems);
    plan.reserve<__half>(kv_elems);
    plan.reserve<int32_t>(n_ctx);
    plan.reserve<float>(n_ctx * d);
    for (int i = 0; i < 2; ++i) plan.reserve<float>(n_ctx * d);
    for (int i = 0; i < 5; ++i) plan.reserve<int32_t>(n_ctx);  // rows, active (two each), row_of
    plan.reserve<uint8_t>(n_ctx);
    plan.reserve<int32_t>(n_ctx);
    plan.reserve<float>(n_ctx);
    plan.reserve<float>(hp.n_head * (n_ctx + 2));
    plan.reserve<int32_t>(n_ctx);
    plan.reserve<float>(ub * d);
    plan.reserve<float>(ub * qd);
    plan.reserve<float>(ub * kvd);
    plan.reserve<float>(ub * kvd);
    plan.reserve<float>(ub * qd);
    plan.reserve<float>(ub * d);
    plan.reserve<float>(ub * ff);
    plan.reserve<float>(ub * ff);
    plan.reserve<float>(cuda::attention_partial_floats(hp.head_dim));
    plan.reserve<float>(qd);
    plan.reserve<float>(n_ctx * hp.rope_dim);
    plan.reserve<float>(has_local_rope ? n_ctx * hp.rope_dim : 0);
    plan.reserve<float>(logit_rows * hp.n_vocab);
    plan.reserve<int32_t>(4);
    plan.reserve<int64_t>(2);
    plan.reserve<uint16_t>(s.m->cuda->largest_layer_matrix);
    g->bytes = plan.bytes();
    const cudaError_t status = cudaMalloc(&g->block, g->bytes);
    if (status != cudaSuccess) {
        cudaGetLastError();
        throw_error(ErrorCode::out_of_memory, "the session needs " + std::to_string(g->bytes >> 20) +
                                                  " MiB of device memory (try a smaller n_ctx): " + cudaGetErrorString(status));
    }
    plan.bind(g->block);
    g->n_ubatch = static_cast<int>(ub);
    g->logit_rows = static_cast<int>(logit_rows);
    g->k = plan.carve<__half>(kv_elems);
    g->v = plan.carve<__half>(kv_elems);
    g->layer_stride = n_ctx * kvd;
    g->frontier = plan.carve<int32_t>(n_ctx);
    g->aux = plan.carve<float>(n_ctx * d);
    for (int i = 0; i < 2; ++i) g->hidden[i] = plan.carve<float>(n_ctx * d);
    for (int i = 0; i < 2; ++i) g->rows[i] = plan.carve<int32_t>(n_ctx);
    for (int i = 0; i < 2; ++i) g->active[i] = plan.carve<int32_t>(n_ctx);
    g->row_of = plan.carve<int32_t>(n_ctx);
    g->keep_mark = plan.carve<uint8_t>(n_ctx);
    g->scan = plan.carve<int32_t>(n_ctx);
    g->importance = plan.carve<float>(n_ctx);
    g->scores = plan.carve<float>(hp.n_head * (n_ctx + 2));
    g->ids = plan.carve<int32_t>(n_ctx);
    g->norm = plan.carve<float>(ub * d);
    g->q = plan.carve<float>(ub * qd);
    g->k_new = plan.carve<float>(ub * kvd);
    g->v_new = plan.carve<float>(ub * kvd);
    g->attn_out = plan.carve<float>(ub * qd);
    g->proj = plan.carve<float>(ub * d);
    g->gate = plan.carve<float>(ub * ff);
    g->up = plan.carve<float>(ub * ff);
    g->attn_partial = plan.carve<float>(cuda::attention_partial_floats(hp.head_dim));
    g->last_q = plan.carve<float>(qd);
    g->rope_global = plan.carve<float>(n_ctx * hp.rope_dim);
    g->rope_local = has_local_rope ? plan.carve<float>(n_ctx * hp.rope_dim) : g->rope_global;
    g->logits = plan.carve<float>(logit_rows * hp.n_vocab);
    g->counts = plan.carve<int32_t>(4);
    g->counters = plan.carve<int64_t>(2);
    g->gemm_scratch.elems = s.m->cuda->largest_layer_matrix;
    g->gemm_scratch.data = plan.carve<uint16_t>(g->gemm_scratch.elems);
    g->gemm_scratch.bf16 = s.m->cuda->bf16_gemm;
    check(cudaMallocHost(&g->host_counts, 4 * sizeof(int32_t)), "pinned host memory");
    check(cudaMallocHost(&g->host_counters, 2 * sizeof(int64_t)), "pinned host memory");
    const size_t rope_bytes = sizeof(float) * static_cast<size_t>(n_ctx) * hp.rope_dim;
    check(cudaMemcpy(g->rope_global, s.ws.rope_global, rope_bytes, cudaMemcpyHostToDevice), "uploading RoPE tables");
    if (has_local_rope)
        check(cudaMemcpy(g->rope_local, s.ws.rope_local, rope_bytes, cudaMemcpyHostToDevice), "uploading RoPE tables");
    check(cudaMemset(g->frontier, 0, sizeof(int32_t) * n_ctx), "clearing the frontier");
    return g;
}

void cuda_upload_frontier(SessionImpl& s) {
    CudaSession& g = *s.cuda;
    check(cudaSetDevice(g.device), "cudaSetDevice");
    check(cudaMemcpy(g.frontier, s.kv_cache.frontier, sizeof(int32_t) * s.n_ctx, cudaMemcpyHostToDevice), "frontier");
}

const float* cuda_forward(SessionImpl& s, int n_new, float* all_logits, const float* keep_per_layer) {
    const ModelHparams& hp = *s.hp;
    CudaSession& g = *s.cuda;
    const CudaModel& m = *s.m->cuda;
    cudaStream_t stream = g.stream;
    check(cudaSetDevice(g.device), "cudaSetDevice");
    const int d = hp.d_model;
    const int n_total = static_cast<int>(s.tokens.size());
    const int n_past = n_total - n_new;
    Step st;
    st.last_pos = n_total - 1;
    // pruned tokens of earlier steps may be revived at any layer; without them no layer needs a read-back
    bool context_has_aux = false;
    for (int p = 0; p < n_past && !context_has_aux; ++p) context_has_aux = s.kv_cache.frontier[p] < hp.n_layer;

    // the active set at layer 0 is the whole context; the new tokens start at layer 0
    check(cudaMemcpyAsync(g.ids, s.tokens.data() + n_past, sizeof(int32_t) * n_new, cudaMemcpyHostToDevice, stream), "ids");
    check(cudaMemsetAsync(g.counters, 0, 2 * sizeof(int64_t), stream), "counters");
    cuda::init_step(g.active[0], g.rows[0], g.row_of, n_past, n_new, stream);
    st.n_active = n_total;
    st.n_compute = n_new;
    // token embeddings
    cuda::embed_rows(m.token_embd, g.ids, n_new, hp.embedding_scale, g.hidden[0], stream);

    int64_t pairs = 0;
    for (int l = 0; l < hp.n_layer; ++l) {
        if (context_has_aux) {  // revive the active tokens whose next layer is l from the aux cache
            cuda::gather_compute_rows(g.active[st.act], st.n_active, g.frontier, l, g.hidden[st.cur], g.aux, d,
                                      g.hidden[1 - st.cur], g.rows[1 - st.cur], g.row_of, g.counts + 1, g.counters + 0,
                                      g.scan, stream);
            st.cur = 1 - st.cur;
            read_counts(g);
            st.n_compute = g.host_counts[1];
        }
        for (int c0 = 0; c0 < st.n_compute; c0 += g.n_ubatch)
            layer_micro_batch(s, l, c0, std::min(g.n_ubatch, st.n_compute - c0), st);
        cuda::advance_frontier(g.rows[st.cur], st.n_compute, l, g.frontier, g.counters + 1, stream);
        pairs += st.n_compute;
        if (keep_per_layer && keep_per_layer[l] < 1.0f && l + 1 < hp.n_layer) prune_after_layer(s, l, keep_per_layer[l], st);
    }

    // the last token is always computed through every layer and is the last compute row
    const float* result;
    if (all_logits) {
        if (st.n_compute != n_new) throw_error(ErrorCode::invalid_argument, "all-position logits need a dense session");
        output_logits(s, g.hidden[st.cur], n_new, all_logits);
        result = all_logits + static_cast<int64_t>(n_new - 1) * hp.n_vocab;
    } else {
        output_logits(s, g.hidden[st.cur] + static_cast<int64_t>(st.n_compute - 1) * d, 1, s.ws.logits);
        result = s.ws.logits;
    }
    check(cudaMemcpyAsync(s.kv_cache.frontier, g.frontier, sizeof(int32_t) * n_total, cudaMemcpyDeviceToHost, stream),
          "reading the frontier");
    check(cudaMemcpyAsync(g.host_counters, g.counters, 2 * sizeof(int64_t), cudaMemcpyDeviceToHost, stream), "counters");
    check(cudaStreamSynchronize(stream), "forward pass");

    s.stats.revived_tokens += g.host_counters[0];
    s.stats.recomputed_pairs += g.host_counters[1];
    s.stats.total_pairs_computed += pairs;
    s.stats.total_pairs_dense += static_cast<int64_t>(n_new) * hp.n_layer;
    if (n_new > 1) {
        s.stats.prefill_pairs_computed = pairs;
        s.stats.prefill_pairs_dense = static_cast<int64_t>(n_new) * hp.n_layer;
    }
    return result;
}

void cuda_read_kv(const SessionImpl& s, int layer, int position, float* k, float* v) {
    const CudaSession& g = *s.cuda;
    const int kvd = s.hp->kv_dim();
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

void cuda_read_aux(const SessionImpl& s, int position, float* hidden) {
    const CudaSession& g = *s.cuda;
    const int d = s.hp->d_model;
    check(cudaSetDevice(g.device), "cudaSetDevice");
    check(cudaMemcpy(hidden, g.aux + static_cast<int64_t>(position) * d, sizeof(float) * d, cudaMemcpyDeviceToHost),
          "reading the aux cache");
}

}  // namespace lazyllm_edge
