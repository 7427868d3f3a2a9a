#include "lazy/prune_schedule.h"

#include "lazy/backend.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace lazyllm_edge {
namespace {

[[noreturn]] void bad(const std::string& message) { throw_error(ErrorCode::invalid_argument, message); }

// Without the spaces around it: " 5 : 0.5 " reads as "5:0.5" (specs are typed by people).
std::string trimmed(const std::string& text) {
    const size_t b = text.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    return text.substr(b, text.find_last_not_of(" \t") - b + 1);
}

// Presets as fractions of depth, so they transfer between models: (relative layer, keep fraction).
// Values chosen with benchmarks/longctx.py on the default model (see the closing notes of the LazyLLM issue).
struct RelativeStage {
    double depth;
    float keep;
};
struct Preset {
    std::vector<RelativeStage> stages;
    bool prune_decode;
    std::vector<RelativeStage> decode_stages;  // empty: the prefill stages (without a revival budget)
    int revival_budget = -1;
    ImportanceSignal importance = ImportanceSignal::mean_heads;
    int query_window = 1;
    int pool_radius = 0;
};
const Preset& preset_stages(const std::string& name) {
    // On the 30-layer default model: balanced = 12:0.1,16:0.02 for the prefill (~45 % of prompt pairs computed)
    // and 24:0.5 for decode steps. Pruning before ~40 % of depth cost the most fidelity in the evaluation. The
    // tokens a prefill keeps are the approximate ones (their deeper KV never sees the dropped tokens), while the
    // dropped ones resume exactly at the first decode step, so answers depend on how many tokens stay approximate
    // and for how many layers. The prefill keeps 10 % for layers 13-16 and then only 0.2 % (6 tokens at 3k):
    // enough context for the first reply token (keeping only the last token after layer 12 turned it from "The"
    // into "\n", KL ~6 nats), few enough that later steps see nearly exact KV. 0.2 % instead of 2 % after layer 16
    // lost 3 answers instead of 8 on 45 held-out needle variants at >= 1.5k tokens and raised fidelity top-1 from
    // 90.8 % to 92.9 %; it can lose a short prompt's first token (2 tokens kept at 1k). See
    // benchmarks/results/README.md (sessions 9-11).
    // Decode steps need a milder schedule of their own: 12:0.1 on every continuation token lost fidelity.
    // aggressive = 4:0.4,12:0.5,20:0.5 (~36 %, for a 3x TTFT), prefill only; moving its last stage before
    // layer 20 (e.g. 4:0.5,10:0.5,16:0.5) lost most passkey answers even on short prompts.
    static const Preset balanced = {{{0.40, 0.1f}, {0.53, 0.02f}}, true, {{0.80, 0.5f}}};
    static const Preset aggressive = {{{0.13, 0.4f}, {0.40, 0.5f}, {0.67, 0.5f}}, false, {}};
    static const Preset none = {{}, true, {}};
    if (name == "balanced") return balanced;
    if (name == "aggressive") return aggressive;
    if (name == "off" || name == "dense" || name.empty()) return none;
    bad("unknown lazy preset '" + name + "' (expected off, balanced, aggressive or a schedule like '8:0.7,15:0.5')");
}

int relative_to_layer(double depth, int n_layer) {
    int layer = static_cast<int>(std::lround(depth * n_layer));
    return std::min(std::max(layer, 0), n_layer - 2);
}

void validate_stages(const std::vector<PruneStage>& stages, int n_layer, const char* what) {
    int previous = -1;
    for (const PruneStage& s : stages) {
        if (s.layer < 0 || s.layer >= n_layer)
            bad(std::string(what) + "prune layer " + std::to_string(s.layer) + " is out of range [0, " +
                std::to_string(n_layer) + ")");
        if (s.layer <= previous) bad(std::string(what) + "prune layers must be strictly increasing");
        if (!(s.keep_fraction > 0.0f && s.keep_fraction <= 1.0f))
            bad(std::string(what) + "keep_fraction must be in (0, 1], got " + std::to_string(s.keep_fraction));
        previous = s.layer;
    }
}

// Whether a stage may sit at `layer` (stage_layers empty: any layer).
bool takes_stage(const std::vector<uint8_t>& stage_layers, int layer) {
    return stage_layers.empty() || (layer >= 0 && layer < static_cast<int>(stage_layers.size()) && stage_layers[layer] != 0);
}

// The layer of a stage at a relative depth: the nearest one after `after` (and before the last) that can take a stage,
// the later of two as near; -1 when there is none. Without stage_layers, the depth's own layer when it is after `after`.
int place_relative(double depth, int n_layer, const std::vector<uint8_t>& stage_layers, int after) {
    const int want = relative_to_layer(depth, n_layer);
    int best = -1;
    for (int layer = after + 1; layer <= n_layer - 2; ++layer)
        if (takes_stage(stage_layers, layer) && (best < 0 || std::abs(layer - want) <= std::abs(best - want))) best = layer;
    return best;
}

// A preset's stages on this model's layers; a stage with no layer left after the one before it is dropped.
std::vector<PruneStage> to_layers(const std::vector<RelativeStage>& stages, int n_layer, const std::vector<uint8_t>& stage_layers) {
    std::vector<PruneStage> out;
    for (const RelativeStage& s : stages) {
        const int layer = place_relative(s.depth, n_layer, stage_layers, out.empty() ? -1 : out.back().layer);
        if (layer >= 0) out.push_back({layer, s.keep});
    }
    return out;
}

// "8:0.7,15:0.5" or "0.27:0.7,..." -> stages (validated by the caller); a relative depth goes to stage_layers as a
// preset's stage does (without them, to its own layer)
std::vector<PruneStage> parse_stages(const std::string& spec, int n_layer, const std::vector<uint8_t>& stage_layers) {
    std::vector<PruneStage> stages;
    std::stringstream in(spec);
    std::string item;
    while (std::getline(in, item, ',')) {
        item = trimmed(item);
        auto colon = item.find(':');
        if (colon == std::string::npos) bad("bad lazy schedule item '" + item + "' (expected layer:keep)");
        std::string layer_text = trimmed(item.substr(0, colon)), keep_text = trimmed(item.substr(colon + 1));
        char* end = nullptr;
        double layer = std::strtod(layer_text.c_str(), &end);
        if (end == layer_text.c_str() || *end != '\0') bad("bad layer in lazy schedule item '" + item + "'");
        double keep = std::strtod(keep_text.c_str(), &end);
        if (end == keep_text.c_str() || *end != '\0') bad("bad keep fraction in lazy schedule item '" + item + "'");
        // A layer written with a decimal point below 1 is a relative depth.
        bool relative = layer_text.find('.') != std::string::npos;
        if (relative && !(layer >= 0.0 && layer < 1.0)) bad("relative depth must be in [0, 1): '" + item + "'");
        if (!relative && layer != std::floor(layer)) bad("layer must be an integer: '" + item + "'");
        // (checked before the conversion, which would wrap; validate_stages reports the layers inside int's range)
        if (!relative && !(layer >= INT_MIN && layer <= INT_MAX))
            bad("prune layer '" + layer_text + "' is out of range [0, " + std::to_string(n_layer) + ")");
        // (without stage_layers a relative depth keeps its own layer, even one not after the stage before: refused
        // by validation as before)
        const int l = !relative              ? static_cast<int>(layer)
                      : stage_layers.empty() ? relative_to_layer(layer, n_layer)
                                             : place_relative(layer, n_layer, stage_layers, stages.empty() ? -1 : stages.back().layer);
        if (l < 0 && relative && !stage_layers.empty())
            bad((stages.empty() ? std::string("no layer before the last") : "no layer after " + std::to_string(stages.back().layer)) +
                " can take the stage '" + item + "' (a sliding-window or linear-attention layer does not rank every token)");
        stages.push_back({l, static_cast<float>(keep)});
    }
    return stages;
}

// Removes the item "NAME:VALUE" from a comma-separated spec part and returns VALUE ("" when there is none).
std::string take_item(std::string* items, const std::string& name) {
    std::stringstream in(*items);
    std::string item, rest, value;
    bool found = false;
    while (std::getline(in, item, ',')) {
        item = trimmed(item);
        const size_t colon = item.find(':');
        if (colon != std::string::npos && trimmed(item.substr(0, colon)) == name) {
            if (found) bad("a lazy spec names '" + name + "' once");
            found = true;
            value = trimmed(item.substr(colon + 1));
            if (value.empty()) bad("lazy spec item '" + item + "' has no value");
        } else {
            rest += (rest.empty() ? "" : ",") + item;
        }
    }
    *items = rest;
    return value;
}

// "NAME:N" among the items, N in [lowest, highest] (-1 when absent).
int take_int_item(std::string* items, const char* name, int lowest, int highest, const char* what) {
    const std::string value = take_item(items, name);
    if (value.empty()) return -1;
    char* end = nullptr;
    const long n = std::strtol(value.c_str(), &end, 10);
    if (*end != '\0' || n < lowest || n > highest)
        bad(std::string("bad ") + what + " '" + name + ":" + value + "' in a lazy spec (expected " + name + ":N, " +
            std::to_string(lowest) + " <= N <= " + std::to_string(highest) + ")");
    return static_cast<int>(n);
}


}  // namespace

void validate_lazy_config(const LazyConfig& lazy, int n_layer) {
    validate_stages(lazy.schedule, n_layer, "");
    validate_stages(lazy.decode_schedule, n_layer, "decode schedule: ");
    if (lazy.query_window < 1 || lazy.query_window > kMaxQueryWindow)
        bad("query_window must be in [1, " + std::to_string(kMaxQueryWindow) + "], got " + std::to_string(lazy.query_window));
    if (lazy.pool_radius < 0 || lazy.pool_radius > kMaxPoolRadius)
        bad("pool_radius must be in [0, " + std::to_string(kMaxPoolRadius) + "], got " + std::to_string(lazy.pool_radius));
    if (lazy.decode_pool_radius < -1 || lazy.decode_pool_radius > kMaxPoolRadius)
        bad("decode_pool_radius must be in [0, " + std::to_string(kMaxPoolRadius) + "] (or -1: pool_radius), got " +
            std::to_string(lazy.decode_pool_radius));
    if (lazy.decode_pool_radius >= 0 && !lazy.prune_decode)
        bad("decode_pool_radius needs decode pruning (prune_decode): decode steps without it rank nothing");
    if (lazy.min_kept_tokens < 0) bad("min_kept_tokens must be >= 0, got " + std::to_string(lazy.min_kept_tokens));
    if (lazy.revival_budget < -1) bad("revival_budget must be >= 0 (or -1: none), got " + std::to_string(lazy.revival_budget));
}

void validate_stages_after_recurrent_layers(const LazyConfig& lazy, int first_prunable_layer, int n_layer, const char* arch) {
    if (first_prunable_layer <= 0) return;
    for (bool decode : {false, true})
        for (const PruneStage& s : lazy.stages(decode))
            if (s.layer < first_prunable_layer) {
                std::string where = "stages at layers >= " + std::to_string(first_prunable_layer);
                if (first_prunable_layer >= n_layer - 1) where = "no stage (no layer after the last linear-attention layer but the output layer: LazyLLM cannot prune this model)";
                bad(std::string(decode ? "decode schedule: " : "") + "prune layer " + std::to_string(s.layer) + " is before " + arch +
                    "'s last linear-attention layer (" + std::to_string(first_prunable_layer - 1) +
                    "): its recurrent state must see every token in order, so tokens may only be cut after it: " + where);
            }
}

void check_stage_layers(const std::vector<uint8_t>& stage_layers, int n_layer) {
    if (!stage_layers.empty() && static_cast<int>(stage_layers.size()) != n_layer)
        bad("stage_layers has " + std::to_string(stage_layers.size()) + " entries for a model of " + std::to_string(n_layer) + " layers");
}

LazyConfig lazy_preset(const std::string& name, int n_layer, const std::vector<uint8_t>& stage_layers) {
    check_stage_layers(stage_layers, n_layer);
    LazyConfig config;
    const Preset& preset = preset_stages(name);
    config.prune_decode = preset.prune_decode;
    config.schedule = to_layers(preset.stages, n_layer, stage_layers);
    config.decode_schedule = to_layers(preset.decode_stages, n_layer, stage_layers);
    config.revival_budget = preset.revival_budget;
    config.importance = preset.importance;
    config.query_window = preset.query_window;
    config.pool_radius = preset.pool_radius;
    return config;
}

LazyConfig parse_lazy_spec(const std::string& spec, int n_layer, const std::vector<uint8_t>& stage_layers) {
    check_stage_layers(stage_layers, n_layer);
    const size_t slash = spec.find('/');
    std::string prefill = trimmed(spec.substr(0, slash));
    LazyConfig config;
    // "importance:mean|max" among the prefill items (absent: the preset's, mean for stages)
    const std::string importance = take_item(&prefill, "importance");
    const int query_window = take_int_item(&prefill, "window", 1, kMaxQueryWindow, "query window");
    const int pool_radius = take_int_item(&prefill, "pool", 0, kMaxPoolRadius, "pool radius");
    const int min_kept_tokens = take_int_item(&prefill, "floor", 0, INT_MAX, "token floor");
    if (prefill.find(':') == std::string::npos) {
        config = lazy_preset(prefill, n_layer, stage_layers);
    } else {
        config.schedule = parse_stages(prefill, n_layer, stage_layers);
        config.prune_decode = true;
    }
    if (!importance.empty()) config.importance = parse_importance_signal(importance);
    if (query_window > 0) config.query_window = query_window;
    if (pool_radius >= 0) config.pool_radius = pool_radius;
    if (min_kept_tokens >= 0) config.min_kept_tokens = min_kept_tokens;
    if (slash != std::string::npos) {
        std::string decode = trimmed(spec.substr(slash + 1));
        if (decode.find('/') != std::string::npos) bad("a lazy spec has at most one '/' (PREFILL/DECODE): '" + spec + "'");
        // "revive:N" among the decode items: the revival budget; "pool:N": decode steps' own pooling radius
        config.revival_budget = take_int_item(&decode, "revive", 0, 1 << 24, "revival budget");
        config.decode_pool_radius = take_int_item(&decode, "pool", 0, kMaxPoolRadius, "decode pool radius");
        // stages, or a preset's stages ("off": none, so decode steps stay dense)
        if (decode.empty()) config.decode_schedule.clear();
        else config.decode_schedule = decode.find(':') == std::string::npos ? lazy_preset(decode, n_layer, stage_layers).schedule
                                                                            : parse_stages(decode, n_layer, stage_layers);
        config.prune_decode = !config.decode_schedule.empty() || config.revival_budget >= 0 || config.decode_pool_radius >= 0;
    }
    validate_lazy_config(config, n_layer);
    return config;
}

std::vector<float> keep_fraction_per_layer(const std::vector<PruneStage>& stages, int n_layer) {
    std::vector<float> keep(static_cast<size_t>(n_layer), 1.0f);
    for (const PruneStage& s : stages)
        if (s.layer >= 0 && s.layer < n_layer) keep[s.layer] = s.keep_fraction;
    return keep;
}

ImportanceSignal parse_importance_signal(const std::string& name) {
    if (name == "mean") return ImportanceSignal::mean_heads;
    if (name == "max") return ImportanceSignal::max_heads;
    bad("importance must be 'mean' or 'max', got '" + name + "'");
}

const char* importance_signal_name(ImportanceSignal signal) {
    return signal == ImportanceSignal::max_heads ? "max" : "mean";
}

std::string lazy_spec_string(const LazyConfig& c) {
    auto stages = [](const std::vector<PruneStage>& v) {
        std::string out;
        for (const PruneStage& s : v) {
            char keep[32];  // the shortest text that reads back as the same float
            for (int digits = 6; digits <= 9; ++digits) {
                std::snprintf(keep, sizeof keep, "%.*g", digits, static_cast<double>(s.keep_fraction));
                if (std::strtof(keep, nullptr) == s.keep_fraction) break;
            }
            out += (out.empty() ? "" : ",") + std::to_string(s.layer) + ":" + keep;
        }
        return out;
    };
    // appends "name:value" to a comma-separated item list
    auto add = [](std::string& list, const char* name, const std::string& value) {
        list += (list.empty() ? "" : ",") + std::string(name) + ":" + value;
    };
    std::string prefill = stages(c.schedule);
    if (c.importance != ImportanceSignal::mean_heads) add(prefill, "importance", importance_signal_name(c.importance));
    if (c.query_window != 1) add(prefill, "window", std::to_string(c.query_window));
    if (c.pool_radius != 0) add(prefill, "pool", std::to_string(c.pool_radius));
    if (c.min_kept_tokens != 0) add(prefill, "floor", std::to_string(c.min_kept_tokens));
    if (prefill.empty()) prefill = "off";
    // decode steps: their own stages and budget, or the prefill's stages (no '/'), or none ("/off")
    if (!c.prune_decode) return c.schedule.empty() ? prefill : prefill + "/off";
    std::string decode = stages(c.decode_schedule);
    if (c.revival_budget >= 0) add(decode, "revive", std::to_string(c.revival_budget));
    if (c.decode_pool_radius >= 0) add(decode, "pool", std::to_string(c.decode_pool_radius));
    return decode.empty() ? prefill : prefill + "/" + decode;
}

bool same_lazy_config(const LazyConfig& a, const LazyConfig& b) {
    auto same_stages = [](const std::vector<PruneStage>& x, const std::vector<PruneStage>& y) {
        return std::equal(x.begin(), x.end(), y.begin(), y.end(), [](const PruneStage& p, const PruneStage& q) {
            return p.layer == q.layer && p.keep_fraction == q.keep_fraction;
        });
    };
    return same_stages(a.schedule, b.schedule) && same_stages(a.decode_schedule, b.decode_schedule) &&
           a.prune_decode == b.prune_decode && a.revival_budget == b.revival_budget && a.importance == b.importance &&
           a.query_window == b.query_window && a.pool_radius == b.pool_radius && a.decode_pool_radius == b.decode_pool_radius &&
           a.min_kept_tokens == b.min_kept_tokens;
}

}  // namespace lazyllm_edge
