// Test hook for the attention kernels: `_testing.kernels.attention` (optimized or scalar reference, in the given
// numerics: llama.cpp's arithmetic for "llama.cpp", the online softmax otherwise).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/llama_order/attention_llama.h"
#include "base/thread_pool.h"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;
using Matrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using HalfMatrix = nb::ndarray<const uint16_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using IndexVector = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

FloatArray run_attention(const Matrix& q, const HalfMatrix& k, const HalfMatrix& v, const IndexVector& positions,
                         const IndexVector& begin, const IndexVector& end, int n_head, int n_head_kv, float scale,
                         const std::string& isa, int n_threads, bool reference, const std::string& numerics) {
    const Numerics mode = parse_numerics(numerics);
    const int64_t n_q = static_cast<int64_t>(q.shape(0)), n_ctx = static_cast<int64_t>(k.shape(0));
    const int64_t n_pos = static_cast<int64_t>(positions.shape(0));
    if (n_head < 1 || n_head_kv < 1 || n_head % n_head_kv != 0) throw nb::value_error("n_head must be a multiple of n_head_kv");
    if (q.shape(1) % n_head != 0) throw nb::value_error("q must have shape (n_q, n_head * head_dim)");
    const int64_t hd = static_cast<int64_t>(q.shape(1)) / n_head;
    if (k.shape(1) != n_head_kv * hd || v.shape(0) != k.shape(0) || v.shape(1) != k.shape(1))
        throw nb::value_error("k and v must have shape (n_ctx, n_head_kv * head_dim)");
    if (begin.shape(0) != q.shape(0) || end.shape(0) != q.shape(0)) throw nb::value_error("attend_begin/attend_end need n_q entries");
    for (int64_t i = 0; i < n_pos; ++i)
        if (positions.data()[i] < 0 || positions.data()[i] >= n_ctx || (i && positions.data()[i] <= positions.data()[i - 1]))
            throw nb::value_error("kv_positions must be increasing and inside [0, n_ctx)");
    for (int64_t t = 0; t < n_q; ++t)
        if (begin.data()[t] < 0 || end.data()[t] > n_pos) throw nb::value_error("attend ranges must lie inside kv_positions");
    if (isa != "scalar" && isa != "avx2" && isa != "best") throw nb::value_error("isa: 'scalar', 'avx2' or 'best'");

    float* out = new float[n_q * n_head * hd > 0 ? n_q * n_head * hd : 1];
    nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    FloatArray result(out, {static_cast<size_t>(n_q), static_cast<size_t>(n_head * hd)}, owner);
    {
        nb::gil_scoped_release release;
        AttentionParams p;
        p.q = q.data();
        p.k_cache = k.data();
        p.v_cache = v.data();
        p.kv_positions = positions.data();
        p.attend_begin = begin.data();
        p.attend_end = end.data();
        p.n_q = static_cast<int>(n_q);
        p.n_head = n_head;
        p.n_head_kv = n_head_kv;
        p.head_dim = static_cast<int>(hd);
        p.scale = scale;
        p.out = out;
        p.numerics = mode;
        const int threads = n_threads < 1 ? 1 : n_threads;
        const int64_t per_thread = attention_scratch_floats(static_cast<int>(n_pos > 0 ? n_pos : 1), n_head, n_head_kv, p.head_dim);
        std::vector<float> scratch(static_cast<size_t>(per_thread * (reference ? 1 : threads)));
        if (reference) {
            if (mode == Numerics::llama_cpp) attention_llama_cpp_reference(p, scratch.data());
            else attention_reference(p, scratch.data());
        } else {
            const CpuIsa saved = active_isa();
            set_active_isa(isa == "scalar" ? CpuIsa::scalar : detected_isa());
            ThreadPool pool(threads);
            attention(p, scratch.data(), static_cast<int>(n_pos), pool);  // dispatches on p.numerics
            set_active_isa(saved);
        }
    }
    return result;
}

// The LazyLLM importance of the window queries q_rows (n_q, n_head*hd) at q_pos over the fp16 keys at kv_positions.
FloatArray run_importance(const Matrix& q, const IndexVector& q_pos, const HalfMatrix& k, const IndexVector& positions,
                          int n_head, int n_head_kv, float scale, bool max_over_heads, bool reference,
                          const std::string& isa, int n_threads) {
    const int n_q = static_cast<int>(q.shape(0)), n = static_cast<int>(positions.shape(0));
    const int64_t n_ctx = static_cast<int64_t>(k.shape(0));
    if (n_head < 1 || n_head_kv < 1 || n_head % n_head_kv != 0) throw nb::value_error("n_head must be a multiple of n_head_kv");
    if (n_q < 1 || q.shape(1) % n_head != 0 || static_cast<int>(q_pos.shape(0)) != n_q)
        throw nb::value_error("q must have shape (n_q >= 1, n_head * head_dim) and q_pos n_q entries");
    const int hd = static_cast<int>(q.shape(1)) / n_head;
    if (k.shape(1) != static_cast<size_t>(n_head_kv * hd)) throw nb::value_error("k must have shape (n_ctx, n_head_kv * head_dim)");
    for (int i = 0; i < n; ++i)
        if (positions.data()[i] < 0 || positions.data()[i] >= n_ctx || (i && positions.data()[i] <= positions.data()[i - 1]))
            throw nb::value_error("kv_positions must be increasing and inside [0, n_ctx)");
    if (isa != "scalar" && isa != "avx2" && isa != "best") throw nb::value_error("isa: 'scalar', 'avx2' or 'best'");
    float* out = new float[n > 0 ? n : 1];
    nb::capsule owner(out, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    FloatArray result(out, {static_cast<size_t>(n)}, owner);
    {
        nb::gil_scoped_release release;
        std::vector<float> scratch(static_cast<size_t>(2 * n_head) * (n > 0 ? n : 1));
        if (reference) {
            window_importance(q.data(), q_pos.data(), n_q, k.data(), positions.data(), n, n_head, n_head_kv, hd, scale,
                              scratch.data(), out, max_over_heads);
        } else {
            const CpuIsa saved = active_isa();
            set_active_isa(isa == "scalar" ? CpuIsa::scalar : detected_isa());
            ThreadPool pool(n_threads < 1 ? 1 : n_threads);
            window_importance_fast(q.data(), q_pos.data(), n_q, k.data(), positions.data(), n, n_head, n_head_kv, hd,
                                   scale, scratch.data(), out, max_over_heads, pool);
            set_active_isa(saved);
        }
    }
    return result;
}

}  // namespace

void register_attention(nb::module_& m) {
    nb::module_ k = nb::borrow<nb::module_>(m.attr("kernels"));
    k.def("attention", &run_attention, nb::arg("q"), nb::arg("k_cache"), nb::arg("v_cache"), nb::arg("kv_positions"),
          nb::arg("attend_begin"), nb::arg("attend_end"), nb::arg("n_head"), nb::arg("n_head_kv"), nb::arg("scale"),
          nb::arg("isa") = "best", nb::arg("n_threads") = 2, nb::arg("reference") = false, nb::arg("numerics") = "fast",
          "Attention of q (n_q, n_head*hd) over fp16 K/V (n_ctx, n_head_kv*hd, as uint16 bits) at kv_positions, query t "
          "seeing kv_positions[attend_begin[t]:attend_end[t]]. reference=True: the scalar exact-softmax reference "
          "(one thread); else the tiled online-softmax kernels ('scalar' or 'avx2'/'best') on n_threads threads. "
          "numerics='llama.cpp': llama.cpp's attention arithmetic instead (its reference, or its phase kernels); "
          "'fast' and 'fp32' compute the same.");
    k.def("window_importance", &run_importance, nb::arg("q"), nb::arg("q_pos"), nb::arg("k_cache"),
          nb::arg("kv_positions"), nb::arg("n_head"), nb::arg("n_head_kv"), nb::arg("scale"),
          nb::arg("max_over_heads") = false, nb::arg("reference") = false, nb::arg("isa") = "best",
          nb::arg("n_threads") = 2,
          "LazyLLM importance (n,) of kv_positions for the queries q (n_q, n_head*hd) at q_pos over fp16 keys (n_ctx, "
          "n_head_kv*hd as uint16 bits): reference=True the scalar reference, else the sessions' kernel (AVX2 where "
          "the CPU runs it and hd % 8 == 0).");
}
