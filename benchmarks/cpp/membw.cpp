// Memory read bandwidth: n threads each stream-read their share of a buffer much larger than the last-level
// cache (sum of 64-bit words, vectorized by the compiler at the baseline ISA; two loads of 16 bytes per cycle are
// far above what DRAM delivers, so the figure is the memory's). The decode figures (benchmarks/README.md) put a
// model's weight bytes per token x tokens/s against this number.
// Usage: membw [n_threads [MiB [reps]]]   (defaults: 2 threads, 1024 MiB, 10 repetitions; best and median GB/s)
// Build: g++ -O3 -std=c++17 benchmarks/cpp/membw.cpp -o build/membw -lpthread
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

// Sum of n words, four independent accumulators so that the loop is bound by loads, not by the adds' latency.
uint64_t read_words(const uint64_t* p, size_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    for (; i < n; ++i) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

}  // namespace

int main(int argc, char** argv) {
    const int n_threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2;
    const size_t mib = argc > 2 ? static_cast<size_t>(std::atoll(argv[2])) : 1024;
    const int reps = argc > 3 ? std::max(1, std::atoi(argv[3])) : 10;
    const size_t words = mib * (1u << 20) / sizeof(uint64_t);
    uint64_t* buf = static_cast<uint64_t*>(std::aligned_alloc(64, words * sizeof(uint64_t)));
    if (!buf) {
        std::fprintf(stderr, "cannot allocate %zu MiB\n", mib);
        return 1;
    }
    // touch every page from the thread that will read it (first-touch placement), with non-zero data
    const size_t share = words / n_threads;
    auto fill = [&](int t) {
        for (size_t i = t * share; i < (t + 1 == n_threads ? words : (t + 1) * share); ++i) buf[i] = i * 2654435761u;
    };
    {
        std::vector<std::thread> th;
        for (int t = 0; t < n_threads; ++t) th.emplace_back(fill, t);
        for (auto& x : th) x.join();
    }
    std::vector<double> gbs;
    volatile uint64_t sink = 0;
    for (int r = 0; r < reps + 1; ++r) {  // the first pass warms up (page tables, clocks)
        std::vector<uint64_t> sums(n_threads);
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> th;
        for (int t = 0; t < n_threads; ++t)
            th.emplace_back([&, t] {
                const size_t b = t * share, e = t + 1 == n_threads ? words : (t + 1) * share;
                sums[t] = read_words(buf + b, e - b);
            });
        for (auto& x : th) x.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (uint64_t v : sums) sink = sink + v;
        if (r > 0) gbs.push_back(static_cast<double>(words * sizeof(uint64_t)) / s * 1e-9);
    }
    std::sort(gbs.begin(), gbs.end());
    std::printf("membw: %d threads, %zu MiB, %d reps: best %.2f GB/s, median %.2f GB/s\n", n_threads, mib, reps,
                gbs.back(), gbs[gbs.size() / 2]);
    std::free(buf);
    return 0;
}
