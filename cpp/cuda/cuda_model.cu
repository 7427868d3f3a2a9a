// Device discovery and the model's weights on the device.
#include <algorithm>
#include <cstring>

#include "cuda/cuda_check.h"
#include "cuda/cuda_state.cuh"
#include "model/model.h"

namespace lazyllm_edge {

bool cuda_built() { return true; }

int cuda_device_count(std::string* why_none) {
    int n = 0;
    const cudaError_t status = cudaGetDeviceCount(&n);
    if (status != cudaSuccess) {
        cudaGetLastError();  // clear it: no driver is not an error of later calls
        if (why_none)
            *why_none = status == cudaErrorInsufficientDriver
                            ? std::string("no NVIDIA driver found, or one older than this build's CUDA runtime")
                            : std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
        return 0;
    }
    if (n == 0 && why_none) *why_none = "no CUDA device found";
    return n;
}

std::string cuda_device_name() {
    if (cuda_device_count() == 0) return "";
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "";
    return prop.name;
}

namespace {

// Host regions to copy into the one device block: (source, bytes, where the device pointer goes).
struct Upload {
    const void* src;
    size_t bytes;
    const void** dst;
};

}  // namespace

std::shared_ptr<CudaModel> cuda_upload_model(const ModelImpl& m) {
    std::string why;
    if (cuda_device_count(&why) == 0) throw_error(ErrorCode::unsupported, "backend 'cuda': " + why);
    auto model = std::make_shared<CudaModel>();
    model->device = 0;
    cuda::check(cudaSetDevice(model->device), "cudaSetDevice");
    const ModelHparams& hp = m.hparams;
    std::vector<Upload> uploads;
    auto matrix = [&](const WeightMatrix& w, cuda::DeviceMatrix& out) {
        if (!cuda::matmul_supported(w.type, static_cast<int>(w.n_in)))
            throw_error(ErrorCode::unsupported, std::string("backend 'cuda' cannot multiply ") + ggml_type_name(w.type) +
                                                    " weights with " + std::to_string(w.n_in) + " inputs");
        out.type = w.type;
        out.n_in = static_cast<int>(w.n_in);
        out.n_out = static_cast<int>(w.n_out);
        out.row_bytes = w.row_bytes;
        if (&out != &model->token_embd && &out != &model->output)
            model->largest_layer_matrix = std::max<int64_t>(model->largest_layer_matrix, w.n_in * w.n_out);
        uploads.push_back({w.data, w.row_bytes * static_cast<size_t>(w.n_out), reinterpret_cast<const void**>(&out.data)});
    };
    auto vec = [&](const float* v, int n, const float*& out) {
        if (v) uploads.push_back({v, sizeof(float) * static_cast<size_t>(n), reinterpret_cast<const void**>(&out)});
    };
    matrix(m.token_embd, model->token_embd);
    const bool tied = m.output.data == m.token_embd.data;
    if (!tied) matrix(m.output, model->output);
    vec(m.output_norm, hp.d_model, model->output_norm);
    model->layers.resize(m.layers.size());
    for (size_t l = 0; l < m.layers.size(); ++l) {
        const LayerWeights& w = m.layers[l];
        CudaLayer& c = model->layers[l];
        vec(w.attn_norm, hp.d_model, c.attn_norm);
        matrix(w.wq, c.wq);
        matrix(w.wk, c.wk);
        matrix(w.wv, c.wv);
        matrix(w.wo, c.wo);
        vec(w.bq, hp.q_dim(), c.bq);
        vec(w.bk, hp.kv_dim(), c.bk);
        vec(w.bv, hp.kv_dim(), c.bv);
        vec(w.q_norm, hp.head_dim, c.q_norm);
        vec(w.k_norm, hp.head_dim, c.k_norm);
        vec(w.post_attn_norm, hp.d_model, c.post_attn_norm);
        vec(w.ffn_norm, hp.d_model, c.ffn_norm);
        matrix(w.gate, c.gate);
        matrix(w.up, c.up);
        matrix(w.down, c.down);
        vec(w.post_ffn_norm, hp.d_model, c.post_ffn_norm);
    }
    // one device block for every upload: a table of (device address, bytes), sized then carved
    BufferPlan plan(256);
    std::vector<const uint8_t*> device_address(uploads.size());
    for (size_t i = 0; i < uploads.size(); ++i) plan.add(device_address[i], static_cast<int64_t>(uploads[i].bytes));
    model->bytes = plan.bytes();
    cuda::check(cudaMalloc(&model->block, model->bytes), "allocating the model's weights on the device");
    plan.carve(model->block);
    for (size_t i = 0; i < uploads.size(); ++i) {
        const Upload& u = uploads[i];
        cuda::check(cudaMemcpy(const_cast<uint8_t*>(device_address[i]), u.src, u.bytes, cudaMemcpyHostToDevice),
                    "copying weights to the device");
        *u.dst = device_address[i];
    }
    if (tied) model->output = model->token_embd;
    // gemma's FFN activations are known to exceed fp16's range: its GEMMs round to bf16 instead
    model->bf16_gemm = hp.arch == Architecture::gemma3;
    return model;
}

}  // namespace lazyllm_edge
