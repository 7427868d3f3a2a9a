// CPU kernels: a scalar reference for each, plus AVX2/FMA/F16C versions picked at run time.
#pragma once
#include <cstdint>

#include "model/ggml_types.h"

namespace lazyllm_edge {

enum class CpuIsa { scalar = 0, avx2 = 1 };

// Best ISA this CPU supports (AVX2+FMA+F16C checked with cpuid).
CpuIsa detected_isa();
// The ISA the kernels below dispatch to; tests may lower it to compare implementations.
CpuIsa active_isa();
void set_active_isa(CpuIsa isa);  // clamped to detected_isa()

// fp16 <-> fp32 (IEEE half), scalar; used by reference code and by caches.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);

// Dequantizes n elements (a whole number of blocks) of `type` to fp32.
void dequantize_row_reference(GgmlType type, const void* src, float* dst, int64_t n);
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);  // active ISA

// dot(x, y) over n fp32 values.
float dot_f32_reference(const float* x, const float* y, int64_t n);
float dot_f32(const float* x, const float* y, int64_t n);

// Activation quantization for the int8 decode path (ggml's block_q8_1 math, unpacked): n (a multiple of
// 32) floats -> per 32-block int8 q[32] = round-half-even(x * 127/amax), scale d = amax/127 rounded
// through fp16 (kept as fp32), and s = d * sum(q) in fp32 (ggml keeps s in fp16; fp32 is more exact).
// The AVX2 version is bit-identical to the reference.
void quantize_row_q8_1_reference(const float* x, int64_t n, int8_t* q, float* d, float* s);
void quantize_row_q8_1(const float* x, int64_t n, int8_t* q, float* d, float* s);  // active ISA

}  // namespace lazyllm_edge
