// Quantized matrix multiplication on the GPU: y (n_tok, n_out) = x (n_tok, n_in) . W^T.
//  - decode (n_tok <= 8): one warp per output row streams the row once, dequantizing 8 weights per lane
//    step and multiplying them into every token of the batch (memory-bound: the weights are read once);
//  - prefill: a tensor-core GEMM over 64 (outputs) x 64 (tokens) tiles; each K step dequantizes a 64x32
//    weight tile and stages a 64x32 activation tile in shared memory. The products are 3xTF32: each fp32
//    operand is split into a TF32 head and a TF32 tail and a*b = ah*bh + ah*bt + at*bh, which keeps fp32
//    range (no fp16 overflow on large activations) and close to fp32 accuracy (a plain TF32 product
//    rounds both inputs to 11 bits, ~1e-3 relative), at three tensor-core products per tile step.
#include <mma.h>

#include "cuda/cuda_check.h"
#include "cuda/dequant.cuh"
#include "cuda/kernels.cuh"

namespace lazyllm_edge {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kMatvecWarps = 4;

template <GgmlType T>
__global__ void matvec_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int n_in, int n_out,
                              const float* __restrict__ x, int n_tok, float* __restrict__ y) {
    const int row = blockIdx.x * kMatvecWarps + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    if (row >= n_out) return;
    const uint8_t* wr = w + static_cast<size_t>(row) * row_bytes;
    float acc[kMatvecMaxTokens] = {};
    for (int k0 = lane * 8; k0 < n_in; k0 += kWarp * 8) {
        float wv[8];
        Dequant<T>::run(wr, k0, wv);
#pragma unroll
        for (int t = 0; t < kMatvecMaxTokens; ++t) {
            if (t >= n_tok) break;
            const float4* xv = reinterpret_cast<const float4*>(x + static_cast<size_t>(t) * n_in + k0);
            const float4 a = xv[0], b = xv[1];
            acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y +
                      wv[6] * b.z + wv[7] * b.w;
        }
    }
#pragma unroll
    for (int t = 0; t < kMatvecMaxTokens; ++t) {
        if (t >= n_tok) break;
        float v = acc[t];
        for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0) y[static_cast<size_t>(t) * n_out + row] = v;
    }
}

// ---- TF32 tensor-core GEMM ----
constexpr int kTileOut = 64;   // weight rows per block
constexpr int kTileTok = 64;   // tokens per block
constexpr int kTileK = 32;     // inner dimension per step
constexpr int kPad = 4;        // shared-memory row padding (floats) against bank conflicts
constexpr int kGemmThreads = 128;

// fp32 values in `head` -> TF32 head (rounded) and TF32 tail (the rounding remainder).
template <class Fragment>
__device__ __forceinline__ void split_tf32(Fragment& head, Fragment& tail) {
    for (int e = 0; e < head.num_elements; ++e) {
        const float v = head.x[e];
        const float h = nvcuda::wmma::__float_to_tf32(v);
        head.x[e] = h;
        tail.x[e] = nvcuda::wmma::__float_to_tf32(v - h);
    }
}

template <GgmlType T>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int n_in,
                                                            int n_out, const float* __restrict__ x, int n_tok,
                                                            float* __restrict__ y) {
    using namespace nvcuda;
    __shared__ __align__(32) float ws[kTileOut][kTileK + kPad];  // dequantized weights (fp32)
    __shared__ __align__(32) float xs[kTileTok][kTileK + kPad];
    const int out0 = blockIdx.x * kTileOut, tok0 = blockIdx.y * kTileTok;
    const int warp = threadIdx.x / kWarp;
    const int warp_out = (warp / 2) * 32, warp_tok = (warp % 2) * 32;  // each warp: 32 outputs x 32 tokens

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < n_in; k0 += kTileK) {
        // weight tile: 64 rows x 32 values = 256 groups of 8, two per thread
        for (int g = threadIdx.x; g < kTileOut * kTileK / 8; g += kGemmThreads) {
            const int r = g / (kTileK / 8), c = (g % (kTileK / 8)) * 8;
            float v[8];
            if (out0 + r < n_out) Dequant<T>::run(w + static_cast<size_t>(out0 + r) * row_bytes, k0 + c, v);
            else
                for (int i = 0; i < 8; ++i) v[i] = 0.0f;
            for (int i = 0; i < 8; ++i) ws[r][c + i] = v[i];
        }
        // activation tile: 64 tokens x 32 values as float4
        for (int g = threadIdx.x; g < kTileTok * kTileK / 4; g += kGemmThreads) {
            const int r = g / (kTileK / 4), c = (g % (kTileK / 4)) * 4;
            float4 v = make_float4(0, 0, 0, 0);
            if (tok0 + r < n_tok) v = *reinterpret_cast<const float4*>(x + static_cast<size_t>(tok0 + r) * n_in + k0 + c);
            xs[r][c + 0] = v.x;
            xs[r][c + 1] = v.y;
            xs[r][c + 2] = v.z;
            xs[r][c + 3] = v.w;
        }
        __syncthreads();
        for (int kk = 0; kk < kTileK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2], a_tail[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b[2], b_tail[2];
            for (int i = 0; i < 2; ++i) {
                wmma::load_matrix_sync(a[i], &ws[warp_out + 16 * i][kk], kTileK + kPad);
                split_tf32(a[i], a_tail[i]);
            }
            for (int j = 0; j < 2; ++j) {
                wmma::load_matrix_sync(b[j], &xs[warp_tok + 16 * j][kk], kTileK + kPad);
                split_tf32(b[j], b_tail[j]);
            }
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) {  // small terms first
                    wmma::mma_sync(acc[i][j], a[i], b_tail[j], acc[i][j]);
                    wmma::mma_sync(acc[i][j], a_tail[i], b[j], acc[i][j]);
                    wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
                }
        }
        __syncthreads();
    }
    // the output tile goes through shared memory (out x tok, column-major = y's token-major rows), then
    // to y with bounds checks
    __shared__ __align__(32) float cs[kTileTok][kTileOut + kPad];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&cs[warp_tok + 16 * j][warp_out + 16 * i], acc[i][j], kTileOut + kPad,
                                    wmma::mem_col_major);
    __syncthreads();
    for (int e = threadIdx.x; e < kTileTok * kTileOut; e += kGemmThreads) {
        const int t = e / kTileOut, o = e % kTileOut;
        if (tok0 + t < n_tok && out0 + o < n_out) y[static_cast<size_t>(tok0 + t) * n_out + out0 + o] = cs[t][o];
    }
}

struct NoOp {
    template <GgmlType>
    void operator()() const {}
};

void check_shape(const DeviceMatrix& w) {
    if (!matmul_supported(w.type, w.n_in))
        throw_error(ErrorCode::unsupported, std::string("CUDA matmul: weight type ") + ggml_type_name(w.type) +
                                                " with n_in " + std::to_string(w.n_in) + " is not supported");
}

}  // namespace

bool matmul_supported(GgmlType type, int n_in) {
    const bool known = dispatch_type(type, NoOp{});
    return known && n_in > 0 && n_in % 8 == 0 && n_in % ggml_traits(type).block_size == 0;
}

void matmul_matvec(const DeviceMatrix& w, const float* x, int n_tok, float* y, cudaStream_t stream) {
    check_shape(w);
    for (int t0 = 0; t0 < n_tok; t0 += kMatvecMaxTokens) {
        const int nt = n_tok - t0 < kMatvecMaxTokens ? n_tok - t0 : kMatvecMaxTokens;
        const float* xt = x + static_cast<size_t>(t0) * w.n_in;
        float* yt = y + static_cast<size_t>(t0) * w.n_out;
        dispatch_type(w.type, [&]<GgmlType T>() {
            matvec_kernel<T><<<blocks_for(w.n_out, kMatvecWarps), kMatvecWarps * kWarp, 0, stream>>>(
                w.data, w.row_bytes, w.n_in, w.n_out, xt, nt, yt);
        });
        check_launch("matvec");
    }
}

void matmul(const DeviceMatrix& w, const float* x, int n_tok, float* y, const GemmScratch& scratch, Numerics numerics,
            cudaStream_t stream) {
    if (n_tok > kMatvecMaxTokens && numerics == Numerics::fast && gemm_half_fits(w, scratch))
        return gemm_half(w, x, n_tok, y, scratch, stream);
    matmul(w, x, n_tok, y, stream);
}

void matmul(const DeviceMatrix& w, const float* x, int n_tok, float* y, cudaStream_t stream) {
    if (n_tok <= kMatvecMaxTokens || w.n_in % kTileK != 0) return matmul_matvec(w, x, n_tok, y, stream);
    check_shape(w);
    const dim3 grid(blocks_for(w.n_out, kTileOut), blocks_for(n_tok, kTileTok));
    dispatch_type(w.type, [&]<GgmlType T>() {
        gemm_kernel<T><<<grid, kGemmThreads, 0, stream>>>(w.data, w.row_bytes, w.n_in, w.n_out, x, n_tok, y);
    });
    check_launch("gemm");
}

}  // namespace cuda
}  // namespace lazyllm_edge
