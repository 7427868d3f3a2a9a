// LazyLLM schedules between Python and C++: the session and generation bindings take the core's LazyConfig,
// bound as _core.LazySchedule (bindings/lazy.cpp).
#pragma once
#include <nanobind/nanobind.h>

#include "lazyllm_edge/lazyllm_edge.hpp"
