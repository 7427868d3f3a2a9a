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

// One fp16 value at p (unaligned) as fp32.
static inline float h2f(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Sum of the 8 lanes.
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
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
