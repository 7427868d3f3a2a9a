// Token sampling in llama.cpp's order: repeat penalty, top-k, top-p, min-p, temperature, draw.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "base/error.h"
#include "lazyllm_edge/lazyllm_edge.hpp"

namespace lazyllm_edge {
namespace {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The shortest text that reads back as v, with a decimal point (2.0, 0.95, nan) as the caller wrote it.
std::string number_text(float v) {
    char buf[32];
    for (int digits = 1; digits <= 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
        if (std::strtof(buf, nullptr) == v) break;
    }
    std::string text = buf;
    if (std::isfinite(v) && text.find_first_of(".e") == std::string::npos) text += ".0";
    return text;
}

}  // namespace

void validate_sampling_params(const SamplingParams& p) {
    auto bad = [](const char* what, const std::string& got) {
        throw_error(ErrorCode::invalid_argument, std::string(what) + ", got " + got);
    };
    // NaN fails every comparison below: say what it is rather than which range it misses
    for (const auto& [name, value] : {std::pair<const char*, float>{"temperature", p.temperature}, {"top_p", p.top_p},
                                      {"min_p", p.min_p}, {"repeat_penalty", p.repeat_penalty}})
        if (std::isnan(value)) throw_error(ErrorCode::invalid_argument, std::string(name) + " is NaN: it must be a number");
    if (!(p.temperature >= 0.0f && std::isfinite(p.temperature)))
        bad("temperature must be >= 0 (0: greedy)", number_text(p.temperature));
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) bad("top_p must be in (0, 1]", number_text(p.top_p));
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) bad("min_p must be in [0, 1]", number_text(p.min_p));
    if (!(p.repeat_penalty > 0.0f && std::isfinite(p.repeat_penalty)))
        bad("repeat_penalty must be > 0 (1: off)", number_text(p.repeat_penalty));
    if (p.repeat_last_n < 0) bad("repeat_last_n must be >= 0", std::to_string(p.repeat_last_n));
}

Sampler::Sampler(const SamplingParams& params, int n_vocab) : params_(params) {
    validate_sampling_params(params);
    if (n_vocab <= 0) throw_error(ErrorCode::invalid_argument, "sampler needs a vocabulary");
    rng_state_ = params.has_seed ? params.seed
                                 : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    candidates_.resize(static_cast<size_t>(n_vocab));
    penalized_.resize(static_cast<size_t>(n_vocab));
}

int32_t Sampler::sample(const float* logits, const int32_t* recent, int n_recent) {
    const int n_vocab = static_cast<int>(candidates_.size());
    const float* l = logits;
    if (params_.repeat_penalty != 1.0f && n_recent > 0) {
        // llama.cpp: a seen token's positive logit is divided by the penalty, a negative one multiplied
        std::copy(logits, logits + n_vocab, penalized_.begin());
        const int first = std::max(0, n_recent - params_.repeat_last_n);
        for (int i = first; i < n_recent; ++i) {
            const int32_t t = recent[i];
            if (t < 0 || t >= n_vocab) continue;
            float& v = penalized_[t];
            if (v == logits[t]) v = v > 0 ? v / params_.repeat_penalty : v * params_.repeat_penalty;
        }
        l = penalized_.data();
    }
    if (params_.temperature <= 0.0f) {
        return static_cast<int32_t>(std::max_element(l, l + n_vocab) - l);
    }
    for (int i = 0; i < n_vocab; ++i) candidates_[i] = {l[i], i};
    auto by_logit = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    int n = n_vocab;
    if (params_.top_k > 0 && params_.top_k < n) {
        std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(), by_logit);
        n = params_.top_k;
    } else {
        std::sort(candidates_.begin(), candidates_.end(), by_logit);
    }
    // softmax over the survivors (sorted, so [0] is the max)
    const float mx = candidates_[0].first;
    std::vector<float>& prob = penalized_;  // reuse: logits no longer needed past this point
    double sum = 0.0;
    for (int i = 0; i < n; ++i) {
        prob[i] = std::exp(candidates_[i].first - mx);
        sum += prob[i];
    }
    for (int i = 0; i < n; ++i) prob[i] = static_cast<float>(prob[i] / sum);
    if (params_.top_p < 1.0f) {
        double cum = 0.0;
        int keep = n;
        for (int i = 0; i < n; ++i) {
            cum += prob[i];
            if (cum >= params_.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (params_.min_p > 0.0f) {
        const float threshold = params_.min_p * prob[0];
        int keep = 1;
        while (keep < n && prob[keep] >= threshold) ++keep;
        n = keep;
    }
    // temperature over the remaining logits, then draw
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
        prob[i] = std::exp((candidates_[i].first - mx) / params_.temperature);
        total += prob[i];
    }
    const double u = static_cast<double>(splitmix64(rng_state_) >> 11) * (1.0 / 9007199254740992.0) * total;
    double acc = 0.0;
    for (int i = 0; i < n; ++i) {
        acc += prob[i];
        if (u < acc) return candidates_[i].second;
    }
    return candidates_[n - 1].second;
}

}  // namespace lazyllm_edge
