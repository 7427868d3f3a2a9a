// LazyLLM prune schedules: validation, presets, parsing, and top-k selection by importance.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "lazyllm_edge/lazyllm_edge.hpp"

namespace lazyllm_edge {

// keep_fraction of a stage at `layer`, or 1 when the layer prunes nothing. Table (n_layer).
std::vector<float> keep_fraction_per_layer(const std::vector<PruneStage>& stages, int n_layer);

// Number of tokens kept out of n_active for a keep fraction (at least 1, all when fraction is 1).
int tokens_to_keep(int n_active, float keep_fraction);

// Selects the n_keep most important of `positions` (importance aligned with it); ties go to the earlier
// position; `always_keep` (a position) is kept regardless. Writes the kept positions, sorted, to `kept`
// and returns their count. `order` is scratch of n ints.
int select_most_important(const int32_t* positions, const float* importance, int n, int n_keep,
                          int32_t always_keep, int32_t* order, int32_t* kept);

}  // namespace lazyllm_edge
