// The CUDA kernels (cpp/cuda/kernels.cuh) against their CPU references on seeded random data, in the style of
// ggml's test-backend-ops: one line per case (name, max error, bound, PASS/FAIL). Exits 1 if any case fails,
// 0 otherwise, and 77 (reported by CTest as skipped) on a machine without a CUDA device.
//
// Errors are reported at the worst element, the one with the largest error / tolerance; each case states its
// tolerance per element. Exact cases report the number of mismatching entries against a bound of 0.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cuda/kernels.cuh"
#include "lazy/selection.h"

using namespace lazyllm_edge;
namespace cu = lazyllm_edge::cuda;

namespace {

int g_failures = 0;

// ---------------------------------------------------------------- helpers

#define CUDA_OK(call) cuda_ok((call), #call, __LINE__)
void cuda_ok(cudaError_t e, const char* what, int line) {
    if (e == cudaSuccess) return;
    std::printf("FAIL: line %d: %s: %s\n", line, what, cudaGetErrorString(e));
    std::exit(1);  // the context may be unusable after a kernel fault
}
// After each case: wait for the kernels and surface any execution error.
void sync() {
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaGetLastError());
}

// A device array of n T's (plain cudaMalloc / cudaMemcpy).
template <class T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) { CUDA_OK(cudaMalloc(&p, sizeof(T) * std::max<size_t>(n, 1))); }
    explicit Dev(const std::vector<T>& h) : Dev(h.size()) { put(h); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    ~Dev() { cudaFree(p); }
    void put(const std::vector<T>& h) {
        CUDA_OK(cudaMemcpy(p, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice));
    }
    std::vector<T> get() const {
        std::vector<T> h(n);
        CUDA_OK(cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost));
        return h;
    }
};
__half* as_half(const Dev<uint16_t>& d) { return reinterpret_cast<__half*>(d.p); }

// The worst element of a comparison by err / tolerance (NaN, or an error over a zero tolerance, is infinite).
struct Worst {
    double err = 0, tol = 0, ratio = -1;
    void add(double got, double ref, double tol_i) {
        const double e = std::fabs(got - ref);
        const double r = std::isnan(e) ? INFINITY : e == 0 ? 0.0 : tol_i > 0 ? e / tol_i : INFINITY;
        if (r > ratio) err = e, tol = tol_i, ratio = r;
    }
};
void report(const std::string& name, const Worst& w) {
    const bool ok = w.ratio <= 1.0;
    std::printf("%-56s max_err %10.3e  bound %10.3e  %s\n", name.c_str(), w.err, w.tol, ok ? "PASS" : "FAIL");
    g_failures += !ok;
}
void report_exact(const std::string& name, long mismatches) {
    std::printf("%-56s mismatches %6ld  bound %10d  %s\n", name.c_str(), mismatches, 0, mismatches ? "FAIL" : "PASS");
    g_failures += mismatches != 0;
}
template <class T>
long mismatches(const std::vector<T>& got, const std::vector<T>& want) {
    if (got.size() != want.size()) return static_cast<long>(std::max(got.size(), want.size()));
    long n = 0;
    for (size_t i = 0; i < got.size(); ++i) n += std::memcmp(&got[i], &want[i], sizeof(T)) != 0;
    return n;
}

std::vector<float> normal_vec(size_t n, std::mt19937& rng, float mean = 0.0f, float sd = 1.0f) {
    std::normal_distribution<float> dist(mean, sd);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}
std::vector<uint16_t> to_fp16(const std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = fp32_to_fp16(v[i]);
    return h;
}
// Spacing of fp16 values around |x| (subnormal spacing below 2^-14).
double ulp16(double x) {
    x = std::fabs(x);
    if (x < 0x1p-14) return 0x1p-24;
    int e;
    std::frexp(x, &e);
    return std::ldexp(1.0, e - 11);
}
// A sorted random subset of [0, n) keeping each position with probability p, plus the positions in `must`.
std::vector<int32_t> random_subset(int n, double p, const std::vector<int32_t>& must, std::mt19937& rng) {
    std::bernoulli_distribution keep(p);
    std::vector<char> in(n);
    for (int i = 0; i < n; ++i) in[i] = keep(rng);
    for (int32_t m : must) in[m] = 1;
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i)
        if (in[i]) out.push_back(i);
    return out;
}
// k distinct sorted positions of [0, n)
std::vector<int32_t> random_positions(int n, int k, std::mt19937& rng) {
    std::vector<int32_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    all.resize(k);
    std::sort(all.begin(), all.end());
    return all;
}

// ---------------------------------------------------------------- matmul

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                           GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// n_rows rows of n_in weights of `type`: plain floats from N(0, 1); quantized blocks as random bytes whose
// fp16 scale fields (d, and m / dmin where the type has one) are overwritten by positive values.
std::vector<uint8_t> random_rows(GgmlType type, int n_rows, int n_in, std::mt19937& rng) {
    const size_t bytes = ggml_row_size(type, n_in) * n_rows;
    std::vector<uint8_t> data(bytes);
    const int64_t count = static_cast<int64_t>(n_rows) * n_in;
    if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
        const std::vector<float> v = normal_vec(count, rng);
        for (int64_t i = 0; i < count; ++i) {
            uint32_t bits;
            std::memcpy(&bits, &v[i], 4);
            const uint16_t h = type == GgmlType::F16 ? fp32_to_fp16(v[i]) : static_cast<uint16_t>(bits >> 16);
            if (type == GgmlType::F32) std::memcpy(&data[4 * i], &v[i], 4);
            else std::memcpy(&data[2 * i], &h, 2);
        }
        return data;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& b : data) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> scale(0.005f, 0.05f);
    auto put = [&](uint8_t* p, float v) {
        const uint16_t h = fp32_to_fp16(v);
        std::memcpy(p, &h, 2);
    };
    const size_t block = ggml_traits(type).type_size;
    for (size_t off = 0; off < bytes; off += block) {
        uint8_t* b = &data[off];
        switch (type) {
            case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: put(b, scale(rng)); break;
            case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K:
                put(b, scale(rng));
                put(b + 2, scale(rng));
                break;
            case GgmlType::Q6_K: put(b + 208, scale(rng)); break;
            default: break;
        }
    }
    return data;
}

std::vector<float> dequantize(GgmlType type, const std::vector<uint8_t>& rows, int n_rows, int n_in) {
    std::vector<float> w(static_cast<size_t>(n_rows) * n_in);
    const size_t rb = ggml_row_size(type, n_in);
    for (int r = 0; r < n_rows; ++r)
        dequantize_row_reference(type, &rows[r * rb], &w[static_cast<size_t>(r) * n_in], n_in);
    return w;
}

// ref (n_tok, n_out) = x . w^T in double and mag = sum |w * x| per output (the error bounds' scale).
void reference_products(const std::vector<float>& w, const std::vector<float>& x, int n_tok, int n_out, int n_in,
                        std::vector<double>& ref, std::vector<double>& mag) {
    ref.assign(static_cast<size_t>(n_tok) * n_out, 0.0);
    mag.assign(ref.size(), 0.0);
    for (int t = 0; t < n_tok; ++t)
        for (int o = 0; o < n_out; ++o) {
            double sum = 0, m = 0;
            const float* wr = &w[static_cast<size_t>(o) * n_in];
            const float* xr = &x[static_cast<size_t>(t) * n_in];
            for (int k = 0; k < n_in; ++k) {
                const double p = static_cast<double>(wr[k]) * xr[k];
                sum += p;
                m += std::fabs(p);
            }
            ref[static_cast<size_t>(t) * n_out + o] = sum;
            mag[static_cast<size_t>(t) * n_out + o] = m;
        }
}

cu::DeviceMatrix device_matrix(GgmlType type, int n_out, int n_in, const uint8_t* data) {
    cu::DeviceMatrix dm;
    dm.type = type;
    dm.n_in = n_in;
    dm.n_out = n_out;
    dm.row_bytes = ggml_row_size(type, n_in);
    dm.data = data;
    return dm;
}

// matmul (matvec path for n_tok <= 8, tensor-core GEMM above) and matmul_matvec against dequantize_row_reference
// and a double dot; tolerance per output a * sum|w*x| + b: matvec a = 1e-5, b = 1e-6; GEMM a = kGemmRel, b = 1e-5.
// The two paths must also agree within the GEMM bound. n_out = 100 leaves a partial 64-row tile.
// The GEMM is 3xTF32 (kernels.cuh: near-fp32 accuracy): an H200 measured <= 3.5e-6 * sum|w*x| per output.
// A plain TF32 product (10-bit mantissa inputs), bounded by 2e-3, errs by ~1e-5..1e-4 * sum|w*x| on this data
// (estimated), so this bound also catches a loss of the 3xTF32 split.
constexpr double kGemmRel = 2e-5;
void test_matmul() {
    const int n_in = 512, n_out = 100, max_tok = 130;
    std::mt19937 rng(1234);
    const std::vector<float> x = normal_vec(static_cast<size_t>(max_tok) * n_in, rng);
    const Dev<float> dx(x);
    Dev<float> dy(static_cast<size_t>(max_tok) * n_out);
    for (GgmlType type : kTypes) {
        const std::vector<uint8_t> rows = random_rows(type, n_out, n_in, rng);
        const std::vector<float> w = dequantize(type, rows, n_out, n_in);
        std::vector<double> ref, mag;
        reference_products(w, x, max_tok, n_out, n_in, ref, mag);
        const Dev<uint8_t> dw(rows);
        const cu::DeviceMatrix dm = device_matrix(type, n_out, n_in, dw.p);
        const std::string tname = ggml_type_name(type);
        // runs one path; rows past n_tok must keep their NaN fill
        auto run = [&](bool matvec_only, int n_tok, double a, double b, const std::string& name) {
            CUDA_OK(cudaMemset(dy.p, 0xFF, sizeof(float) * dy.n));
            if (matvec_only) cu::matmul_matvec(dm, dx.p, n_tok, dy.p, 0);
            else cu::matmul(dm, dx.p, n_tok, dy.p, 0);
            sync();
            const std::vector<float> y = dy.get();
            Worst wst;
            for (size_t i = 0; i < static_cast<size_t>(n_tok) * n_out; ++i) wst.add(y[i], ref[i], a * mag[i] + b);
            for (size_t i = static_cast<size_t>(n_tok) * n_out; i < y.size(); ++i)
                if (!std::isnan(y[i])) wst.add(INFINITY, 0, 0);  // written past the last token
            report(name, wst);
            return y;
        };
        for (int n_tok : {1, 3, 8, 37, 130}) {
            const bool gemm = n_tok > cu::kMatvecMaxTokens;
            const std::vector<float> yg = run(false, n_tok, gemm ? kGemmRel : 1e-5, gemm ? 1e-5 : 1e-6,
                                              "matmul " + tname + " n_tok=" + std::to_string(n_tok) +
                                                  (gemm ? " (gemm)" : " (matvec)"));
            if (!gemm) continue;
            const std::vector<float> yv =
                run(true, n_tok, 1e-5, 1e-6, "matmul_matvec " + tname + " n_tok=" + std::to_string(n_tok));
            Worst agree;  // gemm vs matvec on the same inputs
            for (size_t i = 0; i < static_cast<size_t>(n_tok) * n_out; ++i)
                agree.add(yg[i], yv[i], kGemmRel * mag[i] + 1e-5);
            report("matmul gemm == matvec " + tname + " n_tok=" + std::to_string(n_tok), agree);
        }
    }
}

// The half-precision prefill GEMM (gemm_half.cu: weights dequantized once into fp16 or bf16 scratch, then
// 128x128 tensor-core tiles) for every type, n_out 200 (a partial tile), against the double-precision
// reference. Bounds from the input rounding: fp16 2^-11 per operand -> 2e-3 * sum|w*x|; bf16 2^-8 ->
// 1.6e-2 * sum|w*x|. Then matmul() with the scratch: the half path with fast numerics, the 3xTF32 one with
// fp32 numerics (its result equals matmul() without scratch bit for bit).
void test_gemm_half() {
    const int n_in = 512, n_out = 200, max_tok = 300;
    std::mt19937 rng(4321);
    const std::vector<float> x = normal_vec(static_cast<size_t>(max_tok) * n_in, rng);
    const Dev<float> dx(x);
    Dev<float> dy(static_cast<size_t>(max_tok) * n_out), dy2(static_cast<size_t>(max_tok) * n_out);
    Dev<uint16_t> scratch(static_cast<size_t>(n_out) * n_in);
    for (GgmlType type : kTypes) {
        const std::vector<uint8_t> rows = random_rows(type, n_out, n_in, rng);
        const std::vector<float> w = dequantize(type, rows, n_out, n_in);
        std::vector<double> ref, mag;
        reference_products(w, x, max_tok, n_out, n_in, ref, mag);
        const Dev<uint8_t> dw(rows);
        const cu::DeviceMatrix dm = device_matrix(type, n_out, n_in, dw.p);
        const std::string tname = ggml_type_name(type);
        for (bool bf16 : {false, true}) {
            cu::GemmScratch gs;
            gs.data = scratch.p;
            gs.elems = static_cast<int64_t>(n_out) * n_in;
            gs.bf16 = bf16;
            for (int n_tok : {37, 130, 300}) {
                CUDA_OK(cudaMemset(dy.p, 0xFF, sizeof(float) * dy.n));
                cu::gemm_half(dm, dx.p, n_tok, dy.p, gs, 0);
                sync();
                const std::vector<float> y = dy.get();
                Worst wst;
                const double rel = bf16 ? 1.6e-2 : 2e-3;
                for (size_t i = 0; i < static_cast<size_t>(n_tok) * n_out; ++i) wst.add(y[i], ref[i], rel * mag[i] + 1e-5);
                for (size_t i = static_cast<size_t>(n_tok) * n_out; i < y.size(); ++i)
                    if (!std::isnan(y[i])) wst.add(INFINITY, 0, 0);  // written past the last token
                report("gemm_half " + std::string(bf16 ? "bf16 " : "fp16 ") + tname + " n_tok=" + std::to_string(n_tok), wst);
            }
        }
        // dispatch: with scratch, matmul() takes the half path with fast numerics, the 3xTF32 one with fp32
        cu::GemmScratch gs;
        gs.data = scratch.p;
        gs.elems = static_cast<int64_t>(n_out) * n_in;
        const int n_tok = 130;
        cu::matmul(dm, dx.p, n_tok, dy.p, gs, Numerics::fast, 0);
        cu::gemm_half(dm, dx.p, n_tok, dy2.p, gs, 0);
        sync();
        Worst same_half;
        {
            const std::vector<float> a = dy.get(), b = dy2.get();
            for (size_t i = 0; i < static_cast<size_t>(n_tok) * n_out; ++i) same_half.add(a[i], b[i], 0);
        }
        report("matmul(scratch) == gemm_half " + tname, same_half);
        cu::matmul(dm, dx.p, n_tok, dy.p, gs, Numerics::fp32, 0);
        cu::matmul(dm, dx.p, n_tok, dy2.p, 0);
        sync();
        Worst same_exact;
        {
            const std::vector<float> a = dy.get(), b = dy2.get();
            for (size_t i = 0; i < static_cast<size_t>(n_tok) * n_out; ++i) same_exact.add(a[i], b[i], 0);
        }
        report("matmul(scratch, fp32) == 3xTF32 " + tname, same_exact);
    }
}

// ---------------------------------------------------------------- embeddings, norms, residuals

// embed_rows (Q4_1 and Q8_0 tables) vs dequantize_row_reference * scale; tolerance 1e-6 * |ref|.
void test_embed_rows() {
    const int d = 576, n_vocab = 50;
    std::mt19937 rng(77);
    std::vector<int32_t> ids = {49, 0, 0, 17};
    std::uniform_int_distribution<int> id(0, n_vocab - 1);
    for (int i = 0; i < 16; ++i) ids.push_back(id(rng));
    const Dev<int32_t> dids(ids);
    Dev<float> dh(ids.size() * d);
    for (GgmlType type : {GgmlType::Q4_1, GgmlType::Q8_0}) {
        const std::vector<uint8_t> rows = random_rows(type, n_vocab, d, rng);
        const std::vector<float> table = dequantize(type, rows, n_vocab, d);
        const Dev<uint8_t> dt(rows);
        cu::DeviceMatrix dm{type, d, n_vocab, ggml_row_size(type, d), dt.p};
        for (float scale : {1.0f, 2.5f}) {
            cu::embed_rows(dm, dids.p, static_cast<int>(ids.size()), scale, dh.p, 0);
            sync();
            const std::vector<float> h = dh.get();
            Worst w;
            for (size_t i = 0; i < ids.size(); ++i)
                for (int c = 0; c < d; ++c) {
                    const float ref = table[static_cast<size_t>(ids[i]) * d + c] * scale;
                    w.add(h[i * d + c], ref, 1e-6 * std::fabs(ref));
                }
            char name[96];
            std::snprintf(name, sizeof name, "embed_rows %s scale=%.1f", ggml_type_name(type), scale);
            report(name, w);
        }
    }
}

// rms_norm (w null, w set, in place) vs the CPU rms_norm; tolerance 1e-5 * |ref|.
void test_rms_norm() {
    const int n = 7, d = 576;
    const float eps = 1e-6f;
    std::mt19937 rng(5);
    const std::vector<float> x = normal_vec(n * d, rng, 0.0f, 3.0f), w = normal_vec(d, rng, 1.0f, 0.3f);
    const Dev<float> dw(w);
    for (int form = 0; form < 3; ++form) {
        const float* wp = form == 0 ? nullptr : w.data();
        Dev<float> dx(x), dy(n * d);
        float* out = form == 2 ? dx.p : dy.p;  // form 2: y aliases x
        cu::rms_norm(dx.p, form == 0 ? nullptr : dw.p, out, n, d, eps, 0);
        sync();
        const std::vector<float> y = form == 2 ? dx.get() : dy.get();
        std::vector<float> ref(n * d);
        for (int r = 0; r < n; ++r) rms_norm(&x[r * d], wp, &ref[r * d], d, eps);
        Worst wst;
        for (int i = 0; i < n * d; ++i) wst.add(y[i], ref[i], 1e-5 * std::fabs(ref[i]));
        report(form == 0 ? "rms_norm w=null" : form == 1 ? "rms_norm w=set" : "rms_norm w=set in place", wst);
    }
}

// add_residual in its four forms vs the host computation with the CPU rms_norm. Tolerance on y:
// 1e-5 * (|y_old| + |x'|) (x' the added row, normed when w is set); on norm_out the same, times the norm's
// scale and |norm_w|. x must be left unchanged.
void test_add_residual() {
    const int n = 5, d = 576;
    const float eps = 1e-6f;
    std::mt19937 rng(6);
    const std::vector<float> y0 = normal_vec(n * d, rng), x = normal_vec(n * d, rng, 0.0f, 2.0f);
    const std::vector<float> w = normal_vec(d, rng, 1.0f, 0.3f), nw = normal_vec(d, rng, 1.0f, 0.3f);
    const Dev<float> dw(w), dnw(nw);
    for (int form = 0; form < 4; ++form) {
        const bool has_w = form & 1, has_nw = form & 2;
        Dev<float> dy(y0), dx(x), dn(n * d);
        cu::add_residual(dy.p, dx.p, has_w ? dw.p : nullptr, has_nw ? dnw.p : nullptr, has_nw ? dn.p : nullptr, n, d,
                         eps, 0);
        sync();
        const std::vector<float> y = dy.get(), xa = dx.get(), no = dn.get();
        Worst wy, wn;
        for (int r = 0; r < n; ++r) {
            std::vector<float> xs(d), yr(d), nr(d);
            if (has_w) rms_norm(&x[r * d], w.data(), xs.data(), d, eps);
            else std::copy(&x[r * d], &x[r * d] + d, xs.begin());
            for (int i = 0; i < d; ++i) yr[i] = y0[r * d + i] + xs[i];
            double ss = 0;
            for (int i = 0; i < d; ++i) ss += static_cast<double>(yr[i]) * yr[i];
            const double ns = 1.0 / std::sqrt(ss / d + eps);
            rms_norm(yr.data(), nw.data(), nr.data(), d, eps);
            for (int i = 0; i < d; ++i) {
                const double mag = std::fabs(y0[r * d + i]) + std::fabs(xs[i]);
                wy.add(y[r * d + i], yr[i], 1e-5 * mag);
                if (has_nw) wn.add(no[r * d + i], nr[i], 1e-5 * mag * ns * std::fabs(nw[i]));
            }
        }
        const std::string name = std::string("add_residual w=") + (has_w ? "set" : "null") +
                                 " norm_w=" + (has_nw ? "set" : "null");
        if (mismatches(xa, x)) wy.add(INFINITY, 0, 0);  // x was modified
        report(name + " y", wy);
        if (has_nw) report(name + " norm_out", wn);
    }
}

// ---------------------------------------------------------------- q/k/v finish

// qkv_finish against the CPU sequence of cpu_forward.cpp (bias add, per-head rms_norm, apply_rope, q scale,
// fp32_to_fp16 into the cache). RoPE may cancel, so errors are relative to the magnitude of each rotated
// pair (which RoPE preserves): q and the window's queries 1e-5 * |pair|; the K cache 1 fp16 ulp + 1e-5 * |pair|,
// the V cache 1 fp16 ulp; cache rows at other positions must be unchanged; window_has marks exactly the rows
// at positions >= window_begin.
void test_qkv_finish() {
    const int n = 5, n_head = 4, n_head_kv = 2, hd = 64, rope_dim = 64, n_ctx = 32, window_begin = 7, n_slots = 14;
    const int qd = n_head * hd, kvd = n_head_kv * hd;
    const float eps = 1e-6f, q_scale = 0.125f;
    const std::vector<int32_t> pos = {0, 3, 7, 8, 20};
    std::vector<float> rope(static_cast<size_t>(n_ctx) * rope_dim);
    build_rope_table(rope.data(), n_ctx, rope_dim, 10000.0f, 1.0f, nullptr);
    std::mt19937 rng(42);
    const std::vector<float> q0 = normal_vec(n * qd, rng), k0 = normal_vec(n * kvd, rng), v0 = normal_vec(n * kvd, rng);
    const std::vector<float> bq = normal_vec(qd, rng, 0, 0.5f), bk = normal_vec(kvd, rng, 0, 0.5f),
                             bv = normal_vec(kvd, rng, 0, 0.5f);
    const std::vector<float> qn = normal_vec(hd, rng, 1, 0.3f), kn = normal_vec(hd, rng, 1, 0.3f);
    const std::vector<uint16_t> cache0 = to_fp16(normal_vec(static_cast<size_t>(n_ctx) * kvd, rng));
    const Dev<int32_t> dpos(pos);
    const Dev<float> drope(rope), dbq(bq), dbk(bk), dbv(bv), dqn(qn), dkn(kn);
    for (int c = 0; c < 8; ++c) {
        const bool neox = c & 1, bias = c & 2, norm = c & 4;
        Dev<float> dq(q0), dk(k0), dv(v0), dwin(static_cast<size_t>(n_slots) * qd);
        Dev<int32_t> dhas(std::vector<int32_t>(n_slots, 0));
        Dev<uint16_t> dkc(cache0), dvc(cache0);
        CUDA_OK(cudaMemset(dwin.p, 0xFF, sizeof(float) * n_slots * qd));
        cu::QkvParams p;
        p.q = dq.p, p.k = dk.p, p.v = dv.p, p.pos = dpos.p;
        p.bq = bias ? dbq.p : nullptr, p.bk = bias ? dbk.p : nullptr, p.bv = bias ? dbv.p : nullptr;
        p.q_norm = norm ? dqn.p : nullptr, p.k_norm = norm ? dkn.p : nullptr;
        p.rope = drope.p, p.k_cache = as_half(dkc), p.v_cache = as_half(dvc), p.window_q = dwin.p, p.window_has = dhas.p;
        p.window_begin = window_begin;
        p.n = n, p.n_head = n_head, p.n_head_kv = n_head_kv, p.head_dim = hd, p.rope_dim = rope_dim;
        p.neox = neox, p.q_scale = q_scale, p.eps = eps;
        cu::qkv_finish(p, 0);
        sync();
        // the CPU sequence
        std::vector<float> q = q0, k = k0, v = v0;
        std::vector<uint16_t> kc = cache0, vc = cache0;
        for (int r = 0; r < n; ++r) {
            float *qr = &q[r * qd], *kr = &k[r * kvd], *vr = &v[r * kvd];
            if (bias) {
                add_in_place(qr, bq.data(), qd);
                add_in_place(kr, bk.data(), kvd);
                add_in_place(vr, bv.data(), kvd);
            }
            if (norm) {
                for (int h = 0; h < n_head; ++h) rms_norm(qr + h * hd, qn.data(), qr + h * hd, hd, eps);
                for (int h = 0; h < n_head_kv; ++h) rms_norm(kr + h * hd, kn.data(), kr + h * hd, hd, eps);
            }
            apply_rope(qr, 1, n_head, hd, rope_dim, &pos[r], rope.data(), neox);
            apply_rope(kr, 1, n_head_kv, hd, rope_dim, &pos[r], rope.data(), neox);
            for (int i = 0; i < qd; ++i) qr[i] *= q_scale;
            fp32_to_fp16_row(kr, &kc[pos[r] * kvd], kvd);
            fp32_to_fp16_row(vr, &vc[pos[r] * kvd], kvd);
        }
        // magnitude of the rotated pair element i (of a row of heads) belongs to
        auto pair_mag = [&](const float* row, int i) {
            const int h0 = i / hd * hd, j = i % hd, half = rope_dim / 2;
            const int partner = neox ? (j < half ? j + half : j - half) : (j ^ 1);
            return std::hypot(static_cast<double>(row[i]), static_cast<double>(row[h0 + partner]));
        };
        const std::vector<float> gq = dq.get(), gwin = dwin.get();
        const std::vector<int32_t> ghas = dhas.get();
        const std::vector<uint16_t> gkc = dkc.get(), gvc = dvc.get();
        Worst wq, wl, wk, wv;
        for (int r = 0; r < n; ++r)
            for (int i = 0; i < qd; ++i) wq.add(gq[r * qd + i], q[r * qd + i], 1e-5 * pair_mag(&q[r * qd], i));
        for (int r = 0; r < n; ++r) {  // the window's rows, and nothing else marked
            if (pos[r] < window_begin) continue;
            const int slot = pos[r] - window_begin;
            for (int i = 0; i < qd; ++i) wl.add(gwin[slot * qd + i], q[r * qd + i], 1e-5 * pair_mag(&q[r * qd], i));
        }
        for (int slot = 0; slot < n_slots; ++slot) {
            const bool want = std::find(pos.begin(), pos.end(), window_begin + slot) != pos.end();
            wl.add(ghas[slot], want ? 1.0 : 0.0, 0.0);
        }
        std::vector<const float*> k_at(n_ctx, nullptr);  // the fp32 K row written at each position
        for (int r = 0; r < n; ++r) k_at[pos[r]] = &k[r * kvd];
        for (int pp = 0; pp < n_ctx; ++pp)
            for (int i = 0; i < kvd; ++i) {
                const size_t e = static_cast<size_t>(pp) * kvd + i;
                const float gk = fp16_to_fp32(gkc[e]), rk = fp16_to_fp32(kc[e]);
                const float gv = fp16_to_fp32(gvc[e]), rv = fp16_to_fp32(vc[e]);
                const bool written = k_at[pp] != nullptr;  // other rows: exact
                const double ulp_k = ulp16(std::max(std::fabs(gk), std::fabs(rk)));
                const double ulp_v = ulp16(std::max(std::fabs(gv), std::fabs(rv)));
                wk.add(gk, rk, written ? ulp_k + 1e-5 * pair_mag(k_at[pp], i) : 0);
                wv.add(gv, rv, written ? ulp_v : 0);
            }
        const std::string name = std::string("qkv_finish ") + (neox ? "neox" : "normal") + (bias ? " bias" : "") +
                                 (norm ? " qk_norm" : "");
        report(name + " q", wq);
        report(name + " window_q", wl);
        report(name + " k_cache", wk);
        report(name + " v_cache", wv);
    }
}

// ---------------------------------------------------------------- activations

// gated_activation: SiLU vs the CPU swiglu (tolerance 1e-5 * |ref|, plus 1e-30 where the CPU's exp flushes
// to inf a little earlier); GELU vs the CPU geglu, which reads an fp16 table: (2e-3 * |gelu| + 1e-4) * |up|.
// softcap vs cap * tanh(y / cap) in double: 1e-6 * |ref| + 1e-6.
void test_activations() {
    const int n = 10007;
    std::mt19937 rng(9);
    std::vector<float> gate = normal_vec(n, rng, 0.0f, 3.0f);
    const float edges[] = {-100, -89, -88.5f, -50, -12, -10, -9.99f, -0.0f, 0, 9.99f, 10, 12, 50, 100};
    std::copy(std::begin(edges), std::end(edges), gate.begin());
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> up(n);
    for (float& x : up) x = u(rng);
    const Dev<float> dup(up);
    for (bool gelu : {false, true}) {
        Dev<float> dg(gate);
        cu::gated_activation(dg.p, dup.p, n, gelu, 0);
        sync();
        const std::vector<float> got = dg.get();
        std::vector<float> ref = gate;
        if (gelu) geglu(ref.data(), up.data(), n);
        else swiglu(ref.data(), up.data(), n);
        Worst w;
        for (int i = 0; i < n; ++i) {
            const double tol =
                gelu ? 2e-3 * std::fabs(ref[i]) + 1e-4 * std::fabs(up[i]) : 1e-5 * std::fabs(ref[i]) + 1e-30;
            w.add(got[i], ref[i], tol);
        }
        report(gelu ? "gated_activation gelu vs geglu" : "gated_activation silu vs swiglu", w);
    }
    const float cap = 30.0f;
    std::vector<float> y = normal_vec(n, rng, 0.0f, 40.0f);
    y[0] = 1e4f, y[1] = -1e4f, y[2] = 0.0f, y[3] = 1e-20f;
    Dev<float> dy(y);
    cu::softcap(dy.p, n, cap, 0);
    sync();
    const std::vector<float> got = dy.get();
    Worst w;
    for (int i = 0; i < n; ++i) {
        const double ref = cap * std::tanh(static_cast<double>(y[i]) / cap);
        w.add(got[i], ref, 1e-6 * std::fabs(ref) + 1e-6);
    }
    report("softcap cap=30", w);
}

// ---------------------------------------------------------------- attention

// A random fp16 K/V cache of n_ctx positions for n_head_kv = 2 heads of head_dim hd.
struct KvCache {
    int hd, n_ctx;
    std::vector<uint16_t> k, v;
    Dev<uint16_t> dk, dv;
    KvCache(int head_dim, int ctx, std::mt19937& rng)
        : hd(head_dim), n_ctx(ctx), k(to_fp16(normal_vec(static_cast<size_t>(ctx) * 2 * head_dim, rng))),
          v(to_fp16(normal_vec(static_cast<size_t>(ctx) * 2 * head_dim, rng))), dk(k), dv(v) {}
};

// attention (n_head 6, n_head_kv 2) vs attention_reference with attend_begin/attend_end as cpu_forward.cpp
// computes them. n_q consecutive queries at the end of the context; the active set keeps ~60% of the
// positions and every query position. Prefill runs both the tensor-core kernel (where head_dim allows) and the
// per-(query, head) kernel, which must agree. Tolerance 2e-4 abs (outputs are O(1)).
void attention_case(const KvCache& c, const std::string& name, int n_q, int window, std::mt19937& rng) {
    const int n_head = 6, n_head_kv = 2, hd = c.hd, n_ctx = c.n_ctx;
    std::vector<int32_t> q_pos(n_q);
    for (int i = 0; i < n_q; ++i) q_pos[i] = n_ctx - n_q + i;
    const std::vector<int32_t> active = random_subset(n_ctx, 0.6, q_pos, rng);
    const int n_kv = static_cast<int>(active.size());
    const std::vector<float> q = normal_vec(static_cast<size_t>(n_q) * n_head * hd, rng, 0.0f, 2.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // CPU reference
    std::vector<int32_t> begin(n_q), end(n_q);
    for (int r = 0; r < n_q; ++r) {
        end[r] = static_cast<int32_t>(std::upper_bound(active.begin(), active.end(), q_pos[r]) - active.begin());
        const auto first = std::lower_bound(active.begin(), active.end(), q_pos[r] - window + 1);
        begin[r] = window > 0 ? static_cast<int32_t>(first - active.begin()) : 0;
    }
    std::vector<float> ref(q.size()), scratch(attention_scratch_floats(n_ctx, n_head, n_head_kv, hd));
    AttentionParams ap;
    ap.q = q.data(), ap.k_cache = c.k.data(), ap.v_cache = c.v.data(), ap.kv_positions = active.data();
    ap.attend_begin = begin.data(), ap.attend_end = end.data();
    ap.n_q = n_q, ap.n_head = n_head, ap.n_head_kv = n_head_kv, ap.head_dim = hd, ap.scale = scale, ap.out = ref.data();
    attention_reference(ap, scratch.data());
    // GPU: tensor cores on / off, key splits (partial scratch) on / off
    const Dev<float> dq(q);
    const Dev<int32_t> dpos(q_pos), dact(active);
    Dev<float> dout(q.size()), dpart(cu::attention_partial_floats(hd));
    // mma_kernel: 2 = mma.sync (FlashAttention-2 style), 1 = WMMA with shared-memory accumulators
    auto run = [&](bool tensor_cores, bool partial, int mma_kernel) {
        CUDA_OK(cudaMemset(dout.p, 0xFF, sizeof(float) * dout.n));
        cu::AttentionArgs a;
        a.q = dq.p, a.q_pos = dpos.p, a.k_cache = as_half(c.dk), a.v_cache = as_half(c.dv), a.kv_positions = dact.p;
        a.n_kv = n_kv, a.n_q = n_q, a.n_head = n_head, a.n_head_kv = n_head_kv, a.head_dim = hd, a.window = window;
        a.scale = scale, a.out = dout.p, a.partial = partial ? dpart.p : nullptr, a.tensor_cores = tensor_cores;
        a.mma_kernel = mma_kernel;
        cu::attention(a, 0);
        sync();
        const std::vector<float> got = dout.get();
        Worst w;
        for (size_t i = 0; i < got.size(); ++i) w.add(got[i], ref[i], 2e-4);
        const bool fa2 = tensor_cores && n_q >= 16 && mma_kernel == 2 && cu::attention_fa2_supported(hd);
        const bool mma = tensor_cores && n_q >= 16 && cu::attention_mma_supported(hd);
        report("attention hd=" + std::to_string(hd) + " " + name + " n_kv=" + std::to_string(n_kv) +
                   (fa2 ? " mma.sync" : mma ? " wmma" : partial ? " split" : " no-split"),
               w);
        return got;
    };
    const std::vector<float> scalar = run(false, true, 2);
    if (n_q == 1) {
        run(false, false, 2);  // the whole key range in one block per head
    } else {
        for (int kernel : {1, 2}) {
            if (kernel == 1 && !cu::attention_mma_supported(hd)) continue;
            if (kernel == 2 && !cu::attention_fa2_supported(hd)) continue;
            const std::vector<float> mma = run(true, true, kernel);
            Worst w;
            for (size_t i = 0; i < mma.size(); ++i) w.add(mma[i], scalar[i], 2e-4);
            report("attention hd=" + std::to_string(hd) + " " + name + (kernel == 2 ? " mma.sync" : " wmma") + " == scalar", w);
        }
    }
}

// last_token_importance vs the CPU one over a ~60% active set (and a short one): tolerance 1e-5 abs per
// token, and the importances must sum to 1 within 1e-4.
void importance_case(const KvCache& c, int n_max, std::mt19937& rng, bool max_over_heads = false) {
    const int n_head = 6, n_head_kv = 2, hd = c.hd;
    std::vector<int32_t> active = random_subset(c.n_ctx, 0.6, {c.n_ctx - 1}, rng);
    if (static_cast<int>(active.size()) > n_max) active.erase(active.begin(), active.end() - n_max);
    const int n = static_cast<int>(active.size());
    const std::vector<float> q = normal_vec(static_cast<size_t>(n_head) * hd, rng, 0.0f, 2.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<float> ref(n), scores(n);
    last_token_importance(q.data(), c.k.data(), active.data(), n, n_head, n_head_kv, hd, scale, scores.data(),
                          ref.data(), max_over_heads);
    const Dev<float> dq(q);
    const Dev<int32_t> dact(active);
    Dev<float> dscores(static_cast<size_t>(n_head) * (n + 2)), dimp(n);
    cu::last_token_importance(dq.p, as_half(c.dk), dact.p, n, n_head, n_head_kv, hd, scale, dscores.p, dimp.p, 0,
                              max_over_heads);
    sync();
    const std::vector<float> got = dimp.get();
    Worst w, ws;
    double sum = 0;
    for (int i = 0; i < n; ++i) w.add(got[i], ref[i], 1e-5), sum += got[i];
    const std::string name = "last_token_importance hd=" + std::to_string(hd) + " n=" + std::to_string(n) +
                             (max_over_heads ? " max" : "");
    report(name, w);
    if (!max_over_heads) {  // a mean of distributions is one
        ws.add(sum, 1.0, 1e-4);
        report(name + " sum", ws);
    }
}

// window_importance vs the CPU one: 8 window slots at the end of a ~60% active set, slot 2 not computed (no
// query), each query causal over the keys at or before its position; tolerance 1e-5 abs per token.
void window_importance_case(const KvCache& c, bool max_over_heads, std::mt19937& rng) {
    const int n_head = 6, n_head_kv = 2, hd = c.hd, n_slots = 8, window_begin = c.n_ctx - n_slots;
    std::vector<int32_t> active = random_subset(window_begin, 0.6, {}, rng);
    for (int p = window_begin; p < c.n_ctx; ++p) active.push_back(p);  // the window's tokens are active
    const int n = static_cast<int>(active.size());
    const std::vector<float> win = normal_vec(static_cast<size_t>(n_slots) * n_head * hd, rng, 0.0f, 2.0f);
    std::vector<int32_t> has(n_slots, 1);
    has[2] = 0;
    std::vector<float> packed;  // the CPU takes the computed queries packed, with their positions
    std::vector<int32_t> q_pos;
    for (int s = 0; s < n_slots; ++s)
        if (has[s]) {
            packed.insert(packed.end(), win.begin() + s * n_head * hd, win.begin() + (s + 1) * n_head * hd);
            q_pos.push_back(window_begin + s);
        }
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::vector<float> ref(n), scratch(static_cast<size_t>(n_head + 1) * n);
    window_importance(packed.data(), q_pos.data(), static_cast<int>(q_pos.size()), c.k.data(), active.data(), n, n_head,
                      n_head_kv, hd, scale, scratch.data(), ref.data(), max_over_heads);
    const Dev<float> dwin(win);
    const Dev<int32_t> dhas(has), dact(active);
    Dev<float> dscores(static_cast<size_t>(n_head) * (n + 2)), dacc(static_cast<size_t>(n_head) * n), dimp(n);
    cu::window_importance(dwin.p, dhas.p, window_begin, n_slots, as_half(c.dk), dact.p, n, n_head, n_head_kv, hd, scale,
                          dscores.p, dacc.p, dimp.p, 0, max_over_heads);
    sync();
    const std::vector<float> got = dimp.get();
    Worst w;
    for (int i = 0; i < n; ++i) w.add(got[i], ref[i], 1e-5);
    report("window_importance hd=" + std::to_string(hd) + " n=" + std::to_string(n) + (max_over_heads ? " max" : " mean"), w);
}

void test_attention() {
    std::mt19937 rng(2024);
    for (int hd : {64, 128, 256}) {  // 128: the largest tensor-core tile, 256: gemma3 (scalar kernel only)
        const KvCache c(hd, 5000, rng);
        attention_case(c, "prefill n_q=40", 40, 0, rng);           // one partial 64-row tile on tensor cores
        attention_case(c, "prefill n_q=100 window=16", 100, 16, rng);
        if (hd == 128) continue;
        attention_case(c, "decode", 1, 0, rng);                    // ~3000 keys: split over blocks, then merged
        attention_case(c, "decode window=16", 1, 16, rng);         // ~10 keys over many splits: empty splits
        importance_case(c, 1 << 30, rng);
        importance_case(c, 37, rng);
        importance_case(c, 1 << 30, rng, true);
        window_importance_case(c, false, rng);
        window_importance_case(c, true, rng);
    }
}

// ---------------------------------------------------------------- active-set bookkeeping

// select_top_k vs select_most_important: 1000 active positions of [0, 4000), importances rounded to 1/64
// (ties), n_keep 300, always_keep = the last position (given the lowest importance). n_forced tokens are
// +inf for the CPU. Exact: kept list, *kept_count, keep_mark of every active position; keep_mark elsewhere
// and kept past the count untouched.
void test_select_top_k() {
    const int n_ctx = 4000, n = 1000, n_keep = 300;
    std::mt19937 rng(31);
    const std::vector<int32_t> active = random_positions(n_ctx, n, rng);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    std::vector<float> imp(n);
    for (float& x : imp) x = std::floor(u(rng) * 64.0f) / 64.0f;
    imp[n - 1] = 0.0f;
    const int32_t always_keep = active[n - 1];
    const Dev<int32_t> dact(active);
    const Dev<float> dimp(imp);
    for (int n_forced : {0, 50}) {
        std::vector<float> cimp = imp;
        std::fill(cimp.begin(), cimp.begin() + n_forced, INFINITY);
        std::vector<int32_t> order(n), kept(n, -7);
        const int count =
            select_most_important(active.data(), cimp.data(), n, n_keep, always_keep, order.data(), kept.data());
        std::vector<uint8_t> mark(n_ctx, 0xAB);
        for (int32_t p : active) mark[p] = 0;
        for (int i = 0; i < count; ++i) mark[kept[i]] = 1;
        Dev<uint8_t> dmark(std::vector<uint8_t>(n_ctx, 0xAB));
        Dev<int32_t> dkept(std::vector<int32_t>(n, -7)), dcount(std::vector<int32_t>{-1}), dscan(n);
        cu::select_top_k(dact.p, dimp.p, n, n_keep, n_forced, always_keep, dmark.p, dkept.p, dcount.p, dscan.p, 0);
        sync();
        const long bad = mismatches(dkept.get(), kept) + mismatches(dmark.get(), mark) +
                         mismatches(dcount.get(), std::vector<int32_t>{count});
        report_exact("select_top_k n=1000 n_keep=300 n_forced=" + std::to_string(n_forced), bad);
    }
}

// max_pool_importance vs the CPU reference: 1000 active positions of [0, 4000) (gaps of every size), radius 0, 1, 7, 64.
void test_max_pool_importance() {
    const int n_ctx = 4000, n = 1000;
    std::mt19937 rng(37);
    const std::vector<int32_t> active = random_positions(n_ctx, n, rng);
    const std::vector<float> imp = normal_vec(n, rng);
    const Dev<int32_t> dact(active);
    const Dev<float> dimp(imp);
    for (int radius : {0, 1, 7, 64}) {
        std::vector<float> want(n);
        max_pool_importance(active.data(), imp.data(), n, radius, want.data());
        Dev<float> dout(std::vector<float>(n, -7.0f));
        cu::max_pool_importance(dact.p, dimp.p, n, radius, dout.p, 0);
        sync();
        report_exact("max_pool_importance radius=" + std::to_string(radius), mismatches(dout.get(), want));
    }
}

// compact_rows, gather_compute_rows, advance_frontier and init_step on a hand-built scenario (n_ctx 64,
// d 16) against a direct host simulation of their documented behaviour; every output array exact (entries
// that must not change are pre-filled with sentinels).
void test_bookkeeping() {
    const int n_ctx = 64, d = 16;
    std::mt19937 rng(99);
    std::uniform_int_distribution<int> bit(0, 1);
    // protect_computed: active tokens with KV beyond layer + 1 get importance +inf, and are counted
    {
        const int layer = 5;
        const std::vector<int32_t> active = random_subset(n_ctx, 0.7, {}, rng);
        const int n = static_cast<int>(active.size());
        std::vector<int32_t> frontier(n_ctx);
        std::uniform_int_distribution<int> f(0, 12);
        for (int32_t& x : frontier) x = f(rng);
        std::vector<float> importance = normal_vec(n, rng);
        const Dev<int32_t> dact(active), dfront(frontier);
        Dev<float> dimp(importance);
        Dev<int32_t> dcount(std::vector<int32_t>{-1});
        cu::protect_computed(dact.p, n, dfront.p, layer, dimp.p, dcount.p, 0);
        sync();
        int count = 0;
        for (int i = 0; i < n; ++i)
            if (frontier[active[i]] > layer + 1) importance[i] = INFINITY, ++count;
        const std::vector<float> got = dimp.get();
        int wrong = dcount.get()[0] != count;
        for (int i = 0; i < n; ++i) wrong += !(got[i] == importance[i]);
        report_exact("protect_computed", wrong);
    }
    // init_step: (n_past, n_new) = (40, 24) and (0, 10)
    for (auto [n_past, n_new] : {std::pair{40, 24}, std::pair{0, 10}}) {
        std::vector<int32_t> active(n_ctx, -5), rows(n_ctx, -5), row_of(n_ctx, -5);
        Dev<int32_t> da(active), dr(rows), dro(row_of);
        cu::init_step(da.p, dr.p, dro.p, n_past, n_new, 0);
        sync();
        for (int i = 0; i < n_past + n_new; ++i) active[i] = i, row_of[i] = i < n_past ? -1 : i - n_past;
        for (int i = 0; i < n_new; ++i) rows[i] = n_past + i;
        report_exact("init_step n_past=" + std::to_string(n_past) + " n_new=" + std::to_string(n_new),
                     mismatches(da.get(), active) + mismatches(dr.get(), rows) + mismatches(dro.get(), row_of));
    }
    // compact_rows: 24 compute rows at random positions, a random keep mark
    {
        const int n_rows = 24;
        const std::vector<int32_t> rows_pos = random_positions(n_ctx, n_rows, rng);
        const std::vector<float> h = normal_vec(n_rows * d, rng);
        std::vector<uint8_t> mark(n_ctx);
        for (uint8_t& m : mark) m = static_cast<uint8_t>(bit(rng));
        std::vector<float> h_out(n_rows * d, 12345.0f), aux = normal_vec(n_ctx * d, rng);
        std::vector<int32_t> rows_out(n_rows, -5), row_of(n_ctx, -9), count{-1};
        for (int i = 0; i < n_rows; ++i) row_of[rows_pos[i]] = i;
        const Dev<int32_t> drp(rows_pos);
        const Dev<float> dh(h);
        const Dev<uint8_t> dmark(mark);
        Dev<float> dho(h_out), daux(aux);
        Dev<int32_t> dro(rows_out), drow_of(row_of), dcount(count), dscan(n_rows);
        cu::compact_rows(drp.p, dh.p, n_rows, d, dmark.p, dho.p, dro.p, drow_of.p, daux.p, dcount.p, dscan.p, 0);
        sync();
        int out = 0;
        for (int i = 0; i < n_rows; ++i) {
            const int32_t p = rows_pos[i];
            float* dst = mark[p] ? &h_out[out * d] : &aux[p * d];
            std::copy(&h[i * d], &h[i * d] + d, dst);
            if (mark[p]) rows_out[out] = p;
            row_of[p] = mark[p] ? out++ : -1;
        }
        count[0] = out;
        report_exact("compact_rows n_rows=24 kept=" + std::to_string(out),
                     mismatches(dho.get(), h_out) + mismatches(daux.get(), aux) + mismatches(dro.get(), rows_out) +
                         mismatches(drow_of.get(), row_of) + mismatches(dcount.get(), count));
    }
    // gather_compute_rows at layer 5: active tokens with frontier 5 are wanted, from the current rows
    // (row_of >= 0) or revived from aux; frontier 5 outside the active set must be ignored
    {
        const int layer = 5;
        const std::vector<int32_t> active = random_positions(n_ctx, 40, rng);
        std::vector<int32_t> frontier(n_ctx);
        std::uniform_int_distribution<int> any_layer(0, 9);
        for (int32_t& f : frontier) f = any_layer(rng);
        std::vector<int32_t> cur;  // current compute rows: about half the wanted ones
        for (int32_t p : active) {
            const int r = any_layer(rng);
            frontier[p] = r < 5 ? layer : r < 8 ? layer + 1 : layer + 4;
            if (frontier[p] == layer && bit(rng)) cur.push_back(p);
        }
        std::vector<int32_t> row_of(n_ctx, -1);
        for (size_t i = 0; i < cur.size(); ++i) row_of[cur[i]] = static_cast<int32_t>(i);
        const std::vector<float> h = normal_vec(cur.size() * d, rng), aux = normal_vec(n_ctx * d, rng);
        std::vector<float> h_out(static_cast<size_t>(n_ctx) * d, 12345.0f);
        std::vector<int32_t> rows_out(n_ctx, -5), count{-1};
        std::vector<int64_t> revived{3};  // accumulates
        const Dev<int32_t> dact(active), dfr(frontier);
        const Dev<float> dh(h), daux(aux);
        Dev<float> dho(h_out);
        Dev<int32_t> dro(rows_out), drow_of(row_of), dcount(count), dscan(active.size());
        Dev<int64_t> drev(revived);
        cu::gather_compute_rows(dact.p, static_cast<int>(active.size()), dfr.p, layer, dh.p, daux.p, d, dho.p, dro.p,
                                drow_of.p, dcount.p, drev.p, dscan.p, 0);
        sync();
        int out = 0;
        for (int32_t p : active) {
            if (frontier[p] != layer) continue;
            const float* src = row_of[p] >= 0 ? &h[row_of[p] * d] : &aux[p * d];
            std::copy(src, src + d, &h_out[out * d]);
            revived[0] += row_of[p] < 0;
            rows_out[out] = p;
            row_of[p] = out++;
        }
        count[0] = out;
        report_exact("gather_compute_rows wanted=" + std::to_string(out) + " revived=" + std::to_string(revived[0] - 3),
                     mismatches(dho.get(), h_out) + mismatches(dro.get(), rows_out) +
                         mismatches(drow_of.get(), row_of) + mismatches(dcount.get(), count) +
                         mismatches(drev.get(), revived));
    }
    // advance_frontier at layer 5 over 20 rows, three of which were not at layer 5 (recomputed pairs)
    {
        const int layer = 5;
        const std::vector<int32_t> rows = random_positions(n_ctx, 20, rng);
        std::vector<int32_t> frontier(n_ctx);
        std::uniform_int_distribution<int> any_layer(0, 9);
        for (int32_t& f : frontier) f = any_layer(rng);
        for (int32_t p : rows) frontier[p] = layer;
        frontier[rows[2]] = 4, frontier[rows[9]] = 6, frontier[rows[19]] = 2;
        std::vector<int64_t> recomputed{1};
        Dev<int32_t> dfr(frontier);
        const Dev<int32_t> drows(rows);
        Dev<int64_t> drec(recomputed);
        cu::advance_frontier(drows.p, static_cast<int>(rows.size()), layer, dfr.p, drec.p, 0);
        sync();
        for (int32_t p : rows) recomputed[0] += frontier[p] != layer, frontier[p] = layer + 1;
        report_exact("advance_frontier n=20 recomputed=3",
                     mismatches(dfr.get(), frontier) + mismatches(drec.get(), recomputed));
    }
}

}  // namespace

// ---------------------------------------------------------------- --bench: kernel timings (not a test)

// Mean time of fn over `reps` launches after one warm-up, by CUDA events.
template <class F>
double time_ms(F&& fn, int reps = 10) {
    fn();
    cudaEvent_t a, b;
    CUDA_OK(cudaEventCreate(&a));
    CUDA_OK(cudaEventCreate(&b));
    CUDA_OK(cudaEventRecord(a));
    for (int i = 0; i < reps; ++i) fn();
    CUDA_OK(cudaEventRecord(b));
    CUDA_OK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / reps;
}

// Prefill attention (SmolLM2's heads: 9 over 3, head_dim 64; 2048 queries at the end of an 8192-position
// causal context, every position active) per kernel, decode attention, and the prefill GEMMs of SmolLM2
// and Qwen2.5-0.5B shapes (2048 tokens) in fp16 and 3xTF32.
void run_bench() {
    std::mt19937 rng(5);
    const int n_ctx = 8192, n_q = 2048, n_head = 9, n_head_kv = 3, hd = 64;
    const std::vector<uint16_t> k = to_fp16(normal_vec(static_cast<size_t>(n_ctx) * n_head_kv * hd, rng));
    const std::vector<uint16_t> v = to_fp16(normal_vec(static_cast<size_t>(n_ctx) * n_head_kv * hd, rng));
    const Dev<uint16_t> dk(k), dv(v);
    std::vector<int32_t> active(n_ctx), q_pos(n_q);
    for (int i = 0; i < n_ctx; ++i) active[i] = i;
    for (int i = 0; i < n_q; ++i) q_pos[i] = n_ctx - n_q + i;
    const Dev<int32_t> dact(active), dpos(q_pos);
    const Dev<float> dq(normal_vec(static_cast<size_t>(n_q) * n_head * hd, rng));
    Dev<float> dout(static_cast<size_t>(n_q) * n_head * hd), dpart(cu::attention_partial_floats(hd));
    // causal pairs: each query sees its position + 1 keys; 4 flops per (pair, dim) for q.k and p.v
    double pairs = 0;
    for (int i = 0; i < n_q; ++i) pairs += q_pos[i] + 1;
    const double flops = 4.0 * pairs * hd * n_head;
    for (int kernel : {0, 1, 2}) {
        cu::AttentionArgs a;
        a.q = dq.p, a.q_pos = dpos.p, a.k_cache = as_half(dk), a.v_cache = as_half(dv), a.kv_positions = dact.p;
        a.n_kv = n_ctx, a.n_q = n_q, a.n_head = n_head, a.n_head_kv = n_head_kv, a.head_dim = hd;
        a.scale = 0.125f, a.out = dout.p, a.partial = dpart.p, a.tensor_cores = kernel != 0, a.mma_kernel = kernel;
        const double ms = time_ms([&] { cu::attention(a, 0); }, kernel == 0 ? 2 : 10);
        std::printf("bench attention prefill n_q=%d n_ctx=%d heads=%d/%d hd=%d %-9s %9.3f ms %7.1f TFLOP/s (useful)\n", n_q,
                    n_ctx, n_head, n_head_kv, hd, kernel == 0 ? "scalar" : kernel == 1 ? "wmma" : "mma.sync", ms,
                    flops / ms / 1e9);
    }
    {
        cu::AttentionArgs a;
        a.q = dq.p, a.q_pos = dpos.p + (n_q - 1), a.k_cache = as_half(dk), a.v_cache = as_half(dv), a.kv_positions = dact.p;
        a.n_kv = n_ctx, a.n_q = 1, a.n_head = n_head, a.n_head_kv = n_head_kv, a.head_dim = hd;
        a.scale = 0.125f, a.out = dout.p, a.partial = dpart.p;
        std::printf("bench attention decode n_ctx=%d                        %9.3f ms\n", n_ctx,
                    time_ms([&] { cu::attention(a, 0); }));
    }
    struct Shape { const char* name; GgmlType type; int n_out, n_in; };
    const Shape shapes[] = {{"smollm2 ffn up (1536x576)", GgmlType::Q4_1, 1536, 576},
                            {"smollm2 ffn down (576x1536)", GgmlType::Q4_1, 576, 1536},
                            {"qwen0.5b ffn up (4864x896)", GgmlType::Q5_0, 4864, 896},
                            {"qwen0.5b ffn down (896x4864)", GgmlType::Q5_0, 896, 4864}};
    const int n_tok = 2048;
    for (const Shape& sh : shapes) {
        const std::vector<uint8_t> rows = random_rows(sh.type, sh.n_out, sh.n_in, rng);
        const Dev<uint8_t> dw(rows);
        const Dev<float> dx(normal_vec(static_cast<size_t>(n_tok) * sh.n_in, rng));
        Dev<float> dy(static_cast<size_t>(n_tok) * sh.n_out);
        Dev<uint16_t> scratch(static_cast<size_t>(sh.n_out) * sh.n_in);
        const cu::DeviceMatrix dm = device_matrix(sh.type, sh.n_out, sh.n_in, dw.p);
        cu::GemmScratch gs;
        gs.data = scratch.p, gs.elems = static_cast<int64_t>(sh.n_out) * sh.n_in;
        const double gflop = 2.0 * n_tok * sh.n_in * sh.n_out / 1e9;
        const double half_ms = time_ms([&] { cu::gemm_half(dm, dx.p, n_tok, dy.p, gs, 0); });
        const double exact_ms = time_ms([&] { cu::matmul(dm, dx.p, n_tok, dy.p, 0); });
        std::printf("bench gemm %-30s n_tok=%d fp16 %7.3f ms %6.1f TFLOP/s   3xTF32 %7.3f ms %6.1f TFLOP/s\n", sh.name,
                    n_tok, half_ms, gflop / half_ms, exact_ms, gflop / exact_ms);
    }
}

int main(int argc, char** argv) {
    int n_dev = 0;
    const cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        std::printf("SKIP: %s\n", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
        return 77;
    }
    cudaDeviceProp prop{};
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    if (argc > 1 && std::string(argv[1]) == "--bench") {
        run_bench();
        return 0;
    }
    void (*const tests[])() = {test_matmul,      test_gemm_half, test_embed_rows, test_rms_norm,     test_add_residual, test_qkv_finish,
                               test_activations, test_attention,  test_select_top_k, test_max_pool_importance, test_bookkeeping};
    for (auto test : tests) {
        try {
            test();
        } catch (const std::exception& ex) {  // a launcher refused its arguments
            std::printf("FAIL: exception: %s\n", ex.what());
            ++g_failures;
        }
    }
    std::printf("%d case(s) failed\n", g_failures);
    return g_failures ? 1 : 0;
}
