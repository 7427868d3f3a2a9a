// Test hooks for the CPU kernels: `_testing.kernels.*` (dequantize, quantize, matmul and its references, the ISA).
// Hooks that compute take the ISA ("scalar", "avx2"/"best") and, where the arithmetic depends on it, the numerics
// ("fast", "fp32", "llama.cpp") per call.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <tuple>
#include <vector>
#include <string>

#include "base/error.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/matmul_packed.h"
#include "gguf/ggml_types.h"
#include "lazyllm_edge/numerics.hpp"
#include "base/thread_pool.h"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;
using InputMatrix = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// A level by name ("best" = the detected one); set_active_isa clamps it to what the CPU runs (a level it lacks:
// the best one below it).
CpuIsa parse_isa(const std::string& s) {
    if (s == "best") return detected_isa();
    for (CpuIsa isa : kCpuIsas)
        if (s == isa_name(isa)) return isa;
    throw nb::value_error(("unknown isa '" + s + "' (expected 'scalar', 'avx2', 'avxvnni', 'avx512vnni' or 'best')").c_str());
}

// Sets the active ISA for one call and restores it afterwards (also on exceptions).
struct IsaScope {
    CpuIsa saved;
    explicit IsaScope(CpuIsa isa) : saved(active_isa()) { set_active_isa(isa); }
    ~IsaScope() { set_active_isa(saved); }
};

FloatArray new_array(size_t rows, size_t cols, bool two_d, float** out) {
    float* data = new float[rows * cols > 0 ? rows * cols : 1];
    nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    *out = data;
    if (two_d) return FloatArray(data, {rows, cols}, owner);
    return FloatArray(data, {cols}, owner);
}

const GgmlTypeTraits& checked_traits(uint32_t type_id) {
    const GgmlTypeTraits* tr = ggml_type_traits(type_id);
    if (!tr) throw nb::value_error(("unknown ggml type id " + std::to_string(type_id)).c_str());
    if (!tr->supported) throw nb::value_error((std::string("unsupported ggml type ") + tr->name).c_str());
    return *tr;
}

WeightMatrix make_weight(uint32_t type_id, const nb::bytes& w, int64_t n_in, int64_t n_out) {
    const GgmlTypeTraits& tr = checked_traits(type_id);
    if (n_in <= 0 || n_out < 0 || n_in % tr.block_size != 0)
        throw nb::value_error("n_in must be a positive multiple of the block size, n_out >= 0");
    WeightMatrix m;
    m.type = static_cast<GgmlType>(type_id);
    m.n_in = n_in;
    m.n_out = n_out;
    m.row_bytes = ggml_row_size(m.type, n_in);
    if (w.size() != m.row_bytes * static_cast<size_t>(n_out))
        throw nb::value_error(("weight_bytes has " + std::to_string(w.size()) + " bytes, expected " +
                               std::to_string(m.row_bytes * static_cast<size_t>(n_out)))
                                  .c_str());
    m.data = w.c_str();
    return m;
}

// A weight matrix with its packed prefill layout, as the model makes it at load (for the packed types).
struct PackedWeight {
    WeightMatrix m;
    std::unique_ptr<uint8_t, void (*)(void*)> packed{nullptr, std::free};
    explicit PackedWeight(const WeightMatrix& w, int passes = 1) : m(w) {
        if (passes != 1 && passes != 2) throw nb::value_error("passes must be 1 or 2");
        m.packed_passes = passes;
        const size_t bytes = packed_size(w);
        if (bytes == 0) return;
        packed.reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
        pack_weights(w, packed.get());
        m.packed = packed.get();
    }
};

FloatArray run_matmul(uint32_t type_id, const nb::bytes& w, int64_t n_in, int64_t n_out, const InputMatrix& x,
                      const std::string& isa, int n_threads, Numerics numerics, bool reference, bool int8_reference = false,
                      bool packed_reference = false, int passes = 1) {
    const PackedWeight pw(make_weight(type_id, w, n_in, n_out), passes);
    const WeightMatrix& m = pw.m;
    if (static_cast<int64_t>(x.shape(1)) != n_in) throw nb::value_error("x must have shape (n_tok, n_in)");
    const int64_t n_tok = static_cast<int64_t>(x.shape(0));
    const CpuIsa want = reference ? CpuIsa::scalar : parse_isa(isa);
    float* y;
    FloatArray out = new_array(static_cast<size_t>(n_tok), static_cast<size_t>(n_out), true, &y);
    {
        nb::gil_scoped_release release;
        if (packed_reference) {
            matmul_packed_reference(m, x.data(), n_tok, y, passes);
        } else if (int8_reference) {
            matmul_int8_reference(m, x.data(), n_tok, y);
        } else if (reference) {
            matmul_reference(m, x.data(), n_tok, y);
        } else {
            IsaScope scope(want);
            ThreadPool pool(n_threads < 1 ? 1 : n_threads);
            matmul(m, x.data(), n_tok, y, numerics, pool);
        }
    }
    return out;
}

}  // namespace

void register_kernels(nb::module_& m) {
    nb::module_ k = m.def_submodule("kernels", "CPU kernel test hooks");

    k.def("detected_isa", [] { return std::string(isa_name(detected_isa())); });
    k.def("active_isa", [] { return std::string(isa_name(active_isa())); });
    k.def("weight_prefetch_to_l2", [] { return weight_prefetch_to_l2(); },
          "Whether the int8 decode kernels prefetch their weights into L2 (AMD, or LAZYLLM_EDGE_WEIGHT_PREFETCH=l2).");
    k.def("supported_isas", [] {
        std::vector<std::string> names;
        for (CpuIsa isa : kCpuIsas)
            if (isa_supported(isa)) names.push_back(isa_name(isa));
        return names;
    }, "The levels the kernels may run at here, lowest first (an AVX-512 CPU may lack AVX-VNNI).");
    k.def("set_active_isa", [](const std::string& isa) { set_active_isa(parse_isa(isa)); },
          "Which kernels this module's calls dispatch to ('scalar', 'avx2'/'best'; clamped to the CPU), until changed "
          "again; `_core`, with its own copy of the kernels, is not affected.");

    k.def(
        "dequantize",
        [](uint32_t type_id, const nb::bytes& data, int64_t n, const std::string& isa) {
            const GgmlTypeTraits& tr = checked_traits(type_id);
            if (n < 0 || n % tr.block_size != 0) throw nb::value_error("n must be a multiple of the block size");
            const size_t need = static_cast<size_t>(n / tr.block_size) * static_cast<size_t>(tr.type_size);
            if (data.size() < need)
                throw nb::value_error(("data has " + std::to_string(data.size()) + " bytes, need " + std::to_string(need)).c_str());
            const CpuIsa want = parse_isa(isa);
            float* y;
            FloatArray out = new_array(1, static_cast<size_t>(n), false, &y);
            {
                nb::gil_scoped_release release;
                if (want == CpuIsa::scalar) {
                    dequantize_row_reference(static_cast<GgmlType>(type_id), data.c_str(), y, n);
                } else {
                    IsaScope scope(want);
                    dequantize_row(static_cast<GgmlType>(type_id), data.c_str(), y, n);
                }
            }
            return out;
        },
        nb::arg("type_id"), nb::arg("data"), nb::arg("n"), nb::arg("isa") = "best",
        "Dequantize n elements of ggml type `type_id` to float32 (isa: 'scalar' = reference, 'avx2'/'best').");

    k.def(
        "matmul",
        [](uint32_t type_id, const nb::bytes& w, int64_t n_in, int64_t n_out, const InputMatrix& x,
           const std::string& isa, int n_threads, const std::string& numerics, int passes) {
            return run_matmul(type_id, w, n_in, n_out, x, isa, n_threads, parse_numerics(numerics), false, false, false,
                              passes);
        },
        nb::arg("type_id"), nb::arg("weight_bytes"), nb::arg("n_in"), nb::arg("n_out"), nb::arg("x"),
        nb::arg("isa") = "best", nb::arg("n_threads") = 2, nb::arg("numerics") = "fast", nb::arg("passes") = 1,
        "y (n_tok, n_out) = x (n_tok, n_in) @ W^T with the optimized kernels, in the given numerics (weights packed "
        "as at load; `passes`: the packed GEMM's activation precision, 1 = 8-bit, 2 = 15-bit).");

    k.def(
        "matmul_reference",
        [](uint32_t type_id, const nb::bytes& w, int64_t n_in, int64_t n_out, const InputMatrix& x,
           const std::string& isa, int n_threads) {
            return run_matmul(type_id, w, n_in, n_out, x, isa, n_threads, Numerics::fp32, true);
        },
        nb::arg("type_id"), nb::arg("weight_bytes"), nb::arg("n_in"), nb::arg("n_out"), nb::arg("x"),
        nb::arg("isa") = "scalar", nb::arg("n_threads") = 1, "Scalar single-thread reference matmul.");

    k.def(
        "matmul_int8_reference",
        [](uint32_t type_id, const nb::bytes& w, int64_t n_in, int64_t n_out, const InputMatrix& x) {
            switch (type_id) {
                case 2: case 3: case 6: case 7: case 8: case 12: case 13: case 14: break;
                default: throw nb::value_error("Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K only");
            }
            return run_matmul(type_id, w, n_in, n_out, x, "scalar", 1, Numerics::fast, true, true);
        },
        nb::arg("type_id"), nb::arg("weight_bytes"), nb::arg("n_in"), nb::arg("n_out"), nb::arg("x"),
        "Scalar reference of the int8 matmul path (x quantized to Q8_0/Q8_1/Q8_K blocks, integer block dots).");

    k.def(
        "matmul_packed_reference",
        [](uint32_t type_id, const nb::bytes& w, int64_t n_in, int64_t n_out, const InputMatrix& x, int passes) {
            checked_traits(type_id);
            if (!packed_type(static_cast<GgmlType>(type_id)))
                throw nb::value_error("Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K only");
            return run_matmul(type_id, w, n_in, n_out, x, "scalar", 1, Numerics::fast, true, false, true, passes);
        },
        nb::arg("type_id"), nb::arg("weight_bytes"), nb::arg("n_in"), nb::arg("n_out"), nb::arg("x"), nb::arg("passes") = 1,
        "Scalar reference of the packed int8 prefill GEMM (x quantized per block of 32, the kernels' lane arithmetic).");

    k.def(
        "matmul_uses_packed",
        [](uint32_t type_id, int64_t n_tok, const std::string& isa, const std::string& numerics) {
            checked_traits(type_id);
            const Numerics mode = parse_numerics(numerics);
            IsaScope scope(parse_isa(isa));
            WeightMatrix w;  // a weight as the model has it after load: packed when its type has the layout
            w.type = static_cast<GgmlType>(type_id);
            const uint8_t dummy = 0;
            if (packed_type(w.type)) w.packed = &dummy;
            return matmul_uses_packed(w, n_tok, mode);
        },
        nb::arg("type_id"), nb::arg("n_tok"), nb::arg("isa") = "best", nb::arg("numerics") = "fast",
        "Whether matmul() takes the packed int8 prefill GEMM (for a weight packed at load).");

    k.def(
        "quantize_packed",
        [](const InputMatrix& x, const std::string& isa, int passes, bool q8_K) {
            const int64_t n_tok = static_cast<int64_t>(x.shape(0)), K = static_cast<int64_t>(x.shape(1));
            if (passes != 1 && passes != 2) throw nb::value_error("passes must be 1 or 2");
            if (K % 32 != 0) throw nb::value_error("row length must be a multiple of 32");
            if (q8_K && (passes != 1 || K % 256 != 0)) throw nb::value_error("q8_K needs passes=1 and a multiple of 256");
            const CpuIsa want = parse_isa(isa);
            const int64_t nb_ = K / 32;
            float *q, *d, *ns, *xs;
            FloatArray qa = new_array(static_cast<size_t>(n_tok), static_cast<size_t>(K * passes), true, &q);
            FloatArray da = new_array(static_cast<size_t>(n_tok), static_cast<size_t>(nb_), true, &d);
            FloatArray na = new_array(static_cast<size_t>(n_tok), static_cast<size_t>(2 * nb_), true, &ns);
            FloatArray sa = new_array(static_cast<size_t>(n_tok), static_cast<size_t>(2 * nb_), true, &xs);
            {
                nb::gil_scoped_release release;
                std::unique_ptr<uint8_t, void (*)(void*)> buf(static_cast<uint8_t*>(std::aligned_alloc(64, packed_x_bytes(n_tok, K, passes))), std::free);
                const PackedX px = packed_x_layout(buf.get(), n_tok, K, passes, q8_K);
                if (want == CpuIsa::scalar) {
                    quantize_packed_x_reference(x.data(), n_tok, K, px);
                } else {
                    IsaScope scope(want);
                    ThreadPool pool(1);
                    quantize_packed_x(x.data(), n_tok, K, px, pool);
                }
                for (int64_t i = 0; i < n_tok * K * passes; ++i) q[i] = px.q[i];
                for (int64_t i = 0; i < n_tok * nb_; ++i) d[i] = px.d[i];
                for (int64_t i = 0; i < 2 * n_tok * nb_; ++i) {
                    ns[i] = static_cast<float>(px.nsum[i]);
                    xs[i] = px.xs[i];
                }
            }
            return nb::make_tuple(qa, da, na, sa);
        },
        nb::arg("x"), nb::arg("isa") = "best", nb::arg("passes") = 1, nb::arg("q8_K") = false,
        "The packed GEMM's activation quantization of x (n_tok, K; q8_K: one pass with Q8_K's scales per 256, else "
        "Q8_1's fp16 scales per 32): (codes in the packed order, per block the hi "
        "then, with 2 passes, the lo codes; d per 32; negated code sums per parity; [d * sum, 0] per 32), all float32 "
        "('scalar' = reference).");

    k.def(
        "matmul_uses_int8",
        [](uint32_t type_id, int64_t n_tok, const std::string& isa, const std::string& numerics) {
            checked_traits(type_id);
            const Numerics mode = parse_numerics(numerics);
            IsaScope scope(parse_isa(isa));
            return matmul_uses_int8(static_cast<GgmlType>(type_id), n_tok, mode);
        },
        nb::arg("type_id"), nb::arg("n_tok"), nb::arg("isa") = "best", nb::arg("numerics") = "fast",
        "Whether matmul() takes the int8 path.");

    k.def(
        "matmul_shared_input",
        [](const std::vector<std::tuple<uint32_t, nb::bytes, int64_t>>& weights, int64_t n_in, const InputMatrix& x,
           int n_threads, const std::string& numerics) {
            const Numerics mode = parse_numerics(numerics);
            if (weights.empty() || weights.size() > static_cast<size_t>(kMaxSharedInput))
                throw nb::value_error("1 to 3 weights");
            if (static_cast<int64_t>(x.shape(1)) != n_in) throw nb::value_error("x must have shape (n_tok, n_in)");
            const int64_t n_tok = static_cast<int64_t>(x.shape(0));
            std::vector<std::unique_ptr<PackedWeight>> ws;
            for (const auto& [type_id, bytes, n_out] : weights)
                ws.push_back(std::make_unique<PackedWeight>(make_weight(type_id, bytes, n_in, n_out)));
            nb::list outs;
            const WeightMatrix* wp[kMaxSharedInput];
            float* yp[kMaxSharedInput];
            for (size_t i = 0; i < ws.size(); ++i) {
                wp[i] = &ws[i]->m;
                outs.append(new_array(static_cast<size_t>(n_tok), static_cast<size_t>(ws[i]->m.n_out), true, &yp[i]));
            }
            {
                nb::gil_scoped_release release;
                ThreadPool pool(n_threads < 1 ? 1 : n_threads);
                matmul_shared_input(wp, yp, static_cast<int>(ws.size()), x.data(), n_tok, mode, pool);
            }
            return outs;
        },
        nb::arg("weights"), nb::arg("n_in"), nb::arg("x"), nb::arg("n_threads") = 1, nb::arg("numerics") = "fast",
        "matmul() for several weights [(type_id, weight_bytes, n_out)] that read the same x (one list of outputs).");

    k.def(
        "quantize_q8_1",
        [](const nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>& x, const std::string& isa) {
            const int64_t n = static_cast<int64_t>(x.shape(0));
            if (n % 32 != 0) throw nb::value_error("length must be a multiple of 32");
            const CpuIsa want = parse_isa(isa);
            float* q;
            float* d;
            float* s;
            FloatArray qa = new_array(1, static_cast<size_t>(n), false, &q);
            FloatArray da = new_array(1, static_cast<size_t>(n / 32), false, &d);
            FloatArray sa = new_array(1, static_cast<size_t>(n / 32), false, &s);
            {
                nb::gil_scoped_release release;
                std::unique_ptr<int8_t[]> qi(new int8_t[n > 0 ? n : 1]);
                if (want == CpuIsa::scalar) {
                    quantize_row_q8_1_reference(x.data(), n, qi.get(), d, s);
                } else {
                    IsaScope scope(want);
                    quantize_row_q8_1(x.data(), n, qi.get(), d, s);
                }
                for (int64_t i = 0; i < n; ++i) q[i] = qi[i];
            }
            return nb::make_tuple(qa, da, sa);
        },
        nb::arg("x"), nb::arg("isa") = "best",
        "Q8_1 activation quantization: (q as float32, d, s) per block of 32 ('scalar' = reference).");

    k.def(
        "quantize_q8_K",
        [](const nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>& x, const std::string& isa) {
            const int64_t n = static_cast<int64_t>(x.shape(0));
            if (n % 256 != 0) throw nb::value_error("length must be a multiple of 256");
            const CpuIsa want = parse_isa(isa);
            float* q;
            float* d;
            float* bs;
            FloatArray qa = new_array(1, static_cast<size_t>(n), false, &q);
            FloatArray da = new_array(1, static_cast<size_t>(n / 256), false, &d);
            FloatArray ba = new_array(1, static_cast<size_t>(n / 16), false, &bs);
            {
                nb::gil_scoped_release release;
                std::unique_ptr<int8_t[]> qi(new int8_t[n > 0 ? n : 1]);
                std::unique_ptr<int16_t[]> bi(new int16_t[n > 0 ? n / 16 : 1]);
                if (want == CpuIsa::scalar) {
                    quantize_row_q8_K_reference(x.data(), n, qi.get(), d, bi.get());
                } else {
                    IsaScope scope(want);
                    quantize_row_q8_K(x.data(), n, qi.get(), d, bi.get());
                }
                for (int64_t i = 0; i < n; ++i) q[i] = qi[i];
                for (int64_t i = 0; i < n / 16; ++i) bs[i] = bi[i];
            }
            return nb::make_tuple(qa, da, ba);
        },
        nb::arg("x"), nb::arg("isa") = "best",
        "Q8_K activation quantization: (q as float32, d per 256, bsums per 16 as float32) ('scalar' = reference).");
}
