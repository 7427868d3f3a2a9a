// Prefill GEMM in half precision, the default for many tokens: the weight matrix is first dequantized
// once into a device scratch of fp16 (bf16 for models whose activations may exceed fp16's range), then a
// tensor-core GEMM over 128 (outputs) x 128 (tokens) tiles multiplies it with the fp32 activations,
// rounded to the same 16-bit type as they are staged in shared memory, accumulating in fp32. Weight tiles
// arrive by cp.async into a second buffer while the current one is multiplied; activation tiles are
// prefetched into registers. Accuracy: each input rounded to 11 (fp16) or 8 (bf16) significant bits, as
// a cuBLAS fp16/bf16 GEMM; the 3xTF32 kernel in matmul.cu is the near-fp32 alternative (`fp32` numerics).
#include <cuda_bf16.h>
#include <mma.h>

#include "cuda/cuda_check.h"
#include "cuda/dequant.cuh"
#include "cuda/kernels.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

using namespace nvcuda;

constexpr int kOut = 128;     // weight rows per block
constexpr int kTok = 128;     // tokens per block
constexpr int kK = 32;        // inner dimension per step
constexpr int kLd = kK + 8;   // shared row stride (16-bit elements): rows stay 32-byte aligned, banks spread
constexpr int kThreads = 256; // 8 warps: 2 (outputs) x 4 (tokens), each 64 outputs x 32 tokens

template <class H>
__device__ __forceinline__ H to_half(float v);
template <>
__device__ __forceinline__ __half to_half<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 to_half<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <GgmlType T, class H>
__global__ void dequantize_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int n_in, int64_t n_groups,
                                  H* __restrict__ out) {
    const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (g >= n_groups) return;
    const int groups_per_row = n_in / 8;
    const int64_t row = g / groups_per_row;
    const int k0 = static_cast<int>(g % groups_per_row) * 8;
    float v[8];
    Dequant<T>::run(w + row * row_bytes, k0, v);
    __align__(16) H h[8];
    for (int i = 0; i < 8; ++i) h[i] = to_half<H>(v[i]);
    *reinterpret_cast<uint4*>(out + row * n_in + k0) = *reinterpret_cast<const uint4*>(h);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int bytes = valid ? 16 : 0;  // 0: fill the 16 bytes with zeros
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

template <class H>
__global__ void __launch_bounds__(kThreads) gemm_half_kernel(const H* __restrict__ w, int n_in, int n_out,
                                                             const float* __restrict__ x, int n_tok,
                                                             float* __restrict__ y) {
    __shared__ __align__(128) H ws[2][kOut * kLd];  // weight tiles (double buffer)
    __shared__ __align__(128) H xs[2][kTok * kLd];  // activation tiles
    const int out0 = blockIdx.x * kOut, tok0 = blockIdx.y * kTok;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_out = (warp / 4) * 64, warp_tok = (warp % 4) * 32;

    // weight tile: 128 rows x 32 values = 512 chunks of 16 bytes, two per thread
    auto load_w = [&](int buf, int k0) {
        for (int c = threadIdx.x; c < kOut * kK / 8; c += kThreads) {
            const int r = c / (kK / 8), col = (c % (kK / 8)) * 8;
            const bool valid = out0 + r < n_out;
            const H* src = w + static_cast<size_t>(valid ? out0 + r : 0) * n_in + k0 + col;
            cp_async16(&ws[buf][r * kLd + col], src, valid);
        }
    };
    // activation tile: 128 tokens x 32 values = 1024 float4, four per thread, held in registers
    float4 xr[4];
    auto fetch_x = [&](int k0) {
        for (int i = 0; i < 4; ++i) {
            const int c = threadIdx.x + i * kThreads;
            const int r = c / (kK / 4), col = (c % (kK / 4)) * 4;
            xr[i] = tok0 + r < n_tok ? *reinterpret_cast<const float4*>(x + static_cast<size_t>(tok0 + r) * n_in + k0 + col)
                                     : make_float4(0, 0, 0, 0);
        }
    };
    auto store_x = [&](int buf) {
        for (int i = 0; i < 4; ++i) {
            const int c = threadIdx.x + i * kThreads;
            const int r = c / (kK / 4), col = (c % (kK / 4)) * 4;
            H* dst = &xs[buf][r * kLd + col];
            dst[0] = to_half<H>(xr[i].x);
            dst[1] = to_half<H>(xr[i].y);
            dst[2] = to_half<H>(xr[i].z);
            dst[3] = to_half<H>(xr[i].w);
        }
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    const int n_steps = n_in / kK;
    load_w(0, 0);
    fetch_x(0);
    store_x(0);
    cp_async_wait_all();
    __syncthreads();
    for (int step = 0; step < n_steps; ++step) {
        const int buf = step & 1;
        const bool more = step + 1 < n_steps;
        if (more) {  // next tiles in flight while this one is multiplied
            load_w(buf ^ 1, (step + 1) * kK);
            fetch_x((step + 1) * kK);
        }
        for (int kk = 0; kk < kK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, H, wmma::row_major> a[4];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, H, wmma::col_major> b[2];
            for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(a[i], &ws[buf][(warp_out + 16 * i) * kLd + kk], kLd);
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &xs[buf][(warp_tok + 16 * j) * kLd + kk], kLd);
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        if (more) store_x(buf ^ 1);
        cp_async_wait_all();
        __syncthreads();
    }
    // results: full 16x16 blocks straight to y (token-major rows = column-major out x tok); edge blocks
    // through a per-warp staging area carved from the (now idle) weight tiles
    float* stage = reinterpret_cast<float*>(&ws[0][0]) + warp * 256;
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 2; ++j) {
            const int o = out0 + warp_out + 16 * i, t = tok0 + warp_tok + 16 * j;
            if (o >= n_out || t >= n_tok) continue;
            if (o + 16 <= n_out && t + 16 <= n_tok) {
                wmma::store_matrix_sync(y + static_cast<size_t>(t) * n_out + o, acc[i][j], n_out, wmma::mem_col_major);
            } else {
                wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_col_major);
                __syncwarp();
                for (int e = lane; e < 256; e += 32) {
                    const int tt = e / 16, oo = e % 16;
                    if (o + oo < n_out && t + tt < n_tok) y[static_cast<size_t>(t + tt) * n_out + o + oo] = stage[e];
                }
                __syncwarp();
            }
        }
}

template <class H>
void dequantize(const DeviceMatrix& w, H* out, cudaStream_t stream) {
    const int64_t n_groups = static_cast<int64_t>(w.n_out) * (w.n_in / 8);
    dispatch_type(w.type, [&]<GgmlType T>() {
        dequantize_kernel<T, H><<<static_cast<unsigned>((n_groups + 255) / 256), 256, 0, stream>>>(
            w.data, w.row_bytes, w.n_in, n_groups, out);
    });
    check_launch("dequantize");
}

template <class H>
void gemm(const DeviceMatrix& w, const float* x, int n_tok, float* y, H* scratch, cudaStream_t stream) {
    dequantize<H>(w, scratch, stream);
    const dim3 grid(blocks_for(w.n_out, kOut), blocks_for(n_tok, kTok));
    gemm_half_kernel<H><<<grid, kThreads, 0, stream>>>(scratch, w.n_in, w.n_out, x, n_tok, y);
    check_launch("gemm (half)");
}

}  // namespace

bool gemm_half_fits(const DeviceMatrix& w, const GemmScratch& scratch) {
    // wmma stores straight to y need every token row 32-byte aligned: n_out % 8 == 0
    return scratch.data && static_cast<int64_t>(w.n_out) * w.n_in <= scratch.elems && w.n_in % kK == 0 &&
           w.n_out % 8 == 0;
}

void gemm_half(const DeviceMatrix& w, const float* x, int n_tok, float* y, const GemmScratch& scratch,
               cudaStream_t stream) {
    if (!gemm_half_fits(w, scratch)) throw_error(ErrorCode::internal, "gemm_half: shape or scratch not supported");
    if (scratch.bf16) gemm(w, x, n_tok, y, static_cast<__nv_bfloat16*>(scratch.data), stream);
    else gemm(w, x, n_tok, y, static_cast<__half*>(scratch.data), stream);
}

}  // namespace cuda
}  // namespace lazyllm_edge
