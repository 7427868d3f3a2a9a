// Scalar reference kernels and run-time dispatch to the AVX2 versions (kernels_avx2.cpp).
// This file is compiled for baseline x86-64 (or any other target): no SIMD intrinsics here.
#include "cpu/kernels.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace lazyllm_edge {

#if defined(__x86_64__)
// Implemented in kernels_avx2.cpp (compiled with -mavx2 -mfma -mf16c). Only called when the CPU has them.
namespace avx2 {
bool dequantize_row(uint32_t type, const void* src, float* dst, int64_t n);
float dot_f32(const float* x, const float* y, int64_t n);
void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);
void quantize_row_q8_1(const float* x, int64_t n, int8_t* q, float* d, float* s, int32_t* isum);
void quantize_row_q8_K(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums);
}  // namespace avx2
#endif

namespace {

// The levels the CPU and the OS run, as bits (1 << level): instructions from cpuid, register state enabled by
// the OS from xgetbv. AVX-VNNI (VEX) and AVX-512 VNNI (EVEX) are separate features: Ice Lake and Zen 4 have the
// second without the first, and a VEX vpdpbusd raises SIGILL there.
unsigned detect_levels() {
    unsigned levels = 1u << static_cast<int>(CpuIsa::scalar);
#if defined(__x86_64__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return levels;
    const bool fma = ecx & bit_FMA, f16c = ecx & bit_F16C, osxsave = ecx & bit_OSXSAVE, avx = ecx & bit_AVX;
    if (!(fma && f16c && osxsave && avx)) return levels;
    uint32_t xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    const uint64_t xcr0 = (static_cast<uint64_t>(xcr0_hi) << 32) | xcr0_lo;
    if ((xcr0 & 0x6) != 0x6) return levels;  // XMM and YMM state
    unsigned eax7 = 0, ebx7 = 0, ecx7 = 0, edx7 = 0;
    if (!__get_cpuid_count(7, 0, &eax7, &ebx7, &ecx7, &edx7) || !(ebx7 & bit_AVX2)) return levels;
    levels |= 1u << static_cast<int>(CpuIsa::avx2);
    unsigned eax71 = 0, ebx71 = 0, ecx71 = 0, edx71 = 0;  // AVX-VNNI: leaf 7 subleaf 1, eax bit 4
    if (eax7 >= 1 && __get_cpuid_count(7, 1, &eax71, &ebx71, &ecx71, &edx71) && (eax71 & (1u << 4)))
        levels |= 1u << static_cast<int>(CpuIsa::avxvnni);
    // AVX-512 F (ebx 16), BW (30), VL (31), VNNI (ecx 11), with opmask, ZMM_Hi256 and Hi16_ZMM state (xcr0 bits 5-7)
    if ((ebx7 & (1u << 16)) && (ebx7 & (1u << 30)) && (ebx7 & (1u << 31)) && (ecx7 & (1u << 11)) && (xcr0 & 0xE0) == 0xE0)
        levels |= 1u << static_cast<int>(CpuIsa::avx512vnni);
#endif
    return levels;
}

const unsigned g_levels = detect_levels();

// The highest level at or below `isa` that this CPU runs (scalar always does).
CpuIsa runnable_at_or_below(CpuIsa isa) {
    for (int l = static_cast<int>(isa); l > 0; --l)
        if (g_levels & (1u << l)) return static_cast<CpuIsa>(l);
    return CpuIsa::scalar;
}

// The hardware's best level, lowered by LAZYLLM_EDGE_ISA when set (an unknown value is ignored; a level the CPU
// lacks gives the best one below it).
CpuIsa detect() {
    CpuIsa isa = runnable_at_or_below(CpuIsa::avx512vnni);
    if (const char* env = std::getenv("LAZYLLM_EDGE_ISA")) {
        for (CpuIsa lower : kCpuIsas)
            if (std::strcmp(env, isa_name(lower)) == 0 && lower < isa) isa = runnable_at_or_below(lower);
    }
    return isa;
}

// AMD by cpuid vendor ("AuthenticAMD"), unless LAZYLLM_EDGE_WEIGHT_PREFETCH says l1 or l2.
bool detect_weight_prefetch_to_l2() {
    if (const char* env = std::getenv("LAZYLLM_EDGE_WEIGHT_PREFETCH")) {
        if (std::strcmp(env, "l2") == 0) return true;
        if (std::strcmp(env, "l1") == 0) return false;
    }
#if defined(__x86_64__)
    unsigned eax = 0, vendor[3] = {0, 0, 0};
    if (!__get_cpuid(0, &eax, &vendor[0], &vendor[2], &vendor[1])) return false;  // ebx, edx, ecx spell the vendor
    return std::memcmp(vendor, "AuthenticAMD", 12) == 0;
#else
    return false;
#endif
}

const CpuIsa g_detected = detect();
std::atomic<int> g_active{static_cast<int>(g_detected)};

inline float bits_to_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float h2f(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

constexpr int QK = 32;
constexpr int QK_K = 256;

// ---- scalar block dequantizers, following ggml-quants.c exactly ----

void deq_q4_0(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 18, y += QK) {
        const float d = h2f(b);
        const uint8_t* qs = b + 2;
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
            y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
        }
    }
}

void deq_q4_1(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 20, y += QK) {
        const float d = h2f(b), m = h2f(b + 2);
        const uint8_t* qs = b + 4;
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
            y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
        }
    }
}

void deq_q5_0(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 22, y += QK) {
        const float d = h2f(b);
        uint32_t qh;
        std::memcpy(&qh, b + 2, 4);
        const uint8_t* qs = b + 6;
        for (int j = 0; j < 16; ++j) {
            const int xh0 = ((qh >> j) << 4) & 0x10;
            const int xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = static_cast<float>(((qs[j] & 0x0F) | xh0) - 16) * d;
            y[j + 16] = static_cast<float>(((qs[j] >> 4) | xh1) - 16) * d;
        }
    }
}

void deq_q5_1(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 24, y += QK) {
        const float d = h2f(b), m = h2f(b + 2);
        uint32_t qh;
        std::memcpy(&qh, b + 4, 4);
        const uint8_t* qs = b + 8;
        for (int j = 0; j < 16; ++j) {
            const int xh0 = ((qh >> j) << 4) & 0x10;
            const int xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = static_cast<float>((qs[j] & 0x0F) | xh0) * d + m;
            y[j + 16] = static_cast<float>((qs[j] >> 4) | xh1) * d + m;
        }
    }
}

void deq_q8_0(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 34, y += QK) {
        const float d = h2f(b);
        const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
        for (int j = 0; j < QK; ++j) y[j] = static_cast<float>(qs[j]) * d;
    }
}

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

// block_q4_K: d, dmin (fp16), scales[12], qs[128]
void deq_q4_k(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 144) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t* scales = b + 4;
        const uint8_t* q = b + 16;
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

// block_q5_K: d, dmin (fp16), scales[12], qh[32], qs[128]
void deq_q5_k(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 176) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t* scales = b + 4;
        const uint8_t* qh = b + 16;
        const uint8_t* ql = b + 48;
        int is = 0;
        uint8_t sc, m;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

// block_q6_K: ql[128], qh[64], scales[16] (int8), d (fp16)
void deq_q6_k(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 210) {
        const float d = h2f(b + 208);
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

void deq_bf16(const uint8_t* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        y[i] = bits_to_f32(static_cast<uint32_t>(h) << 16);
    }
}

void check_blocks(GgmlType type, int64_t n) {
    const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(type));
    if (!tr || !tr->supported)
        throw_error(ErrorCode::unsupported,
                    std::string("dequantize: unsupported tensor type ") + (tr ? tr->name : std::to_string(static_cast<uint32_t>(type))));
    if (n < 0 || n % tr->block_size != 0)
        throw_error(ErrorCode::invalid_argument, std::string("dequantize: n=") + std::to_string(n) +
                                                     " is not a multiple of the " + tr->name + " block size");
}

}  // namespace

extern const bool g_weight_prefetch_to_l2 = detect_weight_prefetch_to_l2();

CpuIsa detected_isa() { return g_detected; }
const char* isa_name(CpuIsa isa) {
    switch (isa) {
        case CpuIsa::avx2: return "avx2";
        case CpuIsa::avxvnni: return "avxvnni";
        case CpuIsa::avx512vnni: return "avx512vnni";
        default: return "scalar";
    }
}
CpuIsa active_isa() { return static_cast<CpuIsa>(g_active.load(std::memory_order_relaxed)); }
bool isa_supported(CpuIsa isa) { return isa <= g_detected && (g_levels & (1u << static_cast<int>(isa))) != 0; }
void set_active_isa(CpuIsa isa) {
    if (static_cast<int>(isa) > static_cast<int>(g_detected)) isa = g_detected;
    isa = runnable_at_or_below(isa);
    g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

// fp16 <-> fp32 (bit-exact IEEE, round-to-nearest-even; after Maratyszcza's FP16 library, as in ggml).
float fp16_to_fp32(uint16_t h) {
    const uint32_t w = static_cast<uint32_t>(h) << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized = bits_to_f32((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = bits_to_f32((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = 1u << 27;
    return bits_to_f32(sign | (two_w < denormalized_cutoff ? f32_to_bits(denormalized) : f32_to_bits(normalized)));
}

uint16_t fp32_to_fp16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = f32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = bits_to_f32((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float expf_ggml(float x) {
    // x = n ln2 + b (n rounded to nearest by the 1.5 * 2^23 shift, ln2 in two parts), e^b by a polynomial
    // in b and b^2, 2^n put into the exponent bits; |n| > 126 takes the scaled path to avoid overflow.
    const float shift = 0x1.8p23f;
    const float z = std::fma(x, 0x1.715476p+0f, shift);
    const float n = z - shift;
    const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
    const uint32_t e = f32_to_bits(z) << 23;
    const float k = bits_to_f32(e + f32_to_bits(1.0f));
    const float u = b * b;
    const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                      std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                             u, 0x1.ffffecp-1f * b);
    if (!(std::fabs(n) > 126.0f)) return std::fma(j, k, k);
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = bits_to_f32(g + 0x7f000000u);
    const float s2 = bits_to_f32(e - g);
    if (std::fabs(n) > 192.0f) return s1 * s1;
    return std::fma(s2, j, s2) * s1;
}

void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) return avx2::fp16_to_fp32_row(src, dst, n);
#endif
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) return avx2::fp32_to_fp16_row(src, dst, n);
#endif
    for (int64_t i = 0; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

// Unchecked scalar dispatch; returns false for a type without a dequantizer.
bool dequantize_row_scalar_unchecked(GgmlType type, const void* src, float* dst, int64_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(src);
    switch (type) {
        case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return true;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) dst[i] = h2f(b + 2 * i);
            return true;
        case GgmlType::BF16: deq_bf16(b, dst, n); return true;
        case GgmlType::Q4_0: deq_q4_0(b, dst, n / QK); return true;
        case GgmlType::Q4_1: deq_q4_1(b, dst, n / QK); return true;
        case GgmlType::Q5_0: deq_q5_0(b, dst, n / QK); return true;
        case GgmlType::Q5_1: deq_q5_1(b, dst, n / QK); return true;
        case GgmlType::Q8_0: deq_q8_0(b, dst, n / QK); return true;
        case GgmlType::Q4_K: deq_q4_k(b, dst, n / QK_K); return true;
        case GgmlType::Q5_K: deq_q5_k(b, dst, n / QK_K); return true;
        case GgmlType::Q6_K: deq_q6_k(b, dst, n / QK_K); return true;
        default: return false;
    }
}

// Unchecked dispatch on the active ISA (used by matmul after it validated the shape once).
void dequantize_row_unchecked(GgmlType type, const void* src, float* dst, int64_t n) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2 && avx2::dequantize_row(static_cast<uint32_t>(type), src, dst, n)) return;
#endif
    dequantize_row_scalar_unchecked(type, src, dst, n);
}

void dequantize_row_reference(GgmlType type, const void* src, float* dst, int64_t n) {
    check_blocks(type, n);
    dequantize_row_scalar_unchecked(type, src, dst, n);
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
    check_blocks(type, n);
    dequantize_row_unchecked(type, src, dst, n);
}

float dot_f32_reference(const float* x, const float* y, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
    return s;
}

float dot_f32(const float* x, const float* y, int64_t n) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) return avx2::dot_f32(x, y, n);
#endif
    // Four partial sums: shorter dependency chains and a smaller rounding error than one running sum.
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; ++i) s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

void quantize_row_q8_1_reference(const float* x, int64_t n, int8_t* q, float* d, float* s, int32_t* isum) {
    for (int64_t b = 0; b < n / QK; ++b, x += QK, q += QK) {
        // block scale from the largest magnitude
        float amax = 0.0f;
        for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float dr = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        // codes: round half to even, like vroundps / vcvtps2dq
        int sum = 0;
        for (int j = 0; j < QK; ++j) {
            const int v = static_cast<int>(std::nearbyint(x[j] * id));
            q[j] = static_cast<int8_t>(v);
            sum += v;
        }
        // stored scale and sum go through fp16, as in block_q8_1
        d[b] = fp16_to_fp32(fp32_to_fp16(dr));
        s[b] = fp16_to_fp32(fp32_to_fp16(dr * static_cast<float>(sum)));
        if (isum) isum[b] = sum;
    }
}

void quantize_row_q8_1(const float* x, int64_t n, int8_t* q, float* d, float* s, int32_t* isum) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) return avx2::quantize_row_q8_1(x, n, q, d, s, isum);
#endif
    quantize_row_q8_1_reference(x, n, q, d, s, isum);
}

float q8_K_max(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

void quantize_row_q8_K_reference(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K, q += QK_K, bsums += QK_K / 16) {
        const float max = q8_K_max(x);
        if (max == 0.0f) {
            d[b] = 0.0f;
            std::memset(q, 0, QK_K);
            std::memset(bsums, 0, sizeof(int16_t) * (QK_K / 16));
            continue;
        }
        // codes: round half to even (ggml's nearest_int), clamped to 127
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; ++j) {
            const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
            q[j] = static_cast<int8_t>(v < 127 ? v : 127);
        }
        // sums of 16 codes, for the weight mins / offsets
        for (int g = 0; g < QK_K / 16; ++g) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += q[16 * g + j];
            bsums[g] = static_cast<int16_t>(sum);
        }
        d[b] = 1.0f / iscale;
    }
}

void quantize_row_q8_K(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) return avx2::quantize_row_q8_K(x, n, q, d, bsums);
#endif
    quantize_row_q8_K_reference(x, n, q, d, bsums);
}

}  // namespace lazyllm_edge
