// LazyLLM bookkeeping on the GPU: top-k selection of the active set, compaction of the compute rows
// (dropped rows park their hidden state in the aux cache), revival of pruned tokens from the aux cache,
// and the per-token frontier. CPU reference: cpp/cpu/cpu_forward.cpp and lazy/prune_schedule.cpp.
// Selection is exact: each active token's rank is the number of tokens more important than it (a total
// order: forced tokens first, then importance, then earlier position), so it keeps exactly n_keep.
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

constexpr int kScanThreads = 1024;

// In-place exclusive prefix sum of v[0, n) in one block; *total = sum.
__global__ void scan_kernel(int32_t* v, int n, int32_t* total) {
    __shared__ int32_t sums[kScanThreads];
    const int per = (n + kScanThreads - 1) / kScanThreads;
    const int b = threadIdx.x * per, e = min(n, b + per);
    int32_t s = 0;
    for (int i = b; i < e; ++i) s += v[i];
    sums[threadIdx.x] = s;
    __syncthreads();
    for (int off = 1; off < kScanThreads; off *= 2) {  // Hillis-Steele inclusive scan of the chunk sums
        const int32_t add = threadIdx.x >= off ? sums[threadIdx.x - off] : 0;
        __syncthreads();
        sums[threadIdx.x] += add;
        __syncthreads();
    }
    int32_t run = threadIdx.x > 0 ? sums[threadIdx.x - 1] : 0;
    for (int i = b; i < e; ++i) {
        const int32_t x = v[i];
        v[i] = run;
        run += x;
    }
    if (threadIdx.x == kScanThreads - 1) *total = sums[kScanThreads - 1];
}

void scan(int32_t* v, int n, int32_t* total, cudaStream_t stream) {
    scan_kernel<<<1, kScanThreads, 0, stream>>>(v, n, total);
    check_launch("scan");
}

constexpr int kRankThreads = 256;

// flag[i] = 1 when fewer than n_keep active tokens are more important than token i
__global__ void rank_kernel(const int32_t* active, const float* importance, int n, int n_keep, int n_forced,
                            int32_t always_keep, int32_t* flag, uint8_t* keep_mark) {
    __shared__ float imp[kRankThreads];
    __shared__ uint8_t forced[kRankThreads];
    const int i = blockIdx.x * kRankThreads + threadIdx.x;
    const bool valid = i < n;
    // forced tokens rank among themselves by position only (their importance may be unset: the tokens
    // before a sliding window are not scored)
    const bool my_forced = valid && (i < n_forced || active[i] == always_keep);
    const float my = valid && !my_forced ? importance[i] : 0.0f;
    int rank = 0;
    for (int j0 = 0; j0 < n; j0 += kRankThreads) {
        const int j = j0 + threadIdx.x;
        if (j < n) {
            forced[threadIdx.x] = j < n_forced || active[j] == always_keep;
            imp[threadIdx.x] = forced[threadIdx.x] ? 0.0f : importance[j];
        }
        __syncthreads();
        const int m = min(kRankThreads, n - j0);
        if (valid)
            for (int t = 0; t < m; ++t) {
                const int jj = j0 + t;
                const bool f = forced[t];
                const bool better = f != my_forced ? f : imp[t] != my ? imp[t] > my : jj < i;
                rank += better;
            }
        __syncthreads();
    }
    if (!valid) return;
    const bool keep = rank < n_keep;
    flag[i] = keep;
    keep_mark[active[i]] = keep;
}

__global__ void gather_kept_kernel(const int32_t* active, int n, const uint8_t* keep_mark, const int32_t* offset,
                                   int32_t* kept) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && keep_mark[active[i]]) kept[offset[i]] = active[i];
}

__global__ void compact_flags_kernel(const int32_t* rows_pos, int n, const uint8_t* keep_mark, int32_t* flag) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) flag[i] = keep_mark[rows_pos[i]];
}

// one block per compute row
__global__ void compact_move_kernel(const int32_t* rows_pos, const float* h, int d, const uint8_t* keep_mark,
                                    const int32_t* offset, float* h_out, int32_t* rows_out, int32_t* row_of,
                                    float* aux) {
    const int i = blockIdx.x;
    const int32_t pos = rows_pos[i];
    const bool keep = keep_mark[pos];
    float* dst = keep ? h_out + static_cast<size_t>(offset[i]) * d : aux + static_cast<size_t>(pos) * d;
    const float* src = h + static_cast<size_t>(i) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
    if (threadIdx.x == 0) {
        if (keep) rows_out[offset[i]] = pos;
        row_of[pos] = keep ? offset[i] : -1;
    }
}

__global__ void wanted_flags_kernel(const int32_t* active, int n, const int32_t* frontier, int layer, int32_t* flag) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) flag[i] = frontier[active[i]] == layer;
}

// one block per active token; only the wanted ones (frontier == layer) move
__global__ void gather_move_kernel(const int32_t* active, const int32_t* frontier, int layer, const int32_t* offset,
                                   const float* h, const float* aux, int d, float* h_out, int32_t* rows_out,
                                   int32_t* row_of, int64_t* revived) {
    const int i = blockIdx.x;
    const int32_t pos = active[i];
    if (frontier[pos] != layer) return;
    const int row = row_of[pos];
    const float* src = row >= 0 ? h + static_cast<size_t>(row) * d : aux + static_cast<size_t>(pos) * d;
    float* dst = h_out + static_cast<size_t>(offset[i]) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
    __syncthreads();  // every thread has read row_of[pos] before it changes
    if (threadIdx.x == 0) {
        rows_out[offset[i]] = pos;
        row_of[pos] = offset[i];
        if (row < 0) atomicAdd(reinterpret_cast<unsigned long long*>(revived), 1ull);
    }
}

__global__ void advance_frontier_kernel(const int32_t* rows, int n, int layer, int32_t* frontier, int64_t* recomputed) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int32_t pos = rows[i];
    if (frontier[pos] != layer) atomicAdd(reinterpret_cast<unsigned long long*>(recomputed), 1ull);
    frontier[pos] = layer + 1;
}

// one block per row
__global__ void park_rows_kernel(const int32_t* rows, const float* h, int d, float* aux) {
    const int32_t pos = rows[blockIdx.x];
    const float* src = h + static_cast<size_t>(blockIdx.x) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) aux[static_cast<size_t>(pos) * d + c] = src[c];
}

__global__ void protect_computed_kernel(const int32_t* active, int n, const int32_t* frontier, int layer,
                                        float* importance, int32_t* count) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && frontier[active[i]] > layer + 1) {
        importance[i] = INFINITY;
        atomicAdd(count, 1);
    }
}

// one thread per active token; positions distinct, so at most `radius` neighbours on each side
__global__ void max_pool_importance_kernel(const int32_t* positions, const float* importance, int n, int radius,
                                           float* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float m = importance[i];
    for (int j = i - 1; j >= 0 && positions[i] - positions[j] <= radius; --j) m = fmaxf(m, importance[j]);
    for (int j = i + 1; j < n && positions[j] - positions[i] <= radius; ++j) m = fmaxf(m, importance[j]);
    out[i] = m;
}

__global__ void init_step_kernel(int32_t* active, int32_t* rows, int32_t* row_of, int n_past, int n_new) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_past + n_new) return;
    active[i] = i;
    if (i < n_past) {
        row_of[i] = -1;
    } else {
        rows[i - n_past] = i;
        row_of[i] = i - n_past;
    }
}

}  // namespace

void select_top_k(const int32_t* active, const float* importance, int n, int n_keep, int n_forced, int32_t always_keep,
                  uint8_t* keep_mark, int32_t* kept, int32_t* kept_count, int32_t* scan_buf, cudaStream_t stream) {
    if (n <= 0) return;
    rank_kernel<<<blocks_for(n, kRankThreads), kRankThreads, 0, stream>>>(active, importance, n, n_keep, n_forced,
                                                                        always_keep, scan_buf, keep_mark);
    check_launch("rank");
    scan(scan_buf, n, kept_count, stream);
    gather_kept_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(active, n, keep_mark, scan_buf, kept);
    check_launch("gather kept");
}

void compact_rows(const int32_t* rows_pos, const float* h, int n_rows, int d, const uint8_t* keep_mark, float* h_out,
                  int32_t* rows_out, int32_t* row_of, float* aux, int32_t* out_count, int32_t* scan_buf,
                  cudaStream_t stream) {
    if (n_rows <= 0) return;
    compact_flags_kernel<<<blocks_for(n_rows, 256), 256, 0, stream>>>(rows_pos, n_rows, keep_mark, scan_buf);
    check_launch("compact flags");
    scan(scan_buf, n_rows, out_count, stream);
    compact_move_kernel<<<n_rows, 128, 0, stream>>>(rows_pos, h, d, keep_mark, scan_buf, h_out, rows_out, row_of, aux);
    check_launch("compact move");
}

void gather_compute_rows(const int32_t* active, int n_active, const int32_t* frontier, int layer, const float* h,
                         const float* aux, int d, float* h_out, int32_t* rows_out, int32_t* row_of, int32_t* out_count,
                         int64_t* revived, int32_t* scan_buf, cudaStream_t stream) {
    if (n_active <= 0) return;
    wanted_flags_kernel<<<blocks_for(n_active, 256), 256, 0, stream>>>(active, n_active, frontier, layer, scan_buf);
    check_launch("wanted flags");
    scan(scan_buf, n_active, out_count, stream);
    gather_move_kernel<<<n_active, 128, 0, stream>>>(active, frontier, layer, scan_buf, h, aux, d, h_out, rows_out,
                                                     row_of, revived);
    check_launch("gather move");
}

void advance_frontier(const int32_t* rows, int n, int layer, int32_t* frontier, int64_t* recomputed,
                      cudaStream_t stream) {
    if (n <= 0) return;
    advance_frontier_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(rows, n, layer, frontier, recomputed);
    check_launch("advance frontier");
}

void park_rows(const int32_t* rows, const float* h, int n, int d, float* aux, cudaStream_t stream) {
    if (n <= 0) return;
    park_rows_kernel<<<n, 128, 0, stream>>>(rows, h, d, aux);
    check_launch("park rows");
}

void protect_computed(const int32_t* active, int n, const int32_t* frontier, int layer, float* importance,
                      int32_t* count, cudaStream_t stream) {
    check(cudaMemsetAsync(count, 0, sizeof(int32_t), stream), "clearing a count");
    if (n <= 0) return;
    protect_computed_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(active, n, frontier, layer, importance, count);
    check_launch("protect computed");
}

void max_pool_importance(const int32_t* positions, const float* importance, int n, int radius, float* out,
                         cudaStream_t stream) {
    if (n <= 0) return;
    max_pool_importance_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(positions, importance, n, radius, out);
    check_launch("max pool importance");
}

void init_step(int32_t* active, int32_t* rows, int32_t* row_of, int n_past, int n_new, cudaStream_t stream) {
    init_step_kernel<<<blocks_for(n_past + n_new, 256), 256, 0, stream>>>(active, rows, row_of, n_past, n_new);
    check_launch("init step");
}

}  // namespace cuda
}  // namespace lazyllm_edge
