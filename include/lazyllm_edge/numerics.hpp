// lazyllm_edge C++ API: the arithmetic a session computes with. A value carried by the session
// (SessionParams::numerics, Session::set_numerics) down to its backend's kernels; nothing process-wide.
#pragma once
#include <string>

namespace lazyllm_edge {

enum class Numerics : int {
    // The default. CPU: prefill multiplies quantized weights in int8 with 15-bit activations (the packed GEMM,
    // weights repacked at load; about 1e-5 of |x||W| from exact fp32), decode (up to 4 tokens) in int8 as
    // llama.cpp's CPU backend does (activations quantized to Q8_0/Q8_1/Q8_K), online-softmax attention.
    // CUDA: prefill GEMMs on tensor cores in fp16/bf16 with fp32 accumulation, decode in fp32.
    fast = 0,
    // Every matmul in (near-)exact fp32: CPU without the int8 path; CUDA prefill by the 3xTF32 GEMM.
    // For exactness tests and A/B comparisons.
    fp32 = 1,
    // llama.cpp's CPU backend (AVX2, flash attention off, fp16 KV cache) bit for bit where it is covered: int8
    // prefill too, ggml's fp32 accumulation orders and its attention arithmetic (cpp/cpu/llama_order/). CPU
    // only (the CUDA backend refuses it); a validation mode, slower than `fast`.
    llama_cpp = 2,
    // `fast` with llama.cpp's precision in prefill: the packed int8 GEMM multiplies 8-bit activations in llama.cpp's
    // own formats (Q8_K for K-quant weights, Q8_0/Q8_1 for the others; one vpdpbusd per product instead of two),
    // 1.3-1.5x faster prefill on VNNI CPUs; its agreement with llama.cpp's logits is a little below an exact
    // prefill's (the 8-bit rounding of slightly different activations does not cancel). CPU only.
    int8 = 3,
};

// "fast", "fp32", "llama.cpp", "int8".
const char* numerics_name(Numerics numerics);
// The names above, "llama_cpp" for "llama.cpp" and "default" for "fast"; Error(invalid_argument) otherwise.
Numerics parse_numerics(const std::string& name);

}  // namespace lazyllm_edge
