// Test hooks for the per-row operations (cpu/ops.h) and expf_ggml: `_testing.kernels.activation`, `.rope`,
// `.rms_norm`, `.expf_ggml`; activation and rope on the scalar or the AVX2 code.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/ops.h"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;
using Vector = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Matrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Positions = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// Runs f with the ISA `isa` active ('scalar', 'avx2' or 'best'), restoring the previous one.
template <class F>
void with_isa(const std::string& isa, F&& f) {
    if (isa != "scalar" && isa != "avx2" && isa != "best") throw nb::value_error("isa: 'scalar', 'avx2' or 'best'");
    const CpuIsa saved = active_isa();
    set_active_isa(isa == "scalar" ? CpuIsa::scalar : detected_isa());
    f();
    set_active_isa(saved);
}

FloatArray copy_of(const float* src, size_t rows, size_t cols, bool two_d, float** out) {
    float* data = new float[rows * cols > 0 ? rows * cols : 1];
    nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    std::copy(src, src + rows * cols, data);
    *out = data;
    return two_d ? FloatArray(data, {rows, cols}, owner) : FloatArray(data, {cols}, owner);
}

}  // namespace

void register_ops(nb::module_& m) {
    nb::module_ k = nb::borrow<nb::module_>(m.attr("kernels"));
    k.def(
        "activation",
        [](const std::string& kind, const Vector& gate, const Vector& up, const std::string& isa) {
            if (gate.shape(0) != up.shape(0)) throw nb::value_error("gate and up need the same length");
            if (kind != "swiglu" && kind != "geglu" && kind != "gelu")
                throw nb::value_error("kind: 'swiglu', 'geglu' or 'gelu'");
            float* y;
            FloatArray out = copy_of(gate.data(), 1, gate.shape(0), false, &y);
            with_isa(isa, [&] {
                nb::gil_scoped_release release;
                const int n = static_cast<int>(gate.shape(0));
                if (kind == "swiglu") swiglu(y, up.data(), n);
                else if (kind == "geglu") geglu(y, up.data(), n);
                else {  // gemma4's per-layer branch: gelu, then the product
                    gelu(y, n);
                    mul_in_place(y, up.data(), n);
                }
            });
            return out;
        },
        nb::arg("kind"), nb::arg("gate"), nb::arg("up"), nb::arg("isa") = "best",
        "gate * up through the model's activation: 'swiglu' (silu(gate) * up), 'geglu' (gelu_tanh(gate) * up, fused) or "
        "'gelu' (ops gelu, then mul_in_place: gemma4's per-layer embedding gate).");
    k.def(
        "moe_route",
        [](const Vector& logits, int k) {
            const int n = static_cast<int>(logits.shape(0));
            if (k < 1 || k > n) throw nb::value_error("k must be in [1, len(logits)]");
            std::vector<int32_t> selected(k);
            std::vector<float> weights(k);
            moe_route(logits.data(), n, k, selected.data(), weights.data());
            return nb::make_tuple(selected, weights);
        },
        nb::arg("logits"), nb::arg("k"),
        "gemma4's mixture-of-experts routing of one token: (the k experts, by decreasing weight; their weights).");
    k.def(
        "rope",
        [](const Matrix& x, const Positions& positions, int n_heads, int rope_dim, float freq_base, float freq_scale,
           bool neox, const std::string& isa) {
            const size_t rows = x.shape(0), cols = x.shape(1);
            if (positions.shape(0) != rows) throw nb::value_error("one position per row");
            if (n_heads < 1 || cols % n_heads != 0) throw nb::value_error("x must have shape (rows, n_heads * head_dim)");
            const int head_dim = static_cast<int>(cols / n_heads);
            if (rope_dim < 2 || rope_dim % 2 != 0 || rope_dim > head_dim) throw nb::value_error("rope_dim: even, <= head_dim");
            int max_pos = 0;
            for (size_t r = 0; r < rows; ++r) {
                if (positions.data()[r] < 0) throw nb::value_error("positions must be >= 0");
                max_pos = std::max(max_pos, positions.data()[r]);
            }
            float* y;
            FloatArray out = copy_of(x.data(), rows, cols, true, &y);
            std::vector<float> table(static_cast<size_t>(max_pos + 1) * rope_dim);
            build_rope_table(table.data(), max_pos + 1, rope_dim, freq_base, freq_scale, nullptr);
            with_isa(isa, [&] {
                apply_rope(y, static_cast<int>(rows), n_heads, head_dim, rope_dim, positions.data(), table.data(), neox);
            });
            return out;
        },
        nb::arg("x"), nb::arg("positions"), nb::arg("n_heads"), nb::arg("rope_dim"), nb::arg("freq_base"),
        nb::arg("freq_scale") = 1.0f, nb::arg("neox") = true, nb::arg("isa") = "best", "RoPE of each row at its position.");
    k.def(
        "rms_norm",
        [](const Vector& x, const Vector& w, float eps) {
            if (x.shape(0) != w.shape(0)) throw nb::value_error("x and w need the same length");
            float* y;
            FloatArray out = copy_of(x.data(), 1, x.shape(0), false, &y);
            rms_norm(x.data(), w.data(), y, static_cast<int>(x.shape(0)), eps);
            return out;
        },
        nb::arg("x"), nb::arg("w"), nb::arg("eps"), "x / sqrt(mean(x^2) + eps) * w.");
    k.def(
        "expf_ggml",
        [](const Vector& x) {
            float* y;
            FloatArray out = copy_of(x.data(), 1, x.shape(0), false, &y);
            for (size_t i = 0; i < x.shape(0); ++i) y[i] = expf_ggml(x.data()[i]);
            return out;
        },
        nb::arg("x"), "llama.cpp's expf (ggml_v_expf) of each element, scalar form (the AVX2 form runs inside swiglu).");
}
