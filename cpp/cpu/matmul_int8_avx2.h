// The shared AVX2 parts of the int8 matmul (matmul_int8_avx2.cpp: this engine's fast order;
// llama_order/matmul_int8_llama_avx2.cpp: llama.cpp's fp32 order): quantized activations, weight rows unpacked
// four at a time into integer codes and scales, and the cache-blocked driver that walks tokens x rows with the
// tiles of one order.
//
// Included only by *_avx2.cpp files (they are compiled with -mavx2 -mfma -mf16c). Everything has internal
// linkage (one unnamed namespace), as in simd_avx2.h, so no AVX2 code can be picked by the linker for a
// baseline caller.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/kernels.h"
#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace avx2 {
namespace {

// ggml type ids
constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;

constexpr bool is_k_quant(int T) { return T == kQ4_K || T == kQ5_K || T == kQ6_K; }

// Quantized activations of a batch of tokens.
struct QX {
    const int8_t* q;       // (n_tok, K) codes
    const float* d;        // (n_tok, nb) block scales
    const float* s;        // (n_tok, K/32) Q8_1 sums (Q4_1 / Q5_1 weights)
    const int32_t* isum;   // (n_tok, K/32) exact code sums (Q4_0 / Q5_0 weights)
    const int16_t* bsums;  // (n_tok, K/16) Q8_K sums (K-quant weights)
    int64_t K, nb;         // nb = K/32, or K/256 for Q8_K
};

// Activation blocks per row for weights of `type`: Q8_K superblocks of 256 for the K-quants, else blocks of 32.
inline int64_t act_blocks(uint32_t type, int64_t K) { return K / (is_k_quant(static_cast<int>(type)) ? 256 : 32); }

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
// The decode kernels' weight stream: prefetched into L2 (prefetcht1) where weight_prefetch_to_l2() says so
// (cpu/kernels.h: AMD), else into L1 as before. On Zen 4 an L1 prefetch holds one of the core's few L1 miss buffers
// until the line arrives, so a stream from DRAM ran out of them; L2 tracks more misses. 2 threads, the 1B file's
// 215 MB Q6_K output matrix: 23.5 GB/s with T0 at any distance from 4 to 32 KiB, 32.5 GB/s with T1
// (benchmarks/cpp/matmul_bench.cpp); decode against llama.cpp, same runs: 1B 0.68x -> 0.86x (K-quants), Qwen
// 0.97x -> 1.34-1.41x and SmolLM2 1.26x -> 1.78-1.93x (blocks of 32). The Intel machines' decode was measured with
// T0 and stays so until measured otherwise.
inline void prefetch_weights(const void* p) {
    if (weight_prefetch_to_l2()) _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
    else _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

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
    for (int j = 0; j < 4; ++j) prefetch_weights(r[j] + kPrefetchAhead);
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

// Superblock i of the four rows, unpacked once for all tokens (and the weight stream kPrefetchAhead further
// on, every line of a superblock).
template <int T>
inline void kquad_load(const uint8_t* const* rows, int64_t i, KQuad& kq) {
    constexpr int BB = T == kQ4_K ? 144 : T == kQ5_K ? 176 : 210;
    const uint8_t* r[4] = {rows[0] + i * BB, rows[1] + i * BB, rows[2] + i * BB, rows[3] + i * BB};
    for (int j = 0; j < 4; ++j)
        for (int b = 0; b < BB; b += 64) prefetch_weights(r[j] + kPrefetchAhead + b);
    if constexpr (T == kQ6_K) kquad_unpack_q6(r, kq);
    else kquad_unpack_q45<T>(r, kq);
}

// ---------------- one token (decode) from the GGUF layout: helpers shared with the AVX-512 kernel ----------------
//
// The decode kernels (tile_kquad_decode in matmul_int8_avx2.cpp, matmul_decode_avx512.cpp) read each row's
// superblock in place, 32 (or 64) consecutive codes per vector, so int32 lane l of a row's sums holds codes
// 4l..4l+3 of a sub-block: even lanes are the fast order's lane 0 (codes j % 8 < 4), odd lanes its lane 1.

// [aE aO bE bO | cE cO dE dO] from four rows' 8 int32 lanes (even and odd lanes summed).
inline __m256i fold_quad(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));  // [a01 b01 | a45 b45] pairs
    const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi64(c, d), _mm256_unpackhi_epi64(c, d));
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

// Q4_K/Q5_K's 12 bytes of 6-bit scales and mins (ggml's get_scale_min_k4) -> [8 scales | 8 mins] as u8, in
// registers (bytes written one by one and read back as a vector would stall on store forwarding every row).
// Dword u0 holds scales 0-3 (low 6 bits) and the top bits of scales 4-7, u1 the same for the mins, u2 the low
// 4 bits of scales 4-7 (low nibbles) and mins 4-7 (high nibbles).
inline __m128i k4_scales_mins(const uint8_t* q) {
    int32_t u[3];
    std::memcpy(u, q, 12);
    const __m128i v = _mm_setr_epi32(u[0], u[1], u[2], 0);
    const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 1, 0));  // [u0 u1 u0 u1]
    const __m128i c = _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i lo = _mm_and_si128(a, _mm_set1_epi32(0x3f3f3f3f));  // [sc0-3 mn0-3 . .]
    const __m128i hi = _mm_or_si128(_mm_and_si128(c, _mm_set1_epi32(0x0f0f0f0f)),
                                     _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(a, 6), _mm_set1_epi32(0x03030303)), 4));  // [. . sc4-7 mn4-7]
    return _mm_shuffle_epi32(_mm_blend_epi32(lo, hi, 0xC), _MM_SHUFFLE(3, 1, 2, 0));
}

// ---------------- tiling ----------------
//
// An order is a struct with two tile kernels, b32<T, MT> (blocks of 32) and kquad<T, MT> (K-quants), each
// computing y[t][r] for MT tokens (from t0) x one quad of rows (n_rows of them, 1..4) from the activations x.

// MT tokens from t0 against n_rows rows, four at a time (the last quad may be short).
template <class Order, int T, int MT, class X>
void tile_rows(const X& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    for (int64_t r = 0; r < n_rows; r += 4) {
        const int64_t nr = n_rows - r < 4 ? n_rows - r : 4;
        if constexpr (is_k_quant(T)) Order::template kquad<T, MT>(x, t0, w + r * row_bytes, row_bytes, nr, y + r, ldy);
        else Order::template b32<T, MT>(x, t0, w + r * row_bytes, row_bytes, nr, y + r, ldy);
    }
}

// y (n_tok, n_rows; row stride ldy). Cache blocking: a chunk of tokens whose codes stay in L2 sweeps over
// tiles of rows whose weights stay in L1, 8 then 4 tokens at a time.
template <class Order, int T, class X>
void gemm_tiles(const X& x, int64_t n_tok, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
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
            for (; t + 8 <= c1; t += 8) tile_rows<Order, T, 8>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy);
            for (; t + 4 <= c1; t += 4) tile_rows<Order, T, 4>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy);
            switch (c1 - t) {
                case 3: tile_rows<Order, T, 3>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy); break;
                case 2: tile_rows<Order, T, 2>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy); break;
                case 1: tile_rows<Order, T, 1>(x, t, wt, row_bytes, nr, y + t * ldy + r0, ldy); break;
                default: break;
            }
        }
    }
}

// gemm_tiles for the weight type `type` (a ggml type id); false for a type without int8 kernels.
template <class Order, class X>
bool gemm_for_type(uint32_t type, const X& x, int64_t n_tok, const void* w, size_t row_bytes, int64_t n_rows, float* y,
                   int64_t ldy) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    switch (type) {
        case kQ4_0: gemm_tiles<Order, kQ4_0>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ4_1: gemm_tiles<Order, kQ4_1>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ5_0: gemm_tiles<Order, kQ5_0>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ5_1: gemm_tiles<Order, kQ5_1>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ8_0: gemm_tiles<Order, kQ8_0>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ4_K: gemm_tiles<Order, kQ4_K>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ5_K: gemm_tiles<Order, kQ5_K>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        case kQ6_K: gemm_tiles<Order, kQ6_K>(x, n_tok, wb, row_bytes, n_rows, y, ldy); return true;
        default: return false;
    }
}

}  // namespace
}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
