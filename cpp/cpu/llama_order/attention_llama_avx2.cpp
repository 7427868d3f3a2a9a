// AVX2/FMA/F16C phase kernels of the llama.cpp-numerics attention, bit-identical to the scalar ones in attention_llama.cpp (the arithmetic is
// fixed by attention_llama.h: fp16 x fp16 products are exact, so FMA and multiply-add agree, and every sum keeps the
// documented order):
//  - scores: register tiles of up to 3 rows x 4 keys, one 8-lane accumulator per (row, key) over head dims;
//  - softmax: vector max, expf_ggml, group sums of 8 positions (straight from the row when the positions are
//    consecutive, through a scatter otherwise), fp16 rounding;
//  - P.V: up to 4 rows x 16 dims of accumulators per lane, the keys of each lane in position order;
//  - a single query: q.k with 4 accumulators of 8 (lanes d % 32) per row, one key at a time; P.V adds each key
//    into its lane pos % 32 in memory.
#include "cpu/llama_order/attention_llama.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/kernels.h"
#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace {

#define LLE_UNROLL _Pragma("GCC unroll 8")

using avx2::load_half8;

// K rows for avx2::score_tile_lanes.
struct KeyLoader {
    const KvRows& k;
    __m256 load(int j, int d) const { return load_half8(k.row(j) + d); }
};

// Sums of four 8-lane accumulators in the hsum8 order, as one vector (a0 .. a3).
inline __m128 hsum8_x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m128 t0 = _mm_add_ps(_mm256_extractf128_ps(a0, 1), _mm256_castps256_ps128(a0));
    const __m128 t1 = _mm_add_ps(_mm256_extractf128_ps(a1, 1), _mm256_castps256_ps128(a1));
    const __m128 t2 = _mm_add_ps(_mm256_extractf128_ps(a2, 1), _mm256_castps256_ps128(a2));
    const __m128 t3 = _mm_add_ps(_mm256_extractf128_ps(a3, 1), _mm256_castps256_ps128(a3));
    // x_k = (t0 + t2, t1 + t3) of accumulator k
    const __m128 x0 = _mm_add_ps(t0, _mm_movehl_ps(t0, t0)), x1 = _mm_add_ps(t1, _mm_movehl_ps(t1, t1));
    const __m128 x2 = _mm_add_ps(t2, _mm_movehl_ps(t2, t2)), x3 = _mm_add_ps(t3, _mm_movehl_ps(t3, t3));
    const __m128 a = _mm_unpacklo_ps(x0, x1), b = _mm_unpacklo_ps(x2, x3);
    return _mm_add_ps(_mm_movelh_ps(a, b), _mm_movehl_ps(b, a));
}

// s (NR, ld) for keys [0, n): 4 keys at a time, a short last group repeats its last key (not stored).
template <int NR>
void score_rows(const float* q, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld) {
    const __m128 sc = _mm_set1_ps(scale);
    const KeyLoader keys_of{k};
    for (int j = 0; j < n; j += 4) {
        const int keys[4] = {j, std::min(j + 1, n - 1), std::min(j + 2, n - 1), std::min(j + 3, n - 1)};
        __m256 a[NR][4];
        avx2::score_tile_lanes<NR>(q, hd, keys_of, keys, a);
        const int m = std::min(4, n - j);
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            alignas(16) float out[4];
            _mm_store_ps(out, _mm_mul_ps(hsum8_x4(a[r][0], a[r][1], a[r][2], a[r][3]), sc));
            for (int i = 0; i < m; ++i) s[r * ld + j + i] = out[i];
        }
    }
}

void scores_avx2(const float* q16, int rows, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld) {
    int r = 0;
    for (; r + 3 <= rows; r += 3) score_rows<3>(q16 + static_cast<int64_t>(r) * hd, hd, k, n, scale, s + r * ld, ld);
    if (rows - r == 2) score_rows<2>(q16 + static_cast<int64_t>(r) * hd, hd, k, n, scale, s + r * ld, ld);
    if (rows - r == 1) score_rows<1>(q16 + static_cast<int64_t>(r) * hd, hd, k, n, scale, s + r * ld, ld);
}

inline float hsum8_scalar(const float* a) {
    const float t0 = a[4] + a[0], t1 = a[5] + a[1], t2 = a[6] + a[2], t3 = a[7] + a[3];
    return (t0 + t2) + (t1 + t3);
}

// Sum in double of the hsum8 of consecutive 8-float groups g[0 .. 8 * n_groups).
double group_sum(const float* g, int n_groups) {
    double sum = 0.0;
    int i = 0;
    for (; i + 4 <= n_groups; i += 4) {
        alignas(16) float h[4];
        _mm_store_ps(h, hsum8_x4(_mm256_loadu_ps(g + 8 * i), _mm256_loadu_ps(g + 8 * i + 8),
                                 _mm256_loadu_ps(g + 8 * i + 16), _mm256_loadu_ps(g + 8 * i + 24)));
        sum += h[0];
        sum += h[1];
        sum += h[2];
        sum += h[3];
    }
    for (; i < n_groups; ++i) sum += hsum8_scalar(g + 8 * i);
    return sum;
}

void softmax_avx2(float* s, const int32_t* pos, int n, int b, int e, float* group) {
    if (e <= b) {
        std::fill(s, s + n, 0.0f);
        return;
    }
    // max over the keys seen
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int j = b;
    for (; j + 8 <= e; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vm);
    float mx = lanes[0];
    for (int i = 1; i < 8; ++i) mx = std::max(mx, lanes[i]);
    for (; j < e; ++j) mx = std::max(mx, s[j]);
    // numerators
    const __m256 vmx = _mm256_set1_ps(mx);
    for (j = b; j + 8 <= e; j += 8) _mm256_storeu_ps(s + j, avx2::expf_ggml_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx)));
    for (; j < e; ++j) s[j] = expf_ggml(s[j] - mx);
    std::fill(s, s + b, 0.0f);
    std::fill(s + e, s + n, 0.0f);
    // groups of 8 positions: the first and last through `group`, the middle straight from s when consecutive
    const int32_t base = pos[b] & ~7, last = pos[e - 1];
    const int n_groups = (last - base) / 8 + 1;
    double sum;
    if (last - pos[b] == e - 1 - b) {
        const int lead = pos[b] - base;  // s[b - lead] is position base
        if (lead == 0 && n_groups * 8 <= n - b) {
            sum = group_sum(s + b, n_groups);  // s past e is zero
        } else {
            std::fill(group, group + 8 * n_groups, 0.0f);
            std::copy(s + b, s + e, group + lead);
            sum = group_sum(group, n_groups);
        }
    } else {
        std::fill(group, group + 8 * std::min(n_groups, n + 2), 0.0f);
        if (n_groups <= n + 2) {
            for (j = b; j < e; ++j) group[pos[j] - base] = s[j];
            sum = group_sum(group, n_groups);
        } else {  // sparse over a long range: one group at a time
            sum = 0.0;
            for (j = b; j < e;) {
                float g8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                const int32_t of = pos[j] >> 3;
                for (; j < e && (pos[j] >> 3) == of; ++j) g8[pos[j] & 7] = s[j];
                sum += hsum8_scalar(g8);
            }
        }
    }
    const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
    for (j = b; j + 8 <= e; j += 8)
        _mm256_storeu_ps(s + j, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(s + j), inv), _MM_FROUND_TO_NEAREST_INT)));
    const float inv1 = static_cast<float>(1.0 / sum);
    for (; j < e; ++j) s[j] = _cvtsh_ss(_cvtss_sh(s[j] * inv1, _MM_FROUND_TO_NEAREST_INT));
}

// lanes (NR, 8, hd) dims [d, d + 8 * NC) += p . V over each lane's keys.
template <int NR, int NC>
void pv_rows(const float* p, int64_t ld, const KvRows& v, const int32_t* order, const int* bucket, int hd, int d,
             float* lanes) {
    for (int i = 0; i < 8; ++i) {
        if (bucket[i] == bucket[i + 1]) continue;
        __m256 a[NR][NC];
        LLE_UNROLL
        for (int r = 0; r < NR; ++r)
            LLE_UNROLL
            for (int c = 0; c < NC; ++c) a[r][c] = _mm256_loadu_ps(lanes + (static_cast<int64_t>(r) * 8 + i) * hd + d + 8 * c);
        for (int x = bucket[i]; x < bucket[i + 1]; ++x) {
            const int j = order[x];
            const uint16_t* vr = v.row(j) + d;
            __m256 vv[NC];
            LLE_UNROLL
            for (int c = 0; c < NC; ++c) vv[c] = load_half8(vr + 8 * c);
            LLE_UNROLL
            for (int r = 0; r < NR; ++r) {
                const __m256 w = _mm256_broadcast_ss(p + r * ld + j);
                LLE_UNROLL
                for (int c = 0; c < NC; ++c) a[r][c] = _mm256_fmadd_ps(w, vv[c], a[r][c]);
            }
        }
        LLE_UNROLL
        for (int r = 0; r < NR; ++r)
            LLE_UNROLL
            for (int c = 0; c < NC; ++c) _mm256_storeu_ps(lanes + (static_cast<int64_t>(r) * 8 + i) * hd + d + 8 * c, a[r][c]);
    }
}

template <int NR>
void pv_dims(const float* p, int64_t ld, const KvRows& v, const int32_t* order, const int* bucket, int hd, int d0,
             int d1, float* lanes) {
    int d = d0;
    for (; d + 16 <= d1; d += 16) pv_rows<NR, 2>(p, ld, v, order, bucket, hd, d, lanes);
    if (d < d1) pv_rows<NR, 1>(p, ld, v, order, bucket, hd, d, lanes);
}

void pv_avx2(const float* p, int rows, int64_t ld, const KvRows& v, const int32_t* order, const int* bucket, int hd,
             int d0, int d1, float* lanes) {
    int r = 0;
    const int64_t lane_rows = 8 * static_cast<int64_t>(hd);
    for (; r + 4 <= rows; r += 4) pv_dims<4>(p + r * ld, ld, v, order, bucket, hd, d0, d1, lanes + r * lane_rows);
    switch (rows - r) {
        case 3: pv_dims<3>(p + r * ld, ld, v, order, bucket, hd, d0, d1, lanes + r * lane_rows); break;
        case 2: pv_dims<2>(p + r * ld, ld, v, order, bucket, hd, d0, d1, lanes + r * lane_rows); break;
        case 1: pv_dims<1>(p + r * ld, ld, v, order, bucket, hd, d0, d1, lanes + r * lane_rows); break;
        default: break;
    }
}

void combine_avx2(const float* lanes, int rows, int hd, int d0, int d1, float* out, int64_t out_stride) {
    for (int r = 0; r < rows; ++r) {
        const float* l = lanes + static_cast<int64_t>(r) * 8 * hd;
        for (int d = d0; d < d1; d += 8) {
            const __m256 t0 = _mm256_add_ps(_mm256_loadu_ps(l + 4 * hd + d), _mm256_loadu_ps(l + d));
            const __m256 t1 = _mm256_add_ps(_mm256_loadu_ps(l + 5 * hd + d), _mm256_loadu_ps(l + hd + d));
            const __m256 t2 = _mm256_add_ps(_mm256_loadu_ps(l + 6 * hd + d), _mm256_loadu_ps(l + 2 * hd + d));
            const __m256 t3 = _mm256_add_ps(_mm256_loadu_ps(l + 7 * hd + d), _mm256_loadu_ps(l + 3 * hd + d));
            _mm256_storeu_ps(out + r * out_stride + d, _mm256_add_ps(_mm256_add_ps(t0, t2), _mm256_add_ps(t1, t3)));
        }
    }
}

// ---- single query (decode): ggml_vec_dot_f16's 32 lanes ----

// reduce32 of four 8-lane accumulators (lanes 0-7, 8-15, 16-23, 24-31): ((a0 + a2) + (a1 + a3)) per lane, then
// ((c0 + c4) + (c1 + c5)) + ((c2 + c6) + (c3 + c7)), as GGML_F32x8_REDUCE.
inline float reduce32_x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 c = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    const __m128 t = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
    const __m128 u = _mm_hadd_ps(t, t);
    return _mm_cvtss_f32(_mm_hadd_ps(u, u));
}

// s (NR, ld) for keys [0, n), one key at a time: 4 accumulators per row over the first np dims.
template <int NR>
void score32_rows(const float* q, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld) {
    const int np = hd - hd % 32;
    for (int j = 0; j < n; ++j) {
        const uint16_t* kr = k.row(j);
        __m256 a[NR][4];
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
        for (int d = 0; d < np; d += 32) {
            const __m256 x0 = load_half8(kr + d), x1 = load_half8(kr + d + 8);
            const __m256 x2 = load_half8(kr + d + 16), x3 = load_half8(kr + d + 24);
            LLE_UNROLL
            for (int r = 0; r < NR; ++r) {
                const float* qr = q + r * hd + d;
                a[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(qr), x0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(qr + 8), x1, a[r][1]);
                a[r][2] = _mm256_fmadd_ps(_mm256_loadu_ps(qr + 16), x2, a[r][2]);
                a[r][3] = _mm256_fmadd_ps(_mm256_loadu_ps(qr + 24), x3, a[r][3]);
            }
        }
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            double sum = reduce32_x4(a[r][0], a[r][1], a[r][2], a[r][3]);
            for (int d = np; d < hd; ++d) sum += static_cast<double>(q[r * hd + d] * _cvtsh_ss(kr[d]));
            s[r * ld + j] = static_cast<float>(sum) * scale;
        }
    }
}

void scores32_avx2(const float* q16, int rows, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld) {
    int r = 0;
    for (; r + 3 <= rows; r += 3) score32_rows<3>(q16 + static_cast<int64_t>(r) * hd, hd, k, n, scale, s + r * ld, ld);
    if (rows - r == 2) score32_rows<2>(q16 + static_cast<int64_t>(r) * hd, hd, k, n, scale, s + r * ld, ld);
    if (rows - r == 1) score32_rows<1>(q16 + static_cast<int64_t>(r) * hd, hd, k, n, scale, s + r * ld, ld);
}

// acc (rows, 32, hd) dims [d0, d1) += p . V: each key's V slice is converted once for all rows.
void pv32_avx2(const float* p, int rows, int64_t ld, const KvRows& v, int n, int hd, int d0, int d1, float* acc) {
    for (int j = 0; j < n; ++j) {
        const uint16_t* vr = v.row(j);
        const int64_t lane = static_cast<int64_t>(v.pos[j] & 31) * hd;
        for (int d = d0; d < d1; d += 16) {
            const bool two = d + 16 <= d1;
            const __m256 x0 = load_half8(vr + d);
            const __m256 x1 = two ? load_half8(vr + d + 8) : _mm256_setzero_ps();
            for (int r = 0; r < rows; ++r) {
                const __m256 w = _mm256_broadcast_ss(p + r * ld + j);
                float* a = acc + static_cast<int64_t>(r) * 32 * hd + lane + d;
                _mm256_storeu_ps(a, _mm256_fmadd_ps(w, x0, _mm256_loadu_ps(a)));
                if (two) _mm256_storeu_ps(a + 8, _mm256_fmadd_ps(w, x1, _mm256_loadu_ps(a + 8)));
            }
        }
    }
}

void combine32_avx2(const float* acc, int rows, int hd, int d0, int d1, float* out, int64_t out_stride) {
    for (int r = 0; r < rows; ++r) {
        const float* a = acc + static_cast<int64_t>(r) * 32 * hd;
        for (int d = d0; d < d1; d += 8) {
            __m256 c[8];
            LLE_UNROLL
            for (int l = 0; l < 8; ++l)
                c[l] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(a + l * hd + d), _mm256_loadu_ps(a + (16 + l) * hd + d)),
                                     _mm256_add_ps(_mm256_loadu_ps(a + (8 + l) * hd + d), _mm256_loadu_ps(a + (24 + l) * hd + d)));
            const __m256 x = _mm256_add_ps(_mm256_add_ps(c[0], c[4]), _mm256_add_ps(c[1], c[5]));
            const __m256 y = _mm256_add_ps(_mm256_add_ps(c[2], c[6]), _mm256_add_ps(c[3], c[7]));
            _mm256_storeu_ps(out + r * out_stride + d, _mm256_add_ps(x, y));
        }
    }
}

}  // namespace

const LlamaAttentionKernels kLlamaAttentionAvx2 = {scores_avx2, softmax_avx2, pv_avx2, combine_avx2,
                                                   scores32_avx2, pv32_avx2, combine32_avx2};

}  // namespace lazyllm_edge
#endif  // __x86_64__ && __AVX2__
