#include "model/model.h"

#include <cmath>

#include "base/thread_pool.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cuda/cuda_backend.h"
#include "model/chat_template.h"

namespace lazyllm_edge {
namespace {

[[noreturn]] void fail(const std::string& message) { throw_error(ErrorCode::model_load, message); }

// Binds tensors by name and checks their shapes against the hparams.
class WeightBinder {
public:
    WeightBinder(ModelImpl& model) : model_(model), file_(*model.file) {}

    const GgufTensor* find(const std::string& name) const { return file_.find_tensor(name); }

    WeightMatrix matrix(const std::string& name, int64_t n_in, int64_t n_out) const {
        const GgufTensor* t = find(name);
        if (!t) fail("model file has no tensor '" + name + "'");
        return bind_matrix(*t, n_in, n_out);
    }

    WeightMatrix bind_matrix(const GgufTensor& t, int64_t n_in, int64_t n_out) const {
        if (t.n_dims > 2 || t.ne[0] != n_in || t.ne[1] != n_out)
            fail("tensor '" + t.name + "' has shape [" + std::to_string(t.ne[0]) + ", " + std::to_string(t.ne[1]) +
                 "], expected [" + std::to_string(n_in) + ", " + std::to_string(n_out) + "]");
        const GgmlTypeTraits& traits = ggml_traits(t.type);
        if (!traits.supported) fail("tensor '" + t.name + "' has unsupported type " + traits.name);
        WeightMatrix w;
        w.type = t.type;
        w.n_in = n_in;
        w.n_out = n_out;
        w.data = t.data;
        w.row_bytes = ggml_row_size(t.type, n_in);
        return w;
    }

    // Rows [first, first + n_out) of a bound matrix, as a matrix of their own (fused tensors: phi3's attn_qkv, ffn_up).
    static WeightMatrix rows(const WeightMatrix& w, int64_t first, int64_t n_out) {
        WeightMatrix part = w;
        part.n_out = n_out;
        part.data = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(first) * w.row_bytes;
        return part;
    }

    // A 1-D fp32 vector of length n (converted and kept by the model when stored otherwise).
    const float* vector(const std::string& name, int64_t n, bool required = true) const {
        const GgufTensor* t = find(name);
        if (!t) {
            if (required) fail("model file has no tensor '" + name + "'");
            return nullptr;
        }
        if (t->n_elements() != n)
            fail("tensor '" + name + "' has " + std::to_string(t->n_elements()) + " elements, expected " + std::to_string(n));
        const GgmlTypeTraits& traits = ggml_traits(t->type);
        if (!traits.supported) fail("tensor '" + name + "' has unsupported type " + traits.name);
        if (t->type == GgmlType::F32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0)
            return reinterpret_cast<const float*>(t->data);
        if (n % traits.block_size != 0) fail("tensor '" + name + "' length is not a whole number of blocks");
        model_.owned_vectors.emplace_back(static_cast<size_t>(n));
        dequantize_row_reference(t->type, t->data, model_.owned_vectors.back().data(), n);
        return model_.owned_vectors.back().data();
    }

private:
    ModelImpl& model_;
    const GgufFile& file_;
};

// The tensors of a gated delta-net layer (qwen35's linear attention), shapes as llama.cpp's loader checks them.
void bind_linear_attention(const WeightBinder& bind, const std::string& b, const ModelHparams& hp, LayerWeights& w) {
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

int checked_dim(const GgufFile& f, const std::string& key, int64_t lo, int64_t hi) {
    int64_t v = f.require_int(key);
    if (v < lo || v > hi)
        fail("GGUF metadata '" + key + "' = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    return static_cast<int>(v);
}

int optional_dim(const GgufFile& f, const std::string& key, int fallback, int64_t lo, int64_t hi) {
    if (!f.find(key)) return fallback;
    return checked_dim(f, key, lo, hi);
}

// head_count / head_count_kv / feed_forward_length may be per-layer arrays; all layers must agree here.
int uniform_dim(const GgufFile& f, const std::string& key, int fallback, int64_t lo, int64_t hi) {
    const GgufValue* v = f.find(key);
    if (!v) {
        if (fallback >= 0) return fallback;
        fail("GGUF metadata '" + key + "' is missing");
    }
    if (v->type != GgufValueType::ARRAY) return checked_dim(f, key, lo, hi);
    std::vector<int32_t> values = f.get_int_array(key);
    if (values.empty()) fail("GGUF metadata '" + key + "' is an empty array");
    for (int32_t x : values)
        if (x != values[0]) fail("GGUF metadata '" + key + "' varies per layer, which is not supported");
    if (values[0] < lo || values[0] > hi) fail("GGUF metadata '" + key + "' is out of range");
    return values[0];
}


// qwen35 (llama.cpp's src/models/qwen35.cpp): which layers are linear attention, the gated delta net's sizes,
// the M-RoPE sections; multi-token-prediction blocks (nextn_predict_layers, after the trunk) are not run.
void read_qwen35_hparams(const GgufFile& f, const std::string& p, ModelHparams& hp) {
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

}  // namespace

const char* architecture_name(Architecture a) {
    switch (a) {
        case Architecture::llama: return "llama";
        case Architecture::qwen2: return "qwen2";
        case Architecture::qwen3: return "qwen3";
        case Architecture::gemma3: return "gemma3";
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
    else if (arch == "phi3") hp.arch = Architecture::phi3;
    else if (arch == "smollm3") hp.arch = Architecture::smollm3;
    else if (arch == "qwen35") hp.arch = Architecture::qwen35;
    else fail("unsupported model architecture '" + arch + "' (supported: llama, qwen2, qwen3, gemma3, phi3, smollm3, qwen35)");

    const std::string p = arch + ".";
    hp.n_layer = checked_dim(f, p + "block_count", 1, 1024);
    hp.d_model = checked_dim(f, p + "embedding_length", 1, 1 << 16);
    hp.n_head = uniform_dim(f, p + "attention.head_count", -1, 1, 1024);
    hp.n_head_kv = uniform_dim(f, p + "attention.head_count_kv", hp.n_head, 1, 1024);
    hp.ffn_dim = uniform_dim(f, p + "feed_forward_length", -1, 1, 1 << 20);
    hp.n_ctx_train = optional_dim(f, p + "context_length", 2048, 1, 1 << 24);
    if (hp.n_head % hp.n_head_kv != 0) fail("attention.head_count is not a multiple of head_count_kv");
    int default_head_dim = hp.d_model / hp.n_head;
    hp.head_dim = optional_dim(f, p + "attention.key_length", default_head_dim, 1, 4096);
    if (optional_dim(f, p + "attention.value_length", hp.head_dim, 1, 4096) != hp.head_dim)
        fail("attention.key_length != value_length is not supported");
    if (hp.head_dim % 2 != 0) fail("head dimension must be even");
    hp.rope_dim = optional_dim(f, p + "rope.dimension_count", hp.head_dim, 2, hp.head_dim);
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
    hp.attention_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
    // phi3: llama.cpp's graph scales Qcur by 1/sqrt(head_dim) before attention; its sliding window is ignored there
    if (hp.arch == Architecture::phi3) hp.scale_q = true;
    // smollm3: every 4th layer has no RoPE (llama.cpp's n_no_rope_layer_step, fixed at 4)
    if (hp.arch == Architecture::smollm3) hp.nope_layer_step = 4;

    if (hp.arch == Architecture::qwen35) read_qwen35_hparams(f, p, hp);

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
    model->rope_freqs = bind.vector("rope_freqs.weight", hp.rope_dim / 2, false);
    // phi3 LongRoPE: one pair for the whole model (llama.cpp's converter writes them once, blk.0 names them too)
    model->rope_factors_long = bind.vector("rope_factors_long.weight", hp.rope_dim / 2, false);
    model->rope_factors_short = bind.vector("rope_factors_short.weight", hp.rope_dim / 2, false);

    model->layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        LayerWeights& w = model->layers[l];
        const std::string b = "blk." + std::to_string(l) + ".";
        w.attn_norm = bind.vector(b + "attn_norm.weight", d);
        if (hp.is_recurrent(l)) {
            bind_linear_attention(bind, b, hp, w);
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
    // the CUDA backend has no gated delta-net layers: qwen35 runs on the CPU ("auto" picks it, "cuda" is refused)
    if (on_device && model->impl_->hparams.arch == Architecture::qwen35) {
        if (params.backend == "cuda")
            throw_error(ErrorCode::unsupported, "backend 'cuda' does not support architecture 'qwen35' (its gated delta-net "
                                                "linear-attention layers run on the CPU only): use backend 'cpu'");
        on_device = false;
    }
    model->impl_->params.backend = on_device ? "cuda" : "cpu";
    if (model->impl_->params.n_threads == 0) model->impl_->params.n_threads = default_thread_count();
    if (on_device) model->impl_->cuda = cuda_upload_model(*model->impl_);
    return model;
}

Model::~Model() = default;
const ModelInfo& Model::info() const { return impl_->info; }
const Tokenizer& Model::tokenizer() const { return *impl_->tokenizer; }
const ModelParams& Model::params() const { return impl_->params; }

}  // namespace lazyllm_edge
