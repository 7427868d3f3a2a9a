// Reading a model file's metadata and binding its tensors, every count and shape checked (model.cpp and the
// architectures' own loaders, gemma4.cpp): Error(model_load) naming the key or tensor, never a crash.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "cpu/kernels.h"
#include "gguf/gguf_reader.h"
#include "model/model.h"

namespace lazyllm_edge {
namespace model_load {

[[noreturn]] inline void fail(const std::string& message) { throw_error(ErrorCode::model_load, message); }

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

    // The n_expert matrices (n_out, n_in) of a 3-D expert tensor [n_in, n_out, n_expert], one after another.
    std::vector<WeightMatrix> experts(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_expert) const {
        const GgufTensor* t = find(name);
        if (!t) fail("model file has no tensor '" + name + "'");
        if (t->n_dims != 3 || t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != n_expert)
            fail("tensor '" + name + "' has shape [" + std::to_string(t->ne[0]) + ", " + std::to_string(t->ne[1]) + ", " +
                 std::to_string(t->ne[2]) + "], expected [" + std::to_string(n_in) + ", " + std::to_string(n_out) + ", " +
                 std::to_string(n_expert) + "]");
        const GgmlTypeTraits& traits = ggml_traits(t->type);
        if (!traits.supported) fail("tensor '" + name + "' has unsupported type " + traits.name);
        WeightMatrix all;
        all.type = t->type;
        all.n_in = n_in;
        all.n_out = n_out * n_expert;
        all.data = t->data;
        all.row_bytes = ggml_row_size(t->type, n_in);
        std::vector<WeightMatrix> out;
        for (int64_t e = 0; e < n_expert; ++e) out.push_back(rows(all, e * n_out, n_out));
        return out;
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

inline int checked_dim(const GgufFile& f, const std::string& key, int64_t lo, int64_t hi) {
    int64_t v = f.require_int(key);
    if (v < lo || v > hi)
        fail("GGUF metadata '" + key + "' = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    return static_cast<int>(v);
}

inline int optional_dim(const GgufFile& f, const std::string& key, int fallback, int64_t lo, int64_t hi) {
    if (!f.find(key)) return fallback;
    return checked_dim(f, key, lo, hi);
}

// head_count / head_count_kv / feed_forward_length may be per-layer arrays; all layers must agree here.
inline int uniform_dim(const GgufFile& f, const std::string& key, int fallback, int64_t lo, int64_t hi) {
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


// A per-layer count: one value for every layer or an array of n_layer values, each in [lo, hi]; `fallback`
// (>= 0) when the key is missing.
inline std::vector<int> per_layer_dim(const GgufFile& f, const std::string& key, int n_layer, int fallback, int64_t lo,
                                      int64_t hi) {
    const GgufValue* v = f.find(key);
    if (!v && fallback < 0) fail("GGUF metadata '" + key + "' is missing");
    if (!v || v->type != GgufValueType::ARRAY) return std::vector<int>(n_layer, v ? checked_dim(f, key, lo, hi) : fallback);
    std::vector<int32_t> values = f.get_int_array(key);
    if (static_cast<int>(values.size()) != n_layer)
        fail("GGUF metadata '" + key + "' has " + std::to_string(values.size()) + " entries, expected one per layer (" +
             std::to_string(n_layer) + ")");
    for (int32_t x : values)
        if (x < lo || x > hi) fail("GGUF metadata '" + key + "' has an entry out of range");
    return std::vector<int>(values.begin(), values.end());
}

}  // namespace model_load
}  // namespace lazyllm_edge
