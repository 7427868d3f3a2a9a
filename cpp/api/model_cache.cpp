#include "api/model_cache.h"

#include <cstdlib>

namespace lazyllm_edge {

const char* const kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
const char* const kDefaultModelFetchHint = "python -m lazyllm_edge.models fetch smollm2-135m";

std::string model_cache_dir() {
    if (const char* dir = std::getenv("LAZYLLM_EDGE_CACHE"); dir && *dir) return dir;
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/lazyllm_edge";
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : ".") + "/.cache/lazyllm_edge";
}

std::string default_model_path() { return model_cache_dir() + "/" + kDefaultModelFile; }

}  // namespace lazyllm_edge
