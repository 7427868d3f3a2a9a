// Session bindings (KV cache + LazyLLM state). Compute runs with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>

#include "interrupt.h"
#include "lazy.h"
#include "lazyllm_edge/lazyllm_edge.hpp"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;

FloatArray to_numpy(std::vector<float>&& values, std::initializer_list<size_t> shape) {
    auto* owned = new std::vector<float>(std::move(values));
    nb::capsule deleter(owned, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
    return FloatArray(owned->data(), shape.size(), shape.begin(), deleter);
}

nb::dict stats_dict(const Session& s) {
    const SessionStats& st = s.stats();
    nb::dict d;
    d["prompt_tokens"] = st.n_prompt_tokens;
    d["reused_tokens"] = st.n_reused_tokens;
    d["ttft_s"] = st.ttft_s;
    d["prefill_tokens_per_s"] = st.prefill_tokens_per_s;
    d["decode_tokens_per_s"] = st.decode_tokens_per_s;
    d["decode_tokens"] = st.n_decode_tokens;
    d["decode_time_s"] = st.decode_time_s;
    d["layer_kv_tokens"] = st.layer_kv_tokens;
    d["prefill_pairs_computed"] = st.prefill_pairs_computed;
    d["prefill_pairs_dense"] = st.prefill_pairs_dense;
    d["total_pairs_computed"] = st.total_pairs_computed;
    d["total_pairs_dense"] = st.total_pairs_dense;
    d["revived_tokens"] = st.revived_tokens;
    d["recomputed_pairs"] = st.recomputed_pairs;
    d["prefill_fraction_computed"] =
        st.prefill_pairs_dense ? static_cast<double>(st.prefill_pairs_computed) / st.prefill_pairs_dense : 1.0;
    d["total_fraction_computed"] =
        st.total_pairs_dense ? static_cast<double>(st.total_pairs_computed) / st.total_pairs_dense : 1.0;
    return d;
}

// Runs an append with the GIL released; Ctrl-C stops it between layers (Python's KeyboardInterrupt, the session as
// before the call).
template <class F>
void interruptible(F&& append) {
    std::atomic<bool> interrupt{false};
    InterruptScope scope(interrupt);
    try {
        nb::gil_scoped_release release;
        append(&interrupt);
    } catch (const Error& e) {
        if (e.code() == ErrorCode::cancelled) scope.raise_if_interrupted();
        throw;
    }
}

}  // namespace

void register_session(nb::module_& m) {
    nb::class_<Session>(m, "Session")
        .def("__init__",
             [](Session* self, std::shared_ptr<Model> model, int n_ctx, std::optional<LazyConfig> lazy,
                const std::string& numerics) {
                 SessionParams p;
                 p.n_ctx = n_ctx;
                 if (lazy) p.lazy = *lazy;
                 p.numerics = parse_numerics(numerics);
                 nb::gil_scoped_release release;
                 new (self) Session(std::move(model), p);
             },
             nb::arg("model"), nb::arg("n_ctx") = 4096, nb::arg("lazy").none() = nb::none(), nb::arg("numerics") = "fast")
        .def("reset", &Session::reset)
        .def("truncate", &Session::truncate, nb::arg("n"), nb::call_guard<nb::gil_scoped_release>(),
             "Keeps the first n tokens of the context and forgets the rest (KV, aux-cache state, frontier).")
        .def(
            "reuse_prefix",
            [](Session& s, const std::vector<int32_t>& ids) {
                nb::gil_scoped_release release;
                return s.reuse_prefix(ids.data(), static_cast<int>(ids.size()));
            },
            nb::arg("ids"),
            "Keeps the longest common prefix of the context and ids (at most len(ids) - 1 tokens), truncates the rest; "
            "returns how many tokens were kept.")
        .def("save_state", &Session::save_state, nb::arg("path"), nb::call_guard<nb::gil_scoped_release>())
        .def("load_state", &Session::load_state, nb::arg("path"), nb::call_guard<nb::gil_scoped_release>())
        .def(
            "append",
            [](Session& s, const std::vector<int32_t>& ids) {
                std::vector<float> out;
                interruptible([&](const std::atomic<bool>* cancel) {
                    const float* logits = s.append(ids.data(), static_cast<int>(ids.size()), nullptr, cancel);
                    out.assign(logits, logits + s.model()->info().n_vocab);
                });
                const size_t n = out.size();
                return to_numpy(std::move(out), {n});
            },
            nb::arg("ids"))
        .def(
            "append_all_logits",
            [](Session& s, const std::vector<int32_t>& ids) {
                const size_t n_vocab = static_cast<size_t>(s.model()->info().n_vocab);
                std::vector<float> out(ids.size() * n_vocab);
                interruptible([&](const std::atomic<bool>* cancel) {
                    s.append(ids.data(), static_cast<int>(ids.size()), out.data(), cancel);
                });
                const size_t n = ids.size();
                return to_numpy(std::move(out), {n, n_vocab});
            },
            nb::arg("ids"))
        .def(
            "append_and_sample",
            [](Session& s, const std::vector<int32_t>& ids, Sampler& sampler) {
                nb::gil_scoped_release release;
                return s.append_and_sample(ids.data(), static_cast<int>(ids.size()), sampler);
            },
            nb::arg("ids"), nb::arg("sampler"))
        .def_prop_ro("n_past", &Session::n_past)
        .def_prop_ro("n_ctx", &Session::n_ctx)
        .def_prop_ro("tokens", [](const Session& s) { return s.tokens(); })
        .def_prop_ro("stats", &stats_dict)
        .def_prop_ro("lazy", [](const Session& s) { return s.lazy_config(); })
        .def("set_lazy", &Session::set_lazy_config, nb::arg("lazy"))
        .def_prop_ro("numerics", [](const Session& s) { return std::string(numerics_name(s.numerics())); })
        .def(
            "set_numerics", [](Session& s, const std::string& numerics) { s.set_numerics(parse_numerics(numerics)); },
            nb::arg("numerics"), "'fast', 'fp32', 'llama.cpp' or 'int8', from the next append on (the cached KV stays).")
        .def("set_record_importance", &Session::set_record_importance)
        .def_prop_ro("importance",
                     [](const Session& s) {
                         nb::list out;
                         for (auto& r : s.last_importance()) out.append(nb::make_tuple(r.layer, r.positions, r.scores));
                         return out;
                     })
        .def("token_frontier", &Session::token_frontier)
        .def("aux_hidden",
             [](const Session& s, int position) {
                 int layer = 0;
                 std::vector<float> h = s.aux_hidden(position, &layer);
                 size_t n = h.size();
                 return nb::make_tuple(layer, to_numpy(std::move(h), {n}));
             })
        .def("read_kv", [](const Session& s, int layer, int position) -> nb::object {
            const int kvd = s.kv_dim(layer);
            std::vector<float> k(kvd), v(kvd);
            if (!s.read_kv(layer, position, k.data(), v.data())) return nb::none();
            size_t n = static_cast<size_t>(kvd);
            return nb::make_tuple(to_numpy(std::move(k), {n}), to_numpy(std::move(v), {n}));
        });
}
