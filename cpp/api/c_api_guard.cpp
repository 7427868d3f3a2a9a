#include "api/c_api_guard.h"

#include <cstring>

namespace lazyllm_edge::capi {
namespace {
thread_local std::string last_error;  // per thread, so concurrent callers never see each other's messages
thread_local const char* last_error_literal = nullptr;  // a fixed message set without allocating (wins when set)
}

void set_last_error(const std::string& message) {
    last_error_literal = nullptr;
    try {
        last_error = message;
    } catch (...) {
        last_error.clear();  // no memory for the message: an empty one beats an exception
    }
}
void set_last_error_literal(const char* message) { last_error_literal = message; }
void clear_last_error() {
    last_error_literal = nullptr;
    last_error.clear();
}
const char* last_error_message() { return last_error_literal ? last_error_literal : last_error.c_str(); }

le_status status_of(ErrorCode code) {
    switch (code) {
        case ErrorCode::ok: return LE_OK;
        case ErrorCode::model_load: return LE_ERR_MODEL_LOAD;
        case ErrorCode::invalid_argument: return LE_ERR_INVALID_ARGUMENT;
        case ErrorCode::out_of_memory: return LE_ERR_OUT_OF_MEMORY;
        case ErrorCode::context_full: return LE_ERR_CONTEXT_FULL;
        case ErrorCode::cancelled: return LE_ERR_CANCELLED;
        case ErrorCode::unsupported: return LE_ERR_UNSUPPORTED;
        case ErrorCode::busy: return LE_ERR_BUSY;
        case ErrorCode::internal: return LE_ERR_INTERNAL;
        case ErrorCode::state_file: return LE_ERR_STATE_FILE;
    }
    return LE_ERR_INTERNAL;
}

void check_struct_version(uint32_t version, const char* what) {
    const uint32_t major = version >> 16, minor = version & 0xFFFF;
    if (major != LE_API_VERSION_MAJOR || minor > LE_API_VERSION_MINOR)
        fail(LE_ERR_ABI, std::string(what) + " comes from lazyllm_edge.h API version " + std::to_string(major) + "." +
                             std::to_string(minor) + ", but the library implements " +
                             std::to_string(LE_API_VERSION_MAJOR) + "." + std::to_string(LE_API_VERSION_MINOR) +
                             " (initialise it with its le_*_params_init and rebuild against the installed header)");
}

void write_text(const std::string& text, char* buf, size_t cap, size_t* len) {
    require(len, "len");
    *len = text.size();
    if (cap <= text.size())
        fail(LE_ERR_BUFFER_TOO_SMALL, "buffer of " + std::to_string(cap) + " bytes is too small: need " +
                                          std::to_string(text.size() + 1));
    require(buf, "buf");
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
}

}  // namespace lazyllm_edge::capi
