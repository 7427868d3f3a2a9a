// The generation binding: _core.Generation, an iterator of (text, token) over the C++ Generation; each step runs
// with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "interrupt.h"
#include "lazy.h"
#include "lazyllm_edge/lazyllm_edge.hpp"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

struct PyGeneration {
    std::unique_ptr<Generation> generation;
    bool running = false;  // a thread is inside __next__ (read and written with the GIL held)
    std::atomic<bool> interrupt{false};  // Ctrl-C during __next__ (the generation's cancel flag): polled in the prefill
};

// stop: None, a str or an iterable of str.
std::vector<std::string> stop_strings(nb::handle stop) {
    if (stop.is_none()) return {};
    if (nb::isinstance<nb::str>(stop)) return {nb::cast<std::string>(stop)};
    std::vector<std::string> out;
    bool ok = nb::isinstance<nb::iterable>(stop);
    if (ok) {
        for (nb::handle s : stop) {
            if (!nb::isinstance<nb::str>(s)) {
                ok = false;
                break;
            }
            out.push_back(nb::cast<std::string>(s));
        }
    }
    if (!ok) throw nb::value_error(("stop must be a string or a list of strings, got " + std::string(nb::repr(stop).c_str())).c_str());
    return out;
}


// The next piece with text (the C++ generation also yields empty ones while text is held back).
nb::tuple next_piece(PyGeneration& g) {
    if (g.running) throw nb::value_error("generator already executing");  // as a Python generator says
    g.running = true;
    struct Done {
        bool& running;
        ~Done() { running = false; }
    } done{g.running};
    GeneratedPiece piece;
    bool more = false;
    g.interrupt.store(false);  // (a Ctrl-C between two calls was Python's to raise, and it did)
    InterruptScope scope(g.interrupt);
    {
        nb::gil_scoped_release release;
        do more = g.generation->next(piece);
        while (more && piece.text.empty());
    }
    // Ctrl-C in the prompt's prefill ended the generation ("cancelled", nothing fed): Python's KeyboardInterrupt now.
    // (During a token's step it ends the loop at the next bytecode, as between tokens.)
    if (!more) scope.raise_if_interrupted();
    if (!more) throw nb::stop_iteration();
    return nb::make_tuple(piece.text, piece.token);
}

}  // namespace

void register_generation(nb::module_& m) {
    nb::class_<PyGeneration>(m, "Generation",
                             "Generation(session, prompt, sampling, max_tokens=None, stop=None, ignore_eos=False, lazy=None, "
                             "reuse_prefix=False): feeds the prompt ids after the session's context (reuse_prefix: the "
                             "prompt is the whole context, the session keeps what it holds of it and computes the rest) "
                             "and iterates (text, token) pieces. max_tokens None: until the end of generation or a full "
                             "context; lazy: a LazySchedule for this generation only.")
        .def("__init__",
             [](PyGeneration* self, Session& session, std::vector<int32_t> prompt, const SamplingParams& sampling,
                std::optional<int> max_tokens, nb::handle stop, bool ignore_eos, std::optional<LazyConfig> lazy,
                bool reuse_prefix) {
                 if (max_tokens && *max_tokens < 0)
                     throw nb::value_error(("max_tokens must be >= 0 (None: no limit), got " + std::to_string(*max_tokens)).c_str());
                 GenerationParams p;
                 p.sampling = sampling;
                 p.max_tokens = max_tokens.value_or(-1);
                 p.stop = stop_strings(stop);
                 p.ignore_eos = ignore_eos;
                 if (lazy) p.lazy = *lazy;
                 p.reuse_prefix = reuse_prefix;
                 auto* g = new (self) PyGeneration();
                 p.cancel = &g->interrupt;
                 g->generation = std::make_unique<Generation>(session, std::move(prompt), p);
             },
             nb::arg("session"), nb::arg("prompt"), nb::arg("sampling"), nb::arg("max_tokens").none() = nb::none(),
             nb::arg("stop").none() = nb::none(), nb::arg("ignore_eos") = false, nb::arg("lazy").none() = nb::none(),
             nb::arg("reuse_prefix") = false, nb::keep_alive<1, 2>())
        .def("__iter__", [](nb::handle self) { return self; })
        .def("__next__", &next_piece)
        .def("cancel", [](PyGeneration& g) { g.generation->cancel(); },
             "Ends the generation before its next token (finish_reason 'cancelled'); from any thread.")
        .def_prop_ro("finish_reason",
                     [](const PyGeneration& g) -> nb::object {
                         const FinishReason r = g.generation->finish_reason();
                         if (r == FinishReason::none) return nb::none();
                         return nb::str(finish_reason_name(r));
                     })
        .def_prop_ro("n_generated", [](const PyGeneration& g) { return g.generation->n_generated(); });
}
