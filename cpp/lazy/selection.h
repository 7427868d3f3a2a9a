// Which tokens stay active at a pruning layer: how many (the keep fraction, rounded up) and which (most
// important first, ties to the earlier position, the last token always). The CPU backend calls these; the CUDA
// backend's selection kernel implements the same rule and is tested against them.
#pragma once
#include <cstdint>

namespace lazyllm_edge {

// Number of tokens kept out of n_active for a keep fraction (at least max(1, min_tokens), all when fraction is 1).
int tokens_to_keep(int n_active, float keep_fraction, int min_tokens = 0);

// Selects the n_keep most important of `positions` (importance aligned with it); ties go to the earlier
// position; `always_keep` (a position) is kept regardless. Writes the kept positions, sorted, to `kept`
// and returns their count. `order` is scratch of n ints.
int select_most_important(const int32_t* positions, const float* importance, int n, int n_keep,
                          int32_t always_keep, int32_t* order, int32_t* kept);

// Pools importance over positions: out[i] = the largest importance[j] with |positions[j] - positions[i]| <= radius
// (positions sorted, distinct; n entries). out may not alias importance.
void max_pool_importance(const int32_t* positions, const float* importance, int n, int radius, float* out);

}  // namespace lazyllm_edge
