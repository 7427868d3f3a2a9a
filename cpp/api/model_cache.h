// Where fetched models live: $LAZYLLM_EDGE_CACHE, else $XDG_CACHE_HOME/lazyllm_edge, else ~/.cache/lazyllm_edge.
// Python's lazyllm_edge.models uses the same rule.
#pragma once
#include <string>

namespace lazyllm_edge {

std::string model_cache_dir();
// Path of the default model (SmolLM2-135M-Instruct Q4_1) in the cache; may not exist.
std::string default_model_path();
extern const char* const kDefaultModelFile;
extern const char* const kDefaultModelFetchHint;

}  // namespace lazyllm_edge
