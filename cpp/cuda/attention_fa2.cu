// Prefill attention, FlashAttention-2 style, for head_dim 64 and 128: one block (4 warps) takes 64
// consecutive query rows of one query head; each warp keeps its 16 rows' Q fragments, scores, softmax
// state and output accumulators in registers and multiplies with raw mma.sync m16n8k16 (fp16 inputs,
// fp32 accumulation). K/V tiles of 64 active positions are gathered into shared memory by cp.async, the
// next tile in flight while the current one is used. As in attention_mma.cu, Q and P are split into an
// fp16 head and tail (two products each) so scores and outputs keep close to fp32 accuracy, and the masks
// are the scalar kernel's (key position <= the query's, inside the window on sliding layers).
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4): A regs {(g, 2t), (g+8, 2t),
// (g, 2t+8), (g+8, 2t+8)} x 2 halves; B regs {(2t, g), (2t+8, g)} x 2 halves (k, n); C {(g, 2t), (g+8, 2t)}
// x 2 floats. A score tile's C fragments are the A fragments of P.V as they are (FlashAttention-2's trick).
#include <cfloat>
#include <climits>

#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"
#include "cuda/sorted_search.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

constexpr int kRows = 64;
constexpr int kKeys = 64;
constexpr int kThreads = 128;
constexpr int kPad = 8;  // halves of row padding: fragment loads hit 32 distinct banks

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t as_u32(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

// (x0, x1) -> fp16 head and tail pairs
__device__ __forceinline__ void split_pair(float x0, float x1, uint32_t& head, uint32_t& tail) {
    const __half2 h = __floats2half2_rn(x0, x1);
    const float2 hf = __half22float2(h);
    head = as_u32(h);
    tail = as_u32(__floats2half2_rn(x0 - hf.x, x1 - hf.y));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <int HD>
constexpr size_t fa2_smem_bytes() {
    return 2 * 2 * static_cast<size_t>(kKeys) * (HD + kPad) * sizeof(__half) + 2 * kKeys * sizeof(int);
}

template <int HD>
__global__ void __launch_bounds__(kThreads) attention_fa2_kernel(AttentionArgs a) {
    constexpr int LD = HD + kPad;
    extern __shared__ __align__(16) uint8_t smem[];
    __half* ks = reinterpret_cast<__half*>(smem);  // (2, kKeys, LD) K tiles
    __half* vs = ks + 2 * kKeys * LD;               // (2, kKeys, LD) V tiles
    int* pos_k = reinterpret_cast<int*>(vs + 2 * kKeys * LD);  // (2, kKeys) positions, INT_MAX past the end
    __shared__ int pos_q[kRows];

    // the last query tiles see the most keys: they go first
    const int h = blockIdx.y, row0 = (gridDim.x - 1 - blockIdx.x) * kRows;
    const int kvd = a.n_head_kv * HD;
    const int kv_offset = (h / (a.n_head / a.n_head_kv)) * HD;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int n_rows = min(kRows, a.n_q - row0);
    for (int r = threadIdx.x; r < kRows; r += kThreads) pos_q[r] = r < n_rows ? a.q_pos[row0 + r] : -1;
    __syncthreads();
    const int r_lo = warp * 16 + g, r_hi = r_lo + 8;  // this thread's two rows
    const int qp_lo = pos_q[r_lo], qp_hi = pos_q[r_hi];

    // Q (scaled) as A fragments, head and tail
    uint32_t q_head[HD / 16][4], q_tail[HD / 16][4];
#pragma unroll
    for (int kc = 0; kc < HD / 16; ++kc)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int row = (i & 1) ? r_hi : r_lo, col = kc * 16 + 2 * t + ((i & 2) ? 8 : 0);
            float x0 = 0.0f, x1 = 0.0f;
            if (row < n_rows) {
                const float* q = a.q + (static_cast<size_t>(row0 + row) * a.n_head + h) * HD + col;
                x0 = q[0] * a.scale;
                x1 = q[1] * a.scale;
            }
            split_pair(x0, x1, q_head[kc][i], q_tail[kc][i]);
        }

    // keys any row of the block sees
    const int key_end = upper_bound(a.kv_positions, a.n_kv, pos_q[n_rows - 1]);
    const int key_begin = a.window > 0 ? lower_bound(a.kv_positions, a.n_kv, pos_q[0] - a.window + 1) : 0;
    const int n_tiles = key_end > key_begin ? (key_end - key_begin + kKeys - 1) / kKeys : 0;
    auto load_tile = [&](int buf, int k0) {
        const int n_keys = min(kKeys, key_end - k0);
        for (int r = threadIdx.x; r < kKeys; r += kThreads) pos_k[buf * kKeys + r] = r < n_keys ? a.kv_positions[k0 + r] : INT_MAX;
        for (int e = threadIdx.x; e < kKeys * (HD / 8); e += kThreads) {
            const int r = e / (HD / 8), c = (e % (HD / 8)) * 8;
            const bool valid = r < n_keys;
            const size_t src = static_cast<size_t>(valid ? a.kv_positions[k0 + r] : 0) * kvd + kv_offset + c;
            cp_async16(ks + (buf * kKeys + r) * LD + c, a.k_cache + src, valid);
            cp_async16(vs + (buf * kKeys + r) * LD + c, a.v_cache + src, valid);
        }
        cp_async_commit();
    };

    float o[HD / 8][4];
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m_lo = -FLT_MAX, m_hi = -FLT_MAX, l_lo = 0.0f, l_hi = 0.0f;
    if (n_tiles > 0) load_tile(0, key_begin);
    for (int it = 0; it < n_tiles; ++it) {
        const int buf = it & 1;
        if (it + 1 < n_tiles) {
            load_tile(buf ^ 1, key_begin + (it + 1) * kKeys);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const __half* K = ks + buf * kKeys * LD;
        const __half* V = vs + buf * kKeys * LD;
        const int* pk = pos_k + buf * kKeys;

        // S = Q.K^T: 8 chunks of 8 keys
        float s[kKeys / 8][4];
#pragma unroll
        for (int nc = 0; nc < kKeys / 8; ++nc) {
            s[nc][0] = s[nc][1] = s[nc][2] = s[nc][3] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < HD / 16; ++kc) {
                const __half* kr = K + (nc * 8 + g) * LD + kc * 16 + 2 * t;
                const uint32_t b[2] = {*reinterpret_cast<const uint32_t*>(kr), *reinterpret_cast<const uint32_t*>(kr + 8)};
                mma16816(s[nc], q_tail[kc], b);
                mma16816(s[nc], q_head[kc], b);
            }
        }
        // masks and the online softmax; a row's four threads (same g) combine with two shuffles
        float mx_lo = -FLT_MAX, mx_hi = -FLT_MAX;
#pragma unroll
        for (int nc = 0; nc < kKeys / 8; ++nc)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int kp = pk[nc * 8 + 2 * t + (i & 1)];
                const int qp = i < 2 ? qp_lo : qp_hi;
                const bool seen = qp >= 0 && kp <= qp && (a.window <= 0 || kp > qp - a.window);
                if (!seen) s[nc][i] = -INFINITY;
                else if (i < 2) mx_lo = fmaxf(mx_lo, s[nc][i]);
                else mx_hi = fmaxf(mx_hi, s[nc][i]);
            }
        for (int off = 1; off <= 2; off *= 2) {
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
        }
        const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int nc = 0; nc < kKeys / 8; ++nc)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float p = s[nc][i] == -INFINITY ? 0.0f : expf(s[nc][i] - (i < 2 ? mn_lo : mn_hi));
                s[nc][i] = p;
                if (i < 2) sum_lo += p;
                else sum_hi += p;
            }
        for (int off = 1; off <= 2; off *= 2) {
            sum_lo += __shfl_xor_sync(0xffffffffu, sum_lo, off);
            sum_hi += __shfl_xor_sync(0xffffffffu, sum_hi, off);
        }
        const float corr_lo = m_lo == -FLT_MAX ? 0.0f : expf(m_lo - mn_lo);
        const float corr_hi = m_hi == -FLT_MAX ? 0.0f : expf(m_hi - mn_hi);
        l_lo = l_lo * corr_lo + sum_lo;
        l_hi = l_hi * corr_hi + sum_hi;
        m_lo = mn_lo;
        m_hi = mn_hi;
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
            o[j][0] *= corr_lo;
            o[j][1] *= corr_lo;
            o[j][2] *= corr_hi;
            o[j][3] *= corr_hi;
        }
        // O += P.V: 4 chunks of 16 keys; P's A fragments are the score fragments of chunks 2c and 2c+1
#pragma unroll
        for (int c = 0; c < kKeys / 16; ++c) {
            uint32_t p_head[4], p_tail[4];
            split_pair(s[2 * c][0], s[2 * c][1], p_head[0], p_tail[0]);
            split_pair(s[2 * c][2], s[2 * c][3], p_head[1], p_tail[1]);
            split_pair(s[2 * c + 1][0], s[2 * c + 1][1], p_head[2], p_tail[2]);
            split_pair(s[2 * c + 1][2], s[2 * c + 1][3], p_head[3], p_tail[3]);
            const __half* v0 = V + (c * 16 + 2 * t) * LD + g;
#pragma unroll
            for (int j = 0; j < HD / 8; ++j) {
                const __half* vj = v0 + j * 8;
                const uint32_t b[2] = {as_u32(__halves2half2(vj[0], vj[LD])), as_u32(__halves2half2(vj[8 * LD], vj[9 * LD]))};
                mma16816(o[j], p_tail, b);
                mma16816(o[j], p_head, b);
            }
        }
        __syncthreads();  // this buffer is refilled by the load issued in the next iteration
    }
    // out = O / l
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int row = half ? r_hi : r_lo;
        const float l = half ? l_hi : l_lo;
        if (row >= n_rows) continue;
        float* out = a.out + (static_cast<size_t>(row0 + row) * a.n_head + h) * HD + 2 * t;
#pragma unroll
        for (int j = 0; j < HD / 8; ++j) {
            out[j * 8] = l > 0.0f ? o[j][2 * half] / l : 0.0f;
            out[j * 8 + 1] = l > 0.0f ? o[j][2 * half + 1] / l : 0.0f;
        }
    }
}

template <int HD>
void launch(const AttentionArgs& a, cudaStream_t stream) {
    const size_t bytes = fa2_smem_bytes<HD>();
    check(cudaFuncSetAttribute(attention_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          "attention shared memory");
    const dim3 grid(blocks_for(a.n_q, kRows), a.n_head);
    attention_fa2_kernel<HD><<<grid, kThreads, bytes, stream>>>(a);
    check_launch("attention (mma.sync)");
}

}  // namespace

bool attention_fa2_supported(int head_dim) { return head_dim == 64 || head_dim == 128; }

void attention_fa2(const AttentionArgs& a, cudaStream_t stream) {
    if (a.head_dim == 64) return launch<64>(a, stream);
    if (a.head_dim == 128) return launch<128>(a, stream);
    throw_error(ErrorCode::internal, "attention_fa2: head_dim must be 64 or 128");
}

}  // namespace cuda
}  // namespace lazyllm_edge
