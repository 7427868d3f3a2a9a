// Attention micro-benchmark: the last n_q queries of a dense causal context of n_ctx positions (prefill
// micro-batch: n_q = 512; decode: n_q = 1), ms per call and GFMA/s (q.k and p.v multiply-adds).
// --layers L cycles the calls over L separate K/V caches (30 for SmolLM2: the caches of a whole forward pass
// come from DRAM, as in decode, instead of staying in L3). --numerics llama.cpp times llama.cpp's attention
// arithmetic (cpp/cpu/llama_order/) instead of the online softmax.
//
//   g++ -O3 -std=c++17 -pthread -Iinclude -Icpp benchmarks/cpp/attention_bench.cpp build/dev/liblazyllm_edge_core.a \
//       -o build/attention_bench
//   build/attention_bench 512 4096 2                 # prefill micro-batch at depth 4096, 2 threads
//   build/attention_bench 1 4096 2 --layers 30       # decode at depth 4096
//   build/attention_bench 512 4096 2 4 1 256         # gemma-3-270m shapes: 4 query heads, 1 kv head, hd 256
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "base/error.h"
#include "base/thread_pool.h"

using namespace lazyllm_edge;

int main(int argc, char** argv) {
    int layers = 1;
    Numerics numerics = Numerics::fast;
    std::vector<int> a;
    try {
        for (int i = 1; i < argc; ++i) {
            if (!std::strcmp(argv[i], "--layers") && i + 1 < argc) layers = std::atoi(argv[++i]);
            else if (!std::strcmp(argv[i], "--numerics") && i + 1 < argc) numerics = parse_numerics(argv[++i]);
            else a.push_back(std::atoi(argv[i]));
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 2;
    }
    if (a.size() < 3) {
        std::fprintf(stderr, "usage: attention_bench n_q n_ctx n_threads [n_head n_head_kv head_dim] [--layers L] "
                             "[--numerics fast|llama.cpp]\n");
        return 2;
    }
    const int n_q = a[0], n_ctx = a[1], n_threads = a[2];
    const int n_head = a.size() > 3 ? a[3] : 9, n_head_kv = a.size() > 4 ? a[4] : 3, hd = a.size() > 5 ? a[5] : 64;
    const int64_t kv_dim = static_cast<int64_t>(n_head_kv) * hd;

    // random fp16 caches, queries; query t sees positions [0, n_ctx - n_q + t]
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::vector<uint16_t> k(n_ctx * kv_dim * layers), v(k.size());
    for (auto& x : k) x = fp32_to_fp16(normal(rng));
    for (auto& x : v) x = fp32_to_fp16(normal(rng));
    std::vector<float> q(static_cast<size_t>(n_q) * n_head * hd), out(q.size());
    for (auto& x : q) x = normal(rng);
    std::vector<int32_t> positions(n_ctx), end(n_q);
    for (int i = 0; i < n_ctx; ++i) positions[i] = i;
    for (int t = 0; t < n_q; ++t) end[t] = n_ctx - n_q + t + 1;

    AttentionParams p;
    p.q = q.data();
    p.kv_positions = positions.data();
    p.attend_end = end.data();
    p.n_q = n_q;
    p.n_head = n_head;
    p.n_head_kv = n_head_kv;
    p.head_dim = hd;
    p.scale = 1.0f / 8;
    p.out = out.data();
    p.numerics = numerics;
    ThreadPool pool(n_threads);
    std::vector<float> scratch(attention_scratch_floats(n_ctx, n_head, n_head_kv, hd) * n_threads);

    // calls per timing: enough for ~tens of ms; best of 5
    double fma = 0;
    for (int t = 0; t < n_q; ++t) fma += static_cast<double>(end[t]) * n_head * hd * 2;
    const int calls = std::max(1, static_cast<int>(2e8 / fma));
    double best = 1e30;
    for (int rep = 0; rep < 6; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) {
            const int64_t layer = (static_cast<int64_t>(rep) * calls + i) % layers;
            p.k_cache = k.data() + layer * n_ctx * kv_dim;
            p.v_cache = v.data() + layer * n_ctx * kv_dim;
            attention(p, scratch.data(), n_ctx, pool);
        }
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
        if (rep > 0) best = std::min(best, dt);  // the first repetition warms up
    }
    std::printf("n_q=%d n_ctx=%d heads=%d/%d head_dim=%d threads=%d layers=%d numerics=%s: %.3f ms/call, %.1f GFMA/s\n",
                n_q, n_ctx, n_head, n_head_kv, hd, n_threads, layers, numerics_name(numerics), best * 1e3, fma / best * 1e-9);
    return 0;
}
