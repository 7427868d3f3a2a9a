// Quantized-weight matrix multiplication, the bulk of every forward pass.
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/weight_matrix.h"

namespace lazyllm_edge {

class ThreadPool;

// y (n_tok, n_out) = x (n_tok, n_in) · W^T, all fp32 row-major. Splits work over the pool.
// Quantized weights of the types llama.cpp multiplies in int8 (matmul_uses_int8) take that path in decode
// (and in prefill when switched on); other weights (F32/F16/BF16, or with the int8 switch off, or without AVX2) are multiplied in fp32:
// decode (few tokens) streams each weight row once, prefill dequantizes tiles and runs a blocked GEMM.
// Allocates nothing per call beyond grow-only per-thread scratch.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool);

// y[i] (n_tok, w[i].n_out) = x · W[i]^T for n (<= kMaxSharedInput) weights that read the same x (q/k/v, gate/up).
// The result equals n matmul() calls bit for bit; on the int8 path x is quantized once per activation format
// and all the weights' rows go out in one dispatch, which saves thread wake-ups per layer in decode.
constexpr int kMaxSharedInput = 3;
void matmul_shared_input(const WeightMatrix* const* w, float* const* y, int n, const float* x, int64_t n_tok,
                         ThreadPool& pool);

// Same result computed by the scalar reference path (dequantize row, dot in fp32), single thread.
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y);

// True where matmul() takes the int8 path: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K weights, 1 <= n_tok <= 4
// (any n_tok with the prefill switch on), AVX2 active, switch on. As llama.cpp's CPU backend: each x row is quantized to int8 (Q8_0/Q8_1 blocks of
// 32 for the 32-block types, Q8_K blocks of 256 for the K-quants; kernels.h), then integer dot products
// per block are scaled and summed in fp32. Its error vs the fp32 product is dominated by the activation
// rounding (<= amax_block/254 per element). A token's result does not depend on the batch it is in.
bool matmul_uses_int8(GgmlType type, int64_t n_tok);
// Process-wide switch for that path (default on; LAZYLLM_EDGE_INT8=0, or the older LAZYLLM_EDGE_INT8_DECODE=0,
// in the environment turns it off at start-up). Off: exact fp32 matmuls everywhere (for A/B and exactness tests).
void set_matmul_int8(bool on);
bool matmul_int8_enabled();
// Whether more than 4 tokens (prefill) also take the int8 path; default off (LAZYLLM_EDGE_INT8_PREFILL=1 on).
void set_matmul_int8_prefill(bool on);
bool matmul_int8_prefill_enabled();

// Scalar reference of the int8 path (same quantization and integer dots, plain C++), single thread, any
// n_tok; the eight types above only.
void matmul_int8_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y);

}  // namespace lazyllm_edge
