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

}  // namespace lazyllm_edge
