// CPU kernels: a scalar reference for each, plus AVX2/FMA/F16C versions picked at run time.
#pragma once
#include <cstdint>

#include "gguf/ggml_types.h"

namespace lazyllm_edge {

// Levels, ordered by speed: AVX2+FMA+F16C; + AVX-VNNI (VEX vpdpbusd on 256-bit vectors); + AVX-512 F/BW/VL/VNNI.
// Each includes AVX2, but AVX-512 does not include AVX-VNNI (Ice Lake and Zen 4 have AVX-512 VNNI without it):
// isa_supported says which levels run. Only the packed int8 GEMM (matmul_packed.h) uses the levels above avx2.
enum class CpuIsa { scalar = 0, avx2 = 1, avxvnni = 2, avx512vnni = 3 };
constexpr CpuIsa kCpuIsas[] = {CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avxvnni, CpuIsa::avx512vnni};  // lowest first

// Best level this CPU runs: cpuid for the instructions and xgetbv for the OS-enabled register state (YMM; for
// AVX-512 also the opmask and ZMM state, which some VMs list in cpuid without enabling). The environment variable
// LAZYLLM_EDGE_ISA=scalar|avx2|avxvnni|avx512vnni lowers it (never raises it; a level the CPU lacks gives the best
// one below it), read once at startup.
CpuIsa detected_isa();
// Whether the kernels may run at `isa`: the CPU runs it and it is not above detected_isa().
bool isa_supported(CpuIsa isa);
const char* isa_name(CpuIsa isa);  // "scalar", "avx2", "avxvnni", "avx512vnni"
// The ISA the kernels dispatch to: detected_isa(), unless a test lowered it (process-wide, a test hook: only the
// `_testing` module, which has its own copy of the kernels, calls set_active_isa) to compare implementations.
CpuIsa active_isa();
void set_active_isa(CpuIsa isa);  // clamped to detected_isa(), then to the best supported level at or below it

// Whether the int8 decode kernels prefetch their weights into L2 (prefetcht1) rather than L1: on AMD CPUs (cpuid
// vendor), where it measured faster; LAZYLLM_EDGE_WEIGHT_PREFETCH=l1|l2 overrides it (read once at startup).
extern const bool g_weight_prefetch_to_l2;
inline bool weight_prefetch_to_l2() { return g_weight_prefetch_to_l2; }

// fp16 <-> fp32 (IEEE half), scalar; used by reference code and by caches.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);

// e^x as llama.cpp's CPU backend computes it in softmax and SiLU (ggml_v_expf on AVX2/FMA: a degree-5
// polynomial of the reduced argument, max error ~1.5 ulp, flushing to 0 below ~-104 and to inf above ~88.4).
// One value; the AVX2 form (simd_avx2.h) gives the same bits.
float expf_ggml(float x);

// Dequantizes n elements (a whole number of blocks) of `type` to fp32.
void dequantize_row_reference(GgmlType type, const void* src, float* dst, int64_t n);
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);  // active ISA

// dot(x, y) over n fp32 values.
float dot_f32_reference(const float* x, const float* y, int64_t n);
float dot_f32(const float* x, const float* y, int64_t n);

// Activation quantization as llama.cpp's CPU backend does it before a matmul against quantized weights
// (ggml's vec_dot_type of the weight type). The AVX2 versions are bit-identical to the references.
//
// Q8_0 / Q8_1 (ggml's AVX2 quantize_row_q8_0 / _q8_1; Q8_0 is Q8_1 without s): per block of 32, with
// amax = max|x| and d = amax/127 in fp32: q[j] = round-half-even(x[j] * (127/amax)), the stored scale is
// fp16(d) (returned as fp32), and s = fp16(d * sum(q)) (fp32 product of the unrounded d, as ggml does);
// isum (optional, may be null) gets the exact sum(q). n is a multiple of 32; q has n entries, d, s, isum n/32.
void quantize_row_q8_1_reference(const float* x, int64_t n, int8_t* q, float* d, float* s, int32_t* isum = nullptr);
void quantize_row_q8_1(const float* x, int64_t n, int8_t* q, float* d, float* s, int32_t* isum = nullptr);  // active ISA

// Q8_K (ggml's quantize_row_q8_K_ref, which x86 uses): per block of 256, max = the signed x of largest |x|
// (first such), iscale = -127/max, q[j] = min(127, round-half-even(iscale * x[j])), d = 1/iscale (fp32,
// negative when max > 0: d*q is what counts), bsums[g] = sum of q over the g-th run of 16. An all-zero
// block gives d = 0 and q = bsums = 0. n is a multiple of 256; q has n entries, d n/256, bsums n/16.
void quantize_row_q8_K_reference(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums);
// Q8_K's max of one block of 256: the signed value of the first element of largest magnitude (0 for all zeros).
// The AVX2 form (simd_avx2.h, q8_K_max) gives the same value.
float q8_K_max(const float* x);
void quantize_row_q8_K(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums);  // active ISA

}  // namespace lazyllm_edge
