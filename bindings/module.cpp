// The extension module `lazyllm_edge._core`: thin bindings over the C++ API, one file per area.
#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_errors(nb::module_& m);
void register_model(nb::module_& m);
void register_lazy(nb::module_& m);
void register_sampling(nb::module_& m);
void register_session(nb::module_& m);
void register_generation(nb::module_& m);
void register_kernels(nb::module_& m);
void register_attention(nb::module_& m);
void register_gguf(nb::module_& m);
void register_ops(nb::module_& m);

NB_MODULE(_core, m) {
    m.doc() = "lazyllm_edge native core";
    m.attr("__version__") = LAZYLLM_EDGE_VERSION;  // from pyproject.toml, through CMake
    register_errors(m);
    register_model(m);
    register_lazy(m);
    register_sampling(m);
    register_session(m);
    register_generation(m);
    register_kernels(m);
    register_attention(m);
    register_gguf(m);
    register_ops(m);
}
