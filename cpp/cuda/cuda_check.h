// CUDA status checks that turn failures into lazyllm_edge::Error (never an abort).
#pragma once
#include <cuda_runtime.h>
#include <string>

#include "base/error.h"

namespace lazyllm_edge {
namespace cuda {

inline void check(cudaError_t status, const char* what) {
    if (status == cudaSuccess) return;
    const ErrorCode code = status == cudaErrorMemoryAllocation ? ErrorCode::out_of_memory : ErrorCode::internal;
    throw_error(code, std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

// After a launch: reports a bad configuration at once (execution errors surface at the next sync).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline int blocks_for(int64_t n, int per_block) { return static_cast<int>((n + per_block - 1) / per_block); }

}  // namespace cuda
}  // namespace lazyllm_edge
