#include "model/qwen35.h"

namespace lazyllm_edge {

using model_load::checked_dim;
using model_load::fail;
using model_load::optional_dim;

void load_qwen35_hparams(const GgufFile& f, const std::string& p, ModelHparams& hp) {
    const int n_layer_all = hp.n_layer;
    const int n_nextn = optional_dim(f, p + "nextn_predict_layers", 0, 0, n_layer_all - 1);
    hp.n_layer = n_layer_all - n_nextn;
    hp.attn_output_gate = true;
    hp.ssm_conv_kernel = checked_dim(f, p + "ssm.conv_kernel", 2, 64);
    hp.ssm_head_dim = checked_dim(f, p + "ssm.state_size", 1, 1024);
    hp.ssm_n_k_heads = checked_dim(f, p + "ssm.group_count", 1, 1024);
    hp.ssm_n_v_heads = checked_dim(f, p + "ssm.time_step_rank", 1, 1024);
    const int d_inner = checked_dim(f, p + "ssm.inner_size", 1, 1 << 20);
    if (hp.ssm_n_v_heads % hp.ssm_n_k_heads != 0) fail("ssm.time_step_rank is not a multiple of ssm.group_count");
    if (d_inner != hp.ssm_n_v_heads * hp.ssm_head_dim)
        fail("ssm.inner_size " + std::to_string(d_inner) + " != ssm.time_step_rank * ssm.state_size (head_v_dim must equal "
             "head_k_dim, as in llama.cpp's gated delta net)");
    // layer kinds: attention.recurrent_layers (one per block), else full attention on every Nth layer
    hp.recurrent.assign(static_cast<size_t>(hp.n_layer), 0);
    if (f.find(p + "attention.recurrent_layers")) {
        const std::vector<int32_t> kinds = f.get_int_array(p + "attention.recurrent_layers");
        if (static_cast<int>(kinds.size()) != n_layer_all)
            fail("GGUF metadata '" + p + "attention.recurrent_layers' has " + std::to_string(kinds.size()) +
                 " entries, expected block_count " + std::to_string(n_layer_all));
        for (int l = 0; l < hp.n_layer; ++l) hp.recurrent[l] = kinds[l] != 0;
    } else {
        const int interval = optional_dim(f, p + "full_attention_interval", 4, 1, 1024);
        for (int l = 0; l < hp.n_layer; ++l) hp.recurrent[l] = (l + 1) % interval != 0;
    }
    const std::vector<int32_t> sections = f.get_int_array(p + "rope.dimension_sections");
    if (sections.size() != 4) fail("GGUF metadata '" + p + "rope.dimension_sections' must have 4 entries");
    int sum = 0;
    for (int i = 0; i < 4; ++i) {
        if (sections[i] < 0 || sections[i] > 4096) fail("GGUF metadata '" + p + "rope.dimension_sections' is out of range");
        hp.rope_sections[i] = sections[i];
        sum += sections[i];
    }
    if (sections[0] + sections[1] + sections[2] == 0 || sum > hp.head_dim)  // ggml asserts both
        fail("GGUF metadata '" + p + "rope.dimension_sections' does not fit the head dimension");
}

void bind_qwen35_linear_attention(const model_load::WeightBinder& bind, const std::string& b, const ModelHparams& hp,
                                  LayerWeights& w) {
    const int64_t d = hp.d_model, conv_dim = hp.ssm_conv_dim(), value_dim = hp.ssm_value_dim(), nv = hp.ssm_n_v_heads;
    w.ssm_in = bind.matrix(b + "attn_qkv.weight", d, conv_dim);
    w.ssm_z = bind.matrix(b + "attn_gate.weight", d, value_dim);
    w.ssm_beta = bind.matrix(b + "ssm_beta.weight", d, nv);
    w.ssm_alpha = bind.matrix(b + "ssm_alpha.weight", d, nv);
    const GgufTensor* conv = bind.find(b + "ssm_conv1d.weight");
    if (conv && (conv->n_dims != 2 || conv->ne[0] != hp.ssm_conv_kernel))
        fail("tensor '" + conv->name + "' has shape [" + std::to_string(conv->ne[0]) + ", " + std::to_string(conv->ne[1]) +
             "], expected [" + std::to_string(hp.ssm_conv_kernel) + ", " + std::to_string(conv_dim) + "]");
    w.ssm_conv1d = bind.vector(b + "ssm_conv1d.weight", conv_dim * hp.ssm_conv_kernel);
    w.ssm_dt_bias = bind.vector(b + "ssm_dt.bias", nv);
    w.ssm_a = bind.vector(b + "ssm_a", nv);
    w.ssm_norm = bind.vector(b + "ssm_norm.weight", hp.ssm_head_dim);
    w.ssm_out = bind.matrix(b + "ssm_out.weight", value_dim, d);
}

}  // namespace lazyllm_edge
