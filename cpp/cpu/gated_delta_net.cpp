// Scalar on purpose: the work per token is O(heads * hd^2), small next to the layer's matmuls; the compiler
// vectorizes the row loops.
#include "cpu/gated_delta_net.h"

#include <cmath>

#include "cpu/kernels.h"
#include "cpu/ops.h"

namespace lazyllm_edge {
namespace {
// ggml_silu on the CPU (ggml_v_silu): x / (1 + e^-x) with llama.cpp's expf
float silu(float x) { return x / (1.0f + expf_ggml(-x)); }
}  // namespace

void causal_conv1d_silu(const float* window, const float* taps, int channels, int kernel, float* out) {
    for (int c = 0; c < channels; ++c) {
        float sum = 0.0f;  // ggml_ssm_conv: fp32, oldest tap first
        for (int i = 0; i < kernel; ++i) sum += window[static_cast<long>(i) * channels + c] * taps[static_cast<long>(c) * kernel + i];
        out[c] = silu(sum);
    }
}

void l2_norm(float* x, int n, float eps) {
    rms_norm(x, nullptr, x, n, eps / static_cast<float>(n));
    const float scale = 1.0f / std::sqrt(static_cast<float>(n));
    for (int i = 0; i < n; ++i) x[i] *= scale;
}

float delta_net_beta(float b) { return 1.0f / (1.0f + std::exp(-b)); }

float delta_net_decay(float alpha, float dt_bias, float a) {
    const float x = alpha + dt_bias;
    const float softplus = x > 20.0f ? x : std::log(1.0f + std::exp(x));  // ggml's softplus
    return std::exp(softplus * a);
}

void gated_delta_net_token(float* state, const float* q, const float* k, const float* v, float beta, float decay, int hd,
                           float* out) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (int j = 0; j < hd; ++j) {
        float* row = state + static_cast<long>(j) * hd;
        float recalled = 0.0f;  // S[j].k after the decay
        for (int i = 0; i < hd; ++i) {
            row[i] *= decay;
            recalled += row[i] * k[i];
        }
        const float delta = (v[j] - recalled) * beta;
        float read = 0.0f;
        for (int i = 0; i < hd; ++i) {
            row[i] += delta * k[i];
            read += row[i] * q[i];
        }
        out[j] = read * scale;
    }
}

void gated_rms_norm(float* out, const float* weight, const float* z, int n, float eps) {
    rms_norm(out, weight, out, n, eps);
    for (int i = 0; i < n; ++i) out[i] *= silu(z[i]);
}

}  // namespace lazyllm_edge
