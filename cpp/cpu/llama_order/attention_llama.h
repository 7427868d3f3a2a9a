// llama.cpp's CPU attention arithmetic (`llama_cpp` numerics): attention() (cpu/attention.h) hands a call with
// AttentionParams::numerics == llama_cpp to attention_llama_cpp. The driver and the scalar phase kernels are
// attention_llama.cpp, the AVX2 phase kernels attention_llama_avx2.cpp.
#pragma once
#include <cstdint>

#include "cpu/attention.h"

namespace lazyllm_edge {

class ThreadPool;

// attention_llama_cpp reproduces llama.cpp's CPU attention (flash attention off, fp16 KV cache) to the bit:
//  1. scores: q is rounded to fp16; s_j = hsum8(lane_0..7) * scale, where lane i sums q[d] * k_j[d] over
//     d = i, i + 8, ... in order (fp16 x fp16 products are exact in fp32), and
//     hsum8(a) = ((a4 + a0) + (a6 + a2)) + ((a5 + a1) + (a7 + a3));
//  2. softmax over the keys the query sees: m = max s; e_j = expf_ggml(s_j - m); the sum is taken over groups of
//     8 consecutive positions (pos / 8), each group's hsum8 (lane pos % 8, 0 for keys not seen) added in
//     double in increasing order; p_j = fp16(e_j * float(1 / sum));
//  3. output: lane i sums p_j * v_j over the keys with pos % 8 == i in increasing position; out = hsum8(lanes).
// A single query (decode) takes ggml_vec_dot_f16's order instead, as llama.cpp does (its tinyBLAS needs two
// columns): 32 lanes (index % 32) for q.k and for p.V (by position), reduced as in reduce32 (attention_llama.cpp);
// head dims past the last multiple of 32 are added to q.k in double.
// Otherwise every output element depends on its query row and keys only (any tiling or thread count gives the
// same bits). Prefill tasks are (tile of queries x one kv head); few-row batches and a single query run three
// phases over all rows (scores split by kv head and key blocks, softmax by rows, P.V by kv head and 16 output
// dims). Slower than attention()'s online softmax: decode attention ~1.6x, prefill attention ~1.35x.
void attention_llama_cpp(const AttentionParams& p, float* scratch, int n_ctx, ThreadPool& pool);
int64_t attention_llama_cpp_scratch_floats(int n_ctx, int n_head, int n_head_kv, int head_dim);
// Scalar, single thread, one (query, head) at a time, step by step as above (tests).
void attention_llama_cpp_reference(const AttentionParams& p, float* scratch);

// K or V rows of one kv head: row j is the cache row at position pos[j].
struct KvRows {
    const uint16_t* head = nullptr;  // cache + kv_head * head_dim (position 0)
    const int32_t* pos = nullptr;
    int64_t kv_dim = 0;
    const uint16_t* row(int j) const { return head + pos[j] * kv_dim; }
};

// Phase kernels of attention_llama_cpp, one set per ISA (identical bits; the AVX2 ones need head_dim % 8 == 0):
//  scores:  s (R, ld) = step 1 for q16 (R, hd) (already fp16-rounded) and keys [0, n) of k;
//  softmax: one row of scores over keys [0, n) with positions pos, seen [b, e): becomes p (0 outside [b, e));
//           group: scratch of 8 * (n + 2) floats;
//  pv:      lanes (R, 8, hd) += p (R, ld) . V for the keys order[bucket[i] .. bucket[i + 1]) of lane i, output
//           dims [d0, d1) (multiples of 8 for AVX2);
//  combine: out row r (stride out_stride) dims [d0, d1) = hsum8 of the 8 lanes.
// A single query (decode) takes ggml_vec_dot_f16's order (reduce32 in attention_llama.cpp):
//  scores32:  s (R, ld) = q16 . k for keys [0, n): lanes d % 32 over the first hd - hd % 32 dims, reduce32, the
//             remaining dims added in double, then times scale;
//  pv32:      acc (R, 32, hd) dims [d0, d1) += p (R, ld) . V, key j into lane pos[j] % 32, keys in order;
//  combine32: out row r (stride out_stride) dims [d0, d1) = reduce32 of the 32 lanes.
struct LlamaAttentionKernels {
    void (*scores)(const float* q16, int rows, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld);
    void (*softmax)(float* s, const int32_t* pos, int n, int b, int e, float* group);
    void (*pv)(const float* p, int rows, int64_t ld, const KvRows& v, const int32_t* order, const int* bucket,
               int hd, int d0, int d1, float* lanes);
    void (*combine)(const float* lanes, int rows, int hd, int d0, int d1, float* out, int64_t out_stride);
    void (*scores32)(const float* q16, int rows, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld);
    void (*pv32)(const float* p, int rows, int64_t ld, const KvRows& v, int n, int hd, int d0, int d1, float* acc);
    void (*combine32)(const float* acc, int rows, int hd, int d0, int d1, float* out, int64_t out_stride);
};
extern const LlamaAttentionKernels kLlamaAttentionScalar;
extern const LlamaAttentionKernels kLlamaAttentionAvx2;  // x86-64 builds only

}  // namespace lazyllm_edge
