#include "lazy/selection.h"

#include <algorithm>
#include <cmath>

namespace lazyllm_edge {

int tokens_to_keep(int n_active, float keep_fraction, int min_tokens) {
    if (keep_fraction >= 1.0f) return n_active;
    // ceil, with slack for the float keep fraction (0.4f * 30 = 12.0000002 must keep 12)
    int n = static_cast<int>(std::ceil(static_cast<double>(keep_fraction) * n_active - 1e-4));
    return std::min(std::max({n, min_tokens, 1}), n_active);
}

int select_most_important(const int32_t* positions, const float* importance, int n, int n_keep,
                          int32_t always_keep, int32_t* order, int32_t* kept) {
    n_keep = std::min(n_keep, n);
    for (int i = 0; i < n; ++i) order[i] = i;
    auto more_important = [&](int32_t a, int32_t b) {
        const bool a_forced = positions[a] == always_keep, b_forced = positions[b] == always_keep;
        if (a_forced != b_forced) return a_forced;
        if (importance[a] != importance[b]) return importance[a] > importance[b];
        return a < b;  // positions are sorted, so a lower index is an earlier position
    };
    std::nth_element(order, order + n_keep, order + n, more_important);
    std::sort(order, order + n_keep);  // back to position order
    for (int i = 0; i < n_keep; ++i) kept[i] = positions[order[i]];
    return n_keep;
}

void max_pool_importance(const int32_t* positions, const float* importance, int n, int radius, float* out) {
    for (int i = 0; i < n; ++i) {
        float m = importance[i];
        // positions are distinct, so at most `radius` neighbours lie on each side
        for (int j = i - 1; j >= 0 && positions[i] - positions[j] <= radius; --j) m = std::max(m, importance[j]);
        for (int j = i + 1; j < n && positions[j] - positions[i] <= radius; ++j) m = std::max(m, importance[j]);
        out[i] = m;
    }
}

}  // namespace lazyllm_edge
