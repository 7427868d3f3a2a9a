// LazyLLM configuration bindings: the LazyConfig class (a schedule as the user writes it: a preset, or stages with
// layers or relative depths), presets, spec strings. Everything is resolved and validated by the core's parser.
#include "lazy.h"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <climits>
#include <cstdio>
#include <optional>
#include <string>
#include <variant>

#include "base/error.h"
#include "lazy/prune_schedule.h"

namespace nb = nanobind;
using namespace lazyllm_edge;


namespace {


// lazyllm_edge.LazyConfig: a preset by name, or stages whose layer is an int (a layer) or a float (a relative depth
// in [0, 1), 0.3 = 30 % of the model's layers); resolved for a model depth by resolve().
struct LazySpec {
    using Layer = std::variant<int64_t, double>;
    using Stage = std::pair<Layer, double>;
    std::vector<Stage> schedule;
    std::optional<bool> prune_decode;  // unset: the preset's choice (on for stages)
    std::optional<std::string> preset_name;
    std::vector<Stage> decode_schedule;  // decode steps' own stages; empty: `schedule`'s
    std::optional<int> revival_budget;   // unset: the preset's (none for a schedule)
    std::optional<std::string> importance;  // "mean" | "max"; unset: the preset's (mean for a schedule)
    std::optional<int> query_window;     // unset: the preset's (1 for a schedule)
    std::optional<int> pool_radius;      // unset: the preset's (0 for a schedule)
    std::optional<int> decode_pool_radius;  // unset: the preset's (-1: pool_radius)
    std::optional<int> min_kept_tokens;  // unset: the preset's (0: no floor)

    LazyConfig resolve(int n_layer, const std::vector<uint8_t>& stage_layers) const;
};

// A number as the spec parser reads it, to the last bit (17 digits); a relative depth keeps a decimal point,
// which is what makes the parser read it as one.
std::string spec_number(double v, bool relative) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    std::string text = buf;
    if (relative && text.find('.') == std::string::npos) text.insert(std::min(text.find('e'), text.size()), ".0");
    return text;
}

// Stages written as the core's spec ("layer:keep,..."), so a list and a spec string resolve through one parser:
// [(0.15, 0.5)] and "0.15:0.5" prune at the same layer.
std::string stages_as_spec(const std::vector<LazySpec::Stage>& stages) {
    std::string spec;
    for (const auto& [layer, keep] : stages) {
        if (!spec.empty()) spec += ',';
        if (const int64_t* l = std::get_if<int64_t>(&layer)) {
            if (*l < INT_MIN || *l > INT_MAX)
                throw_error(ErrorCode::invalid_argument, "prune layer " + std::to_string(*l) + " is out of range");
            spec += std::to_string(*l);
        } else {
            spec += spec_number(std::get<double>(layer), true);
        }
        spec += ':' + spec_number(keep, false);
    }
    return spec;
}

LazyConfig LazySpec::resolve(int n_layer, const std::vector<uint8_t>& stage_layers) const {
    std::string spec = preset_name ? *preset_name : stages_as_spec(schedule);
    if (!decode_schedule.empty()) spec += '/' + stages_as_spec(decode_schedule);
    LazyConfig config = parse_lazy_spec(spec, n_layer, stage_layers);  // validated there
    if (prune_decode) config.prune_decode = *prune_decode;
    if (revival_budget) config.revival_budget = *revival_budget;
    if (importance) config.importance = parse_importance_signal(*importance);
    if (query_window) config.query_window = *query_window;
    if (pool_radius) config.pool_radius = *pool_radius;
    if (decode_pool_radius) config.decode_pool_radius = *decode_pool_radius;
    if (min_kept_tokens) config.min_kept_tokens = *min_kept_tokens;
    validate_lazy_config(config, n_layer);
    return config;
}

// Raises for an unknown preset name before any model is known (the core's preset table decides).
void check_preset_name(const std::optional<std::string>& name) {
    if (name) lazy_preset(*name, 2);
}

nb::tuple stages_tuple(const std::vector<LazySpec::Stage>& stages) {
    nb::list out;
    for (const auto& s : stages) out.append(nb::cast(s));
    return nb::tuple(out);
}

nb::tuple fields(const LazySpec& c) {
    return nb::make_tuple(stages_tuple(c.schedule), c.prune_decode, c.preset_name, stages_tuple(c.decode_schedule),
                          c.revival_budget, c.importance, c.query_window, c.pool_radius, c.decode_pool_radius, c.min_kept_tokens);
}

nb::list stage_list(const std::vector<PruneStage>& stages) {
    nb::list out;
    for (const PruneStage& s : stages) out.append(nb::make_tuple(s.layer, s.keep_fraction));
    return out;
}

}  // namespace

void register_lazy(nb::module_& m) {
    // the core's LazyConfig: a schedule resolved for one model (absolute layers), as sessions take it
    nb::class_<LazyConfig>(m, "LazySchedule", "A prune schedule resolved for a model: absolute layers, validated.")
        .def_prop_ro("schedule", [](const LazyConfig& c) { return stage_list(c.schedule); })
        .def_prop_ro("prune_decode", [](const LazyConfig& c) { return c.prune_decode; })
        .def_prop_ro("decode_schedule", [](const LazyConfig& c) { return stage_list(c.decode_schedule); })
        .def_prop_ro("revival_budget", [](const LazyConfig& c) { return c.revival_budget; })
        .def_prop_ro("importance", [](const LazyConfig& c) { return std::string(importance_signal_name(c.importance)); })
        .def_prop_ro("query_window", [](const LazyConfig& c) { return c.query_window; })
        .def_prop_ro("pool_radius", [](const LazyConfig& c) { return c.pool_radius; })
        .def_prop_ro("decode_pool_radius", [](const LazyConfig& c) { return c.decode_pool_radius; })
        .def_prop_ro("min_kept_tokens", [](const LazyConfig& c) { return c.min_kept_tokens; })
        .def("__eq__", [](const LazyConfig& a, const LazyConfig& b) { return same_lazy_config(a, b); }, nb::is_operator())
        .def("__repr__", [](const LazyConfig& c) { return "LazySchedule('" + lazy_spec_string(c) + "')"; })
        .def("__str__", [](const LazyConfig& c) { return lazy_spec_string(c); });
    m.def("lazy_preset", &lazy_preset, nb::arg("name"), nb::arg("n_layer"), nb::arg("stage_layers") = std::vector<uint8_t>{});
    m.def("parse_lazy_spec", &parse_lazy_spec, nb::arg("spec"), nb::arg("n_layer"), nb::arg("stage_layers") = std::vector<uint8_t>{});

    nb::class_<LazySpec>(m, "LazyConfig",
                         "A prune schedule.\n\n"
                         "``schedule``: (layer, keep_fraction) stages, layers strictly increasing; after computing ``layer`` "
                         "the ``keep_fraction`` most attended tokens of the active set stay active. A float layer in [0, 1) "
                         "is a relative depth (``0.3`` = 30 % of the model's layers, rounded as in a spec string). "
                         "``prune_decode``: prune in decode steps too (None: the preset's choice, on for a schedule). "
                         "``preset_name``: a preset instead of a schedule (see ``LazyConfig.preset``). "
                         "``decode_schedule``: the stages of decode (one-token) steps when they differ from the prefill's; "
                         "empty: decode steps use ``schedule``. ``revival_budget``, ``importance``, ``query_window``, "
                         "``pool_radius``: how tokens are ranked and revived (None: the preset's); ``decode_pool_radius``: "
                         "decode steps' own pooling radius (None or -1: ``pool_radius``); ``min_kept_tokens``: each stage keeps at "
                         "least this many tokens (None or 0: its fraction only). Validated by "
                         "``resolve(n_layer)`` (ValueError).")
        .def("__init__",
             [](LazySpec* self, std::vector<LazySpec::Stage> schedule, std::optional<bool> prune_decode,
                std::optional<std::string> preset_name, std::vector<LazySpec::Stage> decode_schedule,
                std::optional<int> revival_budget, std::optional<std::string> importance,
                std::optional<int> query_window, std::optional<int> pool_radius, std::optional<int> decode_pool_radius,
                std::optional<int> min_kept_tokens) {
                 if (preset_name && !schedule.empty())
                     throw_error(ErrorCode::invalid_argument, "a LazyConfig has a preset_name or a schedule, not both");
                 check_preset_name(preset_name);
                 if (importance) parse_importance_signal(*importance);  // a bad name raises here
                 new (self) LazySpec{std::move(schedule), prune_decode,   std::move(preset_name), std::move(decode_schedule),
                                     revival_budget,      std::move(importance), query_window, pool_radius,
                                     decode_pool_radius,  min_kept_tokens};
             },
             nb::arg("schedule") = std::vector<LazySpec::Stage>(), nb::arg("prune_decode") = nb::none(),
             nb::arg("preset_name") = nb::none(), nb::arg("decode_schedule") = std::vector<LazySpec::Stage>(),
             nb::arg("revival_budget") = nb::none(), nb::arg("importance") = nb::none(),
             nb::arg("query_window") = nb::none(), nb::arg("pool_radius") = nb::none(),
             nb::arg("decode_pool_radius") = nb::none(), nb::arg("min_kept_tokens") = nb::none())
        .def_static(
            "preset",
            [](const std::string& name, std::optional<bool> prune_decode) {
                check_preset_name(name);
                return LazySpec{{}, prune_decode, name, {}, std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                                std::nullopt};
            },
            nb::arg("name"), nb::arg("prune_decode") = nb::none(), "A named preset (off, balanced, aggressive), scaled to the model depth.")
        .def_prop_ro("schedule", [](const LazySpec& c) { return stages_tuple(c.schedule); })
        .def_prop_ro("prune_decode", [](const LazySpec& c) { return c.prune_decode; })
        .def_prop_ro("preset_name", [](const LazySpec& c) { return c.preset_name; })
        .def_prop_ro("decode_schedule", [](const LazySpec& c) { return stages_tuple(c.decode_schedule); })
        .def_prop_ro("revival_budget", [](const LazySpec& c) { return c.revival_budget; })
        .def_prop_ro("importance", [](const LazySpec& c) { return c.importance; })
        .def_prop_ro("query_window", [](const LazySpec& c) { return c.query_window; })
        .def_prop_ro("pool_radius", [](const LazySpec& c) { return c.pool_radius; })
        .def_prop_ro("decode_pool_radius", [](const LazySpec& c) { return c.decode_pool_radius; })
        .def_prop_ro("min_kept_tokens", [](const LazySpec& c) { return c.min_kept_tokens; })
        .def("resolve", &LazySpec::resolve, nb::arg("n_layer"), nb::arg("stage_layers") = std::vector<uint8_t>{},
             "The LazySchedule for a model with n_layer layers (validated: raises ValueError); relative stages and a "
             "preset's go to the layers stage_layers marks (Generator.info['stage_layers']; empty: any layer).")
        .def("__eq__", [](const LazySpec& a, const LazySpec& b) { return fields(a).equal(fields(b)); }, nb::is_operator())
        .def("__hash__", [](const LazySpec& c) { return nb::hash(fields(c)); })
        .def("__repr__", [](const LazySpec& c) {
            nb::tuple f = fields(c);
            std::string out = "LazyConfig(schedule=" + std::string(nb::repr(f[0]).c_str()) + ", prune_decode=" +
                              nb::repr(f[1]).c_str() + ", preset_name=" + nb::repr(f[2]).c_str() +
                              ", decode_schedule=" + nb::repr(f[3]).c_str();
            const char* names[] = {"revival_budget", "importance", "query_window", "pool_radius",
                                   "decode_pool_radius", "min_kept_tokens"};  // shown when set
            for (int i = 0; i < 6; ++i)
                if (!f[4 + i].is_none()) out += std::string(", ") + names[i] + "=" + nb::repr(f[4 + i]).c_str();
            return out + ")";
        });
}
