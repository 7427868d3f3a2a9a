// Error type used across the core. The core throws lazyllm_edge::Error; the C API and the bindings
// translate it to status codes / Python exceptions. Nothing in the core aborts or exits.
#pragma once
#include <stdexcept>
#include <string>

namespace lazyllm_edge {

enum class ErrorCode : int {
    ok = 0,
    model_load = 1,        // bad/missing/unsupported model file
    invalid_argument = 2,  // caller passed a bad value
    out_of_memory = 3,     // an arena could not be allocated
    context_full = 4,      // more tokens than n_ctx
    cancelled = 5,         // generation stopped from outside
    unsupported = 6,       // feature not available (e.g. backend not built)
    internal = 7,
    busy = 8,              // the object is being used by another thread
};

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

[[noreturn]] inline void throw_error(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace lazyllm_edge
