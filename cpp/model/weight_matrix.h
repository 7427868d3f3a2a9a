// A quantized weight matrix as the GGUF file stores it (the backends' matmuls read it in place).
#pragma once
#include <cstddef>
#include <cstdint>

#include "gguf/ggml_types.h"

namespace lazyllm_edge {

// A weight matrix W (n_out, n_in) stored row-major as rows of `type` (ggml's ne[0] = n_in).
struct WeightMatrix {
    GgmlType type = GgmlType::F32;
    int64_t n_in = 0;
    int64_t n_out = 0;
    const void* data = nullptr;
    size_t row_bytes = 0;
    // The CPU's int8 prefill layout of the same weights (cpu/matmul_packed.h), made at load; null when none.
    const uint8_t* packed = nullptr;
    // How its input is quantized for that GEMM: 1 pass of 8-bit codes, or 2 (15 bits: code and rounding residual).
    int packed_passes = 1;
};

}  // namespace lazyllm_edge
