// The CPU backend of a session (cpu_forward.cpp): its caches, buffers and forward pass.
#pragma once
#include <memory>

#include "lazy/backend.h"
#include "model/model.h"

namespace lazyllm_edge {

// Allocates the session's KV cache, aux cache and work buffers in one arena. `frontier` (n_ctx) is the
// session's host frontier, read and advanced by the steps; `numerics` the arithmetic of its kernels (every
// numerics value is available on the CPU). Error(out_of_memory) when they do not fit.
std::unique_ptr<SessionBackend> create_cpu_session(const ModelImpl& model, int n_ctx, int32_t* frontier, Numerics numerics);

}  // namespace lazyllm_edge
