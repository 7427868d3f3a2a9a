// gemma4, as llama.cpp 0.3.36 defines it (src/models/gemma4.cpp, llama-model.cpp): the dense layout of the
// E2B/E4B-style models. Sliding and full layers with their own head size, kv heads and RoPE (the full layers'
// proportional: rope_freqs leaves pairs unrotated), the last `attention.shared_kv_layers` layers attending over
// the K/V of the last layer of their type that has its own, per-layer embeddings, per-layer FFN sizes and a
// layer output scale; and the mixture-of-experts layout (26B-A4B): layers with a router run n_expert_used of
// n_expert GELU-gated experts per token next to the dense FFN (their shared expert).
#pragma once
#include <string>

#include "model/model.h"
#include "model/weight_binder.h"

namespace lazyllm_edge {

// The gemma4 hyperparameters (prefix "gemma4."), after the common ones (n_layer, d_model, n_head, rms_eps, RoPE
// base): layer types and shapes, shared K/V, per-layer embedding size, experts, soft-cap. Error(model_load) on
// anything missing or inconsistent.
void load_gemma4_hparams(const GgufFile& f, const std::string& prefix, ModelHparams& hp);

// Binds the layers' weights (experts included) and the per-layer embedding tensors (hparams loaded).
void bind_gemma4_weights(ModelImpl& model, const model_load::WeightBinder& bind);

}  // namespace lazyllm_edge
