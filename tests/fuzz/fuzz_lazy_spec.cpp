// libFuzzer target: arbitrary text as a --lazy / lazy= spec (cpp/lazy/prune_schedule.cpp) for a model depth and a
// sliding-window pattern (stage_layers: none, or global attention on every 2nd, 3rd or 4th layer) taken from the first
// byte. Checks: a spec either parses to a valid schedule or is refused with Error(invalid_argument)
// (nothing else is thrown, nothing wraps or crashes); what parses prints as a spec that parses to the same schedule.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "lazy/prune_schedule.h"

using namespace lazyllm_edge;

namespace {

bool same_stages(const std::vector<PruneStage>& a, const std::vector<PruneStage>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].layer != b[i].layer || a[i].keep_fraction != b[i].keep_fraction) return false;
    return true;
}

[[noreturn]] void fail(const char* what, const std::string& spec) {
    std::fprintf(stderr, "fuzz_lazy_spec: %s for spec '%s'\n", what, spec.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const int n_layer = 2 + data[0] % 62;
    const int period = data[0] / 64 == 0 ? 0 : 1 + data[0] / 64;  // 0: no stage_layers
    std::vector<uint8_t> stage_layers;
    for (int l = 0; period > 0 && l < n_layer; ++l) stage_layers.push_back(l % period == period - 1 ? 1 : 0);
    const std::string spec(reinterpret_cast<const char*>(data + 1), size - 1);
    LazyConfig config;
    try {
        config = parse_lazy_spec(spec, n_layer, stage_layers);
    } catch (const Error& e) {
        if (e.code() != ErrorCode::invalid_argument) fail("an error other than invalid_argument", spec);
        return 0;
    } catch (...) {
        fail("a non-Error exception", spec);
    }
    try {
        validate_lazy_config(config, n_layer);
        const LazyConfig again = parse_lazy_spec(lazy_spec_string(config), n_layer, stage_layers);
        if (!same_stages(again.schedule, config.schedule) || !same_stages(again.decode_schedule, config.decode_schedule) ||
            again.revival_budget != config.revival_budget || again.importance != config.importance ||
            again.query_window != config.query_window)
            fail("a schedule that does not print back as itself", spec);
    } catch (const Error&) {
        fail("a parsed schedule that is not valid", spec);
    }
    if (!stage_layers.empty() && (spec == "balanced" || spec == "aggressive"))  // a preset's stages on marked layers
        for (bool decode : {false, true})
            for (const PruneStage& s : config.stages(decode))
                if (!stage_layers[s.layer]) fail("a preset stage on a layer that does not rank every token", spec);
    return 0;
}
