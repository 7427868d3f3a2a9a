// Names of the Numerics values (include/lazyllm_edge/numerics.hpp), shared by the CLI, the C API and the bindings.
#include "lazyllm_edge/numerics.hpp"

#include "base/error.h"

namespace lazyllm_edge {

const char* numerics_name(Numerics numerics) {
    switch (numerics) {
        case Numerics::fast: return "fast";
        case Numerics::fp32: return "fp32";
        case Numerics::llama_cpp: return "llama.cpp";
        case Numerics::int8: return "int8";
    }
    throw_error(ErrorCode::invalid_argument, "unknown numerics value " + std::to_string(static_cast<int>(numerics)));
}

Numerics parse_numerics(const std::string& name) {
    if (name == "fast" || name == "default") return Numerics::fast;  // "default": the mode's earlier name
    if (name == "fp32") return Numerics::fp32;
    if (name == "llama.cpp" || name == "llama_cpp") return Numerics::llama_cpp;
    if (name == "int8") return Numerics::int8;
    throw_error(ErrorCode::invalid_argument, "numerics must be 'fast', 'fp32', 'llama.cpp' or 'int8', got '" + name + "'");
}

}  // namespace lazyllm_edge
