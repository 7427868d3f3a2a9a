// Decode (one token) of K-quant weights on 512-bit vectors: tile_kquad_decode (matmul_int8_avx2.cpp) with two
// sub-blocks per vector, half the instructions per byte. The integer sums per (row, lane parity) are the same exact
// integers and the fp32 operations the same, so the bits equal the AVX2 kernel's and a batch's (fast order).
// Compiled with -mavx512f -mavx512bw -mavx512vl (and AVX2/FMA/F16C); only called after a cpuid + xgetbv check that
// the OS enables the ZMM and opmask state (active_isa() >= avx512vnni, matmul.cpp).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/matmul_int8_avx2.h"

namespace lazyllm_edge {
namespace avx512vnni {

namespace {

using avx2::kQ4_K;
using avx2::kQ5_K;
using avx2::kQ6_K;

// Two 32-byte halves -> one vector [lo | hi].
inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
inline __m256i ld256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// One row's superblock against x: `sumi` and `corr` exactly as avx2's krow_sums (8 int32 lanes each; lanes l and
// l + 8 of a 512-bit sum hold codes of the same parity, so adding the halves keeps the parities apart).
template <int T>
__attribute__((always_inline)) inline void krow_sums512(const uint8_t* b, const int8_t* xq, const int16_t* bsums,
                                                        __m256i& sumi, __m256i& corr) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m256i bs = ld256(bsums);  // 16 int16, two per sub-block
    __m512i acc = _mm512_setzero_si512();
    if constexpr (T == kQ6_K) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        const __m512i m3 = _mm512_set1_epi8(3);
        // int16 position p of a vector covering sub-blocks (s, s+1) takes scale entry 2s + p / 8
        const __m512i pos8 = _mm512_srli_epi16(_mm512_setr_epi64(0x0003000200010000LL, 0x0007000600050004LL, 0x000B000A00090008LL,
                                                                 0x000F000E000D000CLL, 0x0013001200110010LL, 0x0017001600150014LL,
                                                                 0x001B001A00190018LL, 0x001F001E001D001CLL), 3);
        for (int half = 0; half < 2; ++half) {
            const __m512i l = _mm512_loadu_si512(b + 64 * half);  // [ql slice 0 | ql slice 1] of this half
            const __m512i h = _mm512_broadcast_i64x4(ld256(b + 128 + 32 * half));
            // [sub-block 4h | 4h+1]: low nibbles, qh bits 0-1 | 2-3; [4h+2 | 4h+3]: high nibbles, bits 4-5 | 6-7
            const __m512i sh_a = join(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
            const __m512i sh_b = join(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(l, m4),
                                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, sh_a), m3), 4));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, sh_b), m3), 4));
            const int sa = 4 * half, sb = 4 * half + 2;
            const __m512i ia = _mm512_add_epi16(pos8, _mm512_set1_epi16(static_cast<short>(2 * sa)));
            const __m512i ib = _mm512_add_epi16(pos8, _mm512_set1_epi16(static_cast<short>(2 * sb)));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(qa, _mm512_loadu_si512(xq + 32 * sa)),
                                                          _mm512_permutexvar_epi16(ia, sc)));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(qb, _mm512_loadu_si512(xq + 32 * sb)),
                                                          _mm512_permutexvar_epi16(ib, sc)));
        }
        const __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
        sumi = _mm256_sub_epi32(s, _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5));  // the code offset 32
        corr = _mm256_setzero_si256();
    } else {
        const __m128i sm = avx2::k4_scales_mins(b + 4);
        const __m512i s16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sm));  // 8 scales as int16, every 128-bit lane
        const __m128i m8 = _mm_unpackhi_epi64(sm, sm);
        corr = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)), bs);  // [m0 m0 m1 m1 ..] . bsums
        __m512i qh;
        if constexpr (T == kQ5_K) qh = _mm512_broadcast_i64x4(ld256(b + 16));
        const uint8_t* qs = b + (T == kQ4_K ? 16 : 48);
        for (int p = 0; p < 2; ++p) {
            // qs slices 2p, 2p+1: low nibbles = sub-blocks [4p | 4p+2], high = [4p+1 | 4p+3]
            const __m512i v = _mm512_loadu_si512(qs + 64 * p);
            __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            const int s0 = 4 * p, s1 = 4 * p + 1, s2 = 4 * p + 2, s3 = 4 * p + 3;
            if constexpr (T == kQ5_K) {  // fifth bit of sub-block s: qh bit s
                const __m512i one = _mm512_set1_epi8(1);
                const __m512i sh_lo = join(_mm256_set1_epi16(static_cast<short>(s0)), _mm256_set1_epi16(static_cast<short>(s2)));
                const __m512i sh_hi = join(_mm256_set1_epi16(static_cast<short>(s1)), _mm256_set1_epi16(static_cast<short>(s3)));
                lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_lo), one), 4));
                hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), one), 4));
            }
            auto scale2 = [&](int a, int c) {  // int16 scale a in the low 256 bits, c in the high
                return _mm512_shuffle_epi8(s16, join(_mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * a)),
                                                     _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * c))));
            };
            const __m512i x_lo = join(ld256(xq + 32 * s0), ld256(xq + 32 * s2));
            const __m512i x_hi = join(ld256(xq + 32 * s1), ld256(xq + 32 * s3));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(lo, x_lo), scale2(s0, s2)));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(hi, x_hi), scale2(s1, s3)));
        }
        sumi = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
    }
}

// y[r] for one token x n_rows rows, a quad at a time: avx2's tile_kquad_decode with krow_sums512.
template <int T>
void gemv_rows(const avx2::QX& x, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y) {
    constexpr int BB = T == kQ4_K ? 144 : T == kQ5_K ? 176 : 210;
    for (int64_t r0 = 0; r0 < n_rows; r0 += 4) {
        const int64_t nr = n_rows - r0 < 4 ? n_rows - r0 : 4;
        const uint8_t* rows[4];
        for (int j = 0; j < 4; ++j) rows[j] = w + (r0 + (j < nr ? j : nr - 1)) * row_bytes;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < x.nb; ++i) {
            __m256i s[4], c[4];
            for (int j = 0; j < 4; ++j) {
                const uint8_t* b = rows[j] + i * BB;
                for (int o = 0; o < BB; o += 64) avx2::prefetch_weights(b + avx2::kPrefetchAhead + o);
                krow_sums512<T>(b, x.q + i * 256, x.bsums + i * 16, s[j], c[j]);
            }
            const __m256 vxd = _mm256_set1_ps(x.d[i]);
            const uint8_t* r[4] = {rows[0] + i * BB, rows[1] + i * BB, rows[2] + i * BB, rows[3] + i * BB};
            const __m256 sumi = _mm256_cvtepi32_ps(avx2::fold_quad(s[0], s[1], s[2], s[3]));
            if constexpr (T == kQ6_K) {
                acc = _mm256_fmadd_ps(_mm256_mul_ps(avx2::quad_fp16(r, 208), vxd), sumi, acc);
            } else {
                acc = _mm256_fmadd_ps(_mm256_mul_ps(avx2::quad_fp16(r, 0), vxd), sumi, acc);
                const __m256 corr = _mm256_cvtepi32_ps(avx2::fold_quad(c[0], c[1], c[2], c[3]));
                acc = _mm256_fmadd_ps(_mm256_xor_ps(_mm256_mul_ps(avx2::quad_fp16(r, 2), vxd), _mm256_set1_ps(-0.0f)), corr, acc);
            }
        }
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc);
        for (int j = 0; j < nr; ++j) y[r0 + j] = lanes[2 * j] + lanes[2 * j + 1];
    }
}

}  // namespace

// One token's Q8_K activations (q: K codes, d: K/256 scales, bsums: K/16) times n_rows rows of a K-quant `type`
// into y (n_rows); false for other types.
bool gemv_kquant(uint32_t type, const int8_t* q, const float* d, const int16_t* bsums, int64_t K, const void* w,
                 size_t row_bytes, int64_t n_rows, float* y) {
    const avx2::QX x{q, d, nullptr, nullptr, bsums, K, K / 256};
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    switch (type) {
        case kQ4_K: gemv_rows<kQ4_K>(x, wb, row_bytes, n_rows, y); return true;
        case kQ5_K: gemv_rows<kQ5_K>(x, wb, row_bytes, n_rows, y); return true;
        case kQ6_K: gemv_rows<kQ6_K>(x, wb, row_bytes, n_rows, y); return true;
        default: return false;
    }
}

}  // namespace avx512vnni
}  // namespace lazyllm_edge
#endif  // __x86_64__
