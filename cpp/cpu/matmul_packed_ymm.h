// The packed int8 GEMM's vector operations on 256-bit vectors (4 rows x 2 parities per vector): AVX2
// (vpmaddubsw + vpmaddwd) and AVX-VNNI (vpdpbusd). Included by matmul_packed_avx2.cpp and
// matmul_packed_avxvnni.cpp, each compiled for its ISA; internal linkage only.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/matmul_packed_tile.h"

namespace lazyllm_edge {
namespace {

template <bool kVnni>
struct Ymm {
    using VI = __m256i;
    using VF = __m256;
    static constexpr int kRows = 4;

    // chunk c (0..3) of a block's codes for rows 4 sub .. 4 sub + 3, as u8
    template <int T>
    static inline void codes(const uint8_t* blk, int sub, VI* wc) {
        auto ld = [&](int off) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + off + 32 * sub)); };
        if constexpr (packed::nibble_codes(T)) {
            const __m256i m4 = _mm256_set1_epi8(0x0F);
            const __m256i lo = ld(0), hi = ld(64);
            wc[0] = _mm256_and_si256(lo, m4);
            wc[1] = _mm256_and_si256(hi, m4);
            wc[2] = _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
            wc[3] = _mm256_and_si256(_mm256_srli_epi16(hi, 4), m4);
        } else {
            for (int c = 0; c < 4; ++c) wc[c] = ld(64 * c);
        }
    }

    // acc + per lane the dot of 4 u8 codes with 4 int8 x codes (exact). AVX2: the int16 pair sums of vpmaddubsw
    // stay below 2^15 for codes <= 63; Q8_0's codes (u = q + 128) go in signed with their sign moved onto x.
    template <int T>
    static inline VI dot(VI acc, VI w, VI x) {
        if constexpr (kVnni) {
            return _mm256_dpbusd_avx_epi32(acc, w, x);
        } else {
            const __m256i ones = _mm256_set1_epi16(1);
            __m256i p;
            if constexpr (T == packed::kQ8_0) {
                const __m256i q = _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));
                p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
            } else {
                p = _mm256_maddubs_epi16(w, x);
            }
            return _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
        }
    }

    // the integer sums' start: -off * (x code sum) per parity for the offset types (AVX2's signed Q8_0 needs none)
    template <int T>
    static inline VI offset_init(const int32_t* nsum) {
        constexpr int shift = packed::offset_shift(T);
        if constexpr (shift == 0 || (!kVnni && T == packed::kQ8_0)) return _mm256_setzero_si256();
        else return _mm256_slli_epi32(bcast64(nsum), shift);
    }

    static inline VI bcast64(const void* p) {
        int64_t v;
        std::memcpy(&v, p, 8);
        return _mm256_set1_epi64x(v);
    }
    // a float per row (rows 4 sub..) -> [s0 s0 s1 s1 s2 s2 s3 s3]
    static inline VF scales8(const float* s, int sub) {
        const __m128 v = _mm_loadu_ps(s + 4 * sub);
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    }
    static inline VF scales16(const float* s, int sub) { return _mm256_loadu_ps(s + 8 * sub); }
    static inline VF fbcast64(const float* p) {
        return _mm256_castpd_ps(_mm256_broadcast_sd(reinterpret_cast<const double*>(p)));
    }
    static inline VI izero() { return _mm256_setzero_si256(); }
    static inline VI add_shifted7(VI a, VI hi) { return _mm256_add_epi32(a, _mm256_slli_epi32(hi, 7)); }
    static inline VF fzero() { return _mm256_setzero_ps(); }
    static inline VF fset1(float f) { return _mm256_set1_ps(f); }
    static inline VF fmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
    static inline VF fmadd(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
    static inline VF cvt(VI v) { return _mm256_cvtepi32_ps(v); }
    static inline void fstore(float* p, VF v) { _mm256_store_ps(p, v); }
    static inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace
}  // namespace lazyllm_edge
#endif  // __x86_64__
