// Prefill attention on tensor cores (FlashAttention-style), for head_dim <= 128 and a multiple of 16.
// One block (4 warps) takes 64 consecutive query rows of one query head and walks the keys the rows see
// in tiles of 64 active positions: S = Q.K^T and O += P.V are fp16 tensor-core products with fp32
// accumulation, the online softmax runs in fp32 between them. Q and P are each split into an fp16 head
// and an fp16 tail (two products each) and K/V are fp16 in the cache already, so scores and outputs keep
// close to fp32 accuracy. The same masks as the scalar kernel: key position <= the query's, and inside
// the window on sliding layers. CPU reference: attention_reference (cpp/cpu/attention.h).
#include <mma.h>

#include <cfloat>
#include <climits>

#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"
#include "cuda/sorted_search.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

using namespace nvcuda;

constexpr int kRows = 64;       // query rows per block (16 per warp)
constexpr int kKeys = 64;       // keys per tile
constexpr int kThreads = 128;
constexpr int kHalfPad = 8;     // row padding of fp16 tiles (elements)
constexpr int kFloatPad = 4;    // row padding of fp32 tiles

struct Smem {
    int hd_ld;  // fp16 row stride of Q/K/V tiles
    size_t q_hi, q_lo, k, v, s, p_hi, p_lo, o, row_m, row_l, row_corr, pos_q, pos_k, bytes;
};

__host__ __device__ inline Smem smem_layout(int head_dim) {
    Smem m;
    m.hd_ld = head_dim + kHalfPad;
    size_t off = 0;
    auto take = [&](size_t bytes) {
        const size_t at = off;
        off += (bytes + 127) / 128 * 128;
        return at;
    };
    m.q_hi = take(sizeof(__half) * kRows * m.hd_ld);
    m.q_lo = take(sizeof(__half) * kRows * m.hd_ld);
    m.k = take(sizeof(__half) * kKeys * m.hd_ld);
    m.v = take(sizeof(__half) * kKeys * m.hd_ld);
    m.s = take(sizeof(float) * kRows * (kKeys + kFloatPad));
    m.p_hi = take(sizeof(__half) * kRows * (kKeys + kHalfPad));
    m.p_lo = take(sizeof(__half) * kRows * (kKeys + kHalfPad));
    m.o = take(sizeof(float) * kRows * (head_dim + kFloatPad));
    m.row_m = take(sizeof(float) * kRows);
    m.row_l = take(sizeof(float) * kRows);
    m.row_corr = take(sizeof(float) * kRows);
    m.pos_q = take(sizeof(int) * kRows);
    m.pos_k = take(sizeof(int) * kKeys);
    m.bytes = off;
    return m;
}

__global__ void __launch_bounds__(kThreads) attention_mma_kernel(AttentionArgs a) {
    extern __shared__ __align__(128) uint8_t smem[];
    // the last query tiles see the most keys: they go first, so the short ones fill the tail of the grid
    const int hd = a.head_dim, h = blockIdx.y, row0 = (gridDim.x - 1 - blockIdx.x) * kRows;
    const int group = a.n_head / a.n_head_kv, kvd = a.n_head_kv * hd;
    const Smem L = smem_layout(hd);
    __half* q_hi = reinterpret_cast<__half*>(smem + L.q_hi);
    __half* q_lo = reinterpret_cast<__half*>(smem + L.q_lo);
    __half* ks = reinterpret_cast<__half*>(smem + L.k);
    __half* vs = reinterpret_cast<__half*>(smem + L.v);
    float* s = reinterpret_cast<float*>(smem + L.s);
    __half* p_hi = reinterpret_cast<__half*>(smem + L.p_hi);
    __half* p_lo = reinterpret_cast<__half*>(smem + L.p_lo);
    float* o = reinterpret_cast<float*>(smem + L.o);
    float* row_m = reinterpret_cast<float*>(smem + L.row_m);
    float* row_l = reinterpret_cast<float*>(smem + L.row_l);
    float* row_corr = reinterpret_cast<float*>(smem + L.row_corr);
    int* pos_q = reinterpret_cast<int*>(smem + L.pos_q);
    int* pos_k = reinterpret_cast<int*>(smem + L.pos_k);
    const int s_ld = kKeys + kFloatPad, p_ld = kKeys + kHalfPad, o_ld = hd + kFloatPad;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int n_rows = min(kRows, a.n_q - row0);

    // Q (scaled) as fp16 head + tail; rows past n_q are zero and see no key; O, m, l cleared
    for (int e = threadIdx.x; e < kRows * hd; e += kThreads) {
        const int r = e / hd, d = e % hd;
        const float x = r < n_rows ? a.q[(static_cast<size_t>(row0 + r) * a.n_head + h) * hd + d] * a.scale : 0.0f;
        const __half hi = __float2half_rn(x);
        q_hi[r * L.hd_ld + d] = hi;
        q_lo[r * L.hd_ld + d] = __float2half_rn(x - __half2float(hi));
        o[r * o_ld + d] = 0.0f;
    }
    for (int r = threadIdx.x; r < kRows; r += kThreads) {
        pos_q[r] = r < n_rows ? a.q_pos[row0 + r] : -1;
        row_m[r] = -FLT_MAX;
        row_l[r] = 0.0f;
    }
    __syncthreads();
    // keys any row of the block sees: [first row's window start, past the last row's position]
    const int key_end = upper_bound(a.kv_positions, a.n_kv, pos_q[n_rows - 1]);
    const int key_begin = a.window > 0 ? lower_bound(a.kv_positions, a.n_kv, pos_q[0] - a.window + 1) : 0;
    const __half* kh = a.k_cache + (h / group) * hd;
    const __half* vh = a.v_cache + (h / group) * hd;
    const int wr = warp * 16;  // this warp's first row

    for (int k0 = key_begin; k0 < key_end; k0 += kKeys) {
        const int n_keys = min(kKeys, key_end - k0);
        // K and V tiles (rows past n_keys are zero)
        for (int r = threadIdx.x; r < kKeys; r += kThreads) pos_k[r] = r < n_keys ? a.kv_positions[k0 + r] : INT_MAX;
        __syncthreads();
        const int vec = hd / 8;  // 16-byte chunks per row
        for (int e = threadIdx.x; e < kKeys * vec; e += kThreads) {
            const int r = e / vec, c = (e % vec) * 8;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (r < n_keys) {
                kv = *reinterpret_cast<const uint4*>(kh + static_cast<size_t>(pos_k[r]) * kvd + c);
                vv = *reinterpret_cast<const uint4*>(vh + static_cast<size_t>(pos_k[r]) * kvd + c);
            }
            *reinterpret_cast<uint4*>(ks + r * L.hd_ld + c) = kv;
            *reinterpret_cast<uint4*>(vs + r * L.hd_ld + c) = vv;
        }
        __syncthreads();

        // S (16 rows x 64 keys per warp) = Q_hi.K^T + Q_lo.K^T
        for (int kb = 0; kb < kKeys / 16; ++kb) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int d0 = 0; d0 < hd; d0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qa, qb;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kf;
                wmma::load_matrix_sync(qa, q_lo + wr * L.hd_ld + d0, L.hd_ld);
                wmma::load_matrix_sync(qb, q_hi + wr * L.hd_ld + d0, L.hd_ld);
                wmma::load_matrix_sync(kf, ks + kb * 16 * L.hd_ld + d0, L.hd_ld);
                wmma::mma_sync(acc, qa, kf, acc);
                wmma::mma_sync(acc, qb, kf, acc);
            }
            wmma::store_matrix_sync(s + wr * s_ld + kb * 16, acc, s_ld, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax: lane pair (2r, 2r+1) takes row wr + r, 32 keys each
        {
            const int r = wr + lane / 2, c0 = (lane % 2) * 32;
            const int qp = pos_q[r];
            const int lo = a.window > 0 ? qp - a.window + 1 : INT_MIN;
            float* sr = s + r * s_ld;
            float mx = -FLT_MAX;
            for (int c = c0; c < c0 + 32; ++c) {
                const int kp = pos_k[c];
                const bool seen = qp >= 0 && kp <= qp && kp >= lo;
                if (!seen) sr[c] = -FLT_MAX;
                else mx = fmaxf(mx, sr[c]);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            const float m_old = row_m[r];
            const float m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            for (int c = c0; c < c0 + 32; ++c) {
                const float p = sr[c] == -FLT_MAX ? 0.0f : expf(sr[c] - m_new);
                sum += p;
                const __half hi = __float2half_rn(p);
                p_hi[r * p_ld + c] = hi;
                p_lo[r * p_ld + c] = __float2half_rn(p - __half2float(hi));
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            const float corr = m_old == -FLT_MAX ? 0.0f : expf(m_old - m_new);
            __syncwarp();
            if (lane % 2 == 0) {
                row_m[r] = m_new;
                row_l[r] = row_l[r] * corr + sum;
                row_corr[r] = corr;
            }
        }
        __syncwarp();
        // O = O * corr + P_hi.V + P_lo.V (the warp's 16 rows)
        for (int e = lane; e < 16 * hd; e += 32) {
            const int r = wr + e / hd, d = e % hd;
            o[r * o_ld + d] *= row_corr[r];
        }
        __syncwarp();
        for (int d0 = 0; d0 < hd; d0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, o + wr * o_ld + d0, o_ld, wmma::mem_row_major);
            for (int kb = 0; kb < kKeys / 16; ++kb) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pa, pb;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vf;
                wmma::load_matrix_sync(pa, p_lo + wr * p_ld + kb * 16, p_ld);
                wmma::load_matrix_sync(pb, p_hi + wr * p_ld + kb * 16, p_ld);
                wmma::load_matrix_sync(vf, vs + kb * 16 * L.hd_ld + d0, L.hd_ld);
                wmma::mma_sync(acc, pa, vf, acc);
                wmma::mma_sync(acc, pb, vf, acc);
            }
            wmma::store_matrix_sync(o + wr * o_ld + d0, acc, o_ld, wmma::mem_row_major);
        }
        __syncthreads();  // K/V tiles are replaced next
    }
    // out = O / l
    for (int e = threadIdx.x; e < n_rows * hd; e += kThreads) {
        const int r = e / hd, d = e % hd;
        const float l = row_l[r];
        a.out[(static_cast<size_t>(row0 + r) * a.n_head + h) * hd + d] = l > 0.0f ? o[r * o_ld + d] / l : 0.0f;
    }
}

}  // namespace

bool attention_mma_supported(int head_dim) { return head_dim % 16 == 0 && head_dim <= 128; }

void attention_mma(const AttentionArgs& a, cudaStream_t stream) {
    const Smem L = smem_layout(a.head_dim);
    // the opt-in above 48 KiB belongs to the current device, so it is set on every launch (a host-side call)
    check(cudaFuncSetAttribute(attention_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(L.bytes)),
          "attention shared memory");
    const dim3 grid(blocks_for(a.n_q, kRows), a.n_head);
    attention_mma_kernel<<<grid, kThreads, L.bytes, stream>>>(a);
    check_launch("attention (tensor cores)");
}

}  // namespace cuda
}  // namespace lazyllm_edge
