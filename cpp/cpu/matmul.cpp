// Quantized matmul driver: validation, work split over the thread pool, per-thread scratch, dispatch.
// The AVX2 micro-kernels live in kernels_avx2.cpp (namespace avx2); this file is baseline x86-64.
#include "cpu/matmul.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core_error.h"
#include "cpu/kernels.h"
#include "runtime/thread_pool.h"

namespace lazyllm_edge {

// kernels.cpp: dequantize without re-validating (matmul validates once per call).
void dequantize_row_unchecked(GgmlType type, const void* src, float* dst, int64_t n);

#if defined(__x86_64__)
namespace avx2 {
void gemm_f32(const float* x, int64_t ldx, int64_t n_tok, const float* w, int64_t ldw, int64_t n_rows, int64_t K,
              float* y, int64_t ldy);
bool gemv_fused(uint32_t type, const float* x, int64_t ldx, int64_t n_tok, const void* w, size_t row_bytes,
                int64_t n_rows, int64_t K, const float* xsum, float* y, int64_t ldy);
bool gemv_q8(uint32_t type, const int8_t* qx, const float* dx, const float* sx, int64_t n_tok, int64_t K,
             const void* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy);
}
#endif

namespace {

// Grow-only, 64-byte aligned per-thread scratch; pool workers are persistent so this is allocated once.
struct Scratch {
    float* data = nullptr;
    size_t capacity = 0;  // floats
    ~Scratch() { std::free(data); }
    float* get(size_t n) {
        if (n > capacity) {
            std::free(data);
            size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
            data = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!data) {
                capacity = 0;
                throw_error(ErrorCode::out_of_memory, "matmul: cannot allocate scratch");
            }
            capacity = bytes / sizeof(float);
        }
        return data;
    }
};
thread_local Scratch t_scratch;

// Activations quantized for the int8 decode path (caller thread only; read by all workers during one call).
// Grow-only like Scratch: allocated on first use, reused by every later call of this thread.
struct QuantizedX {
    int64_t n_tok = 0, K = 0, nb = 0;
    int8_t* q = nullptr;  // n_tok x K
    float* d = nullptr;   // n_tok x nb
    float* s = nullptr;   // n_tok x nb
};
struct QScratch {
    uint8_t* data = nullptr;
    size_t capacity = 0;  // bytes
    ~QScratch() { std::free(data); }
    QuantizedX quantize(const float* x, int64_t n_tok, int64_t K) {
        QuantizedX r;
        r.n_tok = n_tok;
        r.K = K;
        r.nb = K / 32;
        const size_t qbytes = (static_cast<size_t>(n_tok * K) + 63) / 64 * 64;
        const size_t fbytes = (static_cast<size_t>(n_tok * r.nb) * sizeof(float) + 63) / 64 * 64;
        const size_t need = qbytes + 2 * fbytes;
        if (need > capacity) {
            std::free(data);
            data = static_cast<uint8_t*>(std::aligned_alloc(64, need));
            if (!data) {
                capacity = 0;
                throw_error(ErrorCode::out_of_memory, "matmul: cannot allocate int8 scratch");
            }
            capacity = need;
        }
        r.q = reinterpret_cast<int8_t*>(data);
        r.d = reinterpret_cast<float*>(data + qbytes);
        r.s = reinterpret_cast<float*>(data + qbytes + fbytes);
        for (int64_t t = 0; t < n_tok; ++t)
            quantize_row_q8_1(x + t * K, K, r.q + t * K, r.d + t * r.nb, r.s + t * r.nb);
        return r;
    }
};
thread_local QScratch t_qscratch;

bool int8_type(GgmlType t) { return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q8_0; }

bool int8_from_env() {
    const char* e = std::getenv("LAZYLLM_EDGE_INT8_DECODE");
    return !(e && e[0] == '0' && e[1] == '\0');
}
std::atomic<bool> g_int8{int8_from_env()};

void gemm_f32_scalar(const float* x, int64_t ldx, int64_t n_tok, const float* w, int64_t ldw, int64_t n_rows,
                     int64_t K, float* y, int64_t ldy) {
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t r = 0; r < n_rows; ++r) {
            const float* a = x + t * ldx;
            const float* b = w + r * ldw;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t k = 0;
            for (; k + 4 <= K; k += 4) {
                s0 += a[k] * b[k];
                s1 += a[k + 1] * b[k + 1];
                s2 += a[k + 2] * b[k + 2];
                s3 += a[k + 3] * b[k + 3];
            }
            for (; k < K; ++k) s0 += a[k] * b[k];
            y[t * ldy + r] = (s0 + s1) + (s2 + s3);
        }
}

using GemmFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t);

void validate(const WeightMatrix& w, int64_t n_tok) {
    const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(w.type));
    if (!tr || !tr->supported)
        throw_error(ErrorCode::unsupported,
                    std::string("matmul: unsupported weight type ") + (tr ? tr->name : std::to_string(static_cast<uint32_t>(w.type))));
    if (w.n_in <= 0 || w.n_out < 0 || n_tok < 0 || w.n_in % tr->block_size != 0)
        throw_error(ErrorCode::invalid_argument, std::string("matmul: bad shape for ") + tr->name + " weight (n_in=" +
                                                     std::to_string(w.n_in) + ")");
    if (w.row_bytes < ggml_row_size(w.type, w.n_in))
        throw_error(ErrorCode::invalid_argument, "matmul: row_bytes smaller than one row");
    if (!w.data && w.n_out > 0) throw_error(ErrorCode::invalid_argument, "matmul: null weight data");
}

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
    validate(w, n_tok);
    if (n_tok == 0 || w.n_out == 0) return;

    GemmFn gemm = gemm_f32_scalar;
#if defined(__x86_64__)
    if (active_isa() == CpuIsa::avx2) gemm = avx2::gemm_f32;
#endif
    const int64_t n_in = w.n_in, n_out = w.n_out;
    // F32 weights with a float-aligned stride are used in place; everything else goes through scratch.
    const bool direct = w.type == GgmlType::F32 && w.row_bytes % sizeof(float) == 0;

    // Rows per tile: decode keeps one small group (3 rows, the micro-kernel height) hot in L1;
    // prefill dequantizes a tile sized for about half of L2 and reuses it across a chunk of tokens.
    int64_t tile_rows, tok_chunk;
    if (n_tok <= 4) {
        tile_rows = direct ? 48 : 3;
        tok_chunk = n_tok;
    } else {
        tile_rows = (192 * 1024) / (n_in * 4);
        tile_rows = tile_rows / 3 * 3;
        if (tile_rows < 3) tile_rows = 3;
        if (tile_rows > 96) tile_rows = 96;
        // Token chunk: x chunk ≲ 4 MiB (stays in the shared L3) and ≥ 64 tokens to amortize dequantization.
        tok_chunk = (4 << 20) / (n_in * 4);
        if (tok_chunk < 64) tok_chunk = 64;
        tok_chunk = (tok_chunk + 3) / 4 * 4;
    }
    const int64_t n_tiles = (n_out + tile_rows - 1) / tile_rows;
    const uint8_t* wbytes = static_cast<const uint8_t*>(w.data);
    const GgmlType type = w.type;
    const size_t row_bytes = w.row_bytes;

#if defined(__x86_64__)
    // Decode on Q4_0/Q4_1/Q8_0: quantize x once to int8 blocks, then integer dot products per 32-block
    // against the weight codes (as ggml does); rows split over threads.
    if (matmul_uses_int8(type, n_tok)) {
        const QuantizedX qx = t_qscratch.quantize(x, n_tok, n_in);
        pool.parallel_for(static_cast<long>(n_out), [&](long r0, long r1, int) {
            avx2::gemv_q8(static_cast<uint32_t>(type), qx.q, qx.d, qx.s, n_tok, n_in,
                          wbytes + static_cast<size_t>(r0) * row_bytes, row_bytes, r1 - r0, y + r0, n_out);
        });
        return;
    }
    // int8 path switched off: fp32 fused decode (dequantize in registers, no scratch round trip).
    if (n_tok <= 4 && active_isa() == CpuIsa::avx2 && int8_type(type)) {
        const int64_t nb = n_in / 32;
        pool.parallel_for(static_cast<long>(n_out), [&](long r0, long r1, int) {
            float* xsum = nullptr;
            if (type == GgmlType::Q4_1) {  // per-thread block sums of x (n_tok * n_in adds, negligible)
                xsum = t_scratch.get(static_cast<size_t>(n_tok * nb));
                for (int64_t t = 0; t < n_tok; ++t)
                    for (int64_t b = 0; b < nb; ++b) {
                        const float* p = x + t * n_in + b * 32;
                        float s = 0.0f;
                        for (int j = 0; j < 32; ++j) s += p[j];
                        xsum[t * nb + b] = s;
                    }
            }
            avx2::gemv_fused(static_cast<uint32_t>(type), x, n_in, n_tok, wbytes + static_cast<size_t>(r0) * row_bytes,
                             row_bytes, r1 - r0, n_in, xsum, y + r0, n_out);
        });
        return;
    }
#endif

    pool.parallel_for(static_cast<long>(n_tiles), [&](long tile_begin, long tile_end, int) {
        float* scratch = direct ? nullptr : t_scratch.get(static_cast<size_t>(tile_rows * n_in));
        for (int64_t t0 = 0; t0 < n_tok; t0 += tok_chunk) {
            const int64_t nt = (n_tok - t0 < tok_chunk) ? n_tok - t0 : tok_chunk;
            for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
                const int64_t r0 = tile * tile_rows;
                const int64_t nr = (n_out - r0 < tile_rows) ? n_out - r0 : tile_rows;
                const float* wt;
                int64_t ldw;
                if (direct) {
                    wt = reinterpret_cast<const float*>(wbytes + static_cast<size_t>(r0) * row_bytes);
                    ldw = static_cast<int64_t>(row_bytes / sizeof(float));
                } else {
                    for (int64_t r = 0; r < nr; ++r)
                        dequantize_row_unchecked(type, wbytes + static_cast<size_t>(r0 + r) * row_bytes, scratch + r * n_in, n_in);
                    wt = scratch;
                    ldw = n_in;
                }
                gemm(x + t0 * n_in, n_in, nt, wt, ldw, nr, n_in, y + t0 * n_out + r0, n_out);
            }
        }
    });
}

void matmul_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y) {
    validate(w, n_tok);
    std::vector<float> row(static_cast<size_t>(w.n_in));
    const uint8_t* wbytes = static_cast<const uint8_t*>(w.data);
    for (int64_t o = 0; o < w.n_out; ++o) {
        dequantize_row_reference(w.type, wbytes + static_cast<size_t>(o) * w.row_bytes, row.data(), w.n_in);
        for (int64_t t = 0; t < n_tok; ++t) y[t * w.n_out + o] = dot_f32_reference(x + t * w.n_in, row.data(), w.n_in);
    }
}

bool matmul_uses_int8(GgmlType type, int64_t n_tok) {
    return n_tok >= 1 && n_tok <= 4 && active_isa() == CpuIsa::avx2 && int8_type(type) &&
           g_int8.load(std::memory_order_relaxed);
}

void set_matmul_int8(bool on) { g_int8.store(on, std::memory_order_relaxed); }
bool matmul_int8_enabled() { return g_int8.load(std::memory_order_relaxed); }

void matmul_int8_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y) {
    validate(w, n_tok);
    if (!int8_type(w.type)) throw_error(ErrorCode::unsupported, "matmul_int8_reference: Q4_0, Q4_1 or Q8_0 only");
    const int64_t K = w.n_in, nb = K / 32;
    std::vector<int8_t> q(static_cast<size_t>(K));
    std::vector<float> d(static_cast<size_t>(nb)), s(static_cast<size_t>(nb));
    const uint8_t* wbytes = static_cast<const uint8_t*>(w.data);
    const size_t bb = w.type == GgmlType::Q8_0 ? 34 : w.type == GgmlType::Q4_1 ? 20 : 18;
    for (int64_t t = 0; t < n_tok; ++t) {
        quantize_row_q8_1_reference(x + t * K, K, q.data(), d.data(), s.data());
        for (int64_t o = 0; o < w.n_out; ++o) {
            const uint8_t* b = wbytes + static_cast<size_t>(o) * w.row_bytes;
            float acc = 0.0f, summs = 0.0f;
            for (int64_t i = 0; i < nb; ++i, b += bb) {
                uint16_t h;
                std::memcpy(&h, b, 2);
                const float dw = fp16_to_fp32(h);
                const int8_t* qy = q.data() + i * 32;
                int sumi = 0;
                if (w.type == GgmlType::Q8_0) {
                    for (int j = 0; j < 32; ++j) sumi += static_cast<int8_t>(b[2 + j]) * qy[j];
                } else {
                    const uint8_t* qs = b + (w.type == GgmlType::Q4_1 ? 4 : 2);
                    const int off = w.type == GgmlType::Q4_1 ? 0 : 8;
                    for (int j = 0; j < 16; ++j)
                        sumi += ((qs[j] & 0x0F) - off) * qy[j] + ((qs[j] >> 4) - off) * qy[j + 16];
                }
                acc += (dw * d[static_cast<size_t>(i)]) * static_cast<float>(sumi);
                if (w.type == GgmlType::Q4_1) {
                    std::memcpy(&h, b + 2, 2);
                    summs += fp16_to_fp32(h) * s[static_cast<size_t>(i)];
                }
            }
            y[t * w.n_out + o] = acc + summs;
        }
    }
}

}  // namespace lazyllm_edge
