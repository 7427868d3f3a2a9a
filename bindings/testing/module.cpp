// The extension module `lazyllm_edge._testing`: kernel-level test hooks (the CPU kernels against their references,
// the GGUF reader's view of a file, the tokenizer of a vocabulary-only file). Built with the tests (CMake option
// LAZYLLM_EDGE_TESTING), never installed: tests/conftest.py builds it on first use. It links its own copy of the core, so its ISA override
// (kernels.set_active_isa) changes only the kernels it calls, never those of `_core`.
#include <nanobind/nanobind.h>

#include "base/error.h"

namespace nb = nanobind;

void register_kernels(nb::module_& m);
void register_attention(nb::module_& m);
void register_ops(nb::module_& m);
void register_gguf(nb::module_& m);
void register_tokenizer(nb::module_& m);

namespace {

// The core's errors as Python exceptions: a bad argument is a ValueError, anything else a RuntimeError.
void register_errors() {
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const lazyllm_edge::Error& e) {
            const bool bad_argument = e.code() == lazyllm_edge::ErrorCode::invalid_argument;
            PyErr_SetString(bad_argument ? PyExc_ValueError : PyExc_RuntimeError, e.what());
        }
    });
}

}  // namespace

NB_MODULE(_testing, m) {
    m.doc() = "lazyllm_edge test hooks (not part of the installed package)";
    m.attr("__version__") = LAZYLLM_EDGE_VERSION;  // checked against _core's by tests/conftest.py
    register_errors();
    register_kernels(m);
    register_attention(m);
    register_ops(m);
    register_gguf(m);
    register_tokenizer(m);
}
