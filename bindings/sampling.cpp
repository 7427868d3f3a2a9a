// Sampling bindings: SamplingParams (validated by the core: ValueError naming the argument) and the Sampler.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "lazyllm_edge/lazyllm_edge.hpp"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

// seed: None (from the clock) or an integer in [0, 2**64).
void set_seed(SamplingParams& p, nb::handle seed) {
    p.has_seed = !seed.is_none();
    p.seed = 0;
    if (!p.has_seed) return;
    nb::object index = nb::steal(PyNumber_Index(seed.ptr()));
    if (!index.is_valid()) throw nb::python_error();
    const unsigned long long value = PyLong_AsUnsignedLongLong(index.ptr());
    if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        throw nb::value_error(("seed must be an integer in [0, 2**64) or None, got " + std::string(nb::repr(seed).c_str())).c_str());
    }
    p.seed = value;
}

nb::object seed_of(const SamplingParams& p) { return p.has_seed ? nb::object(nb::int_(p.seed)) : nb::object(nb::none()); }

SamplingParams make_params(float temperature, int top_k, float top_p, float min_p, float repeat_penalty, int repeat_last_n,
                           nb::handle seed) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = repeat_penalty;
    p.repeat_last_n = repeat_last_n;
    set_seed(p, seed);
    validate_sampling_params(p);
    return p;
}

}  // namespace

void register_sampling(nb::module_& m) {
    const SamplingParams defaults;
    nb::class_<SamplingParams>(m, "SamplingParams",
                               "temperature (0: greedy), top_k (<= 0: off), top_p (1: off), min_p (0: off), repeat_penalty "
                               "(1: off) over the last repeat_last_n tokens, seed (None: from the clock).")
        .def("__init__",
             [](SamplingParams* self, float temperature, int top_k, float top_p, float min_p, float repeat_penalty,
                int repeat_last_n, nb::handle seed) {
                 new (self) SamplingParams(make_params(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed));
             },
             nb::arg("temperature") = defaults.temperature, nb::arg("top_k") = defaults.top_k,
             nb::arg("top_p") = defaults.top_p, nb::arg("min_p") = defaults.min_p,
             nb::arg("repeat_penalty") = defaults.repeat_penalty, nb::arg("repeat_last_n") = defaults.repeat_last_n,
             nb::arg("seed").none() = nb::none())
        .def_rw("temperature", &SamplingParams::temperature)
        .def_rw("top_k", &SamplingParams::top_k)
        .def_rw("top_p", &SamplingParams::top_p)
        .def_rw("min_p", &SamplingParams::min_p)
        .def_rw("repeat_penalty", &SamplingParams::repeat_penalty)
        .def_rw("repeat_last_n", &SamplingParams::repeat_last_n)
        .def_prop_rw("seed", &seed_of, [](SamplingParams& p, nb::handle seed) { set_seed(p, seed); }, nb::arg("seed").none())
        .def("validate", &validate_sampling_params, "Raises ValueError naming the first bad value.")
        .def("__repr__", [](const SamplingParams& p) {
            return "SamplingParams(temperature=" + std::string(nb::repr(nb::float_(p.temperature)).c_str()) +
                   ", top_k=" + std::to_string(p.top_k) + ", top_p=" + nb::repr(nb::float_(p.top_p)).c_str() +
                   ", min_p=" + nb::repr(nb::float_(p.min_p)).c_str() +
                   ", repeat_penalty=" + nb::repr(nb::float_(p.repeat_penalty)).c_str() +
                   ", repeat_last_n=" + std::to_string(p.repeat_last_n) + ", seed=" + nb::repr(seed_of(p)).c_str() + ")";
        });

    nb::class_<Sampler>(m, "Sampler")
        .def("__init__",
             [](Sampler* self, int n_vocab, float temperature, int top_k, float top_p, float min_p, float repeat_penalty,
                int repeat_last_n, nb::handle seed) {
                 new (self) Sampler(make_params(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed), n_vocab);
             },
             nb::arg("n_vocab"), nb::arg("temperature") = defaults.temperature, nb::arg("top_k") = defaults.top_k,
             nb::arg("top_p") = defaults.top_p, nb::arg("min_p") = defaults.min_p,
             nb::arg("repeat_penalty") = defaults.repeat_penalty, nb::arg("repeat_last_n") = defaults.repeat_last_n,
             nb::arg("seed").none() = nb::none())
        .def(
            "__init__", [](Sampler* self, int n_vocab, const SamplingParams& params) { new (self) Sampler(params, n_vocab); },
            nb::arg("n_vocab"), nb::arg("params"))
        .def("sample", [](Sampler& sm, nb::ndarray<const float, nb::ndim<1>, nb::c_contig> logits, const std::vector<int32_t>& recent) {
            return sm.sample(logits.data(), recent.data(), static_cast<int>(recent.size()));
        });
}
