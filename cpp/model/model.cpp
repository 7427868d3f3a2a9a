#include "model/model.h"

#include <cmath>

#include "base/thread_pool.h"
#include "cpu/kernels.h"
#include "cpu/matmul_packed.h"
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

// The int8 prefill layout of every layer matrix that has one (cpu/matmul_packed.h), in one allocation, packed in
// parallel over the matrices. Nothing on a CPU without AVX2 (no kernel would read it).
void pack_layer_weights(ModelImpl& m) {
    if (detected_isa() < CpuIsa::avx2) return;
    std::vector<WeightMatrix*> mats;
    for (LayerWeights& l : m.layers)
        for (WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down})
            if (w->data && packed_size(*w) > 0) {
                // 15-bit activations (two int8 passes): with 8-bit ones (llama.cpp's precision, 1.3-1.5x faster)
                // the int8 rounding noise is not llama.cpp's own and agreement with its logits drops below the
                // reference tests' bars (SmolLM2 chat top-1 0.925, Gemma 3 seed_zh 0.923, Qwen long confident
                // 0.999); with 15 bits it is that of exact fp32
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
    else fail("unsupported model architecture '" + arch + "' (supported: llama, qwen2, qwen3, gemma3)");

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
    hp.rope_neox = hp.arch != Architecture::llama;
    hp.attention_scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));

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

    model->layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        LayerWeights& w = model->layers[l];
        const std::string b = "blk." + std::to_string(l) + ".";
        w.attn_norm = bind.vector(b + "attn_norm.weight", d);
        w.wq = bind.matrix(b + "attn_q.weight", d, qd);
        w.wk = bind.matrix(b + "attn_k.weight", d, kvd);
        w.wv = bind.matrix(b + "attn_v.weight", d, kvd);
        w.wo = bind.matrix(b + "attn_output.weight", qd, d);
        w.bq = bind.vector(b + "attn_q.bias", qd, hp.arch == Architecture::qwen2);
        w.bk = bind.vector(b + "attn_k.bias", kvd, hp.arch == Architecture::qwen2);
        w.bv = bind.vector(b + "attn_v.bias", kvd, hp.arch == Architecture::qwen2);
        bool qk_norm = hp.arch == Architecture::qwen3 || hp.arch == Architecture::gemma3;
        w.q_norm = bind.vector(b + "attn_q_norm.weight", hp.head_dim, qk_norm);
        w.k_norm = bind.vector(b + "attn_k_norm.weight", hp.head_dim, qk_norm);
        bool gemma = hp.arch == Architecture::gemma3;
        w.post_attn_norm = bind.vector(b + "post_attention_norm.weight", d, gemma);
        w.ffn_norm = bind.vector(b + "ffn_norm.weight", d);
        w.gate = bind.matrix(b + "ffn_gate.weight", d, ff);
        w.up = bind.matrix(b + "ffn_up.weight", d, ff);
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

// ---- Model: the public handle (C++ API) ----

std::shared_ptr<Model> Model::load(const std::string& path, const ModelParams& params) {
    if (params.backend != "cpu" && params.backend != "cuda" && params.backend != "auto")
        throw_error(ErrorCode::invalid_argument, "unknown backend '" + params.backend + "' (expected cpu, cuda or auto)");
    if (params.n_threads < 0 || params.n_threads > 1024)
        throw_error(ErrorCode::invalid_argument, "n_threads must be in [0, 1024]");
    // "cuda" must find a device before the file is read; "auto" takes one when there is one
    std::string why_no_device;
    const bool has_device = cuda_device_count(&why_no_device) > 0;
    if (params.backend == "cuda" && !has_device) throw_error(ErrorCode::unsupported, "backend 'cuda': " + why_no_device);
    const bool on_device = params.backend == "cuda" || (params.backend == "auto" && has_device);
    std::shared_ptr<Model> model(new Model());
    model->impl_ = load_model(path, params);
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

}  // namespace lazyllm_edge
