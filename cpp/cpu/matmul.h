// Quantized-weight matrix multiplication, the bulk of every forward pass.
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/ggml_types.h"

namespace lazyllm_edge {

class ThreadPool;

// A weight matrix W (n_out, n_in) stored row-major as rows of `type` (ggml's ne[0] = n_in).
struct WeightMatrix {
    GgmlType type = GgmlType::F32;
    int64_t n_in = 0;
    int64_t n_out = 0;
    const void* data = nullptr;
    size_t row_bytes = 0;
};

// y (n_tok, n_out) = x (n_tok, n_in) · W^T, all fp32 row-major. Splits work over the pool.
// Decode (few tokens) streams each weight row once; prefill dequantizes tiles and runs a blocked GEMM.
// Allocates nothing per call beyond fixed per-thread scratch.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool);

// Same result computed by the scalar reference path (dequantize row, dot in fp32), single thread.
void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y);

// True where matmul() takes the int8 decode path: Q4_0/Q4_1/Q8_0 weights, 1 <= n_tok <= 4, AVX2 active.
// That path quantizes each x row to int8 blocks of 32 (quantize_row_q8_1) and does integer block dots,
// so its error vs the fp32 product is dominated by activation rounding (<= amax_block/254 per element).
bool matmul_uses_int8(GgmlType type, int64_t n_tok);
// Process-wide switch for that path (default on; LAZYLLM_EDGE_INT8_DECODE=0 in the environment turns it off
// at start-up). Off: decode uses the fp32 path, numerically matching prefill (for A/B and exactness tests).
void set_matmul_int8(bool on);
bool matmul_int8_enabled();

// Scalar reference of the int8 path (same math, plain C++), single thread, any n_tok; Q4_0/Q4_1/Q8_0 only.
void matmul_int8_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y);

}  // namespace lazyllm_edge
