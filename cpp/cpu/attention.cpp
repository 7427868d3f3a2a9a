#include "cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "cpu/kernels.h"
#include "runtime/thread_pool.h"

namespace lazyllm_edge {

int64_t attention_scratch_floats(int n_ctx, int n_head, int n_head_kv, int head_dim) {
    const int group = n_head / n_head_kv;
    // scores (group, n_ctx) + accumulators (group, head_dim) + one converted K/V row (head_dim)
    return static_cast<int64_t>(group) * n_ctx + static_cast<int64_t>(group) * head_dim + head_dim + 64;
}

void attention_task_scalar(const AttentionParams& p, int t, int g, float* scratch) {
    const int group = p.n_head / p.n_head_kv;
    const int hd = p.head_dim;
    const int kv_dim = p.n_head_kv * hd;
    const int begin = p.attend_begin ? p.attend_begin[t] : 0;
    const int n = p.attend_end[t] - begin;
    float* scores = scratch;                                   // (group, n)
    float* row = scratch + static_cast<int64_t>(group) * n;    // (hd)
    for (int j = 0; j < n; ++j) {
        const uint16_t* k = p.k_cache + static_cast<int64_t>(p.kv_positions[begin + j]) * kv_dim + g * hd;
        for (int d = 0; d < hd; ++d) row[d] = fp16_to_fp32(k[d]);
        for (int h = 0; h < group; ++h) {
            const float* q = p.q + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; ++d) s += q[d] * row[d];
            scores[h * n + j] = s * p.scale;
        }
    }
    for (int h = 0; h < group; ++h) {
        float* s = scores + static_cast<int64_t>(h) * n;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) mx = std::max(mx, s[j]);
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) {
            s[j] = std::exp(s[j] - mx);
            sum += s[j];
        }
        const float inv = n > 0 ? 1.0f / sum : 0.0f;
        float* out = p.out + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
        for (int d = 0; d < hd; ++d) out[d] = 0.0f;
        for (int j = 0; j < n; ++j) {
            const uint16_t* v = p.v_cache + static_cast<int64_t>(p.kv_positions[begin + j]) * kv_dim + g * hd;
            const float w = s[j] * inv;
            for (int d = 0; d < hd; ++d) out[d] += w * fp16_to_fp32(v[d]);
        }
    }
}

void attention(const AttentionParams& p, float* scratch, int n_ctx, ThreadPool& pool) {
    const int64_t per_thread = attention_scratch_floats(n_ctx, p.n_head, p.n_head_kv, p.head_dim);
    const bool avx2 = active_isa() == CpuIsa::avx2;
    const int64_t n_tasks = static_cast<int64_t>(p.n_q) * p.n_head_kv;
    pool.parallel_for(n_tasks, [&](long begin, long end, int thread) {
        float* s = scratch + per_thread * thread;
        for (long task = begin; task < end; ++task) {
            const int t = static_cast<int>(task / p.n_head_kv), g = static_cast<int>(task % p.n_head_kv);
            if (avx2) attention_task_avx2(p, t, g, s);
            else attention_task_scalar(p, t, g, s);
        }
    });
}

void attention_reference(const AttentionParams& p, float* scratch) {
    for (int t = 0; t < p.n_q; ++t)
        for (int g = 0; g < p.n_head_kv; ++g) attention_task_scalar(p, t, g, scratch);
}

void last_token_importance(const float* q, const uint16_t* k_cache, const int32_t* kv_positions, int n,
                           int n_head, int n_head_kv, int head_dim, float scale, float* scores,
                           float* importance) {
    const int group = n_head / n_head_kv;
    const int kv_dim = n_head_kv * head_dim;
    for (int j = 0; j < n; ++j) importance[j] = 0.0f;
    for (int h = 0; h < n_head; ++h) {
        const float* qh = q + static_cast<int64_t>(h) * head_dim;
        const int g = h / group;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
            const uint16_t* k = k_cache + static_cast<int64_t>(kv_positions[j]) * kv_dim + g * head_dim;
            float s = 0.0f;
            for (int d = 0; d < head_dim; ++d) s += qh[d] * fp16_to_fp32(k[d]);
            scores[j] = s * scale;
            mx = std::max(mx, scores[j]);
        }
        double sum = 0.0;
        for (int j = 0; j < n; ++j) {
            scores[j] = std::exp(scores[j] - mx);
            sum += scores[j];
        }
        const float w = static_cast<float>(1.0 / (sum * n_head));
        for (int j = 0; j < n; ++j) importance[j] += scores[j] * w;
    }
}

}  // namespace lazyllm_edge
