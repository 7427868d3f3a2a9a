// Causal multi-head attention (GQA) of a set of query tokens over an fp16 KV cache indexed by
// position, restricted to the active positions a query may see.
//
// The optimized path is flash-style: a tile of consecutive queries times the query heads of one kv head
// (they share K/V) walks the keys in blocks with an online softmax, so each converted K/V block is reused
// by every row of the tile from L1. When there are too few (tile, kv head) tasks to keep the threads busy
// (decode), the keys are split into chunks instead, a task covering every kv head of one chunk (so it
// streams whole K/V rows), and the partial results are merged with log-sum-exp. Tiling and splitting depend
// only on the inputs, never on the thread count, so the same inputs give bit-identical outputs whatever the
// number of threads.
#pragma once
#include <cstdint>

#include "lazyllm_edge/numerics.hpp"

namespace lazyllm_edge {

class ThreadPool;

struct AttentionParams {
    const float* q = nullptr;             // (n_q, n_head * head_dim), RoPE applied
    const uint16_t* k_cache = nullptr;    // (n_ctx, n_head_kv * head_dim) fp16, this layer
    const uint16_t* v_cache = nullptr;    // (n_ctx, n_head_kv * head_dim) fp16, this layer
    const int32_t* kv_positions = nullptr;  // sorted positions whose KV takes part (the active set)
    const int32_t* attend_begin = nullptr;  // (n_q) first index into kv_positions a query sees; null = 0
    const int32_t* attend_end = nullptr;    // (n_q) one past the last index (causal limit)
    int n_q = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    float scale = 1.0f;
    float* out = nullptr;                 // (n_q, n_head * head_dim)
    // llama_cpp: attention() computes with llama.cpp's arithmetic (llama_order/attention_llama.h); fast and
    // fp32 with the online softmax below.
    Numerics numerics = Numerics::fast;
};

// Floats of scratch each thread needs for a context of n_ctx positions (covers attention_reference too).
int64_t attention_scratch_floats(int n_ctx, int n_head, int n_head_kv, int head_dim);

// scratch: pool.size() * attention_scratch_floats(...) floats (enough for either arithmetic).
void attention(const AttentionParams& p, float* scratch, int n_ctx, ThreadPool& pool);

// Scalar reference, single thread, exact softmax per (query, head) (tests). scratch as for one thread.
void attention_reference(const AttentionParams& p, float* scratch);

// Softmax probabilities the query `q` (n_head * head_dim) gives each of kv_positions[0, n), averaged over
// all heads (GQA included), or their maximum over the heads: the LazyLLM importance. scores_scratch: n
// floats. Writes importance (n).
void last_token_importance(const float* q, const uint16_t* k_cache, const int32_t* kv_positions, int n,
                           int n_head, int n_head_kv, int head_dim, float scale, float* scores_scratch,
                           float* importance, bool max_over_heads = false);

// The importance from several queries (the last tokens of the prompt, SnapKV's observation window): for
// each query q_rows[w] (at position q_pos[w]) and head, the softmax over the kv_positions at or before it;
// averaged over the queries, then over the heads or their maximum. scratch: (n_head + 1) * n floats.
void window_importance(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                       const int32_t* kv_positions, int n, int n_head, int n_head_kv, int head_dim, float scale,
                       float* scratch, float* importance, bool max_over_heads);

// What a session ranks with: window_importance (n_q 1: last_token_importance's values) with the heads split over
// the pool, each by the AVX2 kernel where the CPU runs it and head_dim % 8 == 0 (FMA dot products and llama.cpp's
// vectorized expf, so equal to the reference up to float rounding), else by the reference (the same bits).
// scratch: 2 * n_head * n floats.
void window_importance_fast(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                            const int32_t* kv_positions, int n, int n_head, int n_head_kv, int head_dim, float scale,
                            float* scratch, float* importance, bool max_over_heads, ThreadPool& pool);

// ---- internals shared by attention.cpp and the per-ISA tile kernels ----

// One head of window_importance: mass (n) = the head's softmax probabilities over kv_positions, summed over the
// queries with weight 1 / n_q. scores: n floats of scratch. The reference, and its AVX2 twin (attention_avx2.cpp).
void importance_head_reference(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                               const int32_t* kv_positions, int n, int n_head, int head, int kv_dim, int head_offset,
                               int head_dim, float scale, float* scores, float* mass);
void importance_head_avx2(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                          const int32_t* kv_positions, int n, int n_head, int head, int kv_dim, int head_offset,
                          int head_dim, float scale, float* scores, float* mass);

// Keys per block of the online softmax: a multiple of 16 with one converted K or V block (block_keys *
// head_dim floats) around 16 KiB, so K, V, the query tile and the scores stay in L1/L2.
int attention_block_keys(int head_dim);

// One task: queries [q0, q0 + n_queries) times the query heads of kv heads [kv_head, kv_head + n_kv_heads),
// over the key indices [key_begin, key_end) of kv_positions (each query further limited to its
// attend_begin/attend_end). Per kv head, rows are r = query_in_tile * group + head_in_group (R = n_queries *
// group rows); m, l and acc hold n_kv_heads such sets of rows, one after the other.
// Scores are kept in base 2: x = q.k * scale * log2(e), so exp(q.k * scale - c) = exp2(x - c').
struct AttentionTile {
    int q0 = 0;
    int n_queries = 0;
    int kv_head = 0;
    int n_kv_heads = 1;
    int key_begin = 0;
    int key_end = 0;
    float* m = nullptr;    // (n_kv_heads, R) out: max of x over the keys seen (-inf: none)
    float* l = nullptr;    // (n_kv_heads, R) out: sum of exp2(x - m)
    float* acc = nullptr;  // (n_kv_heads, R, head_dim) out: sum of exp2(x - m) * V, unnormalized
};

constexpr float kLog2e = 1.44269504088896341f;

// Floats of scratch attention_tile_* needs for R rows (per kv head).
int64_t attention_tile_scratch_floats(int rows, int head_dim);

// Runs one tile with an online softmax over key blocks, each block for all the tile's kv heads in turn
// (their K/V rows share cache lines); implementations per ISA. Each head's result depends only on its own
// rows and keys.
void attention_tile_scalar(const AttentionParams& p, const AttentionTile& tile, float* scratch);
void attention_tile_avx2(const AttentionParams& p, const AttentionTile& tile, float* scratch);

}  // namespace lazyllm_edge
