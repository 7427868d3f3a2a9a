// The CUDA backend as the runtime sees it: plain C++ (no CUDA headers), so session.cpp and the API
// compile the same with or without CUDA. A build without CUDA links cuda_stub.cpp instead, where every
// entry point but the queries reports the backend as unavailable.
#pragma once
#include <memory>
#include <string>

namespace lazyllm_edge {

struct ModelImpl;
struct SessionImpl;
struct CudaModel;    // the model's weights in device memory (one cudaMalloc)
struct CudaSession;  // a session's KV cache, aux cache and work buffers in device memory (one cudaMalloc)

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
// Allocates the session's device memory (after its host rope tables are built).
std::shared_ptr<CudaSession> cuda_create_session(const SessionImpl& s);
// Copies the host frontier (the source of truth between calls) to the device: after reset or a failed call.
void cuda_upload_frontier(SessionImpl& s);
// The CUDA forward pass; same contract and semantics as cpu_forward (runtime/session_state.h).
const float* cuda_forward(SessionImpl& s, int n_new, float* all_logits, const float* keep_per_layer);
// Reads one cached K/V row (kv_dim floats each) and one aux-cache row (d_model floats) back to the host.
void cuda_read_kv(const SessionImpl& s, int layer, int position, float* k, float* v);
void cuda_read_aux(const SessionImpl& s, int position, float* hidden);

}  // namespace lazyllm_edge
