// The core throws lazyllm_edge::Error (the public type, include/lazyllm_edge/error.hpp); the C API and the
// bindings translate it to status codes / Python exceptions. Nothing in the core aborts or exits.
#pragma once
#include <string>

#include "lazyllm_edge/error.hpp"

namespace lazyllm_edge {

[[noreturn]] inline void throw_error(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace lazyllm_edge
