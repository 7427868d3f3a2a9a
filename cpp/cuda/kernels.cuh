// The CUDA kernels of the forward pass, as host-callable launchers on device pointers. Each has a CPU
// reference (cpp/cpu/) and is tested against it on seeded random data (tests/cpp/test_cuda_kernels.cu).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gguf/ggml_types.h"
#include "lazyllm_edge/numerics.hpp"

namespace lazyllm_edge {
namespace cuda {

// A weight matrix (n_out, n_in) in device memory, rows of `type` as stored in the GGUF file.
struct DeviceMatrix {
    GgmlType type = GgmlType::F32;
    int n_in = 0;
    int n_out = 0;
    size_t row_bytes = 0;
    const uint8_t* data = nullptr;
};

// Whether the kernels can multiply by this type and shape (n_in a multiple of 8; 32 for the tensor-core path).
bool matmul_supported(GgmlType type, int n_in);

// y (n_tok, n_out) = x (n_tok, n_in) . W^T, fp32. Up to kMatvecMaxTokens tokens: a dequantize-on-the-fly
// matrix-vector kernel (one warp per output row, every token of the batch at once); more: a 3xTF32
// tensor-core GEMM (near-fp32 accuracy) that dequantizes 64x32 weight tiles into shared memory.
constexpr int kMatvecMaxTokens = 8;
void matmul(const DeviceMatrix& w, const float* x, int n_tok, float* y, cudaStream_t stream);

// Device scratch for the half-precision prefill GEMM: the weight matrix dequantized once per call.
struct GemmScratch {
    void* data = nullptr;  // (elems) fp16, or bf16 when bf16
    int64_t elems = 0;
    bool bf16 = false;     // bf16 instead of fp16 (models with activations beyond fp16's range: gemma3)
};
// y = x . W^T by the half-precision GEMM (gemm_half.cu) when it applies: more than kMatvecMaxTokens
// tokens, `fast` numerics, the matrix fits the scratch; otherwise (`fp32`: the near-fp32 3xTF32 GEMM) as
// matmul() above.
void matmul(const DeviceMatrix& w, const float* x, int n_tok, float* y, const GemmScratch& scratch, Numerics numerics,
            cudaStream_t stream);
bool gemm_half_fits(const DeviceMatrix& w, const GemmScratch& scratch);
void gemm_half(const DeviceMatrix& w, const float* x, int n_tok, float* y, const GemmScratch& scratch, cudaStream_t stream);
// The same product by the matrix-vector kernel whatever n_tok (tests compare the two paths).
void matmul_matvec(const DeviceMatrix& w, const float* x, int n_tok, float* y, cudaStream_t stream);

// h (n, d) = dequantized rows ids[i] of the embedding matrix, times scale.
void embed_rows(const DeviceMatrix& table, const int32_t* ids, int n, float scale, float* h, cudaStream_t stream);

// y (n, d) = x / sqrt(mean(x^2) + eps) * w (w may be null). x and y may alias.
void rms_norm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t stream);
// y (n, d) += x; with w non-null, x is RMS-normed by w first (gemma3's post-norms). Then, with
// norm_w non-null, norm_out = rms_norm(y, norm_w) (the next sublayer's input).
void add_residual(float* y, const float* x, const float* w, const float* norm_w, float* norm_out, int n, int d, float eps,
                  cudaStream_t stream);

// After the q/k/v projections of n rows at positions pos: biases, per-head RMSNorm of q and k, RoPE
// (table (n_ctx, rope_dim) of cos/sin pairs), q scaled by q_scale, then K and V rows written to the fp16
// caches of this layer at their positions, and the queries of the positions from window_begin on copied to
// window_q (row pos - window_begin), window_has[pos - window_begin] set to 1.
struct QkvParams {
    float* q = nullptr;              // (n, n_head * head_dim)
    float* k = nullptr;              // (n, n_head_kv * head_dim)
    const float* v = nullptr;        // (n, n_head_kv * head_dim)
    const int32_t* pos = nullptr;    // (n)
    const float* bq = nullptr;
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* q_norm = nullptr;   // (head_dim)
    const float* k_norm = nullptr;
    const float* rope = nullptr;     // (n_ctx, rope_dim)
    __half* k_cache = nullptr;       // (n_ctx, kv_dim) this layer
    __half* v_cache = nullptr;
    float* window_q = nullptr;       // (window slots, n_head * head_dim)
    int32_t* window_has = nullptr;   // (window slots)
    int window_begin = 0;
    int n = 0, n_head = 0, n_head_kv = 0, head_dim = 0, rope_dim = 0;
    bool neox = false;
    float q_scale = 1.0f;
    float eps = 1e-6f;
};
void qkv_finish(const QkvParams& p, cudaStream_t stream);

// gate (n, ff) = act(gate) * up, act = SiLU or tanh-GELU.
void gated_activation(float* gate, const float* up, int64_t count, bool gelu, cudaStream_t stream);
// y = cap * tanh(y / cap)
void softcap(float* y, int64_t count, float cap, cudaStream_t stream);

// Causal attention of n_q query rows (positions q_pos, sorted) over the active set: keys are the cache
// rows at kv_positions[0, n_kv) (sorted) with position <= the query's (and > query - window on sliding
// layers, window > 0). Flash-style online softmax. Prefill (n_q >= 16, head_dim <= 128 and a multiple of
// 16) runs on tensor cores (attention_mma.cu); otherwise one block per (query, head), with long key ranges
// split over several blocks and merged (decode).
struct AttentionArgs {
    const float* q = nullptr;            // (n_q, n_head * head_dim)
    const int32_t* q_pos = nullptr;      // (n_q)
    const __half* k_cache = nullptr;     // (n_ctx, kv_dim)
    const __half* v_cache = nullptr;
    const int32_t* kv_positions = nullptr;
    int n_kv = 0;
    int n_q = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
    int window = 0;
    float scale = 1.0f;
    float* out = nullptr;                // (n_q, n_head * head_dim)
    float* partial = nullptr;            // attention_partial_floats(head_dim) scratch for split keys
    bool tensor_cores = true;            // false: always the per-(query, head) kernel (tests compare both)
    int mma_kernel = 2;                  // prefill on tensor cores: 2 = mma.sync with register accumulators
                                         // (head_dim 64/128), 1 = WMMA with shared-memory ones (A/B, fallback)
};
int64_t attention_partial_floats(int head_dim);
void attention(const AttentionArgs& a, cudaStream_t stream);
bool attention_mma_supported(int head_dim);
void attention_mma(const AttentionArgs& a, cudaStream_t stream);  // the WMMA kernel itself
bool attention_fa2_supported(int head_dim);
void attention_fa2(const AttentionArgs& a, cudaStream_t stream);  // the mma.sync kernel itself

// The importance from the query window (CPU reference: window_importance in cpp/cpu/attention.cpp): for each
// slot w < n_slots with window_has[w], the query window_q[w] at position window_begin + w, per head the softmax
// over the kv_positions at or before it; averaged over the queries, then over the heads or their maximum.
// scores: n_head * (n + 2) floats, acc: n_head * n floats of scratch.
void window_importance(const float* window_q, const int32_t* window_has, int window_begin, int n_slots,
                       const __half* k_cache, const int32_t* kv_positions, int n, int n_head, int n_head_kv,
                       int head_dim, float scale, float* scores, float* acc, float* importance, cudaStream_t stream,
                       bool max_over_heads);

// LazyLLM importance: softmax over kv_positions[0, n) of the query q (n_head * head_dim) per head,
// averaged over heads (or their maximum), written to importance (n). scores: n_head * (n + 2) floats of scratch.
void last_token_importance(const float* q, const __half* k_cache, const int32_t* kv_positions, int n, int n_head,
                           int n_head_kv, int head_dim, float scale, float* scores, float* importance,
                           cudaStream_t stream, bool max_over_heads = false);

// ---- active-set bookkeeping (all on the device; counts[] are device ints read back by the host) ----

// Top-k selection: of active[0, n) (sorted positions, importance aligned; the first n_forced are kept
// regardless, as is position always_keep, and their importance is not read), keeps the n_keep most important (ties: earlier position),
// writes them sorted to kept, sets keep_mark[pos] to 1 for kept and 0 for dropped active positions,
// and *kept_count. scan: n ints.
void select_top_k(const int32_t* active, const float* importance, int n, int n_keep, int n_forced, int32_t always_keep,
                  uint8_t* keep_mark, int32_t* kept, int32_t* kept_count, int32_t* scan, cudaStream_t stream);

// Compute rows (positions rows_pos[0, n_rows), hidden rows h) that are kept move to h_out/rows_out in
// order; dropped ones park their hidden row in aux[pos] (the input to the next layer). row_of[pos] gets
// the new row index, or -1. *out_count = rows kept.
void compact_rows(const int32_t* rows_pos, const float* h, int n_rows, int d, const uint8_t* keep_mark, float* h_out,
                  int32_t* rows_out, int32_t* row_of, float* aux, int32_t* out_count, int32_t* scan,
                  cudaStream_t stream);

// Revival at layer l: the new compute set is every active position whose frontier is l, in order; its
// hidden row comes from the current rows (row_of[pos] >= 0) or from aux[pos] (a pruned token selected
// again; counted in *revived). Writes rows to h_out/rows_out, updates row_of, *out_count.
void gather_compute_rows(const int32_t* active, int n_active, const int32_t* frontier, int layer, const float* h,
                         const float* aux, int d, float* h_out, int32_t* rows_out, int32_t* row_of, int32_t* out_count,
                         int64_t* revived, int32_t* scan, cudaStream_t stream);

// Parks n compute rows (hidden states h, positions rows) in the aux cache: a cancelled step's abort.
void park_rows(const int32_t* rows, const float* h, int n, int d, float* aux, cudaStream_t stream);

// frontier[rows[i]] = layer + 1 for each compute row; counts rows whose frontier was not `layer`
// (a recomputed pair, which the at-most-once invariant forbids) in *recomputed.
void advance_frontier(const int32_t* rows, int n, int layer, int32_t* frontier, int64_t* recomputed,
                      cudaStream_t stream);

// Importance +inf for the active tokens that already have KV at layer + 1 (frontier > layer + 1: keeping them
// costs nothing); *count = how many.
void protect_computed(const int32_t* active, int n, const int32_t* frontier, int layer, float* importance,
                      int32_t* count, cudaStream_t stream);

// out[i] = the largest importance[j] with |positions[j] - positions[i]| <= radius (CPU reference:
// max_pool_importance in lazy/selection.h). out may not alias importance.
void max_pool_importance(const int32_t* positions, const float* importance, int n, int radius, float* out,
                         cudaStream_t stream);

// active[i] = i for i < n_total; rows[i] = n_past + i and row_of as described above for the new tokens.
void init_step(int32_t* active, int32_t* rows, int32_t* row_of, int n_past, int n_new, cudaStream_t stream);

}  // namespace cuda
}  // namespace lazyllm_edge
