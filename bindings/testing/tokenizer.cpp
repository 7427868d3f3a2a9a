// The tokenizer alone, from a vocabulary-only GGUF (llama.cpp's models/ggml-vocab-*.gguf carry no tensors):
// `_testing.VocabTokenizer(path)` with encode, decode, one token's piece and the streaming detokenizer's pieces.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

nb::bytes as_bytes(const std::string& s) { return nb::bytes(s.data(), s.size()); }

}  // namespace

void register_tokenizer(nb::module_& m) {
    nb::class_<Tokenizer>(m, "VocabTokenizer")
        .def("__init__",
             [](Tokenizer* self, const std::string& path) {
                 std::unique_ptr<GgufFile> f = GgufFile::open(path);
                 new (self) Tokenizer(read_tokenizer_vocab(*f));
             },
             nb::arg("path"))
        .def("encode", &Tokenizer::encode, nb::arg("text"), nb::arg("add_special") = false, nb::arg("parse_special") = false)
        .def(
            "decode",
            [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
                return as_bytes(t.decode(ids.data(), ids.size(), render_special));
            },
            nb::arg("ids"), nb::arg("render_special") = true)
        .def(
            "stream",  // the pieces StreamingDetokenizer emits for the ids, then its flush
            [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
                StreamingDetokenizer detok(t, render_special);
                std::vector<nb::bytes> pieces;
                for (int32_t id : ids) pieces.push_back(as_bytes(detok.push(id)));
                pieces.push_back(as_bytes(detok.flush()));
                return pieces;
            },
            nb::arg("ids"), nb::arg("render_special") = true)
        .def(
            "piece", [](const Tokenizer& t, int32_t id, bool render_special) { return as_bytes(t.token_to_piece(id, render_special)); },
            nb::arg("id"), nb::arg("render_special") = true)
        .def_prop_ro("n_vocab", &Tokenizer::n_vocab)
        .def_prop_ro("model", [](const Tokenizer& t) { return t.vocab().model; })
        .def_prop_ro("pre", [](const Tokenizer& t) { return t.vocab().pre; });
}
