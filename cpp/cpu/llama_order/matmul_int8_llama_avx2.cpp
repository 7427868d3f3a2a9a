// The int8 matmul in llama.cpp's fp32 order (`llama_cpp` numerics), bit-identical to ggml's AVX2 kernels: its
// vec_dot for the blocks of 32 and Q6_K, the repacked Q4_K/Q5_K gemv and 4-token gemm, and the tiled K-quant
// kernel for Q6_K batches of >= 8 tokens, picked by batch size as llama.cpp picks them. The integers are the fast
// order's (matmul_int8_avx2.cpp); what both share is matmul_int8_avx2.h.
//
// Compiled with -mavx2 -mfma -mf16c; only called after a cpuid check (matmul.cpp).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/matmul_int8_avx2.h"

namespace lazyllm_edge {
namespace avx2 {

namespace {

// Quantized activations, and which of ggml's kernels each token takes.
struct QXLlama : QX {
    int64_t gemm_tokens;  // tokens [0, gemm_tokens) take its 4-token gemm order (Q4_K/Q5_K), the rest its gemv order
    bool tiled;           // Q6_K batches of >= 8 tokens take its tiled K-quant kernel's order
};

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
void tile_b32_llama(const QXLlama& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
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
void tile_kquad_llama(const QXLlama& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
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

// The tiles of llama.cpp's order (gemm_tiles in matmul_int8_avx2.h).
struct LlamaOrder {
    template <int T, int MT>
    static void b32(const QXLlama& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y,
                    int64_t ldy) {
        tile_b32_llama<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
    }
    template <int T, int MT>
    static void kquad(const QXLlama& x, int64_t t0, const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y,
                      int64_t ldy) {
        tile_kquad_llama<T, MT>(x, t0, w, row_bytes, n_rows, y, ldy);
    }
};

}  // namespace

// gemm_q8 (matmul_int8_avx2.cpp) in llama.cpp's fp32 order: the same arguments, bit-identical to ggml's results.
bool gemm_q8_llama(uint32_t type, const int8_t* q, const float* d, const float* s, const int32_t* isum,
                   const int16_t* bsums, int64_t n_tok, int64_t K, const void* w, size_t row_bytes, int64_t n_rows,
                   float* y, int64_t ldy) {
    const QXLlama x{{q, d, s, isum, bsums, K, act_blocks(type, K)}, n_tok - n_tok % 4, n_tok >= 8};
    return gemm_for_type<LlamaOrder>(type, x, n_tok, w, row_bytes, n_rows, y, ldy);
}

}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
