// AVX2/FMA/F16C attention tile: per block of keys and kv head, the scores are register tiles of up to 3 rows x
// 4 keys, K read from the fp16 cache or a converted block (the same arithmetic per (row, key) whatever the
// tiling, so decode reproduces prefill bit for bit), V is converted once when several row tiles use it, then
// an online softmax per row and P.V as 4 rows x 16 dims register tiles. A tile with several kv heads (decode)
// runs each block for all of them in turn, so the K/V rows are streamed once, whole.
#include "cpu/attention.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace {

// Register tiles are arrays indexed by a compile-time row count: unrolled fully so they stay in registers
// (GCC only does that by itself at -O3).
#define LLE_UNROLL _Pragma("GCC unroll 8")

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

using avx2::load_half8;

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

// Where the scores read K and P.V reads V: the block converted to fp32 once (many rows), or straight from the
// fp16 cache when one register tile covers all rows (each element is then converted once either way). The
// conversion is exact, so both give the same bits.
struct BlockRows {
    const float* rows;  // (nb, hd) fp32
    int hd;
    __m256 load(int j, int d) const { return _mm256_loadu_ps(rows + static_cast<int64_t>(j) * hd + d); }
};
struct CacheRows {
    const uint16_t* head;  // K or V of this kv head at position 0, fp16
    const int32_t* pos;    // (nb) positions of the block
    int64_t kv_dim;
    __m256 load(int j, int d) const { return load_half8(head + pos[j] * kv_dim + d); }
};

// s (NR, bk) = q (NR, hd) . K for keys [0, nb), 4 keys at a time: each K row is used by all NR rows, and each
// (row, key) dot is reduced horizontally in a fixed order. A score's bits depend on its q row and key only,
// not on the tiling or nb, so a query gives the same result alone (decode) or in a batch (prefill).
template <int NR, class K>
void score_rows(const float* q, const K& k, float* s, int hd, int bk, int nb) {
    for (int j = 0; j < nb; j += 4) {
        // a last group of fewer than 4 keys repeats its last key (s has room: bk is a multiple of 16); those
        // scores are masked by the softmax
        const int keys[4] = {j, std::min(j + 1, nb - 1), std::min(j + 2, nb - 1), std::min(j + 3, nb - 1)};
        __m256 a[NR][4];
        avx2::score_tile_lanes<NR>(q, hd, k, keys, a);
        LLE_UNROLL
        for (int r = 0; r < NR; ++r) {
            // lanes of the four sums -> one (key0..key3) vector
            const __m256 h01 = _mm256_hadd_ps(a[r][0], a[r][1]), h23 = _mm256_hadd_ps(a[r][2], a[r][3]);
            const __m256 h = _mm256_hadd_ps(h01, h23);  // (k0 k1 k2 k3) low half + (k0 k1 k2 k3) high half
            const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(s + r * bk + j, sum);
        }
    }
}

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

// s = qs . K for all rows: register tiles of 3 rows (3 x 4 accumulators + 4 K vectors fill the 16 ymm
// registers; q is read from memory by the FMAs), then the rest.
template <class K>
void score_all(int rows, const float* qs, const K& k, float* s, int hd, int bk, int nb) {
    int r = 0;
    for (; r + 3 <= rows; r += 3)
        score_rows<3>(qs + static_cast<int64_t>(r) * hd, k, s + static_cast<int64_t>(r) * bk, hd, bk, nb);
    const float* q = qs + static_cast<int64_t>(r) * hd;
    float* sr = s + static_cast<int64_t>(r) * bk;
    switch (rows - r) {
        case 2: score_rows<2>(q, k, sr, hd, bk, nb); break;
        case 1: score_rows<1>(q, k, sr, hd, bk, nb); break;
        default: break;
    }
}

// acc = acc * alpha + P . V for all rows: register tiles of kRowTile rows, then the rest.
template <class V>
void pv_all(int rows, const float* s, const float* alpha, const V& v, float* acc, int hd, int bk, int nb) {
    int r = 0;
    for (; r + kRowTile <= rows; r += kRowTile)
        pv_rows<kRowTile>(s + static_cast<int64_t>(r) * bk, alpha + r, v, acc + static_cast<int64_t>(r) * hd, hd, bk, nb);
    const float* pr = s + static_cast<int64_t>(r) * bk;
    float* ar = acc + static_cast<int64_t>(r) * hd;
    switch (rows - r) {
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
    const int32_t* pos = p.kv_positions + j0;
    const uint16_t* k_head = p.k_cache + static_cast<int64_t>(g) * hd;
    const uint16_t* v_head = p.v_cache + static_cast<int64_t>(g) * hd;
    float* kf = scratch;                                    // (bk, hd) K block, fp32
    float* vf = kf + static_cast<int64_t>(bk) * hd;         // (bk, hd) V block, fp32
    float* s = vf + static_cast<int64_t>(bk) * hd;          // (rows, bk) scores, then probabilities
    float* alpha = s + static_cast<int64_t>(rows) * bk;     // (rows) rescale of acc for this block

    // This head's K and V rows of the next block are prefetched (into L1) while this block runs; decode tiles
    // with several kv heads stream whole rows into L2 instead (attention_tile_avx2).
    const int n_next = std::min(bk, tile.key_end - j0 - bk);  // keys of the next block (blocks start j0 + bk)
    for (int j = 0; tile.n_kv_heads == 1 && j < n_next; ++j) {
        const int64_t off = static_cast<int64_t>(pos[bk + j]) * kv_dim;
        for (int d = 0; d < hd; d += 32) {
            prefetch(k_head + off + d);
            prefetch(v_head + off + d);
        }
    }
    // K and V blocks -> kf, vf (nb, hd) when several register tiles of rows use them; otherwise (decode) the
    // scores and P.V read the fp16 cache directly
    const bool convert = rows > kRowTile;
    for (int j = 0; convert && j < nb; ++j) {
        const int64_t off = static_cast<int64_t>(pos[j]) * kv_dim;
        for (int d = 0; d < hd; d += 8) {
            _mm256_storeu_ps(kf + static_cast<int64_t>(j) * hd + d, load_half8(k_head + off + d));
            _mm256_storeu_ps(vf + static_cast<int64_t>(j) * hd + d, load_half8(v_head + off + d));
        }
    }

    // raw scores s = qs . K
    if (convert) score_all(rows, qs, BlockRows{kf, hd}, s, hd, bk, nb);
    else score_all(rows, qs, CacheRows{k_head, pos, kv_dim}, s, hd, bk, nb);

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
        l[r] = l[r] * alpha[r] + avx2::hsum(vsum);
        m[r] = m_new;
    }

    // acc = acc * alpha + P . V
    if (convert) pv_all(rows, s, alpha, BlockRows{vf, hd}, acc, hd, bk, nb);
    else pv_all(rows, s, alpha, CacheRows{v_head, pos, kv_dim}, acc, hd, bk, nb);
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

void importance_head_avx2(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                          const int32_t* kv_positions, int n, int n_head, int head, int kv_dim, int head_offset,
                          int head_dim, float scale, float* scores, float* mass) {
    std::fill(mass, mass + n, 0.0f);
    for (int w = 0; w < n_q; ++w) {
        // causal: the query sees the keys at or before its position (kv_positions is sorted)
        const int n_seen = static_cast<int>(std::upper_bound(kv_positions, kv_positions + n, q_pos[w]) - kv_positions);
        const float* qh = q_rows + (static_cast<int64_t>(w) * n_head + head) * head_dim;
        // scores q . k * scale, four keys at a time for independent FMA chains
        float mx = -INFINITY;
        int j = 0;
        for (; j + 4 <= n_seen; j += 4) {
            const uint16_t* k[4];
            for (int c = 0; c < 4; ++c) k[c] = k_cache + static_cast<int64_t>(kv_positions[j + c]) * kv_dim + head_offset;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (int d = 0; d < head_dim; d += 8) {
                const __m256 q = _mm256_loadu_ps(qh + d);
                a0 = _mm256_fmadd_ps(q, load_half8(k[0] + d), a0);
                a1 = _mm256_fmadd_ps(q, load_half8(k[1] + d), a1);
                a2 = _mm256_fmadd_ps(q, load_half8(k[2] + d), a2);
                a3 = _mm256_fmadd_ps(q, load_half8(k[3] + d), a3);
            }
            const float s[4] = {avx2::hsum(a0) * scale, avx2::hsum(a1) * scale, avx2::hsum(a2) * scale,
                                avx2::hsum(a3) * scale};
            for (int c = 0; c < 4; ++c) {
                scores[j + c] = s[c];
                mx = std::max(mx, s[c]);
            }
        }
        for (; j < n_seen; ++j) {
            const uint16_t* k = k_cache + static_cast<int64_t>(kv_positions[j]) * kv_dim + head_offset;
            __m256 a = _mm256_setzero_ps();
            for (int d = 0; d < head_dim; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), load_half8(k + d), a);
            scores[j] = avx2::hsum(a) * scale;
            mx = std::max(mx, scores[j]);
        }
        // exp(s - max) and the sum, eight keys at a time (llama.cpp's expf), the rest one by one
        const __m256 vmx = _mm256_set1_ps(mx);
        __m256 vsum = _mm256_setzero_ps();
        j = 0;
        for (; j + 8 <= n_seen; j += 8) {
            const __m256 e = avx2::expf_ggml_ps(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx));
            _mm256_storeu_ps(scores + j, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        double sum = avx2::hsum(vsum);
        for (; j < n_seen; ++j) {
            scores[j] = std::exp(scores[j] - mx);
            sum += scores[j];
        }
        // this query's probabilities, weighted 1 / n_q, into the head's mass
        const float wgt = static_cast<float>(1.0 / (sum * n_q));
        const __m256 vw = _mm256_set1_ps(wgt);
        j = 0;
        for (; j + 8 <= n_seen; j += 8)
            _mm256_storeu_ps(mass + j, _mm256_fmadd_ps(_mm256_loadu_ps(scores + j), vw, _mm256_loadu_ps(mass + j)));
        for (; j < n_seen; ++j) mass[j] += scores[j] * wgt;
    }
}

}  // namespace lazyllm_edge

#else
namespace lazyllm_edge {
void attention_tile_avx2(const AttentionParams& p, const AttentionTile& tile, float* scratch) {
    attention_tile_scalar(p, tile, scratch);
}
void importance_head_avx2(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                          const int32_t* kv_positions, int n, int n_head, int head, int kv_dim, int head_offset,
                          int head_dim, float scale, float* scores, float* mass) {
    importance_head_reference(q_rows, q_pos, n_q, k_cache, kv_positions, n, n_head, head, kv_dim, head_offset,
                              head_dim, scale, scores, mass);
}
}  // namespace lazyllm_edge
#endif
