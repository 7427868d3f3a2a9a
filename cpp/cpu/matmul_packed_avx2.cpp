// The packed int8 GEMM on AVX2 (vpmaddubsw + vpmaddwd; tiles of 8 rows x 4 tokens) and the AVX2 quantizer of its
// activations (bit-identical to quantize_packed_x_reference). Compiled with -mavx2 -mfma -mf16c; only called after
// a cpuid check (matmul_packed.cpp).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "cpu/matmul_packed_ymm.h"

namespace lazyllm_edge {
namespace avx2 {

namespace {

inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// 8 floats times `scale`, rounded half to even, as int32
inline __m256i round_codes(const float* x, __m256 scale) {
    constexpr int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    return _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), scale), rnd));
}

}  // namespace

// One token row of K floats -> row `tok` of px (matmul_packed.h: codes in the packed order, scale, sums).
void quantize_packed_row(const float* x, int64_t K, const PackedX& px, int64_t tok) {
    const int64_t nb = K / 32;
    for (int64_t b = 0; b < nb; ++b, x += 32) {
        const int64_t i = tok * nb + b;
        const __m256 a = _mm256_max_ps(_mm256_max_ps(abs_ps(_mm256_loadu_ps(x)), abs_ps(_mm256_loadu_ps(x + 8))),
                                       _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 16)), abs_ps(_mm256_loadu_ps(x + 24))));
        const float amax = hmax(a);
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        const __m256i i0 = round_codes(x, id), i1 = round_codes(x + 8, id), i2 = round_codes(x + 16, id),
                      i3 = round_codes(x + 24, id);
        // int8 codes; the packs leave dwords (elements 0-3, 8-11, 16-19, 24-27, 4-7, ...): one permute to the packed order
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(px.q + i * 32),
                            _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
        const int s0 = hsum_i32(_mm256_add_epi32(i0, i1)), s1 = hsum_i32(_mm256_add_epi32(i2, i3));
        const float d = amax / 127.0f;
        px.d[i] = d;
        px.nsum[2 * i] = -s0;
        px.nsum[2 * i + 1] = -s1;
        px.xs[2 * i] = d * static_cast<float>(s0 + s1);
        px.xs[2 * i + 1] = 0.0f;
    }
}

// Rows [row0, row1) (row0 a multiple of 8) of y = x W^T from the packed weights; false for a type without them.
bool gemm_packed_rows(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                      const PackedX& px, int64_t n_tok, float* y, int64_t ldy) {
    return packed_rows_for_type<Ymm<false>, 2, 4>(type, packed, K, n_out, row0, row1, px, n_tok, y, ldy);
}

}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
