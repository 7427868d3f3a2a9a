// Model description and weights, read from GGUF metadata and tensors (nothing assumed).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf/gguf_reader.h"
#include "base/error.h"
#include "base/sha256.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "model/weight_matrix.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm_edge {

class ThreadPool;
struct CudaModel;

enum class Architecture { llama, qwen2, qwen3, gemma3, gemma4, phi3, smollm3, qwen35 };

// One layer's attention and FFN sizes. Every architecture has one per layer (all alike but gemma4's, whose
// sliding and full layers differ and whose last layers reuse an earlier layer's K/V).
struct LayerShape {
    int head_dim = 0;
    int n_head_kv = 0;
    int ffn_dim = 0;
    int rope_dim = 0;    // rotated dimensions per head
    int kv_source = 0;   // the layer whose K/V this layer attends over: itself, or (gemma4's shared-KV layers) an
                         // earlier layer of the same type, which computed them
    int kv_dim() const { return n_head_kv * head_dim; }
};

struct ModelHparams {
    Architecture arch = Architecture::llama;
    int n_layer = 0;
    int d_model = 0;
    int n_head = 0;
    // every layer's, where all are alike; gemma4: the largest n_head_kv and ffn_dim, the full layers' head_dim
    // (the CPU forward pass reads shape(layer); kv_dim() and q_dim() below are the uniform ones)
    int n_head_kv = 0;
    int head_dim = 0;
    int ffn_dim = 0;
    int n_vocab = 0;
    int n_ctx_train = 0;
    float rms_eps = 1e-5f;
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;   // linear RoPE scaling: positions are multiplied by this
    int rope_dim = 0;               // rotated dimensions per head (<= head_dim)
    bool rope_neox = false;         // rotate pairs (i, i + rope_dim/2) instead of (2i, 2i+1)
    float rope_attn_factor = 1.0f;  // cos/sin are multiplied by this (rope.scaling.attn_factor; phi3 LongRoPE)
    int n_ctx_orig = 0;             // rope.scaling.original_context_length: above it, the long RoPE factors (phi3)
    int nope_layer_step = 0;        // > 0: every Nth layer ((l + 1) % N == 0) has no RoPE (smollm3's NoPE layers)
    float attention_scale = 0.0f;   // softmax scale for q·k
    bool scale_q = false;           // q is multiplied by attention_scale before attention (softmax scale 1)
    // gemma3
    float embedding_scale = 1.0f;   // token embeddings are multiplied by this
    int sliding_window = 0;         // 0: none
    int sliding_window_pattern = 0; // every Nth layer (index % N == N-1) is global; others are local
    float rope_freq_base_local = 10000.0f;
    bool gelu_ffn = false;          // GELU-gated FFN instead of SwiGLU
    bool norm_plus_one = false;     // RMSNorm weight is (1 + w)  [folded into the weights by the converter]
    float final_logit_softcap = 0;  // > 0: logits = cap * tanh(logits / cap)
    // gemma4
    std::vector<uint8_t> sliding_layers;  // the layer types from the metadata (1: sliding); empty: by the pattern
    int rope_dim_local = 0;         // rotated dimensions on sliding layers (rope.dimension_count_swa)
    bool v_norm = false;            // V gets an RMSNorm without weight
    int per_layer_dim = 0;          // per-layer embedding size (embedding_length_per_layer_input); 0: none
    int n_expert = 0;               // mixture of experts (the 26B-A4B layout): experts per layer, 0: dense
    int n_expert_used = 0;          // experts each token runs (expert_used_count)
    int expert_ffn_dim = 0;         // an expert's FFN size (expert_feed_forward_length)
    std::vector<LayerShape> layer_shapes;  // (n_layer)
    // qwen35 (hybrid): gated delta-net linear-attention layers between full-attention layers
    std::vector<uint8_t> recurrent;  // (n_layer) 1: a linear-attention (gated delta net) layer; empty: none
    int ssm_conv_kernel = 0;        // ssm.conv_kernel: taps of the causal conv1d over q|k|v
    int ssm_head_dim = 0;           // ssm.state_size: head_k_dim = head_v_dim
    int ssm_n_k_heads = 0;          // ssm.group_count: q/k heads (v head h uses q/k head h % ssm_n_k_heads)
    int ssm_n_v_heads = 0;          // ssm.time_step_rank: v heads, each with a (head_v_dim, head_k_dim) state
    bool attn_output_gate = false;  // full-attention layers: attn_q gives q and a sigmoid gate per head (qwen35)
    int rope_sections[4] = {0, 0, 0, 0};  // rope.dimension_sections: qwen35's interleaved M-RoPE; text positions
                                          // (p, p, p, 0) leave the pairs of the 4th section unrotated
    bool is_sliding(int layer) const {
        if (!sliding_layers.empty()) return sliding_window > 0 && sliding_layers[layer] != 0;
        return sliding_window > 0 && sliding_window_pattern > 0 && (layer % sliding_window_pattern) != sliding_window_pattern - 1;
    }
    const LayerShape& shape(int layer) const { return layer_shapes[layer]; }
    bool computes_kv(int layer) const { return layer_shapes[layer].kv_source == layer; }
    bool is_recurrent(int layer) const { return !recurrent.empty() && recurrent[layer] != 0; }
    int n_recurrent_layers() const {
        int n = 0;
        for (uint8_t r : recurrent) n += r;
        return n;
    }
    // The first layer after the last linear-attention layer (0 without any): a LazyLLM stage may only cut
    // tokens there or later, since a recurrent state must consume every token in order (lazy/step.h).
    int first_prunable_layer() const {
        for (int l = static_cast<int>(recurrent.size()) - 1; l >= 0; --l)
            if (recurrent[l]) return l + 1;
        return 0;
    }
    int ssm_key_dim() const { return ssm_n_k_heads * ssm_head_dim; }
    int ssm_value_dim() const { return ssm_n_v_heads * ssm_head_dim; }
    int ssm_conv_dim() const { return 2 * ssm_key_dim() + ssm_value_dim(); }  // channels q | k | v
    bool uses_rope(int layer) const { return nope_layer_step == 0 || (layer + 1) % nope_layer_step != 0; }
    int kv_dim() const { return n_head_kv * head_dim; }
    // Scale of q.k in the attention softmax: 1 where the model scales q itself (scale_q).
    float softmax_scale() const { return scale_q ? 1.0f : attention_scale; }
    int q_dim() const { return n_head * head_dim; }
};

struct LayerWeights {
    const float* attn_norm = nullptr;       // (d_model)
    WeightMatrix wq, wk, wv, wo;            // (q_dim, d) (kv_dim, d) (kv_dim, d) (d, q_dim); q/k/v may be row
                                            // ranges of one fused attn_qkv tensor (phi3)
    const float* bq = nullptr;              // optional biases (qwen2)
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* q_norm = nullptr;          // optional per-head RMSNorm (qwen3, gemma3) (head_dim)
    const float* k_norm = nullptr;
    const float* post_attn_norm = nullptr;  // optional (gemma3)
    const float* ffn_norm = nullptr;        // (d_model)
    WeightMatrix gate, up, down;            // (ffn, d) (ffn, d) (d, ffn); gate/up may be the halves of one fused
                                            // ffn_up tensor (phi3)
    const float* post_ffn_norm = nullptr;   // optional (gemma3)
    // gemma4 (wk, wv, k_norm unbound on shared-KV layers; wv unbound where V = K)
    WeightMatrix ple_gate;                  // (per_layer_dim, d) per-layer embedding gate (inp_gate)
    WeightMatrix ple_proj;                  // (d, per_layer_dim) back to the residual stream (proj)
    const float* ple_post_norm = nullptr;   // (d)
    const float* output_scale = nullptr;    // optional (1): the residual stream is multiplied by it after the layer
    // gemma4 mixture of experts (n_expert > 0): the dense FFN above is the shared expert
    WeightMatrix router;                    // (n_expert, d) ffn_gate_inp
    const float* router_scale = nullptr;    // (d) the router's input scale (ffn_gate_inp.scale)
    const float* expert_norm = nullptr;     // (d) the experts' input norm (pre_ffw_norm_2)
    const float* shared_post_norm = nullptr;   // (d) after the shared expert (post_ffw_norm_1)
    const float* experts_post_norm = nullptr;  // (d) after the experts' weighted sum (post_ffw_norm_2)
    std::vector<WeightMatrix> expert_gate, expert_up, expert_down;  // (n_expert) x (ff_exp, d) (ff_exp, d) (d, ff_exp)
    const float* expert_down_scale = nullptr;  // optional (n_expert): each expert's output times its scale
    // linear-attention (gated delta net) layers (qwen35); wq..wo, q_norm, k_norm stay unbound there
    WeightMatrix ssm_in;                    // attn_qkv (conv_dim, d): q | k | v before the conv
    WeightMatrix ssm_z;                     // attn_gate (value_dim, d): the output gate z
    WeightMatrix ssm_beta, ssm_alpha;       // (n_v_heads, d): write strength, decay input
    const float* ssm_conv1d = nullptr;      // (conv_dim, conv_kernel) causal conv taps, oldest first
    const float* ssm_dt_bias = nullptr;     // (n_v_heads)
    const float* ssm_a = nullptr;           // (n_v_heads) -exp(A_log): decay = exp(softplus(alpha + dt) * a)
    const float* ssm_norm = nullptr;        // (head_v_dim) gated RMSNorm weight
    WeightMatrix ssm_out;                   // (d, value_dim)
};

struct ModelImpl {
    std::unique_ptr<GgufFile> file;
    ModelHparams hparams;
    ModelInfo info;
    ModelParams params;
    std::unique_ptr<Tokenizer> tokenizer;
    WeightMatrix token_embd;                // (n_vocab, d)
    const float* output_norm = nullptr;     // (d)
    WeightMatrix output;                    // (n_vocab, d); token_embd when tied
    const float* rope_freqs = nullptr;      // optional (rope_dim/2) frequency divisors (llama3)
    const float* rope_factors_long = nullptr;   // optional (rope_dim/2) LongRoPE divisors past n_ctx_orig (phi3)
    const float* rope_factors_short = nullptr;  // optional (rope_dim/2) LongRoPE divisors up to n_ctx_orig (phi3)
    // gemma4 per-layer embeddings (per_layer_dim > 0)
    WeightMatrix per_layer_token_embd;      // (n_vocab, n_layer * per_layer_dim)
    WeightMatrix per_layer_model_proj;      // (n_layer * per_layer_dim, d)
    const float* per_layer_proj_norm = nullptr;  // (per_layer_dim)
    std::vector<LayerWeights> layers;
    std::vector<std::vector<float>> owned_vectors;  // small vectors converted to fp32 at load
    std::shared_ptr<CudaModel> cuda;        // the weights on the device (backend "cuda"), else null
    mutable std::once_flag file_sha256_once;  // model_file_sha256: hashed on first use (saved sessions)
    mutable Sha256Digest file_sha256{};
    // backend "cpu" on AVX2: the layer matrices' int8 prefill layout (cpu/matmul_packed.h; WeightMatrix::packed
    // points into it), one allocation made at load
    struct FreeBytes {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, FreeBytes> packed_weights;
    size_t packed_bytes = 0;
};

// Parses hparams and binds weights; Error(model_load) on anything missing or inconsistent.
std::unique_ptr<ModelImpl> load_model(const std::string& path, const ModelParams& params);

const char* architecture_name(Architecture a);

// The sha256 of the model file (as the registry names files), computed once per model on first use.
const Sha256Digest& model_file_sha256(const ModelImpl& m);

// The RoPE frequency divisors a session of n_ctx tokens uses (rope_freqs, else phi3's long or short LongRoPE
// factors as llama.cpp chooses them by the context size), or null.
const float* rope_frequency_factors(const ModelImpl& model, int n_ctx);

// The session's RoPE table (n_ctx, rope_dim) cos/sin for the global layers: build_rope_table with the model's
// base, scale and frequency factors, times rope_attn_factor.
void build_model_rope_table(const ModelImpl& model, int n_ctx, float* table);

}  // namespace lazyllm_edge
