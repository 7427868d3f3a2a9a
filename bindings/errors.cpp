// Maps lazyllm_edge::Error codes to Python exceptions.
#include <nanobind/nanobind.h>

#include "base/error.h"

namespace nb = nanobind;
using lazyllm_edge::Error;
using lazyllm_edge::ErrorCode;

namespace {
PyObject* model_load_error = nullptr;
PyObject* context_full_error = nullptr;
PyObject* unsupported_error = nullptr;
PyObject* state_file_error = nullptr;
}  // namespace

void register_errors(nb::module_& m) {
    model_load_error = PyErr_NewExceptionWithDoc("lazyllm_edge.ModelLoadError",
                                                 "The model file is missing, corrupt or unsupported.", PyExc_RuntimeError, nullptr);
    context_full_error = PyErr_NewExceptionWithDoc("lazyllm_edge.ContextFullError",
                                                   "More tokens than the session's n_ctx.", PyExc_ValueError, nullptr);
    unsupported_error = PyErr_NewExceptionWithDoc("lazyllm_edge.UnsupportedError",
                                                  "The requested feature is not available in this build.", PyExc_RuntimeError, nullptr);
    state_file_error = PyErr_NewExceptionWithDoc(
        "lazyllm_edge.StateFileError",
        "A saved session that cannot be read, written or loaded here (another model or shape, truncated, corrupted).",
        PyExc_RuntimeError, nullptr);
    m.attr("ModelLoadError") = nb::handle(model_load_error);
    m.attr("StateFileError") = nb::handle(state_file_error);
    m.attr("ContextFullError") = nb::handle(context_full_error);
    m.attr("UnsupportedError") = nb::handle(unsupported_error);
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const Error& e) {
            PyObject* type = PyExc_RuntimeError;
            switch (e.code()) {
                case ErrorCode::model_load: type = model_load_error; break;
                case ErrorCode::invalid_argument: type = PyExc_ValueError; break;
                case ErrorCode::context_full: type = context_full_error; break;
                case ErrorCode::out_of_memory: type = PyExc_MemoryError; break;
                case ErrorCode::cancelled: type = PyExc_KeyboardInterrupt; break;
                case ErrorCode::unsupported: type = unsupported_error; break;
                case ErrorCode::state_file: type = state_file_error; break;
                default: break;
            }
            PyErr_SetString(type, e.what());
        }
    });
}
