// Small per-row operations of the forward pass (norms, RoPE, activations). Cheap next to the
// matmuls and attention, so one portable implementation each (the compiler vectorizes them).
#pragma once
#include <cstdint>

namespace lazyllm_edge {

// y = x / sqrt(mean(x^2) + eps) * w   (w may be null: no scale). x and y may alias.
void rms_norm(const float* x, const float* w, float* y, int n, float eps);

// RoPE table: cos/sin for each (position, pair), laid out (n_positions, rope_dim/2, 2).
// theta = pos * freq_scale * base^(-2i/rope_dim) / freq_factors[i], built like ggml (float steps).
void build_rope_table(float* table, int n_positions, int rope_dim, float freq_base, float freq_scale,
                      const float* freq_factors);

// Rotates the first rope_dim dims of each head of each row in place.
// x: (n_rows, n_heads * head_dim); row r uses position positions[r].
void apply_rope(float* x, int n_rows, int n_heads, int head_dim, int rope_dim, const int32_t* positions,
                const float* table, bool neox);

// gate[i] = silu(gate[i]) * up[i]
void swiglu(float* gate, const float* up, int n);
// gate[i] = gelu_tanh(gate[i]) * up[i]
void geglu(float* gate, const float* up, int n);

// x[i] = gelu_tanh(x[i]) in place, as ggml_gelu: through the fp16 table inside (-10, 10), 0 below, x above
void gelu(float* x, int n);
// y[i] *= x[i]
void mul_in_place(float* y, const float* x, int n);

// Mixture-of-experts routing of one token, as llama.cpp's build_moe_ffn with softmax gating and normalized
// weights: p = softmax(logits) (max subtracted, expf_ggml, the sum in double); the k experts of largest p (ties to
// the lower index), in decreasing order, into selected (k); weights (k) = their p over the sum of the k (at least
// 6.103515625e-5, the fp16 minimum).
void moe_route(const float* logits, int n_expert, int k, int32_t* selected, float* weights);

// y += x
void add_in_place(float* y, const float* x, int n);

}  // namespace lazyllm_edge
