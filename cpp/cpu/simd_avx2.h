// Small AVX2 helpers shared by the *_avx2.cpp files (and only by them: they need -mavx2 -mfma -mf16c).
// Everything is `static inline`, so each file keeps its own copy and no AVX2 code can be picked by the
// linker for a baseline caller.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace lazyllm_edge {
namespace avx2 {

// Eight fp16 values at p (unaligned) as fp32.
static inline __m256 load_half8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The register tile of the attention scores: a[r][c] = zero, then 8 lanes (dim % 8) of q row r (stride hd) times
// key c = k.load(key[c], d), summed over d = 0, 8, ... in order. Each key row is loaded once for all NR rows;
// the caller reduces the lanes in its own order.
template <int NR, class K>
__attribute__((always_inline)) static inline void score_tile_lanes(const float* q, int hd, const K& k, const int (&key)[4], __m256 (&a)[NR][4]) {
    _Pragma("GCC unroll 8")
    for (int r = 0; r < NR; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8) {
        const __m256 x0 = k.load(key[0], d), x1 = k.load(key[1], d), x2 = k.load(key[2], d), x3 = k.load(key[3], d);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < NR; ++r) {
            const __m256 qv = _mm256_loadu_ps(q + r * hd + d);
            a[r][0] = _mm256_fmadd_ps(qv, x0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(qv, x1, a[r][1]);
            a[r][2] = _mm256_fmadd_ps(qv, x2, a[r][2]);
            a[r][3] = _mm256_fmadd_ps(qv, x3, a[r][3]);
        }
    }
}

// One fp16 value at p (unaligned) as fp32.
static inline float h2f(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Sum of the 8 int32 lanes, the largest of 8 floats, |v| per lane.
static inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// q8_K_max (kernels.h) of 256 values: the largest magnitude, then the signed value of its first occurrence.
static inline float q8_K_max(const float* x) {
    __m256 a = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) a = _mm256_max_ps(a, abs_ps(_mm256_loadu_ps(x + 8 * k)));
    const float amax = hmax(a);
    for (int k = 0; amax != 0.0f && k < 32; ++k) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
        if (hit) return x[8 * k + __builtin_ctz(static_cast<unsigned>(hit))];
    }
    return 0.0f;
}

// Sum of the 8 lanes.
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// expf_ggml (kernels.h) on 8 lanes: the same operations, so the same bits.
static inline __m256 expf_ggml_ps(__m256 x) {
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    const __m256 n = _mm256_sub_ps(z, shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
    const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    const __m256 normal = _mm256_fmadd_ps(j, k, k);
    if (!_mm256_movemask_ps(big)) return normal;
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32(static_cast<int>(0x82000000u)));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    const __m256 scaled = _mm256_blendv_ps(_mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), _mm256_mul_ps(s1, s1), huge);
    return _mm256_blendv_ps(normal, scaled, big);
}

// 16 packed nibble bytes -> 32 bytes: low nibbles in bytes 0..15, high nibbles in 16..31 (ggml order).
static inline __m256i unpack_nibbles_32(const uint8_t* qs) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

// 32 bits -> 32 bytes, byte i = 0xFF where bit i is set (ggml's bytes_from_bits_32).
static inline __m256i bytes_from_bits(uint32_t x32) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}
static inline __m256i bytes_from_bits_32(const uint8_t* x) {
    uint32_t x32;
    std::memcpy(&x32, x, 4);
    return bytes_from_bits(x32);
}

// Unpacks the 8 (scale, min) 6-bit pairs of a Q4_K/Q5_K block (ggml's get_scale_min_k4 for j = 0..7).
static inline void k4_scales(const uint8_t* q, uint8_t* sc, uint8_t* mn) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
    }
    for (int j = 4; j < 8; ++j) {
        sc[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        mn[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
