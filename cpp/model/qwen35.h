// qwen35 (Qwen3.5), as llama.cpp 0.3.36 defines it (src/models/qwen35.cpp, delta-net-base.cpp, llama-model.cpp): the
// hybrid of gated delta-net linear-attention layers and full-attention layers (every full_attention_interval-th
// layer, or as attention.recurrent_layers lists them) whose attn_q carries a sigmoid output gate per head, with q/k
// norms and interleaved M-RoPE (rope.dimension_sections); multi-token-prediction blocks are not run.
#pragma once
#include <string>

#include "model/model.h"
#include "model/weight_binder.h"

namespace lazyllm_edge {

// The qwen35 hyperparameters (prefix "qwen35."), after the common ones (head_dim set): the trunk's layer count
// (block_count less nextn_predict_layers), the layer kinds, the gated delta net's sizes, the M-RoPE sections.
// Error(model_load) on anything missing or inconsistent.
void load_qwen35_hparams(const GgufFile& f, const std::string& prefix, ModelHparams& hp);

// Binds the tensors of linear-attention layer `layer` (prefix "blk.N.").
void bind_qwen35_linear_attention(const model_load::WeightBinder& bind, const std::string& prefix, const ModelHparams& hp,
                                  LayerWeights& w);

}  // namespace lazyllm_edge
