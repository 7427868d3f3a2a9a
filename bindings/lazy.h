// Lazy schedules between Python and C++: the (schedule, prune_decode, decode_schedule) tuples of resolved configs,
// shared by the session and generation bindings.
#pragma once
#include <nanobind/nanobind.h>

#include <utility>
#include <vector>

#include "lazyllm_edge/lazyllm_edge.hpp"

using Stages = std::vector<std::pair<int, float>>;  // (layer, keep_fraction), absolute layers

lazyllm_edge::LazyConfig make_lazy(const Stages& schedule, bool prune_decode, const Stages& decode_schedule);
// (schedule, prune_decode, decode_schedule) of a config
nanobind::tuple as_python(const lazyllm_edge::LazyConfig& c);
