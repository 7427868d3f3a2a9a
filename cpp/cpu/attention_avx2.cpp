// AVX2/FMA/F16C attention tile: per block of keys and kv head, K is converted from fp16 and transposed once
// (so the scores are 4 rows x 16 keys register tiles of broadcast-q FMAs), V is converted once, then an
// online softmax per row and P.V as 4 rows x 16 dims register tiles: every row of the tile reuses the
// converted block from L1. A tile with several kv heads (decode) runs each block for all of them in turn, so
// the K/V rows are streamed once, whole.
#include "cpu/attention.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lazyllm_edge {
namespace {

// Register tiles are arrays indexed by a compile-time row count: unrolled fully so they stay in registers
// (GCC only does that by itself at -O3).
#define LLE_UNROLL _Pragma("GCC unroll 8")

inline float horizontal_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float horizontal_max(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 2^x for the x <= 0 of softmax (x < -125 gives 2^-125): x = n + f with |f| <= 1/2, 2^f by its degree-6
// Taylor polynomial (relative error ~1e-7), 2^n added to the exponent bits.
inline __m256 exp2_ps(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-125.0f));
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 y = _mm256_set1_ps(1.5403530393381606e-4f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.3333558146428443e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.6181291076284772e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.5504108664821580e-2f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.4022650695910071e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.9314718055994531e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
}

inline __m256 load_half8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

// In-place 8x8 transpose: r[i][j] -> r[j][i].
inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// s (NR, bk) = q (NR, hd) . kt (hd, bk) for keys [0, nb16): NR rows x 16 keys of accumulators.
template <int NR>
void score_rows(const float* q, const float* kt, float* s, int hd, int bk, int nb16) {
    for (int j = 0; j < nb16; j += 16) {
        __m256 a0[NR], a1[NR];
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
        for (int d = 0; d < hd; ++d) {
            const __m256 k0 = _mm256_loadu_ps(kt + static_cast<int64_t>(d) * bk + j);
            const __m256 k1 = _mm256_loadu_ps(kt + static_cast<int64_t>(d) * bk + j + 8);
            LLE_UNROLL
            for (int r = 0; r < NR; ++r) {
                const __m256 qv = _mm256_broadcast_ss(q + r * hd + d);
                a0[r] = _mm256_fmadd_ps(qv, k0, a0[r]);
                a1[r] = _mm256_fmadd_ps(qv, k1, a1[r]);
            }
        }
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            _mm256_storeu_ps(s + r * bk + j, a0[r]);
            _mm256_storeu_ps(s + r * bk + j + 8, a1[r]);
        }
    }
}

// s (NR, bk) = q (NR, hd) . K for keys [0, nb) read straight from the fp16 cache, 4 keys at a time: each K
// row is converted in registers and used by all NR rows, and each (row, key) dot is reduced horizontally.
// For the few rows of decode this beats converting and transposing the block first.
template <int NR>
void score_rows_direct(const float* q, const uint16_t* k_head, const int32_t* pos, int64_t kv_dim, float* s, int hd,
                       int bk, int nb) {
    int j = 0;
    for (; j + 4 <= nb; j += 4) {
        const uint16_t* k0 = k_head + pos[j] * kv_dim;
        const uint16_t* k1 = k_head + pos[j + 1] * kv_dim;
        const uint16_t* k2 = k_head + pos[j + 2] * kv_dim;
        const uint16_t* k3 = k_head + pos[j + 3] * kv_dim;
        __m256 a[NR][4];
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
            const __m256 x0 = load_half8(k0 + d), x1 = load_half8(k1 + d), x2 = load_half8(k2 + d), x3 = load_half8(k3 + d);
            LLE_UNROLL
            for (int r = 0; r < NR; ++r) {
                const __m256 qv = _mm256_loadu_ps(q + r * hd + d);
                a[r][0] = _mm256_fmadd_ps(qv, x0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(qv, x1, a[r][1]);
                a[r][2] = _mm256_fmadd_ps(qv, x2, a[r][2]);
                a[r][3] = _mm256_fmadd_ps(qv, x3, a[r][3]);
            }
        }
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            // lanes of the four sums -> one (key0..key3) vector
            const __m256 h01 = _mm256_hadd_ps(a[r][0], a[r][1]), h23 = _mm256_hadd_ps(a[r][2], a[r][3]);
            const __m256 h = _mm256_hadd_ps(h01, h23);  // (k0 k1 k2 k3) low half + (k0 k1 k2 k3) high half
            const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(s + r * bk + j, sum);
        }
    }
    for (; j < nb; ++j) {
        const uint16_t* k = k_head + pos[j] * kv_dim;
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            __m256 a = _mm256_setzero_ps();
            for (int d = 0; d < hd; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * hd + d), load_half8(k + d), a);
            s[r * bk + j] = horizontal_sum(a);
        }
    }
}

// Where P.V reads V: the block converted to fp32 once (many rows), or straight from the fp16 cache when one
// register tile covers all rows (each element is then converted once either way).
struct VBlock {
    const float* vf;  // (nb, hd)
    int hd;
    __m256 load(int j, int d) const { return _mm256_loadu_ps(vf + static_cast<int64_t>(j) * hd + d); }
};
struct VCache {
    const uint16_t* v_head;  // V of this kv head at position 0
    const int32_t* pos;      // (nb) positions of the block
    int64_t kv_dim;
    __m256 load(int j, int d) const { return load_half8(v_head + pos[j] * kv_dim + d); }
};

// acc (NR, hd) = acc * alpha + P (NR, bk) . V (nb, hd): NR rows x 16 dims of accumulators (8 for a tail).
template <int NR, class V>
void pv_rows(const float* pr, const float* alpha, const V& v, float* acc, int hd, int bk, int nb) {
    int d = 0;
    for (; d + 16 <= hd; d += 16) {
        __m256 a0[NR], a1[NR];
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            const __m256 al = _mm256_set1_ps(alpha[r]);
            a0[r] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * hd + d), al);
            a1[r] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * hd + d + 8), al);
        }
        for (int j = 0; j < nb; ++j) {
            const __m256 v0 = v.load(j, d), v1 = v.load(j, d + 8);
            LLE_UNROLL
            for (int r = 0; r < NR; ++r) {
                const __m256 w = _mm256_broadcast_ss(pr + r * bk + j);
                a0[r] = _mm256_fmadd_ps(w, v0, a0[r]);
                a1[r] = _mm256_fmadd_ps(w, v1, a1[r]);
            }
        }
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            _mm256_storeu_ps(acc + r * hd + d, a0[r]);
            _mm256_storeu_ps(acc + r * hd + d + 8, a1[r]);
        }
    }
    if (d < hd) {  // hd % 16 == 8
        __m256 a0[NR];
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) a0[r] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * hd + d), _mm256_set1_ps(alpha[r]));
        for (int j = 0; j < nb; ++j) {
            const __m256 v0 = v.load(j, d);
            LLE_UNROLL
            for (int r = 0; r < NR; ++r) a0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(pr + r * bk + j), v0, a0[r]);
        }
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) _mm256_storeu_ps(acc + r * hd + d, a0[r]);
    }
}

constexpr int kRowTile = 4;  // rows per register tile

// s = qs . kt and acc = acc * alpha + P . vf for all rows: register tiles of kRowTile rows, then the rest.
void score_all(int rows, const float* qs, const float* kt, float* s, int hd, int bk, int nb16) {
    int r = 0;
    for (; r + kRowTile <= rows; r += kRowTile)
        score_rows<kRowTile>(qs + static_cast<int64_t>(r) * hd, kt, s + static_cast<int64_t>(r) * bk, hd, bk, nb16);
    const float* q = qs + static_cast<int64_t>(r) * hd;
    float* sr = s + static_cast<int64_t>(r) * bk;
    switch (rows - r) {
        case 5: score_rows<5>(q, kt, sr, hd, bk, nb16); break;
        case 4: score_rows<4>(q, kt, sr, hd, bk, nb16); break;
        case 3: score_rows<3>(q, kt, sr, hd, bk, nb16); break;
        case 2: score_rows<2>(q, kt, sr, hd, bk, nb16); break;
        case 1: score_rows<1>(q, kt, sr, hd, bk, nb16); break;
        default: break;
    }
}

template <class V>
void pv_all(int rows, const float* s, const float* alpha, const V& v, float* acc, int hd, int bk, int nb) {
    int r = 0;
    for (; r + kRowTile <= rows; r += kRowTile)
        pv_rows<kRowTile>(s + static_cast<int64_t>(r) * bk, alpha + r, v, acc + static_cast<int64_t>(r) * hd, hd, bk, nb);
    const float* pr = s + static_cast<int64_t>(r) * bk;
    float* ar = acc + static_cast<int64_t>(r) * hd;
    switch (rows - r) {
        case 5: pv_rows<5>(pr, alpha + r, v, ar, hd, bk, nb); break;
        case 4: pv_rows<4>(pr, alpha + r, v, ar, hd, bk, nb); break;
        case 3: pv_rows<3>(pr, alpha + r, v, ar, hd, bk, nb); break;
        case 2: pv_rows<2>(pr, alpha + r, v, ar, hd, bk, nb); break;
        case 1: pv_rows<1>(pr, alpha + r, v, ar, hd, bk, nb); break;
        default: break;
    }
}

// One block of keys [j0, j0 + nb) for the rows of kv head g: m, l, acc (rows) of that head are updated.
void tile_block(const AttentionParams& p, const AttentionTile& tile, int g, int j0, int nb, const float* qs,
                float* m, float* l, float* acc, float* scratch) {
    const int hd = p.head_dim;
    const int group = p.n_head / p.n_head_kv;
    const int kv_dim = p.n_head_kv * hd;
    const int rows = tile.n_queries * group;
    const int bk = attention_block_keys(hd);
    const int nb16 = (nb + 15) & ~15;
    const int32_t* pos = p.kv_positions + j0;
    const uint16_t* k_head = p.k_cache + static_cast<int64_t>(g) * hd;
    const uint16_t* v_head = p.v_cache + static_cast<int64_t>(g) * hd;
    float* kt = scratch;                                    // (hd, bk) K block, fp32, transposed
    float* vf = kt + static_cast<int64_t>(hd) * bk;         // (bk, hd) V block, fp32
    float* s = vf + static_cast<int64_t>(bk) * hd;          // (rows, bk) scores, then probabilities
    float* alpha = s + static_cast<int64_t>(rows) * bk;     // (rows) rescale of acc for this block

    // K block -> kt (hd, nb16): 8 keys x 8 dims at a time, converted and transposed; missing keys are 0.
    // Meanwhile this head's K and V rows of the next block are prefetched, a few per step: spread over the
    // block they keep loads in flight without stalling on a burst.
    const int n_next = std::min(bk, tile.key_end - j0 - bk);  // keys of the next block (blocks start j0 + bk)
    const bool convert = rows > kRowTile;  // few rows (decode): K and V are read straight from the cache
    for (int j = 0; !convert && tile.n_kv_heads == 1 && j < n_next; ++j) {
        const int64_t off = static_cast<int64_t>(pos[bk + j]) * kv_dim;
        for (int d = 0; d < hd; d += 32) {
            prefetch(k_head + off + d);
            prefetch(v_head + off + d);
        }
    }
    for (int j = 0; convert && j < nb16; j += 8) {
        for (int i = j; i < std::min(j + 8, n_next); ++i) {
            const int64_t off = static_cast<int64_t>(pos[bk + i]) * kv_dim;
            for (int d = 0; d < hd; d += 32) {
                prefetch(k_head + off + d);
                prefetch(v_head + off + d);
            }
        }
        const uint16_t* krow[8];
        for (int i = 0; i < 8; ++i) krow[i] = j + i < nb ? k_head + static_cast<int64_t>(pos[j + i]) * kv_dim : nullptr;
        for (int d = 0; d < hd; d += 8) {
            __m256 x[8];
            for (int i = 0; i < 8; ++i) x[i] = krow[i] ? load_half8(krow[i] + d) : _mm256_setzero_ps();
            transpose8(x);
            for (int i = 0; i < 8; ++i) _mm256_storeu_ps(kt + static_cast<int64_t>(d + i) * bk + j, x[i]);
        }
    }
    // V block -> vf (nb, hd), unless one register tile covers the rows (decode: P.V reads the cache)
    for (int j = 0; convert && j < nb; ++j) {
        const uint16_t* v = v_head + static_cast<int64_t>(pos[j]) * kv_dim;
        for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(vf + static_cast<int64_t>(j) * hd + d, load_half8(v + d));
    }

    // raw scores s = qs . K
    if (convert) {
        score_all(rows, qs, kt, s, hd, bk, nb16);
    } else {
        switch (rows) {
            case 4: score_rows_direct<4>(qs, k_head, pos, kv_dim, s, hd, bk, nb); break;
            case 3: score_rows_direct<3>(qs, k_head, pos, kv_dim, s, hd, bk, nb); break;
            case 2: score_rows_direct<2>(qs, k_head, pos, kv_dim, s, hd, bk, nb); break;
            default: score_rows_direct<1>(qs, k_head, pos, kv_dim, s, hd, bk, nb); break;
        }
    }

    // online softmax in base 2 (x = score * scale * log2 e): per row, the keys its query sees, the new
    // running max, probabilities exp2(x - m) (0 for keys it does not see), the sum, the rescale of acc
    const __m256 scale = _mm256_set1_ps(p.scale * kLog2e);
    for (int r = 0; r < rows; ++r) {
        const int t = tile.q0 + r / group;
        const int a = std::max((p.attend_begin ? p.attend_begin[t] : 0) - j0, 0);
        const int b = std::min(p.attend_end[t] - j0, nb);
        float* sr = s + static_cast<int64_t>(r) * bk;
        if (a >= b) {  // nothing visible in this block
            std::fill(sr, sr + nb, 0.0f);
            alpha[r] = 1.0f;
            continue;
        }
        const __m256i va = _mm256_set1_epi32(a), vb = _mm256_set1_epi32(b);
        // lanes j + i with a <= j + i < b (only vectors crossing a or b need it)
        auto visible = [&](int j) {
            const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            return _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(va, idx), _mm256_cmpgt_epi32(vb, idx)));
        };
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        for (int j = 0; j < nb; j += 8) {
            __m256 x = _mm256_mul_ps(_mm256_loadu_ps(sr + j), scale);
            if (j < a || j + 8 > b) x = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), x, visible(j));
            _mm256_storeu_ps(sr + j, x);
            vmax = _mm256_max_ps(vmax, x);
        }
        const float m_old = m[r], m_new = std::max(m_old, horizontal_max(vmax));
        const __m256 vm = _mm256_set1_ps(m_new);
        __m256 vsum = _mm256_setzero_ps();
        for (int j = 0; j < nb; j += 8) {
            __m256 e = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(sr + j), vm));
            if (j < a || j + 8 > b) e = _mm256_and_ps(e, visible(j));
            _mm256_storeu_ps(sr + j, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        alpha[r] = m_old == -INFINITY ? 0.0f : _mm256_cvtss_f32(exp2_ps(_mm256_set1_ps(m_old - m_new)));
        l[r] = l[r] * alpha[r] + horizontal_sum(vsum);
        m[r] = m_new;
    }

    // acc = acc * alpha + P . V
    if (convert) pv_all(rows, s, alpha, VBlock{vf, hd}, acc, hd, bk, nb);
    else pv_all(rows, s, alpha, VCache{v_head, pos, kv_dim}, acc, hd, bk, nb);
}

// Whole K and V rows (every kv head) of key indices [begin, end) towards L2.
void prefetch_rows(const AttentionParams& p, int begin, int end) {
    const int64_t kv_dim = static_cast<int64_t>(p.n_head_kv) * p.head_dim;
    for (int j = begin; j < end; ++j) {
        const int64_t off = static_cast<int64_t>(p.kv_positions[j]) * kv_dim;
        for (int64_t d = 0; d < kv_dim; d += 32) {
            _mm_prefetch(reinterpret_cast<const char*>(p.k_cache + off + d), _MM_HINT_T1);
            _mm_prefetch(reinterpret_cast<const char*>(p.v_cache + off + d), _MM_HINT_T1);
        }
    }
}

// The query rows of kv head g in the tile -> qs (rows, hd) (query-major: a group's heads are contiguous).
void gather_queries(const AttentionParams& p, const AttentionTile& tile, int g, float* qs) {
    const int group = p.n_head / p.n_head_kv, hd = p.head_dim;
    for (int i = 0; i < tile.n_queries; ++i)
        std::memcpy(qs + static_cast<int64_t>(i) * group * hd,
                    p.q + (static_cast<int64_t>(tile.q0 + i) * p.n_head + g * group) * hd, sizeof(float) * group * hd);
}

}  // namespace

void attention_tile_avx2(const AttentionParams& p, const AttentionTile& tile, float* scratch) {
    const int hd = p.head_dim;
    if (hd % 8 != 0) return attention_tile_scalar(p, tile, scratch);
    const int group = p.n_head / p.n_head_kv;
    const int rows = tile.n_queries * group;
    const int bk = attention_block_keys(hd);
    const int64_t rows_hd = static_cast<int64_t>(rows) * hd;
    float* qs = scratch;                                    // (rows, hd) query rows of one kv head
    float* block_scratch = qs + ((rows_hd + 15) & ~int64_t{15});

    // empty accumulators, every head of the tile
    std::fill(tile.m, tile.m + tile.n_kv_heads * rows, -INFINITY);
    std::fill(tile.l, tile.l + tile.n_kv_heads * rows, 0.0f);
    std::fill(tile.acc, tile.acc + tile.n_kv_heads * rows_hd, 0.0f);
    if (tile.n_kv_heads == 1) gather_queries(p, tile, tile.kv_head, qs);

    // Decode streams whole K/V rows from DRAM: ask for them two blocks ahead (into L2), so that many lines
    // are in flight at once; the first two blocks of the task are requested up front.
    const bool stream = tile.n_kv_heads > 1 && rows <= kRowTile;
    if (stream) prefetch_rows(p, tile.key_begin, std::min(tile.key_begin + 2 * bk, tile.key_end));
    // blocks of keys, each for every kv head of the tile while its K/V rows are in cache
    for (int j0 = tile.key_begin; j0 < tile.key_end; j0 += bk) {
        const int nb = std::min(bk, tile.key_end - j0);
        if (stream) prefetch_rows(p, std::min(j0 + 2 * bk, tile.key_end), std::min(j0 + 3 * bk, tile.key_end));
        for (int h = 0; h < tile.n_kv_heads; ++h) {
            if (tile.n_kv_heads > 1) gather_queries(p, tile, tile.kv_head + h, qs);
            tile_block(p, tile, tile.kv_head + h, j0, nb, qs, tile.m + h * rows, tile.l + h * rows,
                       tile.acc + h * rows_hd, block_scratch);
        }
    }
}

}  // namespace lazyllm_edge

#else
namespace lazyllm_edge {
void attention_tile_avx2(const AttentionParams& p, const AttentionTile& tile, float* scratch) {
    attention_tile_scalar(p, tile, scratch);
}
}  // namespace lazyllm_edge
#endif
