// lazyllm_edge C++ API errors: everything the library throws is a lazyllm_edge::Error with an ErrorCode
// (the C API returns the same codes as le_status; the bindings map them to Python exceptions).
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
    state_file = 9,        // a saved session that cannot be read, written or used here (another model or shape,
                           // truncated, corrupted)
};

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

}  // namespace lazyllm_edge
