// The CUDA backend as the runtime sees it: plain C++ (no CUDA headers), so session.cpp and the API
// compile the same with or without CUDA. A build without CUDA links cuda_stub.cpp instead, where every
// entry point but the queries reports the backend as unavailable.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

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

// Process-wide precision of the CUDA prefill GEMMs: false (default) fp16/bf16 inputs with fp32 accumulation,
// true near-fp32 3xTF32 (LAZYLLM_EDGE_CUDA_EXACT=1 at start-up). Decode's matrix-vector products are fp32.
void cuda_set_exact_gemm(bool on);
bool cuda_exact_gemm();

// Copies the weights to the device. Error(unsupported) for a weight type or shape the kernels lack.
std::shared_ptr<CudaModel> cuda_upload_model(const ModelImpl& m);
// The session backend on the device: KV cache, aux cache and work buffers in one cudaMalloc, the forward
// pass and the LazyLLM data movement as kernels. `frontier` (n_ctx) is the session's host frontier.
std::unique_ptr<SessionBackend> cuda_create_session(const ModelImpl& m, int n_ctx, int32_t* frontier);

}  // namespace lazyllm_edge
