// The CUDA entry points of a build without CUDA (LAZYLLM_EDGE_CUDA=OFF or no nvcc found).
#include "base/error.h"
#include "cuda/cuda_backend.h"
#include "lazy/backend.h"

namespace lazyllm_edge {
namespace {
[[noreturn]] void unavailable() {
    throw_error(ErrorCode::unsupported, "backend 'cuda' is not available in this build (built without CUDA)");
}
}  // namespace

bool cuda_built() { return false; }
int cuda_device_count(std::string* why_none) {
    if (why_none) *why_none = "this build has no CUDA backend (built without nvcc)";
    return 0;
}
std::string cuda_device_name() { return ""; }
std::shared_ptr<CudaModel> cuda_upload_model(const ModelImpl&) { unavailable(); }
std::unique_ptr<SessionBackend> cuda_create_session(const ModelImpl&, int, int32_t*, Numerics) { unavailable(); }

}  // namespace lazyllm_edge
