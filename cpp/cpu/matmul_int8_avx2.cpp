// AVX2 int8 matmul, the way llama.cpp's CPU backend multiplies by quantized weights: activations quantized
// per token row (Q8_0/Q8_1 blocks of 32, Q8_K blocks of 256; quantize_row_q8_1 / _q8_K below) and integer
// dot products with the weight codes (vpmaddubsw + vpmaddwd), scaled per block in fp32. Weight types:
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (blocks of 32) and Q4_K, Q5_K, Q6_K (superblocks of 256); any token count.
// This file has the fast fp32 order (`fast` numerics: decode); llama.cpp's own order (`llama_cpp` numerics) is
// llama_order/matmul_int8_llama_avx2.cpp, and what both share is matmul_int8_avx2.h.
//
// Every output y[t][r] goes through the same fp32 operations in the same order whatever the tile shape,
// the token count or the thread split, so a token's result does not depend on how tokens are batched.
//
// Compiled with -mavx2 -mfma -mf16c; only called after a cpuid check. As in kernels_avx2.cpp, nothing
// here is shared with baseline files except the extern functions at the bottom (plain pointers only).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/matmul_int8_avx2.h"
#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace avx2 {

namespace {

// 8 floats times `scale`, rounded half to even (vroundps), as int32.
inline __m256i round_codes(const float* x, __m256 scale) {
    constexpr int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    return _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), scale), rnd));
}

// 32 int32 codes (4 vectors in element order) -> 32 int8 at q, element order (ggml's pack + permute).
inline void store_codes_32(__m256i i0, __m256i i1, __m256i i2, __m256i i3, int8_t* q) {
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(p, perm));
}

inline uint16_t to_fp16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

// ---------------- the fast order: two fp32 lanes per row, one multiply-add per block ----------------

// The quad's integer dots with one token's block, as 8 float lanes (two per row). Unsigned codes go
// straight into vpmaddubsw and the four chunks add up in int16 (<= 8 * 31 * 127); Q8_0's signed codes move
// their sign onto x (ggml's trick) and add up in int32.
template <int T>
inline __m256 quad_dot(const QuadBlock& w, const XBlock& x) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p;
    if constexpr (T == kQ8_0) {
        __m256i s[4];
        for (int k = 0; k < 4; ++k)
            s[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w.v[k], w.v[k]), _mm256_sign_epi8(x.c[k], w.v[k])), ones);
        p = _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3]));
    } else {
        const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(w.v[0], x.c[0]), _mm256_maddubs_epi16(w.v[1], x.c[1]));
        const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(w.v[2], x.c[2]), _mm256_maddubs_epi16(w.v[3], x.c[3]));
        p = _mm256_madd_epi16(_mm256_add_epi16(p01, p23), ones);
        if constexpr (kOffset<T> != 0) p = _mm256_sub_epi32(p, x.off);
    }
    return _mm256_cvtepi32_ps(p);
}

// y[t][r] for MT tokens (from t0) x one quad of rows (n_rows of them, 1..4): per block
// acc += (d_w * d_x) * dot, and for Q4_1/Q5_1 acc += m_w * s_x (ggml_vec_dot_q4_0_q8_0 and friends).
template <int T, int MT>
void tile_b32_fast(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    const uint8_t* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = w + (j < n_rows ? j : n_rows - 1) * row_bytes;
    __m256 acc[MT];
    for (int t = 0; t < MT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < x.nb; ++i) {
        const QuadBlock wb = quad_block_at<T>(rows, i);
        // against this block of each token
        for (int t = 0; t < MT; ++t) {
            const XBlock xb = x_block<T>(x, t0 + t, i);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(wb.d, xb.d), quad_dot<T>(wb, xb), acc[t]);
            if constexpr (kHasMin<T>) acc[t] = _mm256_fmadd_ps(wb.m, xb.s, acc[t]);
        }
    }
    // each row: the sum of its two lanes
    for (int t = 0; t < MT; ++t) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[t]);
        for (int j = 0; j < n_rows; ++j) y[t * ldy + j] = lanes[2 * j] + lanes[2 * j + 1];
    }
}

// One token's superblock against a KQuad: acc += d_x d_w * sum(scale * dot) over the sub-blocks, with the
// bsums term: Q4_K/Q5_K acc -= d_x dmin_w * sum(min * bsum) (ggml_vec_dot_q4_K_q8_K), Q6_K removes the
// code offset 32 * sum(scale * bsum) from the integer sum (ggml_vec_dot_q6_K_q8_K). 8 products of codes
// <= 63 and |x| <= 127 fit int16 for Q4_K/Q5_K (<= 31) and, per 16 codes, for Q6_K.
template <int T>
inline __m256 kquad_dot(const KQuad& kq, const int8_t* xq, const int16_t* bsums, float xd, __m256 acc) {
    __m256i sumi = _mm256_setzero_si256();
    for (int sb = 0; sb < 8; ++sb) {
        __m256i p[4];
        for (int k = 0; k < 4; ++k) {
            int64_t c;
            std::memcpy(&c, xq + 32 * sb + 8 * k, 8);
            p[k] = _mm256_maddubs_epi16(kq.codes[sb][k], _mm256_set1_epi64x(c));
        }
        if constexpr (T == kQ6_K) {
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_add_epi16(p[0], p[1]), kq.scale[sb][0]));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_add_epi16(p[2], p[3]), kq.scale[sb][1]));
        } else {
            const __m256i p16 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, kq.scale[sb][0]));
        }
    }
    // the bsums term: two int32 lanes per row
    __m256i corr = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
        int64_t c;
        std::memcpy(&c, bsums + 4 * k, 8);
        corr = _mm256_add_epi32(corr, _mm256_madd_epi16(kq.bcoef[k], _mm256_set1_epi64x(c)));
    }
    const __m256 vxd = _mm256_set1_ps(xd);
    if constexpr (T == kQ6_K) {
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
        return _mm256_fmadd_ps(_mm256_mul_ps(kq.d, vxd), _mm256_cvtepi32_ps(sumi), acc);
    }
    acc = _mm256_fmadd_ps(_mm256_mul_ps(kq.d, vxd), _mm256_cvtepi32_ps(sumi), acc);
    return _mm256_fmadd_ps(_mm256_xor_ps(_mm256_mul_ps(kq.dmin, vxd), _mm256_set1_ps(-0.0f)), _mm256_cvtepi32_ps(corr), acc);
}

// y[t][r] for MT tokens (from t0) x one quad of rows (n_rows of them, 1..4).
template <int T, int MT>
void tile_kquad_fast(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    const uint8_t* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = w + (j < n_rows ? j : n_rows - 1) * row_bytes;
    __m256 acc[MT];
    for (int t = 0; t < MT; ++t) acc[t] = _mm256_setzero_ps();
    KQuad kq;
    for (int64_t i = 0; i < x.nb; ++i) {
        kquad_load<T>(rows, i, kq);
        // against this superblock of each token
        for (int t = 0; t < MT; ++t) {
            const int64_t tok = t0 + t;
            acc[t] = kquad_dot<T>(kq, x.q + tok * x.K + i * 256, x.bsums + tok * (x.K / 16) + i * 16, x.d[tok * x.nb + i], acc[t]);
        }
    }
    // each row: the sum of its two lanes
    for (int t = 0; t < MT; ++t) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[t]);
        for (int j = 0; j < n_rows; ++j) y[t * ldy + j] = lanes[2 * j] + lanes[2 * j + 1];
    }
}

// ---------------- one token (decode): K-quant rows straight from the GGUF layout ----------------
//
// With a single token a KQuad's transposes and scale shuffles are not amortized, and they cost more than the
// dots. Here each row's superblock is read in place (32 consecutive codes per vector, against x's 32 codes of
// that sub-block), so int32 lane l of a row's sums holds codes 4l..4l+3 of every sub-block: the even lanes are
// the fast order's lane 0 (codes j % 8 < 4), the odd lanes its lane 1. Four rows' lanes are then folded into the
// quad layout [aE aO bE bO | cE cO dE dO]; the integer sums are exact, so the fp32 operations that follow are
// tile_kquad_fast's, and the bits equal a batch's.

// One row's superblock against x: `sumi` (8 lanes, see above: codes times scales, Q6_K less its offset) and
// `corr` (8 lanes: lane i = min_i * bsum of sub-block i; Q4_K/Q5_K only).
template <int T>
__attribute__((always_inline)) inline void krow_sums(const uint8_t* b, const int8_t* xq, const int16_t* bsums, __m256i& sumi,
                                                     __m256i& corr) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums));  // 16 int16, two per sub-block
    auto xv = [&](int sb) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * sb)); };
    __m256i acc = _mm256_setzero_si256();
    if constexpr (T == kQ6_K) {
        // scales: 16 int8 (one per 16 codes) as int16; sub-block sb's are entries 2sb (lanes 0-7) and 2sb+1 (8-15)
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
        const __m128i lo_idx = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
        const __m256i m3 = _mm256_set1_epi8(3);
        for (int half = 0; half < 2; ++half) {
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half + 32));
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * half));
            for (int k = 0; k < 4; ++k) {
                const int sb = 4 * half + k;
                const __m256i l = (k & 1) ? l1 : l0;
                const __m256i lo4 = k < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                const __m256i hi2 = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * k)), m3);
                const __m256i q = _mm256_or_si256(lo4, _mm256_slli_epi16(hi2, 4));
                // this sub-block's two scales: int16 entry 2sb in the low 128 bits, 2sb+1 in the high
                const __m256i idx = _mm256_set_m128i(_mm_add_epi8(lo_idx, _mm_set1_epi8(static_cast<char>(4 * sb + 2 - 16 * (sb >= 4)))),
                                                     _mm_add_epi8(lo_idx, _mm_set1_epi8(static_cast<char>(4 * sb - 16 * (sb >= 4)))));
                const __m256i s = sb < 4 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv(sb)), _mm256_shuffle_epi8(s, idx)));
            }
        }
        // the code offset 32: sum(scale * bsum), lane i = entries 2i and 2i+1
        sumi = _mm256_sub_epi32(acc, _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5));
        corr = _mm256_setzero_si256();  // no mins
    } else {
        const __m128i sm = k4_scales_mins(b + 4);
        const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));  // 8 scales as int16, both halves
        const __m128i m8 = _mm_unpackhi_epi64(sm, sm);
        corr = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)), bs);  // [m0 m0 m1 m1 ..] . bsums
        __m256i qh;
        if constexpr (T == kQ5_K) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
        const uint8_t* qs = b + (T == kQ4_K ? 16 : 48);
        for (int j = 0; j < 4; ++j) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * j));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if constexpr (T == kQ5_K) {
                const __m256i one = _mm256_set1_epi8(1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j + 1)), one), 4));
            }
            const __m256i sl = _mm256_shuffle_epi8(s16, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * (2 * j))));
            const __m256i sh = _mm256_shuffle_epi8(s16, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * (2 * j + 1))));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xv(2 * j)), sl));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xv(2 * j + 1)), sh));
        }
        sumi = acc;
    }
}

// y[0][r] for one token x one quad of rows (n_rows of them, 1..4): tile_kquad_fast<T, 1>'s result, bit for bit.
template <int T>
void tile_kquad_decode(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y) {
    constexpr int BB = T == kQ4_K ? 144 : T == kQ5_K ? 176 : 210;
    const uint8_t* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = w + (j < n_rows ? j : n_rows - 1) * row_bytes;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < x.nb; ++i) {
        const int8_t* xq = x.q + t0 * x.K + i * 256;
        const int16_t* bsums = x.bsums + t0 * (x.K / 16) + i * 16;
        __m256i s[4], c[4];
        for (int j = 0; j < 4; ++j) {
            const uint8_t* b = rows[j] + i * BB;
            for (int o = 0; o < BB; o += 64) prefetch_weights(b + kPrefetchAhead + o);
            krow_sums<T>(b, xq, bsums, s[j], c[j]);
        }
        const __m256 vxd = _mm256_set1_ps(x.d[t0 * x.nb + i]);
        const uint8_t* r[4] = {rows[0] + i * BB, rows[1] + i * BB, rows[2] + i * BB, rows[3] + i * BB};
        const __m256 sumi = _mm256_cvtepi32_ps(fold_quad(s[0], s[1], s[2], s[3]));
        if constexpr (T == kQ6_K) {
            acc = _mm256_fmadd_ps(_mm256_mul_ps(quad_fp16(r, 208), vxd), sumi, acc);
        } else {
            acc = _mm256_fmadd_ps(_mm256_mul_ps(quad_fp16(r, 0), vxd), sumi, acc);
            const __m256 corr = _mm256_cvtepi32_ps(fold_quad(c[0], c[1], c[2], c[3]));
            acc = _mm256_fmadd_ps(_mm256_xor_ps(_mm256_mul_ps(quad_fp16(r, 2), vxd), _mm256_set1_ps(-0.0f)), corr, acc);
        }
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (int j = 0; j < n_rows; ++j) y[j] = lanes[2 * j] + lanes[2 * j + 1];
}

// The tiles of the fast order (gemm_tiles in matmul_int8_avx2.h).
struct FastOrder {
    template <int T, int MT>
    static void b32(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
        tile_b32_fast<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
    }
    template <int T, int MT>
    static void kquad(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
        if constexpr (MT == 1) tile_kquad_decode<T>(x, t0, w, row_bytes, n_rows, y);
        else tile_kquad_fast<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
    }
};

}  // namespace

// Bit-identical to quantize_row_q8_1_reference (ggml's AVX2 quantize_row_q8_1).
void quantize_row_q8_1(const float* x, int64_t n, int8_t* q, float* d, float* s, int32_t* isum) {
    for (int64_t b = 0; b < n / 32; ++b, x += 32, q += 32) {
        // block scale from the largest magnitude
        const __m256 a = _mm256_max_ps(_mm256_max_ps(abs_ps(_mm256_loadu_ps(x)), abs_ps(_mm256_loadu_ps(x + 8))),
                                       _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 16)), abs_ps(_mm256_loadu_ps(x + 24))));
        const float amax = hmax(a);
        const float dr = amax / 127.0f;
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        // codes, their sum, and the fp16-rounded scale and sum
        const __m256i i0 = round_codes(x, id), i1 = round_codes(x + 8, id), i2 = round_codes(x + 16, id),
                      i3 = round_codes(x + 24, id);
        store_codes_32(i0, i1, i2, i3, q);
        const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        d[b] = _cvtsh_ss(to_fp16(dr));
        s[b] = _cvtsh_ss(to_fp16(dr * static_cast<float>(sum)));
        if (isum) isum[b] = sum;
    }
}

// Bit-identical to quantize_row_q8_K_reference (ggml's quantize_row_q8_K_ref).
void quantize_row_q8_K(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsums) {
    for (int64_t b = 0; b < n / 256; ++b, x += 256, q += 256, bsums += 16) {
        const float max = q8_K_max(x);  // the signed value of the first element of largest magnitude
        if (max == 0.0f) {
            d[b] = 0.0f;
            std::memset(q, 0, 256);
            std::memset(bsums, 0, 16 * sizeof(int16_t));
            continue;
        }
        // codes (clamped to 127 as ggml does) and their sums per 16, 32 at a time
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int g = 0; g < 8; ++g) {
            const float* xg = x + 32 * g;
            const __m256i i0 = _mm256_min_epi32(round_codes(xg, is), top), i1 = _mm256_min_epi32(round_codes(xg + 8, is), top),
                          i2 = _mm256_min_epi32(round_codes(xg + 16, is), top), i3 = _mm256_min_epi32(round_codes(xg + 24, is), top);
            store_codes_32(i0, i1, i2, i3, q + 32 * g);
            bsums[2 * g] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(i0, i1)));
            bsums[2 * g + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(i2, i3)));
        }
        d[b] = 1.0f / iscale;
    }
}

// Int8 matmul of quantized activations with n_rows weight rows of `type`; false for a type without a kernel.
// q: (n_tok, K) codes; d: block scales (n_tok, K/32), or (n_tok, K/256) for K-quant weights; s: Q8_1 sums
// (n_tok, K/32), Q4_1/Q5_1 only; isum: exact code sums (n_tok, K/32), Q4_0/Q5_0 only; bsums: Q8_K sums
// (n_tok, K/16), K-quants only. y: (n_tok, n_rows), stride ldy.
bool gemm_q8(uint32_t type, const int8_t* q, const float* d, const float* s, const int32_t* isum, const int16_t* bsums,
             int64_t n_tok, int64_t K, const void* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    const QX x{q, d, s, isum, bsums, K, act_blocks(type, K)};
    return gemm_for_type<FastOrder>(type, x, n_tok, w, row_bytes, n_rows, y, ldy);
}

}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
