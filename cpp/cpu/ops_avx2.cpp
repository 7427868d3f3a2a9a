// AVX2/FMA versions of the activations and RoPE in ops.cpp, bit-identical to them.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "cpu/kernels.h"
#include "cpu/simd_avx2.h"

namespace lazyllm_edge {
namespace avx2 {

// Same expression as ops.cpp; compiled with FMA here, so std::fma is one instruction.
void apply_rope(float* x, int n_rows, int n_heads, int head_dim, int rope_dim, const int32_t* positions,
                const float* table, bool neox) {
    const int n_pairs = rope_dim / 2;
    for (int r = 0; r < n_rows; ++r) {
        const float* cs = table + static_cast<int64_t>(positions[r]) * rope_dim;
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + (static_cast<int64_t>(r) * n_heads + h) * head_dim;
            for (int i = 0; i < n_pairs; ++i) {
                const int a = neox ? i : 2 * i;
                const int b = neox ? i + n_pairs : 2 * i + 1;
                const float c = cs[2 * i], s = cs[2 * i + 1];
                const float x0 = v[a], x1 = v[b];
                v[a] = std::fma(x0, c, -(x1 * s));
                v[b] = std::fma(x0, s, x1 * c);
            }
        }
    }
}

// silu(g) * up with ggml_v_silu: g / (1 + expf_ggml(-g)).
void swiglu(float* gate, const float* up, int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = expf_ggml_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; ++i) gate[i] = gate[i] / (1.0f + expf_ggml(-gate[i])) * up[i];
}

// gelu through the fp16 table inside (-10, 10), as ops.cpp.
void geglu(float* gate, const float* up, int n, const uint16_t* gelu_table) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        alignas(16) uint16_t h[8];
        alignas(32) float y[8];
        _mm_store_si128(reinterpret_cast<__m128i*>(h), _mm256_cvtps_ph(_mm256_loadu_ps(gate + i), _MM_FROUND_TO_NEAREST_INT));
        for (int k = 0; k < 8; ++k) h[k] = gelu_table[h[k]];
        _mm256_store_ps(y, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h))));
        for (int k = 0; k < 8; ++k) {
            const float g = gate[i + k];
            gate[i + k] = g <= -10.0f ? 0.0f : g >= 10.0f ? g * up[i + k] : y[k] * up[i + k];
        }
    }
    for (; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g <= -10.0f ? 0.0f : g >= 10.0f ? g * up[i] : _cvtsh_ss(gelu_table[_cvtss_sh(g, _MM_FROUND_TO_NEAREST_INT)]) * up[i];
    }
}

}  // namespace avx2
}  // namespace lazyllm_edge
