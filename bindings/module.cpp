// The extension module `lazyllm_edge._core`: thin bindings over the C++ API, one file per area. Kernel-level
// test hooks live in the separate `_testing` module (bindings/testing/), which is never installed.
#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_errors(nb::module_& m);
void register_model(nb::module_& m);
void register_lazy(nb::module_& m);
void register_sampling(nb::module_& m);
void register_session(nb::module_& m);
void register_generation(nb::module_& m);

NB_MODULE(_core, m) {
    m.doc() = "lazyllm_edge native core";
    m.attr("__version__") = LAZYLLM_EDGE_VERSION;  // from pyproject.toml, through CMake
    register_errors(m);
    register_model(m);
    register_lazy(m);
    register_sampling(m);
    register_session(m);
    register_generation(m);
}
