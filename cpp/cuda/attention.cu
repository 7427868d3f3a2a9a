// Attention over the fp16 KV cache restricted to the active set, and the LazyLLM importance.
// CPU references: cpp/cpu/attention.cpp (attention_reference, last_token_importance).
//
// One block (4 warps) per (query row, query head, key split). Each warp walks tiles of 32 keys: a lane
// scores one key (q.k over the head), the warp updates its running max and sum (online softmax), and
// every lane accumulates its slice of the head's output dims over the tile's 32 values. The 4 warps'
// partial states merge in shared memory; with several key splits (few queries, as in decode) each split
// writes (max, sum, unnormalized output) and a second kernel merges them.
#include <cfloat>
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"
#include "cuda/sorted_search.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxDimsPerLane = kMaxHeadDim / 32;
constexpr int kMaxPartials = 2048;  // (query, head, split) triples in the split scratch

__device__ float dot_half_row(const float* q, const __half* k, int head_dim) {
    const __half2* k2 = reinterpret_cast<const __half2*>(k);
    float s = 0.0f;
    for (int d = 0; d < head_dim / 2; ++d) {
        const float2 kv = __half22float2(k2[d]);
        s += q[2 * d] * kv.x + q[2 * d + 1] * kv.y;
    }
    return s;
}

__global__ void attention_kernel(AttentionArgs a, int n_split) {
    const int qi = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    const int hd = a.head_dim, group = a.n_head / a.n_head_kv, kvd = a.n_head_kv * hd;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __shared__ float qs[kMaxHeadDim];
    __shared__ float wm[kWarps], wl[kWarps];
    __shared__ float wo[kWarps][kMaxHeadDim];
    const float* q = a.q + (static_cast<size_t>(qi) * a.n_head + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[d];
    __syncthreads();

    // keys this query sees: active positions <= its own (and inside the window), then this split's share
    const int qpos = a.q_pos[qi];
    const int end = upper_bound(a.kv_positions, a.n_kv, qpos);
    const int begin = a.window > 0 ? lower_bound(a.kv_positions, a.n_kv, qpos - a.window + 1) : 0;
    const int chunk = (end - begin + n_split - 1) / n_split;
    const int kb = begin + split * chunk;
    const int ke = min(end, kb + chunk);

    const __half* kh = a.k_cache + (h / group) * hd;
    const __half* vh = a.v_cache + (h / group) * hd;
    const int dims = (hd + 31) / 32;
    float m = -FLT_MAX, l = 0.0f;
    float o[kMaxDimsPerLane];
    for (int c = 0; c < kMaxDimsPerLane; ++c) o[c] = 0.0f;
    for (int t0 = kb + warp * 32; t0 < ke; t0 += kWarps * 32) {
        const int i = t0 + lane;
        int pos = 0;
        float s = -FLT_MAX;
        if (i < ke) {
            pos = a.kv_positions[i];
            s = dot_half_row(qs, kh + static_cast<size_t>(pos) * kvd, hd) * a.scale;
        }
        float mt = s;
        for (int off = 16; off > 0; off /= 2) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
        const float m_new = fmaxf(m, mt);
        const float p = i < ke ? expf(s - m_new) : 0.0f;
        const float corr = expf(m - m_new);
        float ps = p;
        for (int off = 16; off > 0; off /= 2) ps += __shfl_xor_sync(0xffffffffu, ps, off);
        l = l * corr + ps;
        m = m_new;
        for (int c = 0; c < dims; ++c) o[c] *= corr;
        const int n_valid = min(32, ke - t0);
        for (int j = 0; j < n_valid; ++j) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
            const int posj = __shfl_sync(0xffffffffu, pos, j);
            const __half* vr = vh + static_cast<size_t>(posj) * kvd;
            for (int c = 0; c < dims; ++c) {
                const int d = lane + 32 * c;
                if (d < hd) o[c] += pj * __half2float(vr[d]);
            }
        }
    }
    // merge the warps
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
    for (int c = 0; c < dims; ++c) {
        const int d = lane + 32 * c;
        if (d < hd) wo[warp][d] = o[c];
    }
    __syncthreads();
    float mm = -FLT_MAX;
    for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, wm[w]);
    float ll = 0.0f;
    for (int w = 0; w < kWarps; ++w) ll += wl[w] > 0.0f ? wl[w] * expf(wm[w] - mm) : 0.0f;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int w = 0; w < kWarps; ++w)
            if (wl[w] > 0.0f) acc += wo[w][d] * expf(wm[w] - mm);
        if (n_split == 1) {
            a.out[(static_cast<size_t>(qi) * a.n_head + h) * hd + d] = ll > 0.0f ? acc / ll : 0.0f;
        } else {
            float* part = a.partial + ((static_cast<size_t>(qi) * a.n_head + h) * n_split + split) * (hd + 2);
            part[2 + d] = acc;
            if (d == 0) {
                part[0] = mm;
                part[1] = ll;
            }
        }
    }
}

__global__ void merge_splits_kernel(AttentionArgs a, int n_split) {
    const int qi = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
    const float* part = a.partial + (static_cast<size_t>(qi) * a.n_head + h) * n_split * (hd + 2);
    float mm = -FLT_MAX;
    for (int s = 0; s < n_split; ++s)
        if (part[s * (hd + 2) + 1] > 0.0f) mm = fmaxf(mm, part[s * (hd + 2)]);
    float ll = 0.0f;
    for (int s = 0; s < n_split; ++s) {
        const float* p = part + s * (hd + 2);
        if (p[1] > 0.0f) ll += p[1] * expf(p[0] - mm);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < n_split; ++s) {
            const float* p = part + s * (hd + 2);
            if (p[1] > 0.0f) acc += p[2 + d] * expf(p[0] - mm);
        }
        a.out[(static_cast<size_t>(qi) * a.n_head + h) * hd + d] = ll > 0.0f ? acc / ll : 0.0f;
    }
}

// scores (n_head, n) = q_h . k_j * scale
__global__ void importance_scores_kernel(const float* q, const __half* k_cache, const int32_t* kv_positions, int n,
                                         int n_head, int n_head_kv, int head_dim, float scale, float* scores) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const int group = n_head / n_head_kv, kvd = n_head_kv * head_dim;
    const __half* k = k_cache + static_cast<size_t>(kv_positions[j]) * kvd;
    for (int h = 0; h < n_head; ++h)
        scores[static_cast<size_t>(h) * n + j] = dot_half_row(q + h * head_dim, k + (h / group) * head_dim, head_dim) * scale;
}

// per head: stats[2h] = max, stats[2h+1] = sum of exp(s - max)
__global__ void importance_stats_kernel(const float* scores, int n, float* stats) {
    const float* s = scores + static_cast<size_t>(blockIdx.x) * n;
    __shared__ float red[32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    float m = -FLT_MAX;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, s[j]);
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = -FLT_MAX;
    for (int w = 0; w < n_warps; ++w) m = fmaxf(m, red[w]);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += expf(s[j] - m);
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int w = 0; w < n_warps; ++w) total += red[w];
        stats[2 * blockIdx.x] = m;
        stats[2 * blockIdx.x + 1] = total;
    }
}

__global__ void importance_combine_kernel(const float* scores, const float* stats, int n, int n_head,
                                          bool max_over_heads, float* importance) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float acc = 0.0f;
    for (int h = 0; h < n_head; ++h) {
        if (max_over_heads) {
            const float w = static_cast<float>(1.0 / static_cast<double>(stats[2 * h + 1]));
            acc = fmaxf(acc, expf(scores[static_cast<size_t>(h) * n + j] - stats[2 * h]) * w);
        } else {
            const float w = static_cast<float>(1.0 / (static_cast<double>(stats[2 * h + 1]) * n_head));
            acc += expf(scores[static_cast<size_t>(h) * n + j] - stats[2 * h]) * w;
        }
    }
    importance[j] = acc;
}

// scores (n_head, n) of the window query in slot w: q_h . k_j * scale for keys at or before its position, -inf after
__global__ void window_scores_kernel(const float* window_q, const int32_t* window_has, int w, int32_t q_pos,
                                     const __half* k_cache, const int32_t* kv_positions, int n, int n_head,
                                     int n_head_kv, int head_dim, float scale, float* scores) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n || !window_has[w]) return;
    const int group = n_head / n_head_kv, kvd = n_head_kv * head_dim;
    const float* q = window_q + static_cast<size_t>(w) * n_head * head_dim;
    const __half* k = k_cache + static_cast<size_t>(kv_positions[j]) * kvd;
    for (int h = 0; h < n_head; ++h)
        scores[static_cast<size_t>(h) * n + j] = kv_positions[j] <= q_pos
            ? dot_half_row(q + h * head_dim, k + (h / group) * head_dim, head_dim) * scale : -INFINITY;
}

// acc (n_head, n) += the softmax of slot w's scores (stats: per head max and sum), when the slot has a query
__global__ void window_accumulate_kernel(const float* scores, const float* stats, const int32_t* window_has, int w,
                                         int n, int n_head, float* acc) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n || !window_has[w]) return;
    for (int h = 0; h < n_head; ++h) {
        const size_t at = static_cast<size_t>(h) * n + j;
        acc[at] += expf(scores[at] - stats[2 * h]) / stats[2 * h + 1];
    }
}

// importance[j] = mean over heads (or max) of acc[h][j] / the number of window queries
__global__ void window_combine_kernel(const float* acc, const int32_t* window_has, int n_slots, int n, int n_head,
                                      bool max_over_heads, float* importance) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    int n_q = 0;
    for (int w = 0; w < n_slots; ++w) n_q += window_has[w];
    float v = 0.0f;
    for (int h = 0; h < n_head; ++h) {
        const float p = acc[static_cast<size_t>(h) * n + j];
        v = max_over_heads ? fmaxf(v, p) : v + p / n_head;
    }
    importance[j] = n_q > 0 ? v / n_q : 0.0f;
}

}  // namespace

int64_t attention_partial_floats(int head_dim) { return static_cast<int64_t>(kMaxPartials) * (head_dim + 2); }

void attention(const AttentionArgs& a, cudaStream_t stream) {
    if (a.n_q <= 0) return;
    if (a.head_dim > kMaxHeadDim || a.head_dim % 2 != 0 || a.n_head % a.n_head_kv != 0)
        throw_error(ErrorCode::unsupported, "CUDA attention: head_dim must be even and at most 256");
    if (a.tensor_cores && a.n_q >= 16) {
        if (a.mma_kernel == 2 && attention_fa2_supported(a.head_dim)) return attention_fa2(a, stream);
        if (attention_mma_supported(a.head_dim)) return attention_mma(a, stream);
    }
    // few (query, head) blocks: split the keys so that the GPU's multiprocessors all get work
    const int base = a.n_q * a.n_head;
    int n_split = 1;
    if (a.partial && base < 264 && a.n_kv > 512) {
        n_split = min((264 + base - 1) / base, a.n_kv / 256);
        n_split = max(1, min(n_split, kMaxPartials / base));
    }
    const dim3 grid(a.n_q, a.n_head, n_split);
    attention_kernel<<<grid, kWarps * 32, 0, stream>>>(a, n_split);
    check_launch("attention");
    if (n_split > 1) {
        merge_splits_kernel<<<dim3(a.n_q, a.n_head), 64, 0, stream>>>(a, n_split);
        check_launch("attention merge");
    }
}

void last_token_importance(const float* q, const __half* k_cache, const int32_t* kv_positions, int n, int n_head,
                           int n_head_kv, int head_dim, float scale, float* scores, float* importance,
                           cudaStream_t stream, bool max_over_heads) {
    if (n <= 0) return;
    float* stats = scores + static_cast<size_t>(n_head) * n;
    importance_scores_kernel<<<blocks_for(n, 128), 128, 0, stream>>>(q, k_cache, kv_positions, n, n_head, n_head_kv,
                                                                      head_dim, scale, scores);
    check_launch("importance scores");
    importance_stats_kernel<<<n_head, 256, 0, stream>>>(scores, n, stats);
    check_launch("importance stats");
    importance_combine_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(scores, stats, n, n_head, max_over_heads,
                                                                             importance);
    check_launch("importance combine");
}

void window_importance(const float* window_q, const int32_t* window_has, int window_begin, int n_slots,
                       const __half* k_cache, const int32_t* kv_positions, int n, int n_head, int n_head_kv,
                       int head_dim, float scale, float* scores, float* acc, float* importance, cudaStream_t stream,
                       bool max_over_heads) {
    if (n <= 0) return;
    float* stats = scores + static_cast<size_t>(n_head) * n;
    check(cudaMemsetAsync(acc, 0, sizeof(float) * static_cast<size_t>(n_head) * n, stream), "clearing the importance");
    for (int w = 0; w < n_slots; ++w) {  // (a slot whose token was not computed at this layer adds nothing)
        window_scores_kernel<<<blocks_for(n, 128), 128, 0, stream>>>(window_q, window_has, w, window_begin + w, k_cache,
                                                                      kv_positions, n, n_head, n_head_kv, head_dim,
                                                                      scale, scores);
        check_launch("window scores");
        importance_stats_kernel<<<n_head, 256, 0, stream>>>(scores, n, stats);
        check_launch("window stats");
        window_accumulate_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(scores, stats, window_has, w, n, n_head, acc);
        check_launch("window accumulate");
    }
    window_combine_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(acc, window_has, n_slots, n, n_head, max_over_heads,
                                                                  importance);
    check_launch("window combine");
}

}  // namespace cuda
}  // namespace lazyllm_edge
