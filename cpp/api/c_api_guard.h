// Exception boundary of the C API: runs a call, turns every exception into an le_status and stores the
// message in a thread-local for le_last_error(). Nothing thrown ever crosses into C.
#pragma once
#include <new>
#include <string>

#include "base/error.h"
#include "lazyllm_edge/lazyllm_edge.h"

namespace lazyllm_edge::capi {

void set_last_error(const std::string& message);
// Sets a message with static storage, allocating nothing (for calls that must not allocate, le_session_cancel).
void set_last_error_literal(const char* message);
void clear_last_error();
const char* last_error_message();
le_status status_of(ErrorCode code);

// Thrown inside the C API for conditions with no core ErrorCode (ABI, buffer sizes).
struct StatusError {
    le_status status;
    std::string message;
};

template <class F>
le_status guarded(F&& body) noexcept {
    try {
        body();
        clear_last_error();
        return LE_OK;
    } catch (const Error& e) {
        set_last_error(e.what());
        return status_of(e.code());
    } catch (const StatusError& e) {
        set_last_error(e.message);
        return e.status;
    } catch (const std::bad_alloc&) {
        set_last_error("out of memory");
        return LE_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(std::string("internal error: ") + e.what());
        return LE_ERR_INTERNAL;
    } catch (...) {
        set_last_error("internal error: unknown exception");
        return LE_ERR_INTERNAL;
    }
}

[[noreturn]] inline void fail(le_status status, const std::string& message) { throw StatusError{status, message}; }

// Rejects NULL handles/pointers with LE_ERR_INVALID_ARGUMENT naming the argument.
template <class T>
T* require(T* p, const char* what) {
    if (!p) fail(LE_ERR_INVALID_ARGUMENT, std::string(what) + " is NULL");
    return p;
}

// Checks a params struct's api_version against this library (same major, minor not newer).
void check_struct_version(uint32_t version, const char* what);

// Copies text into (buf, cap) as the header describes: *len = size; LE_ERR_BUFFER_TOO_SMALL when it does not fit.
void write_text(const std::string& text, char* buf, size_t cap, size_t* len);

}  // namespace lazyllm_edge::capi
