// Causal multi-head attention (GQA) of a set of query tokens over an fp16 KV cache indexed by
// position, restricted to the active positions a query may see.
#pragma once
#include <cstdint>

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
};

// Floats of scratch each thread needs for a context of n_ctx positions.
int64_t attention_scratch_floats(int n_ctx, int n_head, int n_head_kv, int head_dim);

// scratch: pool.size() * attention_scratch_floats(...) floats.
void attention(const AttentionParams& p, float* scratch, int n_ctx, ThreadPool& pool);

// Scalar reference, single thread (tests). scratch as for one thread.
void attention_reference(const AttentionParams& p, float* scratch);

// Softmax probabilities the query `q` (n_head * head_dim) gives each of kv_positions[0, n), averaged over
// all heads (GQA included): the LazyLLM importance. scores_scratch: n floats. Writes importance (n).
void last_token_importance(const float* q, const uint16_t* k_cache, const int32_t* kv_positions, int n,
                           int n_head, int n_head_kv, int head_dim, float scale, float* scores_scratch,
                           float* importance);

// One (query, kv-head group) task; implementations per ISA.
void attention_task_scalar(const AttentionParams& p, int query, int kv_head, float* scratch);
void attention_task_avx2(const AttentionParams& p, int query, int kv_head, float* scratch);

}  // namespace lazyllm_edge
