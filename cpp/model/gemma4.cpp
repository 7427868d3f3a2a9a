#include "model/gemma4.h"

#include <algorithm>
#include <cmath>

namespace lazyllm_edge {

using model_load::checked_dim;
using model_load::fail;
using model_load::optional_dim;
using model_load::per_layer_dim;
using model_load::WeightBinder;

void load_gemma4_hparams(const GgufFile& f, const std::string& p, ModelHparams& hp) {
    const int n_layer = hp.n_layer;
    // mixture of experts (the 26B-A4B layout): every layer with a router has n_expert experts, n_expert_used per token
    hp.n_expert = optional_dim(f, p + "expert_count", 0, 0, 1024);
    if (hp.n_expert > 0) {
        hp.n_expert_used = checked_dim(f, p + "expert_used_count", 1, hp.n_expert);
        const std::vector<int> ff_exp = per_layer_dim(f, p + "expert_feed_forward_length", n_layer, -1, 1, 1 << 20);
        if (std::any_of(ff_exp.begin(), ff_exp.end(), [&](int x) { return x != ff_exp[0]; }))
            fail("gemma4: expert_feed_forward_length varies per layer, which is not supported");
        hp.expert_ffn_dim = ff_exp[0];
    }
    // layer types: an array of bools, one per layer (true: sliding window)
    const GgufValue* pattern = f.find(p + "attention.sliding_window_pattern");
    if (!pattern || pattern->type != GgufValueType::ARRAY)
        fail("gemma4: GGUF metadata '" + p + "attention.sliding_window_pattern' must be an array (the layer types)");
    std::vector<int32_t> types = f.get_int_array(p + "attention.sliding_window_pattern");
    if (static_cast<int>(types.size()) != n_layer)
        fail("gemma4: attention.sliding_window_pattern has " + std::to_string(types.size()) + " entries, expected " +
             std::to_string(n_layer));
    hp.sliding_layers.assign(types.begin(), types.end());
    for (uint8_t& t : hp.sliding_layers) t = t != 0;
    hp.sliding_window = checked_dim(f, p + "attention.sliding_window", 1, 1 << 24);

    // head sizes: attention.key_length (full layers) and key_length_swa; K and V alike, as llama.cpp requires
    const int hd_full = checked_dim(f, p + "attention.key_length", 2, 4096);
    const int hd_swa = optional_dim(f, p + "attention.key_length_swa", hd_full, 2, 4096);
    if (optional_dim(f, p + "attention.value_length", hd_full, 1, 4096) != hd_full ||
        optional_dim(f, p + "attention.value_length_swa", hd_swa, 1, 4096) != hd_swa)
        fail("gemma4 requires value_length == key_length (and the same for the sliding layers)");
    if (hd_full % 2 != 0 || hd_swa % 2 != 0) fail("gemma4: head dimensions must be even");
    // rotated dimensions: the full layers rotate all (proportional RoPE turns pairs off by rope_freqs)
    hp.rope_dim = optional_dim(f, p + "rope.dimension_count", hd_full, 2, hd_full);
    if (hp.rope_dim != hd_full) fail("gemma4: rope.dimension_count must equal key_length (proportional RoPE)");
    hp.rope_dim_local = optional_dim(f, p + "rope.dimension_count_swa", hp.rope_dim, 2, hd_swa);
    if (hp.rope_dim_local % 2 != 0) fail("gemma4: rope.dimension_count_swa must be even");
    hp.rope_freq_base_local = static_cast<float>(f.get_float(p + "rope.freq_base_swa", 10000.0));
    if (!(hp.rope_freq_base_local > 1)) fail("gemma4: rope.freq_base_swa out of range");

    // per-layer kv heads and FFN sizes (arrays or one value)
    const std::vector<int> n_head_kv = per_layer_dim(f, p + "attention.head_count_kv", n_layer, hp.n_head, 1, 1024);
    const std::vector<int> ffn = per_layer_dim(f, p + "feed_forward_length", n_layer, -1, 1, 1 << 20);
    // shared K/V: the last n_shared layers reuse the K/V of layer first_shared - 2 (sliding) or - 1 (full)
    const int n_shared = optional_dim(f, p + "attention.shared_kv_layers", 0, 0, n_layer);
    const int first_shared = n_layer - n_shared;
    if (n_shared > 0 && first_shared < 2) fail("gemma4: attention.shared_kv_layers leaves fewer than 2 layers with K/V");

    hp.layer_shapes.resize(n_layer);
    for (int l = 0; l < n_layer; ++l) {
        LayerShape& s = hp.layer_shapes[l];
        const bool sliding = hp.sliding_layers[l] != 0;
        s.head_dim = sliding ? hd_swa : hd_full;
        s.rope_dim = sliding ? hp.rope_dim_local : hp.rope_dim;
        s.n_head_kv = n_head_kv[l];
        s.ffn_dim = ffn[l];
        if (hp.n_head % s.n_head_kv != 0)
            fail("gemma4: layer " + std::to_string(l) + ": head_count is not a multiple of head_count_kv");
        s.kv_source = l < first_shared ? l : first_shared - (sliding ? 2 : 1);
    }
    for (int l = first_shared; l < n_layer; ++l) {
        const LayerShape& s = hp.layer_shapes[l];
        const LayerShape& src = hp.layer_shapes[s.kv_source];
        if (hp.sliding_layers[s.kv_source] != hp.sliding_layers[l] || src.kv_dim() != s.kv_dim() || src.head_dim != s.head_dim)
            fail("gemma4: shared-KV layer " + std::to_string(l) + " and its K/V source, layer " +
                 std::to_string(s.kv_source) + ", differ in type or shape");
    }
    // the uniform fields: the largest (buffers sized by them), the full layers' head size
    hp.head_dim = hd_full;
    hp.n_head_kv = *std::max_element(n_head_kv.begin(), n_head_kv.end());
    hp.ffn_dim = *std::max_element(ffn.begin(), ffn.end());

    // as llama.cpp's graph: embeddings times sqrt(d_model), softmax scale 1 (q and k are RMS-normed), V
    // RMS-normed without weight, GELU-gated FFN; norm weights are used as stored (no +1)
    hp.embedding_scale = std::sqrt(static_cast<float>(hp.d_model));
    hp.attention_scale = 1.0f;
    hp.scale_q = false;
    hp.v_norm = true;
    hp.gelu_ffn = true;
    hp.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-6));
    if (!(hp.rms_eps > 0) || hp.rms_eps > 1) fail("layer_norm_rms_epsilon out of range");
    hp.final_logit_softcap = static_cast<float>(f.get_float(p + "final_logit_softcapping", 0.0));
    if (!(hp.final_logit_softcap >= 0)) fail("gemma4: final_logit_softcapping out of range");
    hp.per_layer_dim = optional_dim(f, p + "embedding_length_per_layer_input", 0, 0, 1 << 16);
    if (static_cast<int64_t>(hp.per_layer_dim) * n_layer > (1 << 24)) fail("gemma4: per-layer embeddings too large");
}

namespace {

// A layer's router and experts (blk.N.ffn_gate_inp.weight present): the experts' gate and up as two tensors or one
// fused gate_up tensor (gate rows, then up rows, per expert), down with an optional per-expert scale.
void bind_gemma4_experts(const ModelHparams& hp, const std::string& b, const WeightBinder& bind, LayerWeights& w) {
    const int d = hp.d_model, n_expert = hp.n_expert, ff = hp.expert_ffn_dim;
    if (n_expert == 0) fail("gemma4: tensor '" + b + "ffn_gate_inp.weight' but no expert_count");
    w.router = bind.matrix(b + "ffn_gate_inp.weight", d, n_expert);
    w.router_scale = bind.vector(b + "ffn_gate_inp.scale", d);
    w.expert_norm = bind.vector(b + "pre_ffw_norm_2.weight", d);
    w.shared_post_norm = bind.vector(b + "post_ffw_norm_1.weight", d);
    w.experts_post_norm = bind.vector(b + "post_ffw_norm_2.weight", d);
    if (bind.find(b + "ffn_gate_up_exps.weight")) {
        const std::vector<WeightMatrix> gate_up = bind.experts(b + "ffn_gate_up_exps.weight", d, 2 * int64_t{ff}, n_expert);
        for (const WeightMatrix& m : gate_up) {
            w.expert_gate.push_back(WeightBinder::rows(m, 0, ff));
            w.expert_up.push_back(WeightBinder::rows(m, ff, ff));
        }
    } else {
        w.expert_gate = bind.experts(b + "ffn_gate_exps.weight", d, ff, n_expert);
        w.expert_up = bind.experts(b + "ffn_up_exps.weight", d, ff, n_expert);
    }
    w.expert_down = bind.experts(b + "ffn_down_exps.weight", ff, d, n_expert);
    w.expert_down_scale = bind.vector(b + "ffn_down_exps.scale", n_expert, false);
}

}  // namespace

void bind_gemma4_weights(ModelImpl& model, const WeightBinder& bind) {
    const ModelHparams& hp = model.hparams;
    const int d = hp.d_model, ple = hp.per_layer_dim;
    if (ple > 0) {
        const int64_t all_layers = static_cast<int64_t>(hp.n_layer) * ple;
        model.per_layer_token_embd = bind.matrix("per_layer_token_embd.weight", all_layers, hp.n_vocab);
        model.per_layer_model_proj = bind.matrix("per_layer_model_proj.weight", d, all_layers);
        model.per_layer_proj_norm = bind.vector("per_layer_proj_norm.weight", ple);
    }
    // proportional RoPE: the full layers' frequency divisors (one tensor for the model)
    const bool has_full_layer = std::any_of(hp.sliding_layers.begin(), hp.sliding_layers.end(), [](uint8_t s) { return !s; });
    model.rope_freqs = bind.vector("rope_freqs.weight", hp.rope_dim / 2, has_full_layer);

    model.layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        LayerWeights& w = model.layers[l];
        const LayerShape& s = hp.shape(l);
        const std::string b = "blk." + std::to_string(l) + ".";
        const int qd = hp.n_head * s.head_dim, kvd = s.kv_dim(), ff = s.ffn_dim;
        if (bind.find(b + "attn_qkv.weight")) fail("gemma4: the fused attn_qkv layout is not supported (" + b + ")");
        w.attn_norm = bind.vector(b + "attn_norm.weight", d);
        w.wq = bind.matrix(b + "attn_q.weight", d, qd);
        w.q_norm = bind.vector(b + "attn_q_norm.weight", s.head_dim);
        if (hp.computes_kv(l)) {  // shared-KV layers have no K/V of their own (their tensors, if any, unused)
            w.wk = bind.matrix(b + "attn_k.weight", d, kvd);
            if (bind.find(b + "attn_v.weight")) w.wv = bind.matrix(b + "attn_v.weight", d, kvd);  // else V = K
            w.k_norm = bind.vector(b + "attn_k_norm.weight", s.head_dim);
        }
        w.wo = bind.matrix(b + "attn_output.weight", qd, d);
        w.post_attn_norm = bind.vector(b + "post_attention_norm.weight", d);
        w.ffn_norm = bind.vector(b + "ffn_norm.weight", d);
        w.gate = bind.matrix(b + "ffn_gate.weight", d, ff);
        w.up = bind.matrix(b + "ffn_up.weight", d, ff);
        w.down = bind.matrix(b + "ffn_down.weight", ff, d);
        w.post_ffn_norm = bind.vector(b + "post_ffw_norm.weight", d);
        if (ple > 0) {
            w.ple_gate = bind.matrix(b + "inp_gate.weight", d, ple);
            w.ple_proj = bind.matrix(b + "proj.weight", ple, d);
            w.ple_post_norm = bind.vector(b + "post_norm.weight", d);
        }
        w.output_scale = bind.vector(b + "layer_output_scale.weight", 1, false);
        if (bind.find(b + "ffn_gate_inp.weight")) bind_gemma4_experts(hp, b, bind, w);
    }
}

}  // namespace lazyllm_edge
