// Model description and weights, read from GGUF metadata and tensors (nothing assumed).
#pragma once
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf_reader.h"
#include "base/error.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "model/weight_matrix.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm_edge {

class ThreadPool;
struct CudaModel;

enum class Architecture { llama, qwen2, qwen3, gemma3 };

struct ModelHparams {
    Architecture arch = Architecture::llama;
    int n_layer = 0;
    int d_model = 0;
    int n_head = 0;
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
    bool is_sliding(int layer) const {
        return sliding_window > 0 && sliding_window_pattern > 0 && (layer % sliding_window_pattern) != sliding_window_pattern - 1;
    }
    int kv_dim() const { return n_head_kv * head_dim; }
    // Scale of q.k in the attention softmax: 1 where the model scales q itself (scale_q).
    float softmax_scale() const { return scale_q ? 1.0f : attention_scale; }
    int q_dim() const { return n_head * head_dim; }
};

struct LayerWeights {
    const float* attn_norm = nullptr;       // (d_model)
    WeightMatrix wq, wk, wv, wo;            // (q_dim, d) (kv_dim, d) (kv_dim, d) (d, q_dim)
    const float* bq = nullptr;              // optional biases (qwen2)
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* q_norm = nullptr;          // optional per-head RMSNorm (qwen3, gemma3) (head_dim)
    const float* k_norm = nullptr;
    const float* post_attn_norm = nullptr;  // optional (gemma3)
    const float* ffn_norm = nullptr;        // (d_model)
    WeightMatrix gate, up, down;            // (ffn, d) (ffn, d) (d, ffn)
    const float* post_ffn_norm = nullptr;   // optional (gemma3)
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
    std::vector<LayerWeights> layers;
    std::vector<std::vector<float>> owned_vectors;  // small vectors converted to fp32 at load
    std::shared_ptr<CudaModel> cuda;        // the weights on the device (backend "cuda"), else null
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

}  // namespace lazyllm_edge
