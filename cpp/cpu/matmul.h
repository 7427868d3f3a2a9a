// Quantized-weight matrix multiplication, the bulk of every forward pass.
#pragma once
#include <cstddef>
#include <cstdint>

#include "lazyllm_edge/numerics.hpp"
#include "model/weight_matrix.h"

namespace lazyllm_edge {

class ThreadPool;

// y (n_tok, n_out) = x (n_tok, n_in) · W^T, all fp32 row-major. Splits work over the pool.
// `numerics` (lazyllm_edge/numerics.hpp) picks the arithmetic: quantized weights of the types llama.cpp multiplies
// in int8 take that path where matmul_uses_int8 says so (fast: decode; llama_cpp: every batch, in ggml's fp32
// order); fast prefill takes the packed int8 GEMM where matmul_uses_packed says so; all other products are exact
// fp32: decode (few tokens) streams each weight row once, prefill dequantizes tiles and runs a blocked GEMM. Allocates nothing per call beyond grow-only per-thread scratch.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, Numerics numerics, ThreadPool& pool);

// y[i] (n_tok, w[i].n_out) = x · W[i]^T for n (<= kMaxSharedInput) weights that read the same x (q/k/v, gate/up).
// The result equals n matmul() calls bit for bit; on the int8 path x is quantized once per activation format
// and all the weights' rows go out in one dispatch, which saves thread wake-ups per layer in decode.
constexpr int kMaxSharedInput = 3;
void matmul_shared_input(const WeightMatrix* const* w, float* const* y, int n, const float* x, int64_t n_tok,
                         Numerics numerics, ThreadPool& pool);

// Same result computed by the scalar reference path (dequantize row, dot in fp32), single thread.
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y);

// True where matmul() takes the int8 path: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K weights, AVX2 active, and
// fast numerics with 1 <= n_tok <= 4 (decode) or llama_cpp numerics with any n_tok >= 1; never with fp32.
// As llama.cpp's CPU backend: each x row is quantized to int8 (Q8_0/Q8_1 blocks of 32 for the 32-block types,
// Q8_K blocks of 256 for the K-quants; kernels.h), then integer dot products per block are scaled and summed in
// fp32. Its error vs the fp32 product is dominated by the activation rounding (<= amax_block/254 per element).
// One token of K-quant weights runs on 512-bit vectors where the CPU has AVX-512 (matmul_decode_avx512.cpp, the
// AVX2 kernels' bits). In the fast order a token's result does not depend on the batch it is in; llama.cpp's order depends on the
// batch size as ggml's kernels do (llama_order/matmul_int8_llama_avx2.cpp).
bool matmul_uses_int8(GgmlType type, int64_t n_tok, Numerics numerics);

// True where matmul() takes the packed int8 prefill GEMM (matmul_packed.h): fast numerics, n_tok > 4, weights
// with a packed layout (made at load for the types it covers) and AVX2 or above. Activations are quantized per
// block of 32 with an fp32 scale; the error vs the fp32 product is that rounding (<= amax_block/254 per element).
bool matmul_uses_packed(const WeightMatrix& w, int64_t n_tok, Numerics numerics);

// Scalar reference of the int8 path (same quantization and integer dots, plain C++), single thread, any
// n_tok; the eight types above only.
void matmul_int8_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y);

// Integer codes of one GGUF block, as the dequantizers read them (the int8 references and the packed layout).
// 32-blocks (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0): w_j = d * q_j (+ m for Q4_1/Q5_1), q signed for Q4_0/Q5_0/Q8_0.
void block32_codes(GgmlType type, const uint8_t* b, int* q, float* d, float* m);
// 256-superblocks: Q4_K/Q5_K w_j = d*sc[j/32]*q_j - dmin*mn[j/32]; Q6_K w_j = d*sc[j/16]*q_j, q_j in [-32, 31].
void superblock_codes(GgmlType type, const uint8_t* b, int* q, int* sc, int* mn, float* d, float* dmin);

}  // namespace lazyllm_edge
