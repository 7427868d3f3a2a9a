// The CUDA backend as the runtime sees it: plain C++ (no CUDA headers), so session.cpp and the API
// compile the same with or without CUDA. A build without CUDA links cuda_stub.cpp instead, where every
// entry point but the queries reports the backend as unavailable.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "lazyllm_edge/numerics.hpp"

namespace lazyllm_edge {

struct ModelImpl;
struct CudaModel;    // the model's weights in device memory (one cudaMalloc)
class SessionBackend;

// Whether this build contains the CUDA backend.
bool cuda_built();
// Usable CUDA devices (0 without the backend, a driver or a device); *why_none says why when 0.
int cuda_device_count(std::string* why_none = nullptr);
// Name of the device the backend uses ("" when none).
std::string cuda_device_name();

// Copies the weights to the device. Error(unsupported) for a weight type or shape the kernels lack.
std::shared_ptr<CudaModel> cuda_upload_model(const ModelImpl& m);
// The session backend on the device: KV cache, aux cache and work buffers in one cudaMalloc, the forward
// pass and the LazyLLM data movement as kernels. `frontier` (n_ctx) is the session's host frontier.
// `numerics`: fast (prefill GEMMs in fp16/bf16 with fp32 accumulation) or fp32 (prefill by the near-fp32
// 3xTF32 GEMM); decode's matrix-vector products are fp32 in both. llama_cpp: Error(unsupported).
std::unique_ptr<SessionBackend> cuda_create_session(const ModelImpl& m, int n_ctx, int32_t* frontier, Numerics numerics);

}  // namespace lazyllm_edge
