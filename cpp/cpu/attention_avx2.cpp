// AVX2/FMA/F16C attention task: scores with fp16 K converted once per key for the whole GQA group,
// exact softmax with a vectorized exp, then P·V with fp16 V converted once per key.
#include "cpu/attention.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include <cmath>

namespace lazyllm_edge {
namespace {

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

// exp(x) for x <= 0 ranges used by softmax; Cephes polynomial, ~1 ulp.
inline __m256 exp_ps(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

}  // namespace

void attention_task_avx2(const AttentionParams& p, int t, int g, float* scratch) {
    const int hd = p.head_dim;
    if (hd % 8 != 0) return attention_task_scalar(p, t, g, scratch);
    const int group = p.n_head / p.n_head_kv;
    const int kv_dim = p.n_head_kv * hd;
    const int nv = hd / 8;
    const int begin = p.attend_begin ? p.attend_begin[t] : 0;
    const int n = p.attend_end[t] - begin;
    const int32_t* positions = p.kv_positions + begin;
    float* scores = scratch;                                          // (group, n)
    float* acc = scratch + static_cast<int64_t>(group) * n;           // (group, hd)
    float* row = acc + static_cast<int64_t>(group) * hd;              // (hd) converted K or V row
    const float* q = p.q + (static_cast<int64_t>(t) * p.n_head + g * group) * hd;  // (group, hd)

    // scores[h][j] = scale * q_h · K_j
    for (int j = 0; j < n; ++j) {
        const uint16_t* k = p.k_cache + static_cast<int64_t>(positions[j]) * kv_dim + g * hd;
        if (j + 2 < n) _mm_prefetch(reinterpret_cast<const char*>(p.k_cache + static_cast<int64_t>(positions[j + 2]) * kv_dim + g * hd), _MM_HINT_T0);
        for (int c = 0; c < nv; ++c)
            _mm256_storeu_ps(row + 8 * c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + 8 * c))));
        for (int h = 0; h < group; ++h) {
            const float* qh = q + h * hd;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
            int c = 0;
            for (; c + 1 < nv; c += 2) {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 8 * c), _mm256_loadu_ps(row + 8 * c), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 8 * c + 8), _mm256_loadu_ps(row + 8 * c + 8), s1);
            }
            if (c < nv) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + 8 * c), _mm256_loadu_ps(row + 8 * c), s0);
            scores[static_cast<int64_t>(h) * n + j] = horizontal_sum(_mm256_add_ps(s0, s1)) * p.scale;
        }
    }

    // softmax over each head's row (unnormalized; divided at the end)
    float inv_sum[64];
    for (int h = 0; h < group; ++h) {
        float* s = scores + static_cast<int64_t>(h) * n;
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        int j = 0;
        for (; j + 8 <= n; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
        float mx = horizontal_max(vmax);
        for (; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
        const __m256 vm = _mm256_set1_ps(mx);
        __m256 vsum = _mm256_setzero_ps();
        j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
            _mm256_storeu_ps(s + j, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float sum = horizontal_sum(vsum);
        for (; j < n; ++j) {
            s[j] = std::exp(s[j] - mx);
            sum += s[j];
        }
        inv_sum[h] = n > 0 ? 1.0f / sum : 0.0f;
        for (int d = 0; d < hd; ++d) acc[h * hd + d] = 0.0f;
    }

    // acc_h += p_hj * V_j
    for (int j = 0; j < n; ++j) {
        const uint16_t* v = p.v_cache + static_cast<int64_t>(positions[j]) * kv_dim + g * hd;
        if (j + 2 < n) _mm_prefetch(reinterpret_cast<const char*>(p.v_cache + static_cast<int64_t>(positions[j + 2]) * kv_dim + g * hd), _MM_HINT_T0);
        for (int c = 0; c < nv; ++c)
            _mm256_storeu_ps(row + 8 * c, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + 8 * c))));
        for (int h = 0; h < group; ++h) {
            const __m256 w = _mm256_set1_ps(scores[static_cast<int64_t>(h) * n + j]);
            float* a = acc + h * hd;
            for (int c = 0; c < nv; ++c)
                _mm256_storeu_ps(a + 8 * c, _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * c), _mm256_loadu_ps(a + 8 * c)));
        }
    }
    for (int h = 0; h < group; ++h) {
        float* out = p.out + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
        const __m256 inv = _mm256_set1_ps(inv_sum[h]);
        for (int c = 0; c < nv; ++c) _mm256_storeu_ps(out + 8 * c, _mm256_mul_ps(_mm256_loadu_ps(acc + h * hd + 8 * c), inv));
    }
}

}  // namespace lazyllm_edge

#else
namespace lazyllm_edge {
void attention_task_avx2(const AttentionParams& p, int t, int g, float* scratch) { attention_task_scalar(p, t, g, scratch); }
}  // namespace lazyllm_edge
#endif
