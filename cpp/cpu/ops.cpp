#include "cpu/ops.h"

#include <cmath>

namespace lazyllm_edge {

void rms_norm(const float* x, const float* w, float* y, int n, float eps) {
    double sum = 0.0;  // double: row sums of squares over thousands of elements
    for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
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
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

void swiglu(float* gate, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void geglu(float* gate, const float* up, int n) {
    const float sqrt_2_over_pi = 0.7978845608028654f;
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        const float gelu = 0.5f * g * (1.0f + std::tanh(sqrt_2_over_pi * g * (1.0f + 0.044715f * g * g)));
        gate[i] = gelu * up[i];
    }
}

void add_in_place(float* y, const float* x, int n) {
    for (int i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace lazyllm_edge
