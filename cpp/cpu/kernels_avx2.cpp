// AVX2/FMA/F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after a cpuid check.
// Keep this file free of inline functions/templates shared with baseline files (ODR: the linker could
// pick an AVX2-compiled copy for everyone), hence plain pointers and no <vector>/<algorithm>.
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace avx2 {

namespace {

// 8 signed bytes (low half of v) -> 8 floats.
inline __m256 i8_to_f32(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// Stores 32 signed bytes as 32 floats multiplied by d.
inline void store_i8x32_mul(__m256i q, __m256 d, float* y) {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(i8_to_f32(lo), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8_to_f32(_mm_srli_si128(lo, 8)), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8_to_f32(hi), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8_to_f32(_mm_srli_si128(hi, 8)), d));
}

// 32 signed bytes as floats: q*d + m.
inline void store_i8x32_muladd(__m256i q, __m256 d, __m256 m, float* y) {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_add_ps(_mm256_mul_ps(i8_to_f32(lo), d), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(i8_to_f32(_mm_srli_si128(lo, 8)), d), m));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(i8_to_f32(hi), d), m));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(i8_to_f32(_mm_srli_si128(hi, 8)), d), m));
}

// 32 signed bytes as floats: q*d - m.
inline void store_i8x32_mulsub(__m256i q, __m256 d, __m256 m, float* y) {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_sub_ps(_mm256_mul_ps(d, i8_to_f32(lo)), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, i8_to_f32(_mm_srli_si128(lo, 8))), m));
    _mm256_storeu_ps(y + 16, _mm256_sub_ps(_mm256_mul_ps(d, i8_to_f32(hi)), m));
    _mm256_storeu_ps(y + 24, _mm256_sub_ps(_mm256_mul_ps(d, i8_to_f32(_mm_srli_si128(hi, 8))), m));
}

void deq_q4_0(const uint8_t* b, float* y, int64_t nb) {
    const __m256i off = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < nb; ++i, b += 18, y += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b));
        store_i8x32_mul(_mm256_sub_epi8(unpack_nibbles_32(b + 2), off), d, y);
    }
}

void deq_q4_1(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 20, y += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b));
        const __m256 m = _mm256_set1_ps(h2f(b + 2));
        store_i8x32_muladd(unpack_nibbles_32(b + 4), d, m, y);
    }
}

void deq_q5_0(const uint8_t* b, float* y, int64_t nb) {
    const __m256i h16 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < nb; ++i, b += 22, y += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b));
        __m256i q = _mm256_or_si256(unpack_nibbles_32(b + 6), _mm256_and_si256(bytes_from_bits_32(b + 2), h16));
        store_i8x32_mul(_mm256_sub_epi8(q, h16), d, y);
    }
}

void deq_q5_1(const uint8_t* b, float* y, int64_t nb) {
    const __m256i h16 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < nb; ++i, b += 24, y += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b));
        const __m256 m = _mm256_set1_ps(h2f(b + 2));
        __m256i q = _mm256_or_si256(unpack_nibbles_32(b + 8), _mm256_and_si256(bytes_from_bits_32(b + 4), h16));
        store_i8x32_muladd(q, d, m, y);
    }
}

void deq_q8_0(const uint8_t* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, b += 34, y += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b));
        store_i8x32_mul(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)), d, y);
    }
}

void deq_q4_k(const uint8_t* b, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; ++i, b += 144) {
        const float d = h2f(b), dmin = h2f(b + 2);
        uint8_t sc[8], mn[8];
        k4_scales(b + 4, sc, mn);
        const uint8_t* q = b + 16;
        for (int j = 0; j < 4; ++j, q += 32, y += 64) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
            store_i8x32_mulsub(_mm256_and_si256(v, m4), _mm256_set1_ps(d * sc[2 * j]), _mm256_set1_ps(dmin * mn[2 * j]), y);
            store_i8x32_mulsub(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_set1_ps(d * sc[2 * j + 1]),
                               _mm256_set1_ps(dmin * mn[2 * j + 1]), y + 32);
        }
    }
}

void deq_q5_k(const uint8_t* b, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; ++i, b += 176) {
        const float d = h2f(b), dmin = h2f(b + 2);
        uint8_t sc[8], mn[8];
        k4_scales(b + 4, sc, mn);
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
        const uint8_t* ql = b + 48;
        for (int j = 0; j < 4; ++j, ql += 32, y += 64) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4);
            const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4);
            store_i8x32_mulsub(_mm256_or_si256(_mm256_and_si256(v, m4), h1), _mm256_set1_ps(d * sc[2 * j]),
                               _mm256_set1_ps(dmin * mn[2 * j]), y);
            store_i8x32_mulsub(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h2),
                               _mm256_set1_ps(d * sc[2 * j + 1]), _mm256_set1_ps(dmin * mn[2 * j + 1]), y + 32);
        }
    }
}

// 32 signed bytes; floats for bytes 0..15 scaled by d0, 16..31 by d1.
inline void store_i8x32_mul2(__m256i q, __m256 d0, __m256 d1, float* y) {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(d0, i8_to_f32(lo)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d0, i8_to_f32(_mm_srli_si128(lo, 8))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d1, i8_to_f32(hi)));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d1, i8_to_f32(_mm_srli_si128(hi, 8))));
}

void deq_q6_k(const uint8_t* b, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(0x03);
    const __m256i off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; ++i, b += 210) {
        const float d = h2f(b + 208);
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        for (int n = 0; n < 2; ++n, ql += 64, qh += 32, sc += 8, y += 128) {
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            const __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            store_i8x32_mul2(_mm256_sub_epi8(q1, off), _mm256_set1_ps(d * sc[0]), _mm256_set1_ps(d * sc[1]), y);
            store_i8x32_mul2(_mm256_sub_epi8(q2, off), _mm256_set1_ps(d * sc[2]), _mm256_set1_ps(d * sc[3]), y + 32);
            store_i8x32_mul2(_mm256_sub_epi8(q3, off), _mm256_set1_ps(d * sc[4]), _mm256_set1_ps(d * sc[5]), y + 64);
            store_i8x32_mul2(_mm256_sub_epi8(q4, off), _mm256_set1_ps(d * sc[6]), _mm256_set1_ps(d * sc[7]), y + 96);
        }
    }
}

void deq_bf16(const uint8_t* b, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 * i));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    for (; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        const uint32_t u = static_cast<uint32_t>(h) << 16;
        std::memcpy(y + i, &u, 4);
    }
}

// Register-blocked block of MT tokens x MR weight rows: y[t][r] = dot(x_t, w_r) over K.
template <int MT, int MR>
inline void micro(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K, float* y, int64_t ldy) {
    __m256 acc[MT][MR];
    for (int t = 0; t < MT; ++t)
        for (int r = 0; r < MR; ++r) acc[t][r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[MR];
        for (int r = 0; r < MR; ++r) wv[r] = _mm256_loadu_ps(w + r * ldw + k);
        for (int t = 0; t < MT; ++t) {
            const __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
            for (int r = 0; r < MR; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
        }
    }
    if (MT == 4) {
        for (int r = 0; r < MR; ++r) {
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0][r], acc[1][r]), _mm256_hadd_ps(acc[2][r], acc[3][r]));
            float s[4];
            _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
            for (int t = 0; t < 4; ++t) {
                float v = s[t];
                for (int64_t kk = k; kk < K; ++kk) v += x[t * ldx + kk] * w[r * ldw + kk];
                y[t * ldy + r] = v;
            }
        }
    } else {
        for (int t = 0; t < MT; ++t)
            for (int r = 0; r < MR; ++r) {
                float v = hsum(acc[t][r]);
                for (int64_t kk = k; kk < K; ++kk) v += x[t * ldx + kk] * w[r * ldw + kk];
                y[t * ldy + r] = v;
            }
    }
}

template <int MT>
inline void micro_rows(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t n_rows, int64_t K, float* y,
                       int64_t ldy) {
    int64_t r = 0;
    for (; r + 3 <= n_rows; r += 3) micro<MT, 3>(x, ldx, w + r * ldw, ldw, K, y + r, ldy);
    if (n_rows - r == 2) micro<MT, 2>(x, ldx, w + r * ldw, ldw, K, y + r, ldy);
    else if (n_rows - r == 1) micro<MT, 1>(x, ldx, w + r * ldw, ldw, K, y + r, ldy);
}


// ---- fused fp32 decode (few tokens; used when the int8 path is switched off): dequantize in registers ----
// Per 32-element block: sum_j w_j x_j = d * sum_j q_j x_j (+ m * sum_j x_j for Q4_1), with q_j exact
// small integers in fp32. Type ids: 2 = Q4_0, 3 = Q4_1, 8 = Q8_0.
template <int MT, int TYPE>
void gemv_fused_t(const float* x, int64_t ldx, const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t K,
                  const float* xsum, float* y, int64_t ldy) {
    const int64_t nb = K / 32;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i off8 = _mm_set1_epi8(8);
    for (int64_t r = 0; r < n_rows; ++r) {
        const uint8_t* b = w + static_cast<size_t>(r) * row_bytes;
        __m256 acc[MT];
        float macc[MT];
        for (int t = 0; t < MT; ++t) {
            acc[t] = _mm256_setzero_ps();
            macc[t] = 0.0f;
        }
        for (int64_t i = 0; i < nb; ++i) {
            __m256 q0, q1, q2, q3;
            float d, m = 0.0f;
            if (TYPE == 8) {
                d = h2f(b);
                const __m128i* p = reinterpret_cast<const __m128i*>(b + 2);
                const __m128i v0 = _mm_loadu_si128(p), v1 = _mm_loadu_si128(p + 1);
                q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v0));
                q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v0, 8)));
                q2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v1));
                q3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v1, 8)));
                b += 34;
            } else {
                d = h2f(b);
                const uint8_t* qs = b + (TYPE == 3 ? 4 : 2);
                if (TYPE == 3) m = h2f(b + 2);
                const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                if (TYPE == 2) {
                    lo = _mm_sub_epi8(lo, off8);
                    hi = _mm_sub_epi8(hi, off8);
                }
                q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
                q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
                q2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
                q3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
                b += (TYPE == 3 ? 20 : 18);
            }
            const __m256 dv = _mm256_set1_ps(d);
            for (int t = 0; t < MT; ++t) {
                const float* xt = x + t * ldx + i * 32;
                __m256 s = _mm256_mul_ps(q0, _mm256_loadu_ps(xt));
                __m256 s2 = _mm256_mul_ps(q1, _mm256_loadu_ps(xt + 8));
                s = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xt + 16), s);
                s2 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xt + 24), s2);
                acc[t] = _mm256_fmadd_ps(dv, _mm256_add_ps(s, s2), acc[t]);
                if (TYPE == 3) macc[t] += m * xsum[t * nb + i];
            }
        }
        for (int t = 0; t < MT; ++t) y[t * ldy + r] = hsum(acc[t]) + macc[t];
    }
}

template <int TYPE>
void gemv_fused_type(const float* x, int64_t ldx, int64_t n_tok, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                     int64_t K, const float* xsum, float* y, int64_t ldy) {
    switch (n_tok) {
        case 1: gemv_fused_t<1, TYPE>(x, ldx, w, row_bytes, n_rows, K, xsum, y, ldy); break;
        case 2: gemv_fused_t<2, TYPE>(x, ldx, w, row_bytes, n_rows, K, xsum, y, ldy); break;
        case 3: gemv_fused_t<3, TYPE>(x, ldx, w, row_bytes, n_rows, K, xsum, y, ldy); break;
        case 4: gemv_fused_t<4, TYPE>(x, ldx, w, row_bytes, n_rows, K, xsum, y, ldy); break;
        default: break;
    }
}

}  // namespace

// Fused decode for n_tok <= 4 on Q4_0 / Q4_1 / Q8_0 rows; false for other types/shapes (caller falls back).
// xsum: per token, the sum of each 32-element block of x (needed for Q4_1 only; n_tok x K/32).
bool gemv_fused(uint32_t type, const float* x, int64_t ldx, int64_t n_tok, const void* w, size_t row_bytes,
                int64_t n_rows, int64_t K, const float* xsum, float* y, int64_t ldy) {
    if (n_tok < 1 || n_tok > 4 || K % 32 != 0) return false;
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    switch (type) {
        case 2: gemv_fused_type<2>(x, ldx, n_tok, wb, row_bytes, n_rows, K, xsum, y, ldy); return true;
        case 3: gemv_fused_type<3>(x, ldx, n_tok, wb, row_bytes, n_rows, K, xsum, y, ldy); return true;
        case 8: gemv_fused_type<8>(x, ldx, n_tok, wb, row_bytes, n_rows, K, xsum, y, ldy); return true;
        default: return false;
    }
}


bool dequantize_row(uint32_t type, const void* src, float* dst, int64_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(src);
    switch (type) {
        case 0: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return true;  // F32
        case 1: {  // F16
            int64_t i = 0;
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 * i))));
            for (; i < n; ++i) dst[i] = h2f(b + 2 * i);
            return true;
        }
        case 30: deq_bf16(b, dst, n); return true;
        case 2: deq_q4_0(b, dst, n / 32); return true;
        case 3: deq_q4_1(b, dst, n / 32); return true;
        case 6: deq_q5_0(b, dst, n / 32); return true;
        case 7: deq_q5_1(b, dst, n / 32); return true;
        case 8: deq_q8_0(b, dst, n / 32); return true;
        case 12: deq_q4_k(b, dst, n / 256); return true;
        case 13: deq_q5_k(b, dst, n / 256); return true;
        case 14: deq_q6_k(b, dst, n / 256); return true;
        default: return false;
    }
}

float dot_f32(const float* x, const float* y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

void fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

// y[t*ldy + r] = dot(x[t*ldx ..], w[r*ldw ..]) for t < n_tok, r < n_rows, over K elements.
// Blocks of 4 tokens (x block stays in L1) sweep over the rows in groups of 3 (12 accumulators).
void gemm_f32(const float* x, int64_t ldx, int64_t n_tok, const float* w, int64_t ldw, int64_t n_rows, int64_t K,
              float* y, int64_t ldy) {
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4) micro_rows<4>(x + t * ldx, ldx, w, ldw, n_rows, K, y + t * ldy, ldy);
    switch (n_tok - t) {
        case 3: micro_rows<3>(x + t * ldx, ldx, w, ldw, n_rows, K, y + t * ldy, ldy); break;
        case 2: micro_rows<2>(x + t * ldx, ldx, w, ldw, n_rows, K, y + t * ldy, ldy); break;
        case 1: micro_rows<1>(x + t * ldx, ldx, w, ldw, n_rows, K, y + t * ldy, ldy); break;
        default: break;
    }
}

}  // namespace avx2
}  // namespace lazyllm_edge
#endif  // __x86_64__
