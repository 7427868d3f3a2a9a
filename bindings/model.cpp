// Model and tokenizer bindings.
#include <nanobind/nanobind.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "cuda/cuda_backend.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "tokenizer/tokenizer.h"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

// A path as the OS takes it: bytes as they are, a str encoded as Python encodes file names (os.fsencode).
std::string os_path(nb::handle path) {
    if (nb::isinstance<nb::bytes>(path)) return std::string(nb::borrow<nb::bytes>(path).c_str(), nb::len(path));
    if (!nb::isinstance<nb::str>(path)) throw nb::value_error("path must be a str or bytes");
    nb::object encoded = nb::steal(PyUnicode_EncodeFSDefault(path.ptr()));
    if (!encoded.is_valid()) throw nb::python_error();
    return std::string(nb::borrow<nb::bytes>(encoded).c_str(), nb::len(encoded));
}

}  // namespace

void register_model(nb::module_& m) {
    m.def("cuda_built", &cuda_built, "Whether this build contains the CUDA backend.");
    m.def(
        "cuda_devices",
        [] {
            std::string why;
            const int n = cuda_device_count(&why);
            return nb::make_tuple(n, n > 0 ? cuda_device_name() : why);
        },
        "(count, device name or why there is none) for the CUDA backend.");
    nb::class_<Model>(m, "Model")
        .def_static(
            "load",
            [](nb::handle path_arg, int n_threads, const std::string& backend, bool use_mmap) {
                const std::string path = os_path(path_arg);
                ModelParams p;
                p.n_threads = n_threads;
                p.backend = backend;
                p.use_mmap = use_mmap;
                nb::gil_scoped_release release;
                return Model::load(path, p);
            },
            nb::arg("path"), nb::arg("n_threads") = 0, nb::arg("backend") = "cpu", nb::arg("use_mmap") = true)
        .def_prop_ro("info",
                     [](const Model& model) {
                         const ModelInfo& i = model.info();
                         nb::dict d;
                         d["architecture"] = i.architecture;
                         d["name"] = i.name;
                         d["n_layer"] = i.n_layer;
                         d["d_model"] = i.d_model;
                         d["n_head"] = i.n_head;
                         d["n_head_kv"] = i.n_head_kv;
                         d["head_dim"] = i.head_dim;
                         d["ffn_dim"] = i.ffn_dim;
                         d["n_vocab"] = i.n_vocab;
                         d["n_ctx_train"] = i.n_ctx_train;
                         nb::list stage_layers;  // where a LazyLLM stage ranks every token (empty: any layer)
                         for (uint8_t v : i.stage_layers) stage_layers.append(static_cast<int>(v));
                         d["stage_layers"] = stage_layers;
                         d["n_threads"] = model.params().n_threads;
                         d["backend"] = model.params().backend;
                         return d;
                     })
        .def_prop_ro("chat_template", [](const Model& model) { return model.info().chat_template; })
        .def_prop_ro("bos_id", [](const Model& model) { return model.tokenizer().bos_id(); })
        .def_prop_ro("eos_id", [](const Model& model) { return model.tokenizer().eos_id(); })
        .def_prop_ro("add_bos", [](const Model& model) { return model.tokenizer().add_bos(); })
        .def(
            "tokenize",
            [](const Model& model, const std::string& text, bool add_special, bool parse_special) {
                nb::gil_scoped_release release;
                return model.tokenizer().encode(text, add_special, parse_special);
            },
            nb::arg("text"), nb::arg("add_special") = true, nb::arg("parse_special") = false)
        .def(
            "detokenize_bytes",
            [](const Model& model, const std::vector<int32_t>& ids, bool render_special) {
                std::string s = model.tokenizer().decode(ids.data(), ids.size(), render_special);
                return nb::bytes(s.data(), s.size());
            },
            nb::arg("ids"), nb::arg("render_special") = true)
        .def(
            "token_to_piece",
            [](const Model& model, int32_t id, bool render_special) {
                std::string s = model.tokenizer().token_to_piece(id, render_special);
                return nb::bytes(s.data(), s.size());
            },
            nb::arg("id"), nb::arg("render_special") = true)
        .def("is_end_of_generation", [](const Model& model, int32_t id) { return model.tokenizer().is_end_of_generation(id); })
        .def("is_control", [](const Model& model, int32_t id) { return model.tokenizer().is_control(id); });

    nb::class_<StreamingDetokenizer>(m, "StreamingDetokenizer")
        .def("__init__",
             [](StreamingDetokenizer* self, const Model& model, bool render_special) {
                 new (self) StreamingDetokenizer(model.tokenizer(), render_special);
             },
             nb::arg("model"), nb::arg("render_special") = false, nb::keep_alive<1, 2>())
        .def("push", [](StreamingDetokenizer& d, int32_t id) { return d.push(id); })
        .def("flush", &StreamingDetokenizer::flush)
        .def("reset", &StreamingDetokenizer::reset);
}
