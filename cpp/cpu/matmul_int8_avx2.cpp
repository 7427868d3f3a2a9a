// AVX2 int8 matmul, the way llama.cpp's CPU backend multiplies by quantized weights: activations quantized
// per token row (Q8_0/Q8_1 blocks of 32, Q8_K blocks of 256; quantize_row_q8_1 / _q8_K below) and integer
// dot products with the weight codes (vpmaddubsw + vpmaddwd), scaled per block in fp32. Weight types:
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (blocks of 32) and Q4_K, Q5_K, Q6_K (superblocks of 256); any token count.
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

#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace avx2 {

namespace {

// ggml type ids
constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;

// Quantized activations of a batch of tokens.
struct QX {
    const int8_t* q;       // (n_tok, K) codes
    const float* d;        // (n_tok, nb) block scales
    const float* s;        // (n_tok, K/32) Q8_1 sums (Q4_1 / Q5_1 weights)
    const int32_t* isum;   // (n_tok, K/32) exact code sums (Q4_0 / Q5_0 weights)
    const int16_t* bsums;  // (n_tok, K/16) Q8_K sums (K-quant weights)
    int64_t K, nb;         // nb = K/32, or K/256 for Q8_K
    bool llama;            // llama.cpp's fp32 accumulation order (llama_cpp_numerics)
    int64_t gemm_tokens;   // llama order: tokens [0, gemm_tokens) take its 4-token gemm order (Q4_K/Q5_K), the rest its gemv order
    bool tiled;            // llama order: Q6_K batches of >= 8 tokens take its tiled K-quant kernel's order
};

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

// ---------------- quads of rows ----------------
//
// Rows go in quads, one per 64-bit quarter of a vector: chunk k (codes 8k..8k+7) of a block becomes
// [a | b | c | d] (8 codes of each row a..d), against x's chunk k broadcast to all four quarters. Four
// vpmaddubsw (one per chunk) added in int16, then vpmaddwd, leave two int32 lanes per row (codes
// {8k..8k+3} and {8k+4..8k+7} over k), the same for every quarter; a short quad repeats its last row.

// Four 32-byte row slices -> chunk k = [a bytes 8k..8k+7 | b .. | c .. | d ..] (a 4x4 transpose of qwords).
inline void quad_transpose(__m256i a, __m256i b, __m256i c, __m256i d, __m256i* v) {
    const __m256i ab_lo = _mm256_unpacklo_epi64(a, b), ab_hi = _mm256_unpackhi_epi64(a, b);
    const __m256i cd_lo = _mm256_unpacklo_epi64(c, d), cd_hi = _mm256_unpackhi_epi64(c, d);
    v[0] = _mm256_permute2x128_si256(ab_lo, cd_lo, 0x20);
    v[1] = _mm256_permute2x128_si256(ab_hi, cd_hi, 0x20);
    v[2] = _mm256_permute2x128_si256(ab_lo, cd_lo, 0x31);
    v[3] = _mm256_permute2x128_si256(ab_hi, cd_hi, 0x31);
}

// The 32-byte slices at offset `off` of the four rows, transposed into chunks.
inline void quad_slices(const uint8_t* const* r, int off, __m256i* v) {
    auto ld = [&](int j) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r[j] + off)); };
    quad_transpose(ld(0), ld(1), ld(2), ld(3), v);
}

// [x_a x_a x_b x_b | x_c x_c x_d x_d] from the fp16 at offset `off` of each row.
inline __m256 quad_fp16(const uint8_t* const* r, int off) {
    uint16_t h[4];
    for (int j = 0; j < 4; ++j) std::memcpy(&h[j], r[j] + off, 2);
    const __m128 f = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(h[0]), static_cast<short>(h[1]), static_cast<short>(h[2]),
                                                 static_cast<short>(h[3]), 0, 0, 0, 0));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
}

// How far (bytes) past each row's current block the weights are prefetched. A thread's quads of rows are one
// contiguous stream, so this reaches a few quads ahead and keeps many lines in flight; decode is bound by that
// stream (SmolLM2 Q4_1 decode, 2 threads: about 100 tok/s with 256 B, 180-240 with 8 KiB).
constexpr int kPrefetchAhead = 8192;

// ---------------- weights in blocks of 32: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (x as Q8_0 / Q8_1) ----------------

template <int T>
constexpr int kBlockBytes = T == kQ4_0 ? 18 : T == kQ4_1 ? 20 : T == kQ5_0 ? 22 : T == kQ5_1 ? 24 : 34;
// Q4_1 / Q5_1: w = d*q + m, codes 0..15 / 0..31.
template <int T>
constexpr bool kHasMin = T == kQ4_1 || T == kQ5_1;
// Q4_0 / Q5_0: w = d*(q - off) with unsigned codes q; the offset comes off exactly as off * sum(x codes).
template <int T>
constexpr int kOffset = T == kQ4_0 ? 8 : T == kQ5_0 ? 16 : 0;

// A block of four rows, ready for the integer dots.
struct QuadBlock {
    __m256i v[4];  // codes by chunk (unsigned, except Q8_0: signed), quarters = rows
    __m256 d;      // [d_a d_a d_b d_b | d_c d_c d_d d_d]
    __m256 m;      // [0 m_a 0 m_b | 0 m_c 0 m_d] (Q4_1/Q5_1)
};

// Nibble codes: bytes 0..7 of qs hold codes 0..7 (low) and 16..23 (high), bytes 8..15 codes 8..15 and 24..31.
__attribute__((always_inline)) inline void quad_codes_nibbles(const uint8_t* const* r, int qs, __m256i* v) {
    auto pair = [&](int x, int y) {
        return _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[y] + qs)),
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[x] + qs)));
    };
    const __m256i ac = pair(0, 2), bd = pair(1, 3);
    const __m256i lo8 = _mm256_unpacklo_epi64(ac, bd), hi8 = _mm256_unpackhi_epi64(ac, bd);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    v[0] = _mm256_and_si256(lo8, m4);
    v[1] = _mm256_and_si256(hi8, m4);
    v[2] = _mm256_and_si256(_mm256_srli_epi16(lo8, 4), m4);
    v[3] = _mm256_and_si256(_mm256_srli_epi16(hi8, 4), m4);
}

// Q5 fifth bits (qh, bit j = code j) added as 16: byte k of each row's qh covers chunk k.
__attribute__((always_inline)) inline void quad_add_high_bits(const uint8_t* const* r, int qh, __m256i* v) {
    uint32_t h[4];
    for (int j = 0; j < 4; ++j) std::memcpy(&h[j], r[j] + qh, 4);
    // [qh_a qh_b qh_c qh_d] -> bytes (row j, chunk k) at 4k + j, in both 128-bit lanes
    const __m128i t = _mm_shuffle_epi8(_mm_setr_epi32(static_cast<int>(h[0]), static_cast<int>(h[1]), static_cast<int>(h[2]),
                                                      static_cast<int>(h[3])),
                                       _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    const __m256i tt = _mm256_broadcastsi128_si256(t);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    for (int k = 0; k < 4; ++k) {
        // spread byte (row j, chunk k) over quarter j, keep bit i in byte i, add 16 where set
        const __m256i idx = _mm256_setr_epi64x(0x0101010101010101LL * (4 * k + 0), 0x0101010101010101LL * (4 * k + 1),
                                               0x0101010101010101LL * (4 * k + 2), 0x0101010101010101LL * (4 * k + 3));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(tt, idx), bit), bit);
        v[k] = _mm256_or_si256(v[k], _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    }
}

template <int T>
__attribute__((always_inline)) inline QuadBlock quad_block(const uint8_t* const* r) {
    QuadBlock qb;
    // codes
    if constexpr (T == kQ8_0) quad_slices(r, 2, qb.v);  // int8 codes after the fp16 scale
    else quad_codes_nibbles(r, T == kQ4_0 ? 2 : T == kQ4_1 ? 4 : T == kQ5_0 ? 6 : 8, qb.v);
    if constexpr (T == kQ5_0 || T == kQ5_1) quad_add_high_bits(r, T == kQ5_0 ? 2 : 4, qb.v);
    // the fp16 scale (and min) fields of the four rows: [d_a m_a d_b m_b | d_c m_c d_d m_d]
    uint32_t f[4];
    for (int j = 0; j < 4; ++j) std::memcpy(&f[j], r[j], 4);
    const __m256 fs = _mm256_cvtph_ps(_mm_setr_epi32(static_cast<int>(f[0]), static_cast<int>(f[1]), static_cast<int>(f[2]),
                                                     static_cast<int>(f[3])));
    qb.d = _mm256_permutevar8x32_ps(fs, _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6));
    if constexpr (kHasMin<T>) qb.m = _mm256_and_ps(fs, _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1)));
    return qb;
}

// Block i of the four rows (and the weight stream kPrefetchAhead further on).
template <int T>
__attribute__((always_inline)) inline QuadBlock quad_block_at(const uint8_t* const* rows, int64_t i) {
    constexpr int BB = kBlockBytes<T>;
    const uint8_t* r[4] = {rows[0] + i * BB, rows[1] + i * BB, rows[2] + i * BB, rows[3] + i * BB};
    for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(r[j] + kPrefetchAhead), _MM_HINT_T0);
    return quad_block<T>(r);
}

// One token's block: x chunk k broadcast to the four quarters.
struct XBlock {
    __m256i c[4];
    __m256 d;     // d_x broadcast
    __m256 s;     // s_x broadcast (Q4_1/Q5_1)
    __m256i off;  // off * sum(x codes) in the first lane of each quarter (Q4_0/Q5_0)
};

template <int T>
inline XBlock x_block(const QX& x, int64_t tok, int64_t i) {
    XBlock xb;
    const int8_t* xq = x.q + tok * x.K + i * 32;
    for (int k = 0; k < 4; ++k) {
        int64_t c;
        std::memcpy(&c, xq + 8 * k, 8);
        xb.c[k] = _mm256_set1_epi64x(c);
    }
    xb.d = _mm256_set1_ps(x.d[tok * x.nb + i]);
    if constexpr (kHasMin<T>) xb.s = _mm256_set1_ps(x.s[tok * x.nb + i]);
    if constexpr (kOffset<T> != 0)
        xb.off = _mm256_and_si256(_mm256_set1_epi32(kOffset<T> * x.isum[tok * x.nb + i]),
                                  _mm256_setr_epi32(-1, 0, -1, 0, -1, 0, -1, 0));
    return xb;
}

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

// The quad's integer dots with one token's block, chunk by chunk: p[k] holds, for each row, the sums of
// codes 8k..8k+3 and 8k+4..8k+7 (ggml's int32 lanes 2k and 2k+1 of the block, four products each), as floats.
// Unsigned codes go straight into vpmaddubsw; the Q4_0/Q5_0 offset comes off as off * (the four x codes' sum);
// Q8_0's signed codes move their sign onto x (ggml's trick).
template <int T>
inline void quad_dot_lanes(const QuadBlock& w, const XBlock& x, __m256* p) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int k = 0; k < 4; ++k) {
        __m256i s;
        if constexpr (T == kQ8_0) {
            s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w.v[k], w.v[k]), _mm256_sign_epi8(x.c[k], w.v[k])), ones);
        } else {
            s = _mm256_madd_epi16(_mm256_maddubs_epi16(w.v[k], x.c[k]), ones);
            if constexpr (kOffset<T> != 0) {
                const __m256i xs = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), x.c[k]), ones);
                s = _mm256_sub_epi32(s, _mm256_slli_epi32(xs, kOffset<T> == 16 ? 4 : 3));
            }
        }
        p[k] = _mm256_cvtepi32_ps(s);
    }
}

// y[t][r] for MT tokens (from t0) x one quad of rows (n_rows of them, 1..4), with ggml_vec_dot_*_q8_*'s fp32
// order: per block, lane m += (d_w * d_x) * (codes 4m..4m+3 dotted), then the 8 lanes summed as hsum8 (ggml's
// hsum_float_8), and for Q4_1/Q5_1 + the sum over blocks of m_w * s_x (kept apart, as ggml's summs).
template <int T, int MT>
void tile_b32_llama(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    const uint8_t* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = w + (j < n_rows ? j : n_rows - 1) * row_bytes;
    __m256 acc[MT][4];
    __m256 summs[MT];  // [0 ms_a 0 ms_b | 0 ms_c 0 ms_d] (Q4_1/Q5_1)
    for (int t = 0; t < MT; ++t) {
        acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = _mm256_setzero_ps();
        summs[t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < x.nb; ++i) {
        const QuadBlock wb = quad_block_at<T>(rows, i);
        // against this block of each token
        for (int t = 0; t < MT; ++t) {
            const XBlock xb = x_block<T>(x, t0 + t, i);
            const __m256 dd = _mm256_mul_ps(wb.d, xb.d);
            __m256 p[4];
            quad_dot_lanes<T>(wb, xb, p);
            for (int k = 0; k < 4; ++k) acc[t][k] = _mm256_fmadd_ps(dd, p[k], acc[t][k]);
            if constexpr (kHasMin<T>) summs[t] = _mm256_fmadd_ps(wb.m, xb.s, summs[t]);
        }
    }
    // each row: hsum8 of its lanes L0..L7, L(2k+h) in acc[k] slot 2j+h: ((L4+L0)+(L6+L2)) + ((L5+L1)+(L7+L3))
    for (int t = 0; t < MT; ++t) {
        const __m256 u = _mm256_add_ps(_mm256_add_ps(acc[t][2], acc[t][0]), _mm256_add_ps(acc[t][3], acc[t][1]));
        alignas(32) float lanes[8], ms[8];
        _mm256_store_ps(lanes, u);
        _mm256_store_ps(ms, summs[t]);
        for (int j = 0; j < n_rows; ++j) {
            const float sum = lanes[2 * j] + lanes[2 * j + 1];
            y[t * ldy + j] = kHasMin<T> ? sum + ms[2 * j + 1] : sum;
        }
    }
}

template <int T, int MT>
void tile_b32(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    if (x.llama) tile_b32_llama<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
    else tile_b32_fast<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
}

// ---------------- K-quants: Q4_K, Q5_K, Q6_K superblocks of 256 (x as Q8_K) ----------------
//
// Quads of rows again, one superblock at a time: it is unpacked once into a KQuad (codes by
// 32-code sub-block and chunk, integer scales as int16 quarters, fp32 scales) and then dotted with each
// token of the group. Per sub-block the four chunk products add up in int16 and vpmaddwd applies the
// sub-block's integer scale; the code offset (Q6_K: q - 32) or the mins (Q4_K/Q5_K) pair with Q8_K's bsums.

// A superblock of four rows, unpacked.
struct KQuad {
    __m256i codes[8][4];  // [sub-block of 32][chunk of 8], unsigned, quarters = rows
    __m256i scale[8][2];  // [sub-block][its codes 0..15 / 16..31]: int16 quarters [s_a x4 | s_b x4 | s_c x4 | s_d x4]
    __m256i bcoef[4];     // [k]: int16 quarters, each row's coefficients for bsums 4k..4k+3
    __m256 d, dmin;       // [d_a d_a d_b d_b | d_c d_c d_d d_d], same for dmin (Q4_K/Q5_K)
};

// Q4_K / Q5_K: codes (4 bits from qs, Q5_K's 5th from qh), 6-bit scales and mins.
template <int T>
inline void kquad_unpack_q45(const uint8_t* const* r, KQuad& kq) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    // codes: qs slice j holds sub-blocks 2j (low nibbles) and 2j+1 (high nibbles)
    __m256i qh[4];
    if constexpr (T == kQ5_K) quad_slices(r, 16, qh);
    for (int j = 0; j < 4; ++j) {
        __m256i v[4];
        quad_slices(r, (T == kQ4_K ? 16 : 48) + 32 * j, v);
        for (int k = 0; k < 4; ++k) {
            __m256i lo = _mm256_and_si256(v[k], m4), hi = _mm256_and_si256(_mm256_srli_epi16(v[k], 4), m4);
            if constexpr (T == kQ5_K) {
                const __m256i one = _mm256_set1_epi8(1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh[k], _mm_cvtsi32_si128(2 * j)), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh[k], _mm_cvtsi32_si128(2 * j + 1)), one), 4));
            }
            kq.codes[2 * j][k] = lo;
            kq.codes[2 * j + 1][k] = hi;
        }
    }
    // scales and mins of each row; the scales as int16 quarters per sub-block
    uint64_t sc8[4];
    __m256i mins[4];
    for (int j = 0; j < 4; ++j) {
        uint8_t sc[8], mn[8];
        k4_scales(r[j] + 4, sc, mn);
        std::memcpy(&sc8[j], sc, 8);
        const __m128i m8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn));
        mins[j] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));  // [m0 m0 m1 m1 ...]: one per bsum
    }
    const __m256i s8 = _mm256_setr_epi64x(static_cast<int64_t>(sc8[0]), static_cast<int64_t>(sc8[1]),
                                          static_cast<int64_t>(sc8[2]), static_cast<int64_t>(sc8[3]));
    for (int sb = 0; sb < 8; ++sb) {
        // byte sb of each row's qword into the four int16 lanes of its quarter (high bytes zero)
        const char a = static_cast<char>(sb), b = static_cast<char>(8 + sb), z = static_cast<char>(0x80);
        const __m256i idx = _mm256_setr_epi8(a, z, a, z, a, z, a, z, b, z, b, z, b, z, b, z,
                                             a, z, a, z, a, z, a, z, b, z, b, z, b, z, b, z);
        kq.scale[sb][0] = kq.scale[sb][1] = _mm256_shuffle_epi8(s8, idx);
    }
    quad_transpose(mins[0], mins[1], mins[2], mins[3], kq.bcoef);
    kq.d = quad_fp16(r, 0);
    kq.dmin = quad_fp16(r, 2);
}

// Q6_K: codes q + 32 (4 bits from ql, 2 from qh), signed scales per 16 codes.
inline void kquad_unpack_q6(const uint8_t* const* r, KQuad& kq) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    for (int half = 0; half < 2; ++half) {
        // ql slices 0/1 and the qh slice of this half; group k: ql slice k & 1, low nibbles for k < 2, qh bits 2k
        __m256i l0[4], l1[4], h[4];
        quad_slices(r, 64 * half, l0);
        quad_slices(r, 64 * half + 32, l1);
        quad_slices(r, 128 + 32 * half, h);
        for (int k = 0; k < 4; ++k)
            for (int c = 0; c < 4; ++c) {
                const __m256i l = (k & 1) ? l1[c] : l0[c];
                const __m256i lo4 = k < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                const __m256i hi2 = _mm256_and_si256(_mm256_srl_epi16(h[c], _mm_cvtsi32_si128(2 * k)), m3);
                kq.codes[4 * half + k][c] = _mm256_or_si256(lo4, _mm256_slli_epi16(hi2, 4));
            }
    }
    // the 16 int8 scales: rows a, c in one vector, b, d in another (128-bit lanes = quarters 0-1 / 2-3)
    auto sc16 = [&](int x, int y) {
        return _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[y] + 192)),
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[x] + 192)));
    };
    const __m256i ac = sc16(0, 2), bd = sc16(1, 3);
    const char z = static_cast<char>(0x80);
    for (int g = 0; g < 16; ++g) {
        // scale g into the high byte of each int16 lane of its row's quarter, then sign-extend
        const char G = static_cast<char>(g);
        const __m256i i_ac = _mm256_setr_epi8(z, G, z, G, z, G, z, G, z, z, z, z, z, z, z, z,
                                              z, G, z, G, z, G, z, G, z, z, z, z, z, z, z, z);
        const __m256i i_bd = _mm256_setr_epi8(z, z, z, z, z, z, z, z, z, G, z, G, z, G, z, G,
                                              z, z, z, z, z, z, z, z, z, G, z, G, z, G, z, G);
        const __m256i v = _mm256_or_si256(_mm256_shuffle_epi8(ac, i_ac), _mm256_shuffle_epi8(bd, i_bd));
        kq.scale[g / 2][g % 2] = _mm256_srai_epi16(v, 8);
    }
    // the offset pairs with bsums through the same scales
    __m256i rows[4];
    for (int j = 0; j < 4; ++j)
        rows[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[j] + 192)));
    quad_transpose(rows[0], rows[1], rows[2], rows[3], kq.bcoef);
    kq.d = quad_fp16(r, 208);
    kq.dmin = _mm256_setzero_ps();
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

// Superblock i of the four rows, unpacked once for all tokens (and the weight stream kPrefetchAhead further
// on, every line of a superblock).
template <int T>
inline void kquad_load(const uint8_t* const* rows, int64_t i, KQuad& kq) {
    constexpr int BB = T == kQ4_K ? 144 : T == kQ5_K ? 176 : 210;
    const uint8_t* r[4] = {rows[0] + i * BB, rows[1] + i * BB, rows[2] + i * BB, rows[3] + i * BB};
    for (int j = 0; j < 4; ++j)
        for (int b = 0; b < BB; b += 64) _mm_prefetch(reinterpret_cast<const char*>(r[j] + kPrefetchAhead + b), _MM_HINT_T0);
    if constexpr (T == kQ6_K) kquad_unpack_q6(r, kq);
    else kquad_unpack_q45<T>(r, kq);
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

// One token's superblock against a KQuad, with ggml's integer and fp32 order.
//  - Q6_K (ggml_vec_dot_q6_K_q8_K): int32 lanes m = codes 4m..4m+3 of each 32-code chunk, (q - 32) * x times the
//    16-code scale, summed over the superblock; per superblock lane m += (d_x * d_w) * lane; hsum8 at the end.
//    Here lanes[k] holds, per row, ggml's lanes 2k and 2k+1.
//  - Q4_K/Q5_K (the repacked ggml_gemv/gemm_q4_K_8x8_q8_K): one integer sum of the whole superblock and one of
//    mins * bsums per row; acc += isum * (d_w * d_x) and acc_min += imin * (dmin_w * d_x); out = acc - acc_min.
//    Here both sums sit in both lanes of a row's pair.
// 8 products of codes <= 63 and |x| <= 127 fit int16 for Q4_K/Q5_K (<= 31) and, per 16 codes, for Q6_K.
template <int T>
inline void kquad_dot_llama(const KQuad& kq, const int8_t* xq, const int16_t* bsums, float xd, bool gemm, __m256* acc) {
    const __m256 vxd = _mm256_set1_ps(xd);
    if constexpr (T == kQ6_K) {
        __m256i lanes[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        const __m256 dd = _mm256_mul_ps(vxd, kq.d);
        // the -32 code offset comes off per 32-code sub-block through the bsums (ggml's q8sclsub), which puts
        // sub-block m's whole correction into lane m
        for (int sb = 0; sb < 8; ++sb)
            for (int k = 0; k < 4; ++k) {
                int64_t c;
                std::memcpy(&c, xq + 32 * sb + 8 * k, 8);
                const __m256i p = _mm256_maddubs_epi16(kq.codes[sb][k], _mm256_set1_epi64x(c));
                lanes[k] = _mm256_add_epi32(lanes[k], _mm256_madd_epi16(p, kq.scale[sb][k / 2]));
            }
        for (int k = 0; k < 4; ++k) {
            int64_t c;
            std::memcpy(&c, bsums + 4 * k, 8);
            lanes[k] = _mm256_sub_epi32(lanes[k], _mm256_slli_epi32(_mm256_madd_epi16(kq.bcoef[k], _mm256_set1_epi64x(c)), 5));
        }
        if (gemm) {  // ggml's tiled K-quant kernel (batches of >= 8): one sum per row, acc += (d_w * isum) * d_x
            __m256i t = _mm256_add_epi32(_mm256_add_epi32(lanes[0], lanes[1]), _mm256_add_epi32(lanes[2], lanes[3]));
            t = _mm256_add_epi32(t, _mm256_shuffle_epi32(t, 0xB1));
            acc[0] = _mm256_fmadd_ps(_mm256_mul_ps(kq.d, _mm256_cvtepi32_ps(t)), vxd, acc[0]);
            return;
        }
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes[k]), acc[k]);
        return;
    }
    const __m256 dd = _mm256_mul_ps(kq.d, vxd), dmin = _mm256_mul_ps(kq.dmin, vxd);
    __m256i sumi = _mm256_setzero_si256(), imin = _mm256_setzero_si256();
    for (int pair = 0; pair < 4; ++pair) {
        for (int sb = 2 * pair; sb < 2 * pair + 2; ++sb) {
            __m256i p[4];
            for (int k = 0; k < 4; ++k) {
                int64_t c;
                std::memcpy(&c, xq + 32 * sb + 8 * k, 8);
                p[k] = _mm256_maddubs_epi16(kq.codes[sb][k], _mm256_set1_epi64x(c));
            }
            const __m256i p16 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, kq.scale[sb][0]));
        }
        int64_t c;
        std::memcpy(&c, bsums + 4 * pair, 8);
        imin = _mm256_add_epi32(imin, _mm256_madd_epi16(kq.bcoef[pair], _mm256_set1_epi64x(c)));
        if (gemm) {  // the gemm scales every pair of sub-blocks
            const __m256i s2 = _mm256_add_epi32(sumi, _mm256_shuffle_epi32(sumi, 0xB1));
            const __m256i m2 = _mm256_add_epi32(imin, _mm256_shuffle_epi32(imin, 0xB1));
            acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2), dd, acc[0]);
            acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m2), dmin, acc[1]);
            sumi = imin = _mm256_setzero_si256();
        }
    }
    if (gemm) return;
    // the gemv scales the superblock: each row's two lanes -> its total, in both
    sumi = _mm256_add_epi32(sumi, _mm256_shuffle_epi32(sumi, 0xB1));
    imin = _mm256_add_epi32(imin, _mm256_shuffle_epi32(imin, 0xB1));
    acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), dd, acc[0]);
    acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), dmin, acc[1]);
}

// y[t][r] for MT tokens (from t0) x one quad of rows (n_rows of them, 1..4).
template <int T, int MT>
void tile_kquad_llama(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    const uint8_t* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = w + (j < n_rows ? j : n_rows - 1) * row_bytes;
    __m256 acc[MT][4];  // Q6_K: the lanes of kquad_dot; Q4_K/Q5_K: [0] acc, [1] acc_min
    for (int t = 0; t < MT; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = _mm256_setzero_ps();
    KQuad kq;
    for (int64_t i = 0; i < x.nb; ++i) {
        kquad_load<T>(rows, i, kq);
        // against this superblock of each token
        for (int t = 0; t < MT; ++t) {
            const int64_t tok = t0 + t;
            kquad_dot_llama<T>(kq, x.q + tok * x.K + i * 256, x.bsums + tok * (x.K / 16) + i * 16, x.d[tok * x.nb + i],
                         T == kQ6_K ? x.tiled : tok < x.gemm_tokens, acc[t]);
        }
    }
    for (int t = 0; t < MT; ++t) {
        alignas(32) float out[8];
        if (T == kQ6_K && x.tiled) {
            _mm256_store_ps(out, acc[t][0]);
            for (int j = 0; j < n_rows; ++j) y[t * ldy + j] = out[2 * j];
        } else if constexpr (T == kQ6_K) {  // hsum8 of each row's lanes, as in tile_b32
            _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(acc[t][2], acc[t][0]), _mm256_add_ps(acc[t][3], acc[t][1])));
            for (int j = 0; j < n_rows; ++j) y[t * ldy + j] = out[2 * j] + out[2 * j + 1];
        } else {
            _mm256_store_ps(out, _mm256_sub_ps(acc[t][0], acc[t][1]));
            for (int j = 0; j < n_rows; ++j) y[t * ldy + j] = out[2 * j];
        }
    }
}

template <int T, int MT>
void tile_kquad(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    if (x.llama) tile_kquad_llama<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
    else tile_kquad_fast<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
}

// ---------------- tiling ----------------

constexpr bool is_k_quant(int T) { return T == kQ4_K || T == kQ5_K || T == kQ6_K; }

// MT tokens from t0 against n_rows rows, four at a time (the last quad may be short).
template <int T, int MT>
void tile_rows(const QX& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    for (int64_t r = 0; r < n_rows; r += 4) {
        const int64_t nr = n_rows - r < 4 ? n_rows - r : 4;
        if constexpr (is_k_quant(T)) tile_kquad<T, MT>(x, t0, w + r * row_bytes, row_bytes, nr, y + r, ldy);
        else tile_b32<T, MT>(x, t0, w + r * row_bytes, row_bytes, nr, y + r, ldy);
    }
}

// y (n_tok, n_rows; row stride ldy). Cache blocking: a chunk of tokens whose codes stay in L2 sweeps over
// tiles of rows whose weights stay in L1, 4 tokens at a time.
template <int T>
void gemm_t(const QX& x, int64_t n_tok, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    int64_t tok_chunk = (256 * 1024 / x.K) / 8 * 8;
    if (tok_chunk < 8) tok_chunk = 8;
    int64_t rows_per_tile = static_cast<int64_t>(16 * 1024 / row_bytes) / 4 * 4;
    if (rows_per_tile < 4) rows_per_tile = 4;
    for (int64_t c0 = 0; c0 < n_tok; c0 += tok_chunk) {
        const int64_t c1 = n_tok - c0 < tok_chunk ? n_tok : c0 + tok_chunk;
        for (int64_t r0 = 0; r0 < n_rows; r0 += rows_per_tile) {
            const int64_t nr = n_rows - r0 < rows_per_tile ? n_rows - r0 : rows_per_tile;
            const uint8_t* wt = w + r0 * row_bytes;
            int64_t t = c0;
            for (; t + 8 <= c1; t += 8) tile_rows<T, 8>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy);
            for (; t + 4 <= c1; t += 4) tile_rows<T, 4>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy);
            switch (c1 - t) {
                case 3: tile_rows<T, 3>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy); break;
                case 2: tile_rows<T, 2>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy); break;
                case 1: tile_rows<T, 1>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy); break;
                default: break;
            }
        }
    }
}

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
        // largest magnitude, then the signed value of its first occurrence
        __m256 a = _mm256_setzero_ps();
        for (int k = 0; k < 32; ++k) a = _mm256_max_ps(a, abs_ps(_mm256_loadu_ps(x + 8 * k)));
        const float amax = hmax(a);
        if (amax == 0.0f) {
            d[b] = 0.0f;
            std::memset(q, 0, 256);
            std::memset(bsums, 0, 16 * sizeof(int16_t));
            continue;
        }
        float max = 0.0f;
        for (int k = 0; k < 32; ++k) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hit) {
                max = x[8 * k + __builtin_ctz(static_cast<unsigned>(hit))];
                break;
            }
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
// (n_tok, K/32), Q4_1/Q5_1 only; isum: exact code sums (n_tok, K/32), Q4_0/Q5_0 only; bsums: Q8_K sums (n_tok, K/16), K-quants only. y: (n_tok, n_rows), stride ldy.
// llama: llama.cpp's fp32 order (ggml's AVX2 vec_dot / repacked Q4_K kernels), bit-identical to its results.
bool gemm_q8(uint32_t type, const int8_t* q, const float* d, const float* s, const int32_t* isum, const int16_t* bsums,
             int64_t n_tok, int64_t K, const void* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy, bool llama) {
    const bool kq = type == kQ4_K || type == kQ5_K || type == kQ6_K;
    const QX x{q, d, s, isum, bsums, K, K / (kq ? 256 : 32), llama, n_tok - n_tok % 4, n_tok >= 8};
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    switch (type) {
        case kQ4_0: gemm_t<kQ4_0>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ4_1: gemm_t<kQ4_1>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ5_0: gemm_t<kQ5_0>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ5_1: gemm_t<kQ5_1>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ8_0: gemm_t<kQ8_0>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ4_K: gemm_t<kQ4_K>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ5_K: gemm_t<kQ5_K>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ6_K: gemm_t<kQ6_K>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        default: return false;
    }
}

}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
