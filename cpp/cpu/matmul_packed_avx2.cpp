// The packed int8 GEMM on AVX2 (vpmaddubsw + vpmaddwd; tiles of 8 rows x 4 tokens) and the AVX2 quantizer of its
// activations (bit-identical to quantize_packed_x_reference). Compiled with -mavx2 -mfma -mf16c; only called after
// a cpuid check (matmul_packed.cpp).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "cpu/matmul_packed_ymm.h"
#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace avx2 {

namespace {

// 32 int32 codes (4 vectors in element order) -> 32 int8 at q in the packed order: the packs leave dwords
// (elements 0-3, 8-11, 16-19, 24-27, 4-7, ...), one permute puts them in the packed order (0-3, 16-19, 4-7, ...).
inline void store_packed_codes(__m256i i0, __m256i i1, __m256i i2, __m256i i3, int8_t* q) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
}

}  // namespace

// One token row of K floats -> row `tok` of px (matmul_packed.h: codes in the packed order, scale, sums).
void quantize_packed_row(const float* x, int64_t K, const PackedX& px, int64_t tok) {
    constexpr int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const int64_t nb = K / 32;
    const int P = px.passes;
    float group_id = 0.0f, group_d = 0.0f;  // Q8_K: one scale per 8 blocks
    for (int64_t b = 0; b < nb; ++b, x += 32) {
        const int64_t i = tok * nb + b;
        if (px.q8_K && b % 8 == 0) packed::q8_K_scale(q8_K_max(x), &group_id, &group_d);
        const __m256 a = _mm256_max_ps(_mm256_max_ps(abs_ps(_mm256_loadu_ps(x)), abs_ps(_mm256_loadu_ps(x + 8))),
                                       _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 16)), abs_ps(_mm256_loadu_ps(x + 24))));
        const float amax = hmax(a);
        const __m256 id = _mm256_set1_ps(px.q8_K ? group_id : amax != 0.0f ? 127.0f / amax : 0.0f);
        // x * id rounded (hi; Q8_K clamps at 127 as ggml does) and, with two passes, the residual in 1/128 steps (lo)
        __m256i hi[4], lo[4];
        for (int k = 0; k < 4; ++k) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id);
            const __m256 h = _mm256_round_ps(v, rnd);
            hi[k] = _mm256_cvtps_epi32(h);
            if (px.q8_K) hi[k] = _mm256_min_epi32(hi[k], _mm256_set1_epi32(127));
            if (P == 2) lo[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(v, h), _mm256_set1_ps(128.0f)), rnd));
        }
        int8_t* q = px.q + i * 32 * P;
        store_packed_codes(hi[0], hi[1], hi[2], hi[3], q);
        __m256i s0 = _mm256_add_epi32(hi[0], hi[1]), s1 = _mm256_add_epi32(hi[2], hi[3]);
        if (P == 2) {
            store_packed_codes(lo[0], lo[1], lo[2], lo[3], q + 32);
            s0 = _mm256_add_epi32(_mm256_slli_epi32(s0, 7), _mm256_add_epi32(lo[0], lo[1]));
            s1 = _mm256_add_epi32(_mm256_slli_epi32(s1, 7), _mm256_add_epi32(lo[2], lo[3]));
        }
        packed::store_block_sums(px, i, amax, group_d, hsum_i32(s0), hsum_i32(s1));
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
