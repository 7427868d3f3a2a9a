// The packed int8 prefill GEMM (matmul_packed.h): the load-time repack, the activation quantizer's reference,
// the run-time choice of kernel and the scalar reference. Baseline x86-64; the kernels live in
// matmul_packed_avx2.cpp, matmul_packed_avxvnni.cpp and matmul_packed_avx512.cpp.
#include "cpu/matmul_packed.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"

namespace lazyllm_edge {

#if defined(__x86_64__)
namespace avx2 {
void quantize_packed_row(const float* x, int64_t K, const PackedX& px, int64_t tok);
bool gemm_packed_rows(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                      const PackedX& px, int64_t n_tok, float* y, int64_t ldy);
}
namespace avxvnni {
bool gemm_packed_rows(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                      const PackedX& px, int64_t n_tok, float* y, int64_t ldy);
}
namespace avx512vnni {
bool gemm_packed_rows(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                      const PackedX& px, int64_t n_tok, float* y, int64_t ldy);
}
#endif

namespace {

int type_id(GgmlType t) { return static_cast<int>(t); }

size_t round64(size_t n) { return (n + 63) / 64 * 64; }

int64_t padded_tokens(int64_t n_tok) { return (n_tok + packed::kTokenPad - 1) / packed::kTokenPad * packed::kTokenPad; }

size_t block_bytes(GgmlType t) { return static_cast<size_t>(packed::block_bytes(type_id(t))); }

// One GGUF row as unsigned codes and per-run-of-16 scales and mins: w_j = s[j/16] * u[j] + m[j/16] exactly.
void row_codes(const WeightMatrix& w, int64_t row, uint8_t* u, float* s, float* m) {
    const uint8_t* b = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(row) * w.row_bytes;
    const GgmlTypeTraits& tr = ggml_traits(w.type);
    const int64_t nb = w.n_in / tr.block_size;
    int q[256], sc[16], mn[8];
    if (tr.block_size == 32) {
        const int shift = packed::offset_shift(type_id(w.type));
        const int off = shift ? 1 << shift : 0;  // the min types have none
        for (int64_t i = 0; i < nb; ++i, b += tr.type_size) {
            float d, mm;
            block32_codes(w.type, b, q, &d, &mm);
            for (int j = 0; j < 32; ++j) u[32 * i + j] = static_cast<uint8_t>(q[j] + off);
            const float mi = off ? -static_cast<float>(off) * d : mm;
            s[2 * i] = s[2 * i + 1] = d;
            m[2 * i] = m[2 * i + 1] = mi;
        }
        return;
    }
    for (int64_t i = 0; i < nb; ++i, b += tr.type_size) {
        float d, dmin;
        superblock_codes(w.type, b, q, sc, mn, &d, &dmin);
        uint8_t* ui = u + 256 * i;
        if (w.type == GgmlType::Q6_K) {
            for (int j = 0; j < 256; ++j) ui[j] = static_cast<uint8_t>(q[j] + 32);
            for (int g = 0; g < 16; ++g) {
                s[16 * i + g] = d * static_cast<float>(sc[g]);
                m[16 * i + g] = -32.0f * s[16 * i + g];
            }
        } else {
            for (int j = 0; j < 256; ++j) ui[j] = static_cast<uint8_t>(q[j]);
            for (int g = 0; g < 16; ++g) {
                s[16 * i + g] = d * static_cast<float>(sc[g / 2]);
                m[16 * i + g] = -(dmin * static_cast<float>(mn[g / 2]));
            }
        }
    }
}

// Position of code j of a block of 32 in the packed order: chunk c = (j % 16) / 4, byte (j / 16) * 4 + j % 4.
inline int packed_position(int j) { return 8 * ((j % 16) / 4) + 4 * (j / 16) + j % 4; }

// The inverse: the code at byte i of chunk c (codes 4c..4c+3, then 16+4c..16+4c+3).
constexpr int kCode[4][8] = {{0, 1, 2, 3, 16, 17, 18, 19}, {4, 5, 6, 7, 20, 21, 22, 23},
                             {8, 9, 10, 11, 24, 25, 26, 27}, {12, 13, 14, 15, 28, 29, 30, 31}};

// One token row: the reference quantizer (matmul_packed.h; the AVX2 one gives the same bits).
void quantize_packed_row_reference(const float* x, int64_t K, const PackedX& px, int64_t tok) {
    const int64_t nb = K / 32;
    const int P = px.passes;
    float group_id = 0.0f, group_d = 0.0f;  // Q8_K: one scale per 8 blocks
    for (int64_t b = 0; b < nb; ++b, x += 32) {
        const int64_t i = tok * nb + b;
        if (px.q8_K && b % 8 == 0) packed::q8_K_scale(q8_K_max(x), &group_id, &group_d);
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float id = px.q8_K ? group_id : amax != 0.0f ? 127.0f / amax : 0.0f;
        int8_t* q = px.q + i * 32 * P;
        int sum[2] = {0, 0};
        for (int j = 0; j < 32; ++j) {
            const float v = x[j] * id;
            int hi = static_cast<int>(std::nearbyint(v));
            if (px.q8_K && hi > 127) hi = 127;  // ggml clamps (the code of -max would be 128)
            q[packed_position(j)] = static_cast<int8_t>(hi);
            if (P == 2) {  // the residual (exact in fp32) in 1/128 steps
                const int lo = static_cast<int>(std::nearbyint((v - static_cast<float>(hi)) * 128.0f));
                q[32 + packed_position(j)] = static_cast<int8_t>(lo);
                sum[j / 16] += 128 * hi + lo;
            } else {
                sum[j / 16] += hi;
            }
        }
        packed::store_block_sums(px, i, amax, group_d, sum[0], sum[1]);
    }
}

// Padding rows (tokens n_tok .. padded) quantize to zero and contribute nothing.
void zero_padding(const PackedX& px, int64_t n_tok, int64_t K) {
    const int64_t nb = K / 32, pad = padded_tokens(n_tok) - n_tok;
    std::memset(px.q + n_tok * K * px.passes, 0, static_cast<size_t>(pad * K * px.passes));
    std::memset(px.d + n_tok * nb, 0, static_cast<size_t>(pad * nb) * sizeof(float));
    std::memset(px.nsum + 2 * n_tok * nb, 0, static_cast<size_t>(2 * pad * nb) * sizeof(int32_t));
    std::memset(px.xs + 2 * n_tok * nb, 0, static_cast<size_t>(2 * pad * nb) * sizeof(float));
}

using GemmRowsFn = bool (*)(uint32_t, const uint8_t*, int64_t, int64_t, int64_t, int64_t, const PackedX&, int64_t, float*,
                            int64_t);

// The kernel of the active ISA level (null below AVX2).
GemmRowsFn gemm_rows_for_isa() {
#if defined(__x86_64__)
    switch (active_isa()) {
        case CpuIsa::avx512vnni: return avx512vnni::gemm_packed_rows;
        case CpuIsa::avxvnni: return avxvnni::gemm_packed_rows;
        case CpuIsa::avx2: return avx2::gemm_packed_rows;
        default: break;
    }
#endif
    return nullptr;
}

}  // namespace

bool packed_type(GgmlType type) {
    switch (type_id(type)) {
        case packed::kQ4_0: case packed::kQ4_1: case packed::kQ5_0: case packed::kQ5_1: case packed::kQ8_0:
        case packed::kQ4_K: case packed::kQ5_K: case packed::kQ6_K: return true;
        default: return false;
    }
}

size_t packed_size(const WeightMatrix& w) {
    if (!packed_type(w.type) || w.n_in % 32 != 0) return 0;
    const size_t groups = static_cast<size_t>((w.n_out + packed::kGroupRows - 1) / packed::kGroupRows);
    return round64(groups * static_cast<size_t>(w.n_in / 32) * block_bytes(w.type));
}

void pack_weights(const WeightMatrix& w, uint8_t* dst) {
    const int t = type_id(w.type);
    const int64_t K = w.n_in, nb = K / 32;
    const size_t bb = block_bytes(w.type), cb = static_cast<size_t>(packed::code_bytes(t));
    std::memset(dst, 0, packed_size(w));  // padding rows: zero codes, scales and mins
    // (8, K) codes and (8, K/16) scales / mins of one group's rows
    std::vector<uint8_t> u(static_cast<size_t>(packed::kGroupRows * K));
    std::vector<float> s(static_cast<size_t>(packed::kGroupRows * K / 16)), m(s.size());
    for (int64_t g = 0; g * packed::kGroupRows < w.n_out; ++g) {
        const int64_t rows = std::min<int64_t>(packed::kGroupRows, w.n_out - g * packed::kGroupRows);
        for (int64_t r = 0; r < rows; ++r)
            row_codes(w, g * packed::kGroupRows + r, u.data() + r * K, s.data() + r * (K / 16), m.data() + r * (K / 16));
        for (int64_t b = 0; b < nb; ++b) {
            uint8_t* blk = dst + static_cast<size_t>(g * nb + b) * bb;
            float* sc = reinterpret_cast<float*>(blk + cb);
            for (int64_t r = 0; r < rows; ++r) {
                const uint8_t* ur = u.data() + r * K + b * 32;
                uint8_t* out = blk + r * 8;
                if (packed::nibble_codes(t)) {  // chunk c in the low nibbles of half c % 2, chunk c + 2 in the high ones
                    for (int half = 0; half < 2; ++half)
                        for (int i = 0; i < 8; ++i)
                            out[64 * half + i] = static_cast<uint8_t>(ur[kCode[half][i]] | (ur[kCode[half + 2][i]] << 4));
                } else {
                    for (int c = 0; c < 4; ++c)
                        for (int i = 0; i < 8; ++i) out[64 * c + i] = ur[kCode[c][i]];
                }
                const float* sr = s.data() + r * (K / 16) + 2 * b;
                const float* mr = m.data() + r * (K / 16) + 2 * b;
                if (packed::runs_of_16(t)) {
                    sc[2 * r] = sr[0];
                    sc[2 * r + 1] = sr[1];
                } else {
                    sc[r] = sr[0];
                    if (packed::has_mins(t)) sc[8 + r] = mr[0];
                }
            }
        }
    }
}

namespace packed {
void q8_K_scale(float max, float* id, float* d) {
    *id = max != 0.0f ? -127.0f / max : 0.0f;
    *d = max != 0.0f ? 1.0f / *id : 0.0f;
}

void store_block_sums(const PackedX& px, int64_t i, float amax, float group_d, int sum0, int sum1) {
    px.nsum[2 * i] = -sum0;
    px.nsum[2 * i + 1] = -sum1;
    const float total = static_cast<float>(sum0 + sum1);
    if (px.passes == 2) {
        px.d[i] = amax / 127.0f / 128.0f;
        px.xs[2 * i] = px.d[i] * total;
    } else if (px.q8_K) {
        px.d[i] = group_d;
        px.xs[2 * i] = group_d * total;
    } else {  // Q8_1: the scale and d * sum rounded to fp16 as ggml stores them
        const float d = amax / 127.0f;
        px.d[i] = fp16_to_fp32(fp32_to_fp16(d));
        px.xs[2 * i] = fp16_to_fp32(fp32_to_fp16(d * total));
    }
    px.xs[2 * i + 1] = 0.0f;
}
}  // namespace packed

bool packed_q8_K(GgmlType type, int passes) {
    return passes == 1 && (type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q6_K);
}

size_t packed_x_bytes(int64_t n_tok, int64_t K, int passes) {
    const size_t n = static_cast<size_t>(padded_tokens(n_tok)), nb = static_cast<size_t>(K / 32);
    return round64(n * static_cast<size_t>(K * passes)) + round64(n * nb * 4) + 2 * round64(n * nb * 8);
}

PackedX packed_x_layout(void* buf, int64_t n_tok, int64_t K, int passes, bool q8_K) {
    if (q8_K && (passes != 1 || K % 256 != 0)) throw_error(ErrorCode::internal, "packed_x_layout: Q8_K needs one pass and K % 256 == 0");
    const size_t n = static_cast<size_t>(padded_tokens(n_tok)), nb = static_cast<size_t>(K / 32);
    uint8_t* p = static_cast<uint8_t*>(buf);
    PackedX px;
    px.passes = passes;
    px.q8_K = q8_K;
    px.q = reinterpret_cast<int8_t*>(p);
    p += round64(n * static_cast<size_t>(K * passes));
    px.d = reinterpret_cast<float*>(p);
    p += round64(n * nb * 4);
    px.nsum = reinterpret_cast<int32_t*>(p);
    p += round64(n * nb * 8);
    px.xs = reinterpret_cast<float*>(p);
    return px;
}

void quantize_packed_x_reference(const float* x, int64_t n_tok, int64_t K, const PackedX& px) {
    for (int64_t t = 0; t < n_tok; ++t) quantize_packed_row_reference(x + t * K, K, px, t);
    zero_padding(px, n_tok, K);
}

void quantize_packed_x(const float* x, int64_t n_tok, int64_t K, const PackedX& px, ThreadPool& pool) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2) {
        pool.parallel_for(static_cast<long>(n_tok), [&](long t0, long t1, int) {
            for (long t = t0; t < t1; ++t) avx2::quantize_packed_row(x + t * K, K, px, t);
        });
        zero_padding(px, n_tok, K);
        return;
    }
#endif
    quantize_packed_x_reference(x, n_tok, K, px);
}

void gemm_packed(const WeightMatrix& w, const PackedX& px, int64_t n_tok, float* y, int64_t ldy, ThreadPool& pool) {
    const GemmRowsFn rows_fn = gemm_rows_for_isa();
    if (!rows_fn || !w.packed || !packed_type(w.type))
        throw_error(ErrorCode::internal, "gemm_packed: no packed weights or no kernel for this CPU");
    // work in units of 16 rows (the widest tile), split over the pool
    constexpr int64_t kUnit = 16;
    const int64_t n_units = (w.n_out + kUnit - 1) / kUnit;
    pool.parallel_for(static_cast<long>(n_units), [&](long u0, long u1, int) {
        const int64_t r0 = u0 * kUnit, r1 = std::min<int64_t>(u1 * kUnit, w.n_out);
        rows_fn(static_cast<uint32_t>(w.type), w.packed, w.n_in, w.n_out, r0, r1, px, n_tok, y, ldy);
    });
}

void matmul_packed_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int passes) {
    if (!packed_type(w.type)) throw_error(ErrorCode::unsupported, "matmul_packed_reference: not a packed type");
    const int64_t K = w.n_in, nb = K / 32;
    if (passes != 1 && passes != 2) throw_error(ErrorCode::invalid_argument, "matmul_packed_reference: passes 1 or 2");
    std::vector<uint8_t> xbuf(packed_x_bytes(n_tok, K, passes) + 64);
    const PackedX px =
        packed_x_layout(xbuf.data() + (64 - reinterpret_cast<uintptr_t>(xbuf.data()) % 64) % 64, n_tok, K, passes,
                        packed_q8_K(w.type, passes));
    quantize_packed_x_reference(x, n_tok, K, px);
    const int t = type_id(w.type);
    const int shift = packed::offset_shift(t);
    std::vector<uint8_t> u(static_cast<size_t>(K));
    std::vector<float> s(static_cast<size_t>(K / 16)), m(s.size());
    for (int64_t o = 0; o < w.n_out; ++o) {
        row_codes(w, o, u.data(), s.data(), m.data());
        for (int64_t tok = 0; tok < n_tok; ++tok) {
            float acc[2] = {0.0f, 0.0f};  // the two parity lanes of the kernels
            for (int64_t b = 0; b < nb; ++b) {
                const int64_t i = tok * nb + b;
                const float dx = px.d[i];
                for (int p = 0; p < 2; ++p) {
                    // codes 16p..16p+15 of the block (the x codes are stored permuted)
                    int dot = shift ? px.nsum[2 * i + p] * (1 << shift) : 0;
                    const int8_t* q = px.q + i * 32 * passes;
                    for (int j = 16 * p; j < 16 * p + 16; ++j)
                        dot += u[b * 32 + j] * (passes == 2 ? 128 * q[packed_position(j)] + q[32 + packed_position(j)]
                                                            : q[packed_position(j)]);
                    const float sl = packed::runs_of_16(t) ? s[2 * b + p] : s[2 * b];
                    acc[p] = std::fma(static_cast<float>(dot), sl * dx, acc[p]);
                    if (packed::has_mins(t)) acc[p] = std::fma(m[2 * b], px.xs[2 * i + p], acc[p]);
                }
            }
            y[tok * w.n_out + o] = acc[0] + acc[1];
        }
    }
}

}  // namespace lazyllm_edge
