// Quantized matmul driver: validation, work split over the thread pool, per-thread scratch, dispatch.
// The AVX2 micro-kernels live in kernels_avx2.cpp, matmul_int8_avx2.cpp and llama_order/ (namespace avx2);
// this file is baseline x86-64.
#include "cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "cpu/kernels.h"
#include "cpu/matmul_packed.h"
#include "base/thread_pool.h"

namespace lazyllm_edge {

// kernels.cpp: dequantize without re-validating (matmul validates once per call).
void dequantize_row_unchecked(GgmlType type, const void* src, float* dst, int64_t n);

#if defined(__x86_64__)
namespace avx2 {
void gemm_f32(const float* x, int64_t ldx, int64_t n_tok, const float* w, int64_t ldw, int64_t n_rows, int64_t K,
              float* y, int64_t ldy);
bool gemv_fused(uint32_t type, const float* x, int64_t ldx, int64_t n_tok, const void* w, size_t row_bytes,
                int64_t n_rows, int64_t K, const float* xsum, float* y, int64_t ldy);
bool gemm_q8(uint32_t type, const int8_t* q, const float* d, const float* s, const int32_t* isum, const int16_t* bsums,
             int64_t n_tok, int64_t K, const void* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy);
bool gemm_q8_llama(uint32_t type, const int8_t* q, const float* d, const float* s, const int32_t* isum,
                   const int16_t* bsums, int64_t n_tok, int64_t K, const void* w, size_t row_bytes, int64_t n_rows,
                   float* y, int64_t ldy);
}
namespace avx512vnni {
bool gemv_kquant(uint32_t type, const int8_t* q, const float* d, const int16_t* bsums, int64_t K, const void* w,
                 size_t row_bytes, int64_t n_rows, float* y);
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

// How llama.cpp quantizes the activations for a weight type (ggml's vec_dot_type): Q8_0 for Q4_0, Q5_0
// and Q8_0, Q8_1 for Q4_1 and Q5_1 (Q8_0 plus block sums; one layout serves both), Q8_K for the K-quants.
// Other types (F32, F16, BF16) keep fp32 activations.
enum class ActFormat { none, q8_1, q8_K };

ActFormat int8_format(GgmlType t) {
    switch (t) {
        case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0:
            return ActFormat::q8_1;
        case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: return ActFormat::q8_K;
        default: return ActFormat::none;
    }
}

// n_tok rows of K activations quantized in one of those formats.
struct Q8Rows {
    int8_t* q = nullptr;       // (n_tok, K) codes
    float* d = nullptr;        // (n_tok, K/32) block scales, or (n_tok, K/256) for Q8_K
    float* s = nullptr;        // (n_tok, K/32) Q8_1 sums (fp16-rounded, as ggml); null for Q8_K
    int32_t* isum = nullptr;   // (n_tok, K/32) exact code sums; null for Q8_K
    int16_t* bsums = nullptr;  // (n_tok, K/16) Q8_K sums; null for Q8_1
};

// Quantizes one token row of x (K floats) into row t of r.
void quantize_row(const float* x, int64_t K, ActFormat f, const Q8Rows& r, int64_t t, bool reference) {
    if (f == ActFormat::q8_K) {
        auto fn = reference ? quantize_row_q8_K_reference : quantize_row_q8_K;
        fn(x, K, r.q + t * K, r.d + t * (K / 256), r.bsums + t * (K / 16));
    } else {
        auto fn = reference ? quantize_row_q8_1_reference : quantize_row_q8_1;
        fn(x, K, r.q + t * K, r.d + t * (K / 32), r.s + t * (K / 32), r.isum ? r.isum + t * (K / 32) : nullptr);
    }
}

// Grow-only, 64-byte aligned buffer for quantized activations (one per calling thread; the pool's workers
// fill and read it during one matmul). Allocated on first use, reused by every later call.
struct QScratch {
    uint8_t* data = nullptr;
    size_t capacity = 0;  // bytes
    ~QScratch() { std::free(data); }

    // Carves the Q8Rows arrays for n_tok rows of K out of the buffer.
    Q8Rows layout(int64_t n_tok, int64_t K, ActFormat f) {
        auto round64 = [](size_t n) { return (n + 63) / 64 * 64; };
        const size_t n = static_cast<size_t>(n_tok);
        const size_t qbytes = round64(n * static_cast<size_t>(K));
        const size_t dbytes = round64(n * static_cast<size_t>(K / 32) * sizeof(float));  // also fits K/256, and isum
        const size_t xbytes = f == ActFormat::q8_K ? round64(n * static_cast<size_t>(K / 16) * sizeof(int16_t)) : 2 * dbytes;
        const size_t need = qbytes + dbytes + xbytes;
        if (need > capacity) {
            std::free(data);
            data = static_cast<uint8_t*>(std::aligned_alloc(64, need));
            if (!data) {
                capacity = 0;
                throw_error(ErrorCode::out_of_memory, "matmul: cannot allocate int8 scratch");
            }
            capacity = need;
        }
        Q8Rows r;
        r.q = reinterpret_cast<int8_t*>(data);
        r.d = reinterpret_cast<float*>(data + qbytes);
        if (f == ActFormat::q8_K) {
            r.bsums = reinterpret_cast<int16_t*>(data + qbytes + dbytes);
        } else {
            r.s = reinterpret_cast<float*>(data + qbytes + dbytes);
            r.isum = reinterpret_cast<int32_t*>(data + qbytes + 2 * dbytes);
        }
        return r;
    }

    // Quantizes x (n_tok, K); rows split over the pool when there are enough of them.
    Q8Rows quantize(const float* x, int64_t n_tok, int64_t K, ActFormat f, ThreadPool& pool) {
        const Q8Rows r = layout(n_tok, K, f);
        if (n_tok < 8) {
            for (int64_t t = 0; t < n_tok; ++t) quantize_row(x + t * K, K, f, r, t, false);
        } else {
            pool.parallel_for(static_cast<long>(n_tok), [&](long t0, long t1, int) {
                for (long t = t0; t < t1; ++t) quantize_row(x + t * K, K, f, r, t, false);
            });
        }
        return r;
    }
};
thread_local QScratch t_qscratch;
thread_local QScratch t_qscratch2;  // a second activation format in matmul_shared_input

bool int8_type(GgmlType t) { return int8_format(t) != ActFormat::none; }

// fast and int8 share every kernel choice; they differ only in the packed GEMM's activations.
bool fast_family(Numerics numerics) { return numerics == Numerics::fast || numerics == Numerics::int8; }

// The packed GEMM's activation format for w: int8 numerics one pass (8-bit codes in llama.cpp's format for the
// type, Q8_K's scales for the K-quants), else the weight's own passes (two, 15 bits, as the model loads it; the
// kernel tests set one).
struct PackedActs {
    int passes;
    bool q8_K;
    bool operator==(const PackedActs& o) const { return passes == o.passes && q8_K == o.q8_K; }
};
PackedActs packed_acts(const WeightMatrix& w, Numerics numerics) {
    const int passes = numerics == Numerics::int8 ? 1 : w.packed_passes;
    return {passes, packed_q8_K(w.type, passes)};
}

// Grow-only, 64-byte aligned buffer for the packed GEMM's quantized activations (one per calling thread).
struct PackedXScratch {
    void* data = nullptr;
    size_t capacity = 0;  // bytes
    ~PackedXScratch() { std::free(data); }

    // x (n_tok, K) quantized into the packed format, rows split over the pool
    PackedX quantize(const float* x, int64_t n_tok, int64_t K, PackedActs acts, ThreadPool& pool) {
        const size_t need = packed_x_bytes(n_tok, K, acts.passes);
        if (need > capacity) {
            std::free(data);
            data = std::aligned_alloc(64, need);
            if (!data) {
                capacity = 0;
                throw_error(ErrorCode::out_of_memory, "matmul: cannot allocate packed int8 scratch");
            }
            capacity = need;
        }
        const PackedX px = packed_x_layout(data, n_tok, K, acts.passes, acts.q8_K);
        quantize_packed_x(x, n_tok, K, px, pool);
        return px;
    }
};
thread_local PackedXScratch t_pxscratch;

#if defined(__x86_64__)
using GemmQ8Fn = bool (*)(uint32_t, const int8_t*, const float*, const float*, const int32_t*, const int16_t*, int64_t,
                          int64_t, const void*, size_t, int64_t, float*, int64_t);
// The int8 kernels' fp32 order: llama.cpp's own for llama_cpp numerics, else the fast one.
GemmQ8Fn gemm_q8_for(Numerics numerics) { return numerics == Numerics::llama_cpp ? avx2::gemm_q8_llama : avx2::gemm_q8; }

// Rows [.., +n_rows) of one int8 matmul: one token of K-quant weights in the fast order takes the 512-bit decode
// kernel where the CPU runs AVX-512 (the same bits as the AVX2 one), everything else gemm_q8.
void q8_rows(GemmQ8Fn gemm_q8, bool decode512, GgmlType type, const Q8Rows& q, int64_t n_tok, int64_t K,
             const uint8_t* w, size_t row_bytes, int64_t n_rows, float* y, int64_t ldy) {
    if (decode512 && n_tok == 1 && int8_format(type) == ActFormat::q8_K &&
        avx512vnni::gemv_kquant(static_cast<uint32_t>(type), q.q, q.d, q.bsums, K, w, row_bytes, n_rows, y))
        return;
    gemm_q8(static_cast<uint32_t>(type), q.q, q.d, q.s, q.isum, q.bsums, n_tok, K, w, row_bytes, n_rows, y, ldy);
}
bool use_decode512(Numerics numerics) { return fast_family(numerics) && active_isa() >= CpuIsa::avx512vnni; }
#endif

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

void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, Numerics numerics, ThreadPool& pool) {
    validate(w, n_tok);
    if (n_tok == 0 || w.n_out == 0) return;

    GemmFn gemm = gemm_f32_scalar;
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) gemm = avx2::gemm_f32;
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

    // fast prefill: the packed int8 GEMM (x quantized once into blocks of 32)
    if (matmul_uses_packed(w, n_tok, numerics)) {
        const PackedX px = t_pxscratch.quantize(x, n_tok, n_in, packed_acts(w, numerics), pool);
        gemm_packed(w, px, n_tok, y, n_out, pool);
        return;
    }
#if defined(__x86_64__)
    // Quantized weights (as llama.cpp): quantize x once per call, then integer block dots; rows split over threads.
    if (matmul_uses_int8(type, n_tok, numerics)) {
        const Q8Rows qx = t_qscratch.quantize(x, n_tok, n_in, int8_format(type), pool);
        const GemmQ8Fn gemm_q8 = gemm_q8_for(numerics);
        const bool decode512 = use_decode512(numerics);
        pool.parallel_for(static_cast<long>(n_out), [&](long r0, long r1, int) {
            q8_rows(gemm_q8, decode512, type, qx, n_tok, n_in, wbytes + static_cast<size_t>(r0) * row_bytes, row_bytes,
                    r1 - r0, y + r0, n_out);
        });
        return;
    }
    // fp32 numerics (no int8 path): fused decode (dequantize in registers, no scratch round trip).
    if (n_tok <= 4 && active_isa() >= CpuIsa::avx2 &&
        (type == GgmlType::Q4_0 || type == GgmlType::Q4_1 || type == GgmlType::Q8_0)) {
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

void matmul_shared_input(const WeightMatrix* const* w, float* const* y, int n, const float* x, int64_t n_tok,
                         Numerics numerics, ThreadPool& pool) {
    // packed int8 prefill: the activations quantized once when every matrix takes the same format
    bool packed = n > 1 && n <= kMaxSharedInput;
    for (int i = 0; packed && i < n; ++i)
        packed = matmul_uses_packed(*w[i], n_tok, numerics) && w[i]->n_in == w[0]->n_in &&
                 packed_acts(*w[i], numerics) == packed_acts(*w[0], numerics);
    if (packed) {
        for (int i = 0; i < n; ++i) validate(*w[i], n_tok);
        const PackedX px = t_pxscratch.quantize(x, n_tok, w[0]->n_in, packed_acts(*w[0], numerics), pool);
        for (int i = 0; i < n; ++i) gemm_packed(*w[i], px, n_tok, y[i], w[i]->n_out, pool);
        return;
    }
    bool fused = n > 1 && n <= kMaxSharedInput;
    for (int i = 0; fused && i < n; ++i)
        fused = matmul_uses_int8(w[i]->type, n_tok, numerics) && w[i]->n_in == w[0]->n_in && w[i]->n_out > 0;
    if (!fused) {
        for (int i = 0; i < n; ++i) matmul(*w[i], x, n_tok, y[i], numerics, pool);
        return;
    }
    for (int i = 0; i < n; ++i) validate(*w[i], n_tok);
    const int64_t n_in = w[0]->n_in;
#if defined(__x86_64__)
    // x quantized once per activation format the weights need (at most two: Q8_1 and Q8_K).
    Q8Rows qx[2];
    ActFormat formats[2] = {ActFormat::none, ActFormat::none};
    int which[kMaxSharedInput];
    int64_t row_begin[kMaxSharedInput + 1] = {0};
    for (int i = 0; i < n; ++i) {
        const ActFormat f = int8_format(w[i]->type);
        int slot = formats[0] == f ? 0 : formats[1] == f ? 1 : formats[0] == ActFormat::none ? 0 : 1;
        if (formats[slot] == ActFormat::none) {
            formats[slot] = f;
            qx[slot] = (slot == 0 ? t_qscratch : t_qscratch2).quantize(x, n_tok, n_in, f, pool);
        }
        which[i] = slot;
        row_begin[i + 1] = row_begin[i] + w[i]->n_out;
    }
    // one dispatch over the concatenated rows; a chunk may span two weights
    const GemmQ8Fn gemm_q8 = gemm_q8_for(numerics);
    const bool decode512 = use_decode512(numerics);
    pool.parallel_for(static_cast<long>(row_begin[n]), [&](long r0, long r1, int) {
        for (int i = 0; i < n; ++i) {
            const int64_t b = std::max<int64_t>(r0, row_begin[i]), e = std::min<int64_t>(r1, row_begin[i + 1]);
            if (b >= e) continue;
            const WeightMatrix& wi = *w[i];
            const Q8Rows& q = qx[which[i]];
            const int64_t local = b - row_begin[i];
            q8_rows(gemm_q8, decode512, wi.type, q, n_tok, n_in,
                    static_cast<const uint8_t*>(wi.data) + static_cast<size_t>(local) * wi.row_bytes, wi.row_bytes,
                    e - b, y[i] + local, wi.n_out);
        }
    });
#endif
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

bool matmul_uses_packed(const WeightMatrix& w, int64_t n_tok, Numerics numerics) {
    return fast_family(numerics) && n_tok > 4 && w.packed && packed_type(w.type) && active_isa() >= CpuIsa::avx2;
}

bool matmul_uses_int8(GgmlType type, int64_t n_tok, Numerics numerics) {
    // fast, int8: decode (prefill takes the packed GEMM where the weights have a packed layout, see
    // matmul_uses_packed); llama_cpp: every batch, as llama.cpp does; fp32: never
    const bool batch = numerics == Numerics::llama_cpp ? n_tok >= 1 : fast_family(numerics) && n_tok >= 1 && n_tok <= 4;
    return batch && active_isa() >= CpuIsa::avx2 && int8_type(type);
}

// Integer codes of one 32-block (w_j = d * q_j, or d * q_j + m for Q4_1/Q5_1), following the dequantizers.
void block32_codes(GgmlType type, const uint8_t* b, int* q, float* d, float* m) {
    uint16_t h;
    std::memcpy(&h, b, 2);
    *d = fp16_to_fp32(h);
    *m = 0.0f;
    if (type == GgmlType::Q4_1 || type == GgmlType::Q5_1) {
        std::memcpy(&h, b + 2, 2);
        *m = fp16_to_fp32(h);
    }
    uint32_t qh = 0;
    if (type == GgmlType::Q5_0) std::memcpy(&qh, b + 2, 4);
    if (type == GgmlType::Q5_1) std::memcpy(&qh, b + 4, 4);
    switch (type) {
        case GgmlType::Q8_0:
            for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(b[2 + j]);
            return;
        case GgmlType::Q4_0: case GgmlType::Q4_1: {
            const uint8_t* qs = b + (type == GgmlType::Q4_0 ? 2 : 4);
            const int off = type == GgmlType::Q4_0 ? 8 : 0;
            for (int j = 0; j < 16; ++j) {
                q[j] = (qs[j] & 0x0F) - off;
                q[j + 16] = (qs[j] >> 4) - off;
            }
            return;
        }
        default: {  // Q5_0, Q5_1
            const uint8_t* qs = b + (type == GgmlType::Q5_0 ? 6 : 8);
            const int off = type == GgmlType::Q5_0 ? 16 : 0;
            for (int j = 0; j < 16; ++j) {
                q[j] = ((qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - off;
                q[j + 16] = ((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - off;
            }
            return;
        }
    }
}

namespace {

// One row of a 32-block type against one Q8_1 row (ggml_vec_dot_q4_0_q8_0 etc.): sum over blocks of
// (d_w * d_x) * integer dot, plus m_w * s_x for Q4_1/Q5_1.
float dot_row_b32(GgmlType type, const uint8_t* b, size_t block_bytes, const int8_t* qx, const float* dx, const float* sx,
                  int64_t nb) {
    float acc = 0.0f, summs = 0.0f;
    int q[32];
    for (int64_t i = 0; i < nb; ++i, b += block_bytes) {
        float d, m;
        block32_codes(type, b, q, &d, &m);
        int sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += q[j] * qx[i * 32 + j];
        acc += (d * dx[i]) * static_cast<float>(sumi);
        summs += m * sx[i];
    }
    return acc + summs;
}

}  // namespace

// Integer codes of one 256-superblock with per-run integer scales: Q4_K/Q5_K w_j = d*sc[j/32]*q_j - dmin*mn[j/32]
// (sc, mn: 8 entries); Q6_K w_j = d*sc[j/16]*q_j with q_j in [-32, 31] (sc: 16 entries, dmin = 0, no mn).
void superblock_codes(GgmlType type, const uint8_t* b, int* q, int* sc, int* mn, float* d, float* dmin) {
    uint16_t h;
    if (type == GgmlType::Q6_K) {
        std::memcpy(&h, b + 208, 2);
        *d = fp16_to_fp32(h);
        *dmin = 0.0f;
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        for (int n = 0; n < 2; ++n, ql += 64, qh += 32, q += 128)
            for (int l = 0; l < 32; ++l) {
                q[l] = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                q[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            }
        for (int g = 0; g < 16; ++g) sc[g] = static_cast<int8_t>(b[192 + g]);
        return;
    }
    std::memcpy(&h, b, 2);
    *d = fp16_to_fp32(h);
    std::memcpy(&h, b + 2, 2);
    *dmin = fp16_to_fp32(h);
    const uint8_t* s = b + 4;
    for (int j = 0; j < 8; ++j) {  // ggml's get_scale_min_k4
        sc[j] = j < 4 ? (s[j] & 63) : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        mn[j] = j < 4 ? (s[j + 4] & 63) : ((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
    const bool q5 = type == GgmlType::Q5_K;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + (q5 ? 48 : 16);
    for (int j = 0; j < 4; ++j, qs += 32)
        for (int l = 0; l < 32; ++l) {
            q[64 * j + l] = (qs[l] & 0xF) + ((q5 && ((qh[l] >> (2 * j)) & 1)) ? 16 : 0);
            q[64 * j + 32 + l] = (qs[l] >> 4) + ((q5 && ((qh[l] >> (2 * j + 1)) & 1)) ? 16 : 0);
        }
}

namespace {

// One row of a K-quant type against one Q8_K row (ggml_vec_dot_q4_K_q8_K etc.): per superblock
// (d_x d_w) * sum(scale * integer dot) - (d_x dmin_w) * sum(min * code sums).
float dot_row_k(GgmlType type, const uint8_t* b, size_t block_bytes, const int8_t* qx, const float* dx,
                const int16_t* bsums, int64_t nb) {
    float acc = 0.0f;
    int q[256], sc[16], mn[8] = {};  // mn: Q4_K/Q5_K only
    const int run = type == GgmlType::Q6_K ? 16 : 32;  // codes per scale
    for (int64_t i = 0; i < nb; ++i, b += block_bytes) {
        float d, dmin;
        superblock_codes(type, b, q, sc, mn, &d, &dmin);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 256; j += run) {
            int dot = 0;
            for (int l = 0; l < run; ++l) dot += q[j + l] * qx[i * 256 + j + l];
            sumi += sc[j / run] * dot;
        }
        if (type != GgmlType::Q6_K)
            for (int j = 0; j < 8; ++j) summ += mn[j] * (bsums[i * 16 + 2 * j] + bsums[i * 16 + 2 * j + 1]);
        acc += (dx[i] * d) * static_cast<float>(sumi) - (dx[i] * dmin) * static_cast<float>(summ);
    }
    return acc;
}

}  // namespace

void matmul_int8_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y) {
    validate(w, n_tok);
    const ActFormat f = int8_format(w.type);
    if (f == ActFormat::none)
        throw_error(ErrorCode::unsupported, "matmul_int8_reference: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K only");
    const int64_t K = w.n_in;
    const GgmlTypeTraits& tr = ggml_traits(w.type);
    const int64_t nb = K / tr.block_size;
    // one token row at a time, quantized by the reference quantizer
    std::vector<int8_t> q(static_cast<size_t>(K));
    std::vector<float> d(static_cast<size_t>(K / 32)), s(static_cast<size_t>(K / 32));
    std::vector<int16_t> bsums(static_cast<size_t>(K / 16));
    Q8Rows r;
    r.q = q.data();
    r.d = d.data();
    r.s = s.data();
    r.bsums = bsums.data();
    const uint8_t* wbytes = static_cast<const uint8_t*>(w.data);
    for (int64_t t = 0; t < n_tok; ++t) {
        quantize_row(x + t * K, K, f, r, 0, true);
        for (int64_t o = 0; o < w.n_out; ++o) {
            const uint8_t* row = wbytes + static_cast<size_t>(o) * w.row_bytes;
            y[t * w.n_out + o] = f == ActFormat::q8_K ? dot_row_k(w.type, row, tr.type_size, r.q, r.d, r.bsums, nb)
                                                      : dot_row_b32(w.type, row, tr.type_size, r.q, r.d, r.s, nb);
        }
    }
}

}  // namespace lazyllm_edge
