// Peak int8 multiply-add rate of this CPU's best int8 dot instruction, per core and for n threads: 12 independent
// accumulator chains of vpdpbusd (AVX-512 VNNI, 64 u8 x s8 products each) or vpmaddubsw + vpmaddwd + vpaddd
// (AVX2, 32 products per three instructions), register-resident, so the figure is the execution ports' limit.
// GOP/s counts a multiply-add as 2 operations, as matmul_bench does; the packed prefill GEMM's GOP/s (two passes:
// two products per logical multiply-add) set against this is its distance to the ISA's peak.
// Usage: int8_peak [n_threads]   (default 2). The level is picked at run time (CPUID + XGETBV via gcc's
// __builtin_cpu_supports), never from the build flags.
// Build: g++ -O2 -std=c++17 benchmarks/cpp/int8_peak.cpp -o build/int8_peak -lpthread
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kIters = 20'000'000;

// 12 chains x kIters vpdpbusd, 64 multiply-adds each; returns a value that depends on every result.
__attribute__((target("avx512f,avx512vnni"))) int64_t run_avx512vnni() {
    __m512i acc[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (int64_t it = 0; it < kIters; ++it) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]));
    }
    __m512i s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_epi32(s, acc[i]);
    return _mm512_reduce_add_epi32(s);
}

// 12 chains of vpmaddubsw + vpmaddwd + vpaddd (the AVX2 int8 dot), 32 multiply-adds each.
__attribute__((target("avx2"))) int64_t run_avx2() {
    __m256i acc[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_epi32(i);
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (int64_t it = 0; it < kIters; ++it) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]));
    }
    __m256i s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_epi32(s, acc[i]);
    alignas(32) int32_t l[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), s);
    return l[0];
}

}  // namespace

int main(int argc, char** argv) {
    const int n_threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2;
    __builtin_cpu_init();
    const bool vnni512 = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512f");
    if (!vnni512 && !__builtin_cpu_supports("avx2")) {
        std::printf("int8_peak: neither AVX-512 VNNI nor AVX2\n");
        return 1;
    }
    const double macs_per_iter = vnni512 ? 12.0 * 64 : 12.0 * 32;
    for (int nt : {1, n_threads}) {
        std::vector<std::thread> th;
        std::vector<int64_t> sink(nt);
        const auto t0 = std::chrono::steady_clock::now();
        for (int t = 0; t < nt; ++t) th.emplace_back([&, t] { sink[t] = vnni512 ? run_avx512vnni() : run_avx2(); });
        for (auto& x : th) x.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("int8_peak %s, %d thread%s: %.1f GOP/s (%.0f multiply-adds per ns per thread; sink %lld)\n",
                    vnni512 ? "avx512vnni vpdpbusd" : "avx2 vpmaddubsw+vpmaddwd", nt, nt > 1 ? "s" : "",
                    2.0 * macs_per_iter * kIters * nt / s * 1e-9, macs_per_iter * kIters / s * 1e-9,
                    static_cast<long long>(sink[0]));
    }
    return 0;
}
