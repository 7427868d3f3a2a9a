// The per-token steps of a gated delta-net linear-attention layer (qwen35; llama.cpp's build_layer_attn_linear with
// ggml's ssm_conv, l2 norm and gated_delta_net ops, in fp32). NumPy reference: tests/numpy_reference.py
// (delta_net_layer).
#pragma once

namespace lazyllm_edge {

// Causal depthwise conv1d and SiLU for one token: window holds the kernel rows ending at the token, oldest
// first, (kernel, channels); taps (channels, kernel). out[c] = silu(sum_i window[i][c] * taps[c][i]).
void causal_conv1d_silu(const float* window, const float* taps, int channels, int kernel, float* out);

// x / sqrt(sum(x^2) + eps) over n values, in place (llama.cpp's build_gdn_l2_norm: rms_norm(x, eps/n) / sqrt(n)).
void l2_norm(float* x, int n, float eps);

// The write strength and the decay of one v head: beta = sigmoid(b), decay = exp(softplus(alpha + dt_bias) * a).
float delta_net_beta(float b);
float delta_net_decay(float alpha, float dt_bias, float a);

// One token through one v head's state (hd, hd), stored row j = v index, column i = k index:
//   S *= decay;  S[j] += beta * (v[j] - S[j].k) * k;  out[j] = S[j].q / sqrt(hd)
// q and k are l2-normed; the state is updated in place.
void gated_delta_net_token(float* state, const float* q, const float* k, const float* v, float beta, float decay, int hd,
                           float* out);

// out = rms_norm(out) * weight * silu(z) over one head of n values (the gated RMSNorm on the delta net's output).
void gated_rms_norm(float* out, const float* weight, const float* z, int n, float eps);

}  // namespace lazyllm_edge
