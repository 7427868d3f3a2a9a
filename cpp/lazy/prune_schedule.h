// LazyLLM prune schedules: validation, presets, parsing, and the keep fraction of each layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "lazyllm_edge/lazyllm_edge.hpp"

namespace lazyllm_edge {

// keep_fraction of a stage at `layer`, or 1 when the layer prunes nothing. Table (n_layer).
std::vector<float> keep_fraction_per_layer(const std::vector<PruneStage>& stages, int n_layer);

// "mean" / "max" and back (Error(invalid_argument) for another name).
ImportanceSignal parse_importance_signal(const std::string& name);
const char* importance_signal_name(ImportanceSignal signal);

// Whether two configs prune the same way (every field equal): a session reuses cached tokens only under the
// schedule that computed them.
bool same_lazy_config(const LazyConfig& a, const LazyConfig& b);

// The spec string of a resolved config (absolute layers), which parse_lazy_spec reads back as the same config.
std::string lazy_spec_string(const LazyConfig& config);

}  // namespace lazyllm_edge
