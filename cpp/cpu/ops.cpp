// The per-row operations with llama.cpp's CPU arithmetic (ggml-cpu built for AVX2/FMA), so that the values
// feeding the next 8-bit quantization are the same in both engines.
#include "cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/kernels.h"

namespace lazyllm_edge {

#if defined(__x86_64__)
namespace avx2 {
void apply_rope(float* x, int n_rows, int n_heads, int head_dim, int rope_dim, const int32_t* positions,
                const float* table, bool neox);
void swiglu(float* gate, const float* up, int n);
void geglu(float* gate, const float* up, int n, const uint16_t* gelu_table);
}  // namespace avx2
#endif

namespace {
bool use_avx2() {
#if defined(__x86_64__)
    return active_isa() >= CpuIsa::avx2;
#else
    return false;
#endif
}

// ggml_gelu_f32 as GCC compiles it with FMA (1 + a*x*x contracted).
float gelu_tanh(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
    return 0.5f * x * (1.0f + std::tanh(sqrt_2_over_pi * x * std::fma(coef_a * x, x, 1.0f)));
}

// gelu of every fp16 value, rounded to fp16 (ggml's ggml_table_gelu_f16).
const uint16_t* gelu_table() {
    static const std::vector<uint16_t> table = [] {
        std::vector<uint16_t> t(1 << 16);
        for (uint32_t i = 0; i < t.size(); ++i) t[i] = fp32_to_fp16(gelu_tanh(fp16_to_fp32(static_cast<uint16_t>(i))));
        return t;
    }();
    return table.data();
}
}  // namespace

void rms_norm(const float* x, const float* w, float* y, int n, float eps) {
    double sum = 0.0;  // ggml: fp32 squares summed in double, in order
    for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
    if (w) {
        for (int i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
    } else {
        for (int i = 0; i < n; ++i) y[i] = x[i] * scale;
    }
}

void build_rope_table(float* table, int n_positions, int rope_dim, float freq_base, float freq_scale,
                      const float* freq_factors) {
    const int n_pairs = rope_dim / 2;
    const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(rope_dim));
    for (int p = 0; p < n_positions; ++p) {
        float theta = static_cast<float>(p);
        float* row = table + static_cast<int64_t>(p) * rope_dim;
        for (int i = 0; i < n_pairs; ++i) {
            float ff = freq_factors ? freq_factors[i] : 1.0f;
            float t = freq_scale * (theta / ff);
            row[2 * i] = std::cos(t);
            row[2 * i + 1] = std::sin(t);
            theta *= theta_scale;
        }
    }
}

void apply_rope(float* x, int n_rows, int n_heads, int head_dim, int rope_dim, const int32_t* positions,
                const float* table, bool neox) {
#if defined(__x86_64__)
    if (use_avx2()) return avx2::apply_rope(x, n_rows, n_heads, head_dim, rope_dim, positions, table, neox);
#endif
    const int n_pairs = rope_dim / 2;
    for (int r = 0; r < n_rows; ++r) {
        const float* cs = table + static_cast<int64_t>(positions[r]) * rope_dim;
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + (static_cast<int64_t>(r) * n_heads + h) * head_dim;
            for (int i = 0; i < n_pairs; ++i) {
                // neox pairs element i with i + rope_dim/2; normal pairs adjacent elements
                const int a = neox ? i : 2 * i;
                const int b = neox ? i + n_pairs : 2 * i + 1;
                const float c = cs[2 * i], s = cs[2 * i + 1];
                const float x0 = v[a], x1 = v[b];
                v[a] = std::fma(x0, c, -(x1 * s));  // ggml's x0*cos - x1*sin as contracted with FMA
                v[b] = std::fma(x0, s, x1 * c);
            }
        }
    }
}

void swiglu(float* gate, const float* up, int n) {
#if defined(__x86_64__)
    if (use_avx2()) return avx2::swiglu(gate, up, n);
#endif
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf_ggml(-g)) * up[i];
    }
}

void geglu(float* gate, const float* up, int n) {
    const uint16_t* table = gelu_table();
#if defined(__x86_64__)
    if (use_avx2()) return avx2::geglu(gate, up, n, table);
#endif
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        // ggml: the fp16 table inside (-10, 10), the limits outside
        gate[i] = g <= -10.0f ? 0.0f : g >= 10.0f ? g * up[i] : fp16_to_fp32(table[fp32_to_fp16(g)]) * up[i];
    }
}

void gelu(float* x, int n) {
    const uint16_t* table = gelu_table();
    for (int i = 0; i < n; ++i) {
        const float g = x[i];
        x[i] = g <= -10.0f ? 0.0f : g >= 10.0f ? g : fp16_to_fp32(table[fp32_to_fp16(g)]);
    }
}

void mul_in_place(float* y, const float* x, int n) {
    for (int i = 0; i < n; ++i) y[i] *= x[i];
}

void moe_route(const float* logits, int n_expert, int k, int32_t* selected, float* weights) {
    float max = -INFINITY;
    for (int e = 0; e < n_expert; ++e) max = std::max(max, logits[e]);
    // the k largest logits are the k largest probabilities (softmax is monotonic); chosen one by one, ties to the lower index
    for (int i = 0; i < k; ++i) {
        int best = -1;
        for (int e = 0; e < n_expert; ++e) {
            bool taken = false;
            for (int j = 0; j < i; ++j) taken |= selected[j] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        selected[i] = best;
    }
    double sum = 0.0;
    for (int e = 0; e < n_expert; ++e) sum += static_cast<double>(expf_ggml(logits[e] - max));
    const float inv = static_cast<float>(1.0 / sum);
    double chosen = 0.0;
    for (int i = 0; i < k; ++i) {
        weights[i] = expf_ggml(logits[selected[i]] - max) * inv;
        chosen += weights[i];
    }
    const float norm = std::max(static_cast<float>(chosen), 6.103515625e-5f);
    for (int i = 0; i < k; ++i) weights[i] /= norm;
}

void add_in_place(float* y, const float* x, int n) {
    for (int i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace lazyllm_edge
