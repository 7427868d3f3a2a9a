// Row-wise operations of the forward pass on the GPU: embeddings, RMSNorm, residual adds, the q/k/v
// finish (biases, head norms, RoPE, KV cache writes), gated activations, logit soft-capping.
// CPU references: cpp/cpu/ops.cpp and cpu_forward.cpp.
#include "cuda/cuda_check.h"
#include "cuda/dequant.cuh"
#include "cuda/kernels.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

constexpr int kRowThreads = 256;

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f;
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

template <GgmlType T>
__global__ void embed_kernel(const uint8_t* table, size_t row_bytes, int d, const int32_t* ids, float scale, float* h) {
    const int i = blockIdx.x;
    const uint8_t* row = table + static_cast<size_t>(ids[i]) * row_bytes;
    for (int k0 = threadIdx.x * 8; k0 < d; k0 += blockDim.x * 8) {
        float v[8];
        Dequant<T>::run(row, k0, v);
        for (int j = 0; j < 8; ++j) h[static_cast<size_t>(i) * d + k0 + j] = scale == 1.0f ? v[j] : v[j] * scale;
    }
}

// one block per row
__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int d, float eps) {
    const float* xr = x + static_cast<size_t>(blockIdx.x) * d;
    float* yr = y + static_cast<size_t>(blockIdx.x) * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    const float scale = rsqrtf(block_sum(ss) / d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = w ? xr[i] * scale * w[i] : xr[i] * scale;
}

__global__ void add_residual_kernel(float* y, const float* x, const float* w, const float* norm_w, float* norm_out, int d,
                                    float eps) {
    float* yr = y + static_cast<size_t>(blockIdx.x) * d;
    const float* xr = x + static_cast<size_t>(blockIdx.x) * d;
    float scale = 1.0f;
    if (w) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
        scale = rsqrtf(block_sum(ss) / d + eps);
    }
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        const float v = yr[i] + (w ? xr[i] * scale * w[i] : xr[i]);
        yr[i] = v;
        ss += v * v;
    }
    if (!norm_w) return;
    const float ns = rsqrtf(block_sum(ss) / d + eps);
    float* nr = norm_out + static_cast<size_t>(blockIdx.x) * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) nr[i] = yr[i] * ns * norm_w[i];
}

// RMSNorm of each head_dim slice of v (n_heads of them) by w; one warp per head.
__device__ void head_norms(float* v, const float* w, int n_heads, int head_dim, float eps) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int h = warp; h < n_heads; h += blockDim.x / 32) {
        float* x = v + h * head_dim;
        float ss = 0.0f;
        for (int i = lane; i < head_dim; i += 32) ss += x[i] * x[i];
        for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
        const float scale = rsqrtf(ss / head_dim + eps);
        for (int i = lane; i < head_dim; i += 32) x[i] = x[i] * scale * w[i];
    }
}

// Rotates the first rope_dim dims of each head (ggml's x0*cos - x1*sin with FMA, as the CPU path).
__device__ void rope_heads(float* v, int n_heads, int head_dim, int rope_dim, const float* cs, bool neox) {
    const int n_pairs = rope_dim / 2;
    for (int e = threadIdx.x; e < n_heads * n_pairs; e += blockDim.x) {
        const int h = e / n_pairs, i = e % n_pairs;
        float* x = v + h * head_dim;
        const int a = neox ? i : 2 * i, b = neox ? i + n_pairs : 2 * i + 1;
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = x[a], x1 = x[b];
        x[a] = fmaf(x0, c, -(x1 * s));
        x[b] = fmaf(x0, s, x1 * c);
    }
}

// one block per row
__global__ void qkv_finish_kernel(QkvParams p) {
    const int r = blockIdx.x;
    const int qd = p.n_head * p.head_dim, kvd = p.n_head_kv * p.head_dim;
    float* q = p.q + static_cast<size_t>(r) * qd;
    float* k = p.k + static_cast<size_t>(r) * kvd;
    const float* v = p.v + static_cast<size_t>(r) * kvd;
    const int pos = p.pos[r];
    if (p.bq)
        for (int i = threadIdx.x; i < qd; i += blockDim.x) q[i] += p.bq[i];
    if (p.bk)
        for (int i = threadIdx.x; i < kvd; i += blockDim.x) k[i] += p.bk[i];
    __syncthreads();
    if (p.q_norm) head_norms(q, p.q_norm, p.n_head, p.head_dim, p.eps);
    if (p.k_norm) head_norms(k, p.k_norm, p.n_head_kv, p.head_dim, p.eps);
    __syncthreads();
    const float* cs = p.rope + static_cast<size_t>(pos) * p.rope_dim;
    rope_heads(q, p.n_head, p.head_dim, p.rope_dim, cs, p.neox);
    rope_heads(k, p.n_head_kv, p.head_dim, p.rope_dim, cs, p.neox);
    __syncthreads();
    if (p.q_scale != 1.0f)
        for (int i = threadIdx.x; i < qd; i += blockDim.x) q[i] *= p.q_scale;
    __half* kc = p.k_cache + static_cast<size_t>(pos) * kvd;
    __half* vc = p.v_cache + static_cast<size_t>(pos) * kvd;
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        kc[i] = __float2half_rn(k[i]);
        vc[i] = __float2half_rn(p.bv ? v[i] + p.bv[i] : v[i]);
    }
    if (pos >= p.window_begin) {  // a query of the window: kept for ranking
        __syncthreads();
        float* dst = p.window_q + static_cast<size_t>(pos - p.window_begin) * qd;
        for (int i = threadIdx.x; i < qd; i += blockDim.x) dst[i] = q[i];
        if (threadIdx.x == 0) p.window_has[pos - p.window_begin] = 1;
    }
}

__global__ void gated_kernel(float* gate, const float* up, int64_t n, bool gelu) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    float a;
    if (gelu) {
        const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
        a = 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * g * fmaf(coef_a * g, g, 1.0f)));
    } else {
        a = g / (1.0f + expf(-g));
    }
    gate[i] = a * up[i];
}

__global__ void softcap_kernel(float* y, int64_t n, float cap) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < n) y[i] = cap * tanhf(y[i] / cap);
}

}  // namespace

void embed_rows(const DeviceMatrix& table, const int32_t* ids, int n, float scale, float* h, cudaStream_t stream) {
    if (n <= 0) return;
    if (table.n_in % 8 != 0) throw_error(ErrorCode::unsupported, "CUDA: embedding width must be a multiple of 8");
    const bool ok = dispatch_type(table.type, [&]<GgmlType T>() {
        embed_kernel<T><<<n, 128, 0, stream>>>(table.data, table.row_bytes, table.n_in, ids, scale, h);
    });
    if (!ok) throw_error(ErrorCode::unsupported, "CUDA: embedding type not supported");
    check_launch("embed");
}

void rms_norm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t stream) {
    if (n <= 0) return;
    rms_norm_kernel<<<n, kRowThreads, 0, stream>>>(x, w, y, d, eps);
    check_launch("rms_norm");
}

void add_residual(float* y, const float* x, const float* w, const float* norm_w, float* norm_out, int n, int d, float eps,
                  cudaStream_t stream) {
    if (n <= 0) return;
    add_residual_kernel<<<n, kRowThreads, 0, stream>>>(y, x, w, norm_w, norm_out, d, eps);
    check_launch("add_residual");
}

void qkv_finish(const QkvParams& p, cudaStream_t stream) {
    if (p.n <= 0) return;
    qkv_finish_kernel<<<p.n, 128, 0, stream>>>(p);
    check_launch("qkv_finish");
}

void gated_activation(float* gate, const float* up, int64_t count, bool gelu, cudaStream_t stream) {
    if (count <= 0) return;
    gated_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(gate, up, count, gelu);
    check_launch("gated_activation");
}

void softcap(float* y, int64_t count, float cap, cudaStream_t stream) {
    if (count <= 0) return;
    softcap_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(y, count, cap);
    check_launch("softcap");
}

}  // namespace cuda
}  // namespace lazyllm_edge
