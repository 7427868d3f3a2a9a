// Matmul micro-benchmark: GFLOP/s (2*n_tok*n_in*n_out per call) and weight GB/s for typical shapes.
// Usage: matmul_bench [n_threads [numerics [all]]]   (defaults: 2 threads, fast numerics; numerics: fast | fp32 |
// llama.cpp; a third argument adds the other weight types at the prefill shape). The weights are packed as the
// model does at load (cpu/matmul_packed.h), so fast prefill runs the packed int8 GEMM; LAZYLLM_EDGE_ISA=avx2 etc.
// lowers the kernels' level. GOP/s counts a multiply-add as 2 operations, int8 or fp32.
// Build: g++ -O2 -std=c++17 -Icpp -Iinclude benchmarks/cpp/matmul_bench.cpp build/dev/liblazyllm_edge_core.a -lpthread
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/matmul_packed.h"
#include "gguf/ggml_types.h"
#include "base/error.h"
#include "base/thread_pool.h"

using namespace lazyllm_edge;

namespace {

// Random but well-formed blocks: random quant bits, fp16 scale fields set to small positive values.
std::vector<uint8_t> random_weights(GgmlType type, int64_t n_in, int64_t n_out, std::mt19937& rng) {
    const size_t row = ggml_row_size(type, n_in);
    std::vector<uint8_t> w(row * static_cast<size_t>(n_out));
    for (auto& b : w) b = static_cast<uint8_t>(rng());
    const GgmlTypeTraits& tr = ggml_traits(type);
    const uint16_t scale = fp32_to_fp16(0.01f);
    const size_t nblocks = w.size() / tr.type_size;
    for (size_t i = 0; i < nblocks; ++i) {
        uint8_t* blk = w.data() + i * tr.type_size;
        switch (type) {
            case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K:
                std::memcpy(blk + 2, &scale, 2);
                std::memcpy(blk, &scale, 2);
                break;
            case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: std::memcpy(blk, &scale, 2); break;
            case GgmlType::Q6_K: std::memcpy(blk + 208, &scale, 2); break;
            default: break;
        }
    }
    if (type == GgmlType::F32) {
        float* f = reinterpret_cast<float*>(w.data());
        for (size_t i = 0; i < w.size() / 4; ++i) f[i] = 0.01f;
    }
    return w;
}

void bench(ThreadPool& pool, Numerics numerics, GgmlType type, int64_t n_in, int64_t n_out, int64_t n_tok,
           bool quiet = false, int passes = 1) {
    std::mt19937 rng(42);
    std::vector<uint8_t> wdata = random_weights(type, n_in, n_out, rng);
    std::vector<float> x(static_cast<size_t>(n_tok * n_in)), y(static_cast<size_t>(n_tok * n_out));
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(rng);
    WeightMatrix w{type, n_in, n_out, wdata.data(), ggml_row_size(type, n_in)};
    std::vector<uint8_t> packed(packed_size(w) + 64);
    if (packed_size(w) > 0 && active_isa() >= CpuIsa::avx2) {
        uint8_t* p = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
        pack_weights(w, p);
        w.packed = p;
        w.packed_passes = passes;
    }

    const double flop = 2.0 * n_tok * n_in * n_out;
    // Warm up, then repeat for ~0.5 s and report the best of 5 batches.
    matmul(w, x.data(), n_tok, y.data(), numerics, pool);
    int reps = 1;
    for (;;) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) matmul(w, x.data(), n_tok, y.data(), numerics, pool);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s > 0.1) break;
        reps *= 2;
    }
    double best = 1e30;
    for (int b = 0; b < 5; ++b) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) matmul(w, x.data(), n_tok, y.data(), numerics, pool);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
        if (s < best) best = s;
    }
    if (quiet) return;
    std::printf("%-5s %5lld -> %-6lld n_tok %4lld%s : %8.3f ms  %7.2f GOP/s  %6.2f GB/s weights\n", ggml_type_name(type),
                static_cast<long long>(n_in), static_cast<long long>(n_out), static_cast<long long>(n_tok),
                w.packed && n_tok > 4 && numerics == Numerics::fast ? (passes == 2 ? " int8x2" : " int8  ") : "       ", best * 1e3,
                flop / best * 1e-9, wdata.size() / best * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
    const int n_threads = argc > 1 ? std::atoi(argv[1]) : 2;
    Numerics numerics = Numerics::fast;
    try {
        if (argc > 2) numerics = parse_numerics(argv[2]);
    } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    }
    ThreadPool pool(n_threads);
    std::printf("isa %s, %d threads, %s numerics\n", isa_name(active_isa()), n_threads,
                numerics_name(numerics));
    bench(pool, numerics, GgmlType::Q4_1, 576, 1536, 1, true);  // warm up threads and clocks
    for (int64_t n_tok : {1, 512}) {
        bench(pool, numerics, GgmlType::Q4_1, 576, 1536, n_tok);
        bench(pool, numerics, GgmlType::Q4_1, 1536, 576, n_tok);
        bench(pool, numerics, GgmlType::Q8_0, 576, 49152, n_tok);
    }
    // Llama-3.2-1B shapes (Q4_K_M: Q4_K q/k/gate/up, Q6_K down); fast numerics: the packed GEMM's 1 and 2 passes
    for (int passes : {1, 2}) {
        bench(pool, numerics, GgmlType::Q4_K, 2048, 8192, 512, false, passes);
        bench(pool, numerics, GgmlType::Q6_K, 8192, 2048, 512, false, passes);
        if (numerics != Numerics::fast) break;
    }
    // Llama-3.2-1B decode (one token): q/o, gate/up, down, and the tied Q6_K output projection (215 MB, far past
    // the caches, so its GB/s is the memory's stream)
    bench(pool, numerics, GgmlType::Q4_K, 2048, 2048, 1);
    bench(pool, numerics, GgmlType::Q4_K, 2048, 8192, 1);
    bench(pool, numerics, GgmlType::Q6_K, 8192, 2048, 1);
    bench(pool, numerics, GgmlType::Q6_K, 2048, 128256, 1);
    if (argc > 3) {  // extra types at the prefill shape
        for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K,
                           GgmlType::Q5_K, GgmlType::Q6_K})
            for (int64_t n_tok : {1, 512}) bench(pool, numerics, t, 1536, 576, n_tok);
    }
    return 0;
}
