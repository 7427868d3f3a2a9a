#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "base/thread_pool.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cpu/matmul_packed.h"
#include "cuda/cuda_backend.h"
#include "model/chat_template.h"
#include "model/gemma4.h"
#include "model/qwen35.h"
#include "model/weight_binder.h"

namespace lazyllm_edge {

using model_load::checked_dim;
using model_load::fail;
using model_load::optional_dim;
using model_load::uniform_dim;
using model_load::WeightBinder;

namespace {

// The int8 prefill layout of every layer matrix that has one (cpu/matmul_packed.h), in one allocation, packed in
// parallel over the matrices. Nothing on a CPU without AVX2 (no kernel would read it).
void pack_layer_weights(ModelImpl& m) {
    if (detected_isa() < CpuIsa::avx2) return;
    std::vector<WeightMatrix*> mats;
    for (LayerWeights& l : m.layers)
        for (WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down})
            if (w->data && packed_size(*w) > 0) {
                // 15-bit activations (two int8 passes) by default: with 8-bit ones in llama.cpp's own formats
                // (numerics int8: one pass, 1.3-1.5x faster) the agreement with llama.cpp's logits falls just below
                // the reference tests' bars (SmolLM2 seed_zh top-1 0.939, Gemma 3 seed_zh one confident position);
                // with 15 bits it is that of exact fp32
                w->packed_passes = 2;
                mats.push_back(w);
            }
    std::vector<size_t> offset(mats.size() + 1, 0);
    for (size_t i = 0; i < mats.size(); ++i) offset[i + 1] = offset[i] + packed_size(*mats[i]);
    if (offset.back() == 0) return;
    m.packed_weights.reset(static_cast<uint8_t*>(std::aligned_alloc(64, offset.back())));
    if (!m.packed_weights) throw_error(ErrorCode::out_of_memory, "cannot allocate the packed prefill weights");
    m.packed_bytes = offset.back();
    uint8_t* base = m.packed_weights.get();
    ThreadPool pool(m.params.n_threads);
    pool.parallel_for(static_cast<long>(mats.size()), [&](long i0, long i1, int) {
        for (long i = i0; i < i1; ++i) {
            pack_weights(*mats[i], base + offset[i]);
            mats[i]->packed = base + offset[i];
        }
    });
}

}  // namespace

const char* architecture_name(Architecture a) {
    switch (a) {
        case Architecture::llama: return "llama";
        case Architecture::qwen2: return "qwen2";
        case Architecture::qwen3: return "qwen3";
        case Architecture::gemma3: return "gemma3";
        case Architecture::gemma4: return "gemma4";
        case Architecture::phi3: return "phi3";
        case Architecture::smollm3: return "smollm3";
        case Architecture::qwen35: return "qwen35";
    }
    return "?";
}

std::unique_ptr<ModelImpl> load_model(const std::string& path, const ModelParams& params) {
    auto model = std::make_unique<ModelImpl>();
    model->params = params;
    model->file = GgufFile::open(path, params.use_mmap);
    const GgufFile& f = *model->file;
    ModelHparams& hp = model->hparams;

    std::string arch = f.get_string("general.architecture");
    if (arch.empty()) fail("model file has no general.architecture");
    if (arch == "llama") hp.arch = Architecture::llama;
    else if (arch == "qwen2") hp.arch = Architecture::qwen2;
    else if (arch == "qwen3") hp.arch = Architecture::qwen3;
    else if (arch == "gemma3") hp.arch = Architecture::gemma3;
    else if (arch == "gemma4") hp.arch = Architecture::gemma4;
    else if (arch == "phi3") hp.arch = Architecture::phi3;
    else if (arch == "smollm3") hp.arch = Architecture::smollm3;
    else if (arch == "qwen35") hp.arch = Architecture::qwen35;
    else fail("unsupported model architecture '" + arch + "' (supported: llama, qwen2, qwen3, gemma3, gemma4, phi3, smollm3, "
              "qwen35)");

    const std::string p = arch + ".";
    hp.n_layer = checked_dim(f, p + "block_count", 1, 1024);
    hp.d_model = checked_dim(f, p + "embedding_length", 1, 1 << 16);
    hp.n_head = uniform_dim(f, p + "attention.head_count", -1, 1, 1024);
    hp.n_ctx_train = optional_dim(f, p + "context_length", 2048, 1, 1 << 24);
    if (hp.arch != Architecture::gemma4) {  // (gemma4's shapes vary per layer: load_gemma4_hparams)
        hp.n_head_kv = uniform_dim(f, p + "attention.head_count_kv", hp.n_head, 1, 1024);
        hp.ffn_dim = uniform_dim(f, p + "feed_forward_length", -1, 1, 1 << 20);
        if (hp.n_head % hp.n_head_kv != 0) fail("attention.head_count is not a multiple of head_count_kv");
        int default_head_dim = hp.d_model / hp.n_head;
        hp.head_dim = optional_dim(f, p + "attention.key_length", default_head_dim, 1, 4096);
        if (optional_dim(f, p + "attention.value_length", hp.head_dim, 1, 4096) != hp.head_dim)
            fail("attention.key_length != value_length is not supported");
        if (hp.head_dim % 2 != 0) fail("head dimension must be even");
        hp.rope_dim = optional_dim(f, p + "rope.dimension_count", hp.head_dim, 2, hp.head_dim);
    }
    hp.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5));
    if (!(hp.rms_eps > 0) || hp.rms_eps > 1) fail("layer_norm_rms_epsilon out of range");
    hp.rope_freq_base = static_cast<float>(f.get_float(p + "rope.freq_base", 10000.0));
    if (!(hp.rope_freq_base > 1)) fail("rope.freq_base out of range");
    std::string scaling = f.get_string(p + "rope.scaling.type", "none");
    double factor = f.get_float(p + "rope.scaling.factor", 0.0);
    if (scaling == "linear" && factor > 0) hp.rope_freq_scale = static_cast<float>(1.0 / factor);
    else if (scaling != "none" && scaling != "linear" && factor > 1.0)
        fail("RoPE scaling type '" + scaling + "' is not supported");
    hp.rope_attn_factor = static_cast<float>(f.get_float(p + "rope.scaling.attn_factor", 1.0));
    if (!(hp.rope_attn_factor > 0) || hp.rope_attn_factor > 100) fail("rope.scaling.attn_factor out of range");
    hp.n_ctx_orig = optional_dim(f, p + "rope.scaling.original_context_length", hp.n_ctx_train, 1, 1 << 24);
    hp.rope_neox = hp.arch != Architecture::llama && hp.arch != Architecture::smollm3;
    if (hp.arch == Architecture::qwen35) load_qwen35_hparams(f, p, hp);  // (the trunk's n_layer, before the shapes)
    if (hp.arch == Architecture::gemma4) {
        load_gemma4_hparams(f, p, hp);  // layer types and shapes, shared K/V, per-layer embeddings, scales
    } else {
        hp.attention_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
        hp.rope_dim_local = hp.rope_dim;
        LayerShape s;  // every layer alike
        s.head_dim = hp.head_dim;
        s.n_head_kv = hp.n_head_kv;
        s.ffn_dim = hp.ffn_dim;
        s.rope_dim = hp.rope_dim;
        hp.layer_shapes.assign(hp.n_layer, s);
        for (int l = 0; l < hp.n_layer; ++l) hp.layer_shapes[l].kv_source = l;
    }
    // phi3: llama.cpp's graph scales Qcur by 1/sqrt(head_dim) before attention; its sliding window is ignored there
    if (hp.arch == Architecture::phi3) hp.scale_q = true;
    // smollm3: every 4th layer has no RoPE (llama.cpp's n_no_rope_layer_step, fixed at 4)
    if (hp.arch == Architecture::smollm3) hp.nope_layer_step = 4;

    if (hp.arch == Architecture::gemma3) {
        // As llama.cpp's gemma3 graph: embeddings scaled by sqrt(d_model); 5 of every 6 layers attend
        // over a sliding window with RoPE base 10000 (unscaled), the 6th is global with the metadata base.
        hp.embedding_scale = std::sqrt(static_cast<float>(hp.d_model));
        hp.sliding_window = optional_dim(f, p + "attention.sliding_window", 0, 0, 1 << 24);
        hp.sliding_window_pattern = optional_dim(f, p + "attention.sliding_window_pattern", 6, 1, 1024);
        hp.rope_freq_base_local = 10000.0f;
        hp.gelu_ffn = true;
        // The converter stores Gemma's (1 + w) norm weights already shifted (checked: attn_norm ~ 13).
        hp.norm_plus_one = true;
        hp.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-6));
        // query_pre_attn_scalar: head_dim, except the 27B model (62 layers) which uses d_model / n_head.
        if (hp.n_layer == 62) hp.attention_scale = 1.0f / std::sqrt(static_cast<float>(hp.d_model / hp.n_head));
        hp.final_logit_softcap = static_cast<float>(f.get_float(p + "final_logit_softcapping", 0.0));
        hp.scale_q = true;  // llama.cpp's graph scales Qcur (before attention rounds it to fp16)
    }

    model->tokenizer = std::make_unique<Tokenizer>(read_tokenizer_vocab(f));
    // The vocabulary size comes from the embedding matrix (metadata vocab_size is optional).
    const GgufTensor* embd = f.find_tensor("token_embd.weight");
    if (!embd) fail("model file has no tensor 'token_embd.weight'");
    hp.n_vocab = static_cast<int>(embd->ne[1]);
    if (hp.n_vocab != model->tokenizer->n_vocab())
        fail("token_embd has " + std::to_string(hp.n_vocab) + " rows but the tokenizer has " +
             std::to_string(model->tokenizer->n_vocab()) + " tokens");

    WeightBinder bind(*model);
    const int d = hp.d_model, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.ffn_dim;
    model->token_embd = bind.bind_matrix(*embd, d, hp.n_vocab);
    model->output_norm = bind.vector("output_norm.weight", d);
    if (const GgufTensor* out = bind.find("output.weight")) model->output = bind.bind_matrix(*out, d, hp.n_vocab);
    else model->output = model->token_embd;  // tied embeddings
    if (hp.arch == Architecture::gemma4) bind_gemma4_weights(*model, bind);  // (its rope_freqs: the full layers')
    else model->rope_freqs = bind.vector("rope_freqs.weight", hp.rope_dim / 2, false);
    // phi3 LongRoPE: one pair for the whole model (llama.cpp's converter writes them once, blk.0 names them too)
    model->rope_factors_long = bind.vector("rope_factors_long.weight", hp.rope_dim / 2, false);
    model->rope_factors_short = bind.vector("rope_factors_short.weight", hp.rope_dim / 2, false);

    if (hp.arch != Architecture::gemma4) model->layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer && hp.arch != Architecture::gemma4; ++l) {
        LayerWeights& w = model->layers[l];
        const std::string b = "blk." + std::to_string(l) + ".";
        w.attn_norm = bind.vector(b + "attn_norm.weight", d);
        if (hp.is_recurrent(l)) {
            bind_qwen35_linear_attention(bind, b, hp, w);
        } else if (hp.arch == Architecture::phi3 && bind.find(b + "attn_qkv.weight")) {  // fused: rows q, then k, then v
            const WeightMatrix qkv = bind.matrix(b + "attn_qkv.weight", d, qd + 2 * kvd);
            w.wq = WeightBinder::rows(qkv, 0, qd);
            w.wk = WeightBinder::rows(qkv, qd, kvd);
            w.wv = WeightBinder::rows(qkv, qd + kvd, kvd);
        } else {
            // qwen35: each head's q rows are followed by its output gate's rows
            w.wq = bind.matrix(b + "attn_q.weight", d, hp.attn_output_gate ? 2 * static_cast<int64_t>(qd) : qd);
            w.wk = bind.matrix(b + "attn_k.weight", d, kvd);
            w.wv = bind.matrix(b + "attn_v.weight", d, kvd);
        }
        if (!hp.is_recurrent(l)) {
            w.wo = bind.matrix(b + "attn_output.weight", qd, d);
            w.bq = bind.vector(b + "attn_q.bias", qd, hp.arch == Architecture::qwen2);
            w.bk = bind.vector(b + "attn_k.bias", kvd, hp.arch == Architecture::qwen2);
            w.bv = bind.vector(b + "attn_v.bias", kvd, hp.arch == Architecture::qwen2);
            bool qk_norm = hp.arch == Architecture::qwen3 || hp.arch == Architecture::gemma3 || hp.arch == Architecture::qwen35;
            w.q_norm = bind.vector(b + "attn_q_norm.weight", hp.head_dim, qk_norm);
            w.k_norm = bind.vector(b + "attn_k_norm.weight", hp.head_dim, qk_norm);
        }
        bool gemma = hp.arch == Architecture::gemma3;
        if (hp.arch == Architecture::qwen35) {  // its norm before the FFN is named post_attention_norm
            w.ffn_norm = bind.vector(b + "post_attention_norm.weight", d);
        } else {
            w.post_attn_norm = bind.vector(b + "post_attention_norm.weight", d, gemma);
            w.ffn_norm = bind.vector(b + "ffn_norm.weight", d);
        }
        if (hp.arch == Architecture::phi3 && !bind.find(b + "ffn_gate.weight")) {  // fused: gate rows, then up rows
            const WeightMatrix gate_up = bind.matrix(b + "ffn_up.weight", d, 2 * static_cast<int64_t>(ff));
            w.gate = WeightBinder::rows(gate_up, 0, ff);
            w.up = WeightBinder::rows(gate_up, ff, ff);
        } else {
            w.gate = bind.matrix(b + "ffn_gate.weight", d, ff);
            w.up = bind.matrix(b + "ffn_up.weight", d, ff);
        }
        w.down = bind.matrix(b + "ffn_down.weight", ff, d);
        w.post_ffn_norm = bind.vector(b + "post_ffw_norm.weight", d, gemma);
    }

    ModelInfo& info = model->info;
    info.architecture = arch;
    info.name = f.get_string("general.name");
    info.n_layer = hp.n_layer;
    info.d_model = hp.d_model;
    info.n_head = hp.n_head;
    info.n_head_kv = hp.n_head_kv;
    info.head_dim = hp.head_dim;
    info.ffn_dim = hp.ffn_dim;
    info.n_vocab = hp.n_vocab;
    info.n_ctx_train = hp.n_ctx_train;
    // where a stage ranks every token; with no such layer before the last (a stage there cuts nothing): every layer,
    // so a preset keeps its stages and the session's checks name why they cannot be where they are
    info.stage_layers.assign(static_cast<size_t>(hp.n_layer), 0);
    for (int l = hp.first_prunable_layer(); l < hp.n_layer; ++l) info.stage_layers[l] = hp.is_sliding(l) ? 0 : 1;
    if (hp.n_layer < 2 || std::count(info.stage_layers.begin(), info.stage_layers.end() - 1, 1) == 0) info.stage_layers.clear();
    info.chat_template = f.get_string("tokenizer.chat_template");
    // Some conversions (gemma-3-270m) carry no template; use the architecture's own turn format.
    if (info.chat_template.empty()) info.chat_template = default_chat_template(arch);
    return model;
}

const float* rope_frequency_factors(const ModelImpl& model, int n_ctx) {
    if (model.rope_freqs) return model.rope_freqs;
    if (n_ctx > model.hparams.n_ctx_orig && model.rope_factors_long) return model.rope_factors_long;
    return model.rope_factors_short;
}

void build_model_rope_table(const ModelImpl& model, int n_ctx, float* table) {
    const ModelHparams& hp = model.hparams;
    build_rope_table(table, n_ctx, hp.rope_dim, hp.rope_freq_base, hp.rope_freq_scale, rope_frequency_factors(model, n_ctx));
    // qwen35's interleaved M-RoPE (llama.cpp's ggml_mrope_cache_init, is_imrope) with text positions (p, p, p, 0):
    // pair i rotates by p unless its sector takes the 4th component, where the angle is 0 (cos 1, sin 0)
    const int* sec = hp.rope_sections;
    const int sect_dims = sec[0] + sec[1] + sec[2] + sec[3];
    if (sect_dims > 0) {
        for (int i = 0; i < hp.rope_dim / 2; ++i) {
            const int s = i % sect_dims;
            const bool rotates = (s % 3 == 0 && s < 3 * sec[0]) || (s % 3 == 1 && s < 3 * sec[1]) || (s % 3 == 2 && s < 3 * sec[2]);
            if (rotates) continue;
            for (int64_t p = 0; p < n_ctx; ++p) {
                table[p * hp.rope_dim + 2 * i] = 1.0f;
                table[p * hp.rope_dim + 2 * i + 1] = 0.0f;
            }
        }
    }
    if (hp.rope_attn_factor != 1.0f)
        for (int64_t i = 0; i < static_cast<int64_t>(n_ctx) * hp.rope_dim; ++i) table[i] *= hp.rope_attn_factor;
}

// ---- Model: the public handle (C++ API) ----

std::shared_ptr<Model> Model::load(const std::string& path, const ModelParams& params) {
    // the OS would read the path up to the NUL: another file than the one named
    if (path.find('\0') != std::string::npos) throw_error(ErrorCode::invalid_argument, "model path contains a NUL byte");
    if (params.backend != "cpu" && params.backend != "cuda" && params.backend != "auto")
        throw_error(ErrorCode::invalid_argument, "unknown backend '" + params.backend + "' (expected cpu, cuda or auto)");
    if (params.n_threads < 0 || params.n_threads > 1024)
        throw_error(ErrorCode::invalid_argument, "n_threads must be in [0, 1024]");
    // "cuda" must find a device before the file is read; "auto" takes one when there is one
    std::string why_no_device;
    const bool has_device = cuda_device_count(&why_no_device) > 0;
    if (params.backend == "cuda" && !has_device) throw_error(ErrorCode::unsupported, "backend 'cuda': " + why_no_device);
    bool on_device = params.backend == "cuda" || (params.backend == "auto" && has_device);
    std::shared_ptr<Model> model(new Model());
    model->impl_ = load_model(path, params);
    // gemma4 runs on the CPU only (its per-layer shapes, shared K/V and per-layer embeddings have no CUDA kernels)
    if (on_device && model->impl_->hparams.arch == Architecture::gemma4) {
        if (params.backend == "cuda")
            throw_error(ErrorCode::unsupported, "backend 'cuda' does not support architecture 'gemma4' (per-layer "
                                                "embeddings, shared K/V and per-layer head sizes run on the CPU only)");
        on_device = false;  // "auto": the CPU
    }
    // qwen35 likewise (its gated delta-net linear-attention layers have no CUDA kernels)
    if (on_device && model->impl_->hparams.arch == Architecture::qwen35) {
        if (params.backend == "cuda")
            throw_error(ErrorCode::unsupported, "backend 'cuda' does not support architecture 'qwen35' (its gated delta-net "
                                                "linear-attention layers run on the CPU only): use backend 'cpu'");
        on_device = false;
    }
    model->impl_->params.backend = on_device ? "cuda" : "cpu";
    if (model->impl_->params.n_threads == 0) model->impl_->params.n_threads = default_thread_count();
    if (on_device) model->impl_->cuda = cuda_upload_model(*model->impl_);
    else pack_layer_weights(*model->impl_);
    return model;
}

Model::~Model() = default;
const ModelInfo& Model::info() const { return impl_->info; }
const Tokenizer& Model::tokenizer() const { return *impl_->tokenizer; }
const ModelParams& Model::params() const { return impl_->params; }

const Sha256Digest& model_file_sha256(const ModelImpl& m) {
    std::call_once(m.file_sha256_once, [&] { m.file_sha256 = sha256(m.file->bytes(), m.file->size()); });
    return m.file_sha256;
}

}  // namespace lazyllm_edge
