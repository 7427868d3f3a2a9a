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

}  // namespace lazyllm_edge
