// Device-side model and session state of the CUDA backend (internal to cpp/cuda/).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <vector>

#include "base/buffer_plan.h"
#include "cuda/cuda_backend.h"
#include "cuda/kernels.cuh"

namespace lazyllm_edge {

struct CudaLayer {
    const float* attn_norm = nullptr;       // (d_model)
    cuda::DeviceMatrix wq, wk, wv, wo;      // (q_dim, d) (kv_dim, d) (kv_dim, d) (d, q_dim)
    const float* bq = nullptr;              // optional biases
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* q_norm = nullptr;          // optional per-head norms (head_dim)
    const float* k_norm = nullptr;
    const float* post_attn_norm = nullptr;  // optional (gemma3)
    const float* ffn_norm = nullptr;        // (d_model)
    cuda::DeviceMatrix gate, up, down;      // (ffn, d) (ffn, d) (d, ffn)
    const float* post_ffn_norm = nullptr;   // optional (gemma3)
};

// All weights in one device allocation, pointers carved from it.
struct CudaModel {
    int device = 0;
    void* block = nullptr;
    size_t bytes = 0;
    cuda::DeviceMatrix token_embd;          // (n_vocab, d)
    cuda::DeviceMatrix output;              // (n_vocab, d); shares token_embd's bytes when tied
    const float* output_norm = nullptr;     // (d)
    std::vector<CudaLayer> layers;
    int64_t largest_layer_matrix = 0;       // elements of the largest layer weight matrix (GEMM scratch size)
    bool bf16_gemm = false;                 // half-precision GEMMs in bf16, not fp16 (activations may pass 65504)
    ~CudaModel() {
        if (block) cudaFree(block);
    }
};

// One device allocation per session; every buffer is carved from it (the table in cuda_forward.cu).
struct CudaSession {
    int device = 0;
    cudaStream_t stream = nullptr;
    void* block = nullptr;
    size_t bytes = 0;
    int n_ubatch = 0;      // rows per layer micro-batch
    int logit_rows = 0;    // rows of logits computed at once
    __half* k = nullptr;            // (n_layer, n_ctx, kv_dim) fp16
    __half* v = nullptr;            // (n_layer, n_ctx, kv_dim) fp16
    int64_t layer_stride = 0;       // n_ctx * kv_dim
    int32_t* frontier = nullptr;    // (n_ctx) layers with KV per position (mirror of the session's host frontier)
    float* aux = nullptr;           // (n_ctx, d_model) aux cache: h[frontier[p]] of pruned tokens
    float* hidden[2] = {};          // (n_ctx, d_model) compute rows; the other buffer receives compactions
    int32_t* rows[2] = {};          // (n_ctx) positions of the compute rows, sorted
    int32_t* active[2] = {};        // (n_ctx) active positions, sorted
    int32_t* row_of = nullptr;      // (n_ctx) compute row of a position, -1 when not being computed
    uint8_t* keep_mark = nullptr;   // (n_ctx) selection result per position
    int32_t* scan = nullptr;        // (n_ctx) prefix-sum scratch
    float* importance = nullptr;    // (n_ctx) aligned with the active set
    float* scores = nullptr;        // (n_head, n_ctx + 2) importance scratch
    int32_t* ids = nullptr;         // (n_ctx) token ids of the step
    float* norm = nullptr;          // (n_ubatch, d_model)
    float* q = nullptr;             // (n_ubatch, q_dim)
    float* k_new = nullptr;         // (n_ubatch, kv_dim)
    float* v_new = nullptr;         // (n_ubatch, kv_dim)
    float* attn_out = nullptr;      // (n_ubatch, q_dim)
    float* proj = nullptr;          // (n_ubatch, d_model)
    float* gate = nullptr;          // (n_ubatch, ffn_dim)
    float* up = nullptr;            // (n_ubatch, ffn_dim)
    float* attn_partial = nullptr;  // attention_partial_floats(head_dim)
    float* window_q = nullptr;      // (kMaxQueryWindow, q_dim) queries of the window's tokens at the current layer
    int32_t* window_has = nullptr;  // (kMaxQueryWindow) which window positions were computed at this layer
    float* window_acc = nullptr;    // (n_head, n_ctx) window importance scratch
    float* rope_global = nullptr;   // (n_ctx, rope_dim)
    float* rope_local = nullptr;    // (n_ctx, rope_dim) sliding-window layers (gemma3); = rope_global otherwise
    float* logits = nullptr;        // (logit_rows, n_vocab)
    cuda::GemmScratch gemm_scratch; // (largest layer matrix) dequantized weights for the prefill GEMM
    int32_t* counts = nullptr;      // (4) sizes the host reads back: kept, compute rows, window start, protected
    int64_t* counters = nullptr;    // (2) revived tokens, recomputed pairs of this step
    int32_t* host_counts = nullptr;     // pinned mirrors of the two above
    int64_t* host_counters = nullptr;
    ~CudaSession() {
        if (host_counts) cudaFreeHost(host_counts);
        if (host_counters) cudaFreeHost(host_counters);
        if (block) cudaFree(block);
        if (stream) cudaStreamDestroy(stream);
    }
};

}  // namespace lazyllm_edge
