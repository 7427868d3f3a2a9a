// The packed int8 GEMM on AVX-512 VNNI (vpdpbusd on 512-bit vectors: a vector is a group of 8 rows x 2 parities;
// tiles of 16 rows x 8 tokens). Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (and AVX2/FMA/F16C);
// only called after a cpuid + xgetbv check that the OS enables the ZMM and opmask state (matmul_packed.cpp).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/matmul_packed_tile.h"

namespace lazyllm_edge {
namespace avx512vnni {

namespace {

struct Zmm {
    using VI = __m512i;
    using VF = __m512;
    static constexpr int kRows = 8;

    template <int T>
    static inline void codes(const uint8_t* blk, int, VI* wc) {
        auto ld = [&](int off) { return _mm512_loadu_si512(blk + off); };
        if constexpr (packed::nibble_codes(T)) {
            const __m512i m4 = _mm512_set1_epi8(0x0F);
            const __m512i lo = ld(0), hi = ld(64);
            wc[0] = _mm512_and_si512(lo, m4);
            wc[1] = _mm512_and_si512(hi, m4);
            wc[2] = _mm512_and_si512(_mm512_srli_epi16(lo, 4), m4);
            wc[3] = _mm512_and_si512(_mm512_srli_epi16(hi, 4), m4);
        } else {
            for (int c = 0; c < 4; ++c) wc[c] = ld(64 * c);
        }
    }
    template <int T>
    static inline VI dot(VI acc, VI w, VI x) { return _mm512_dpbusd_epi32(acc, w, x); }
    template <int T>
    static inline VI offset_init(const int32_t* nsum) {
        constexpr int shift = packed::offset_shift(T);
        if constexpr (shift == 0) return _mm512_setzero_si512();
        else return _mm512_slli_epi32(bcast64(nsum), shift);
    }
    static inline VI bcast64(const void* p) {
        int64_t v;
        std::memcpy(&v, p, 8);
        return _mm512_set1_epi64(v);
    }
    static inline VF scales8(const float* s, int) {
        return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                     _mm512_zextps256_ps512(_mm256_loadu_ps(s)));
    }
    static inline VF scales16(const float* s, int) { return _mm512_loadu_ps(s); }
    static inline VF fbcast64(const float* p) { return _mm512_castpd_ps(_mm512_set1_pd(*reinterpret_cast<const double*>(p))); }
    static inline VI izero() { return _mm512_setzero_si512(); }
    static inline VI add_shifted7(VI a, VI hi) { return _mm512_add_epi32(a, _mm512_slli_epi32(hi, 7)); }
    static inline VF fzero() { return _mm512_setzero_ps(); }
    static inline VF fset1(float f) { return _mm512_set1_ps(f); }
    static inline VF fmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
    static inline VF fmadd(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
    static inline VF cvt(VI v) { return _mm512_cvtepi32_ps(v); }
    static inline void fstore(float* p, VF v) { _mm512_store_ps(p, v); }
    static inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace

bool gemm_packed_rows(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                      const PackedX& px, int64_t n_tok, float* y, int64_t ldy) {
    return packed_rows_for_type<Zmm, 2, 8>(type, packed, K, n_out, row0, row1, px, n_tok, y, ldy);
}

}  // namespace avx512vnni
}  // namespace lazyllm_edge
#endif  // __x86_64__
