// The int8 prefill GEMM of `fast` numerics: quantized weights repacked at load into an interleaved layout
// ("packed"), activations quantized once per matrix into blocks of 32 with an fp32 scale, and register-blocked
// tiles with vpdpbusd (AVX-512 VNNI, AVX-VNNI) or vpmaddubsw + vpmaddwd (AVX2), chosen at run time.
//
// Every supported type is written as w = s * u + m per run of codes, with unsigned codes u (u8) and fp32 s, m
// that reproduce the GGUF dequantization exactly:
//   Q4_0 u = q (0..15), s = d, m = -8 d        Q4_1 u = q, s = d, m = m            Q4_K u = q, s = d sc, m = -dmin mn
//   Q5_0 u = q (0..31), s = d, m = -16 d       Q5_1 u = q, s = d, m = m            Q5_K u = q, s = d sc, m = -dmin mn
//   Q6_K u = q + 32 (0..63), s = d sc, m = -32 s (runs of 16)                      Q8_0 u = q + 128, s = d, m = -128 d
// The constant offsets (Q4_0, Q5_0, Q6_K, Q8_0: m = -off s) are subtracted in the integer sums as off * sum(x codes).
//
// Layout of a packed matrix: rows in groups of 8 (the last group padded with zero codes and scales), each group
// the K/32 blocks of its 8 rows one after the other; a block is
//   codes  (4 chunks, 64 bytes each) chunk c = [row 0: 8 bytes | row 1 | ... | row 7]; a row's 8 bytes are codes
//          4c..4c+3 then 16+4c..16+4c+3 of the block (two dwords: "parity" 0 covers codes 0..15, parity 1
//          codes 16..31, so a Q6_K run of 16 is one parity); 4-bit types store two chunks per byte (128 bytes:
//          chunk c in the low nibbles of bytes 64(c%2).., chunk c+2 in the high nibbles);
//   scales (8 floats, one per row; Q6_K 16: [row][parity]);
//   mins   (8 floats, Q4_1 Q5_1 Q4_K Q5_K only).
// A kernel lane (32 bits) is then one (row, parity): it holds a row's dot with 16 of the block's codes.
//
// The activations use the same permutation: x block b of a token is 32 int8 codes in the order above (so the
// 8 bytes of chunk c broadcast to every row), its scale dx, the negated code sums per parity and, for the min types,
// dx * (sum of the codes). With one pass (8-bit codes) they are llama.cpp's own activations for the weight type:
// Q8_K (one scale per 256 values, ggml's quantize_row_q8_K) for the K-quants, else Q8_0/Q8_1 (dx = amax/127 and
// dx * sum rounded to fp16 as ggml stores them), so the integer sums are the ones llama.cpp's CPU backend forms.
// With two passes dx = amax/127/128 (fp32) and the codes carry 15 bits.
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/weight_matrix.h"

namespace lazyllm_edge {

class ThreadPool;

// True for the types the packed layout covers (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K).
bool packed_type(GgmlType type);

// Bytes of one matrix's packed layout (0 for other types).
size_t packed_size(const WeightMatrix& w);

// Writes w's packed layout into dst (packed_size(w) bytes, 64-byte aligned). Plain C++, run once at load.
void pack_weights(const WeightMatrix& w, uint8_t* dst);

// Activations of n_tok tokens in the packed int8 format (pointers into a caller's buffer). With two passes each
// block has a second set of codes, the rounding residual: x ~ d (128 q_hi + q_lo), q_lo in [-64, 64] (15 bits),
// and the kernels multiply both (two vpdpbusd per chunk) and combine the integer sums as 128 hi + lo.
struct PackedX {
    int passes = 1;           // 1: 8-bit codes; 2: hi and lo codes
    bool q8_K = false;        // one pass: scales per 256 values (Q8_K, for K-quant weights), else per 32 (Q8_0/Q8_1)
    int8_t* q = nullptr;      // (n_tok, K/32, passes, 32) codes, permuted within each block of 32
    float* d = nullptr;       // (n_tok, K/32) block scales (two passes: amax/127/128)
    int32_t* nsum = nullptr;  // (n_tok, K/32, 2) negated code sums per parity (two passes: of 128 hi + lo)
    float* xs = nullptr;      // (n_tok, K/32, 2) [dx * sum of the block's codes, 0] (for the mins)
};

// Bytes of a PackedX buffer for n_tok rows of K, and its arrays carved from `buf` (64-byte aligned).
size_t packed_x_bytes(int64_t n_tok, int64_t K, int passes);
PackedX packed_x_layout(void* buf, int64_t n_tok, int64_t K, int passes, bool q8_K = false);

// Whether one-pass activations for weights of `type` take Q8_K's scales (the K-quants, as in llama.cpp).
bool packed_q8_K(GgmlType type, int passes);

// Quantizes x (n_tok, K) into the packed format, token rows split over the pool. K a multiple of 32 (of 256 with
// px.q8_K).
void quantize_packed_x(const float* x, int64_t n_tok, int64_t K, const PackedX& px, ThreadPool& pool);
void quantize_packed_x_reference(const float* x, int64_t n_tok, int64_t K, const PackedX& px);  // scalar, one thread

// y (n_tok, w.n_out; row stride ldy) from the packed weights (w.packed) and quantized activations, rows split
// over the pool, with the best kernel the active ISA allows. The result is the same at every ISA level and for
// every split: each (row, parity) lane does the same fp32 operations in the same order.
void gemm_packed(const WeightMatrix& w, const PackedX& px, int64_t n_tok, float* y, int64_t ldy, ThreadPool& pool);

// Scalar reference of the whole path from the GGUF layout (no packed data needed): quantize x (passes 1 or 2),
// then per block and lane the same integer sums and fp32 operations as the kernels. Single thread.
void matmul_packed_reference(const WeightMatrix& w, const float* x, int64_t n_tok, float* y, int passes);

}  // namespace lazyllm_edge

namespace lazyllm_edge {
namespace packed {

// Q8_K's scale from its group max (q8_K_max): id = -127 / max, d = 1 / id (both 0 for a group of zeros).
void q8_K_scale(float max, float* id, float* d);

// The end of quantizing block i of px (both quantizers): the negated code sums per parity, the block's scale (two
// passes: amax/127/128; Q8_K: its group's; Q8_1: amax/127 rounded to fp16) and the min term [dx * sum, 0].
void store_block_sums(const PackedX& px, int64_t i, float amax, float group_d, int sum0, int sum1);

// ggml type ids of the packed types and their layout (the kernels take the id as a template parameter)
constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;
constexpr bool nibble_codes(int t) { return t == kQ4_0 || t == kQ4_1 || t == kQ4_K; }
constexpr bool runs_of_16(int t) { return t == kQ6_K; }  // a scale per (row, parity)
constexpr bool has_mins(int t) { return t == kQ4_1 || t == kQ5_1 || t == kQ4_K || t == kQ5_K; }
// log2 of the constant offset (m = -off s), 0 for the types with mins
constexpr int offset_shift(int t) { return t == kQ4_0 ? 3 : t == kQ5_0 ? 4 : t == kQ6_K ? 5 : t == kQ8_0 ? 7 : 0; }
constexpr int code_bytes(int t) { return nibble_codes(t) ? 128 : 256; }
constexpr int scale_bytes(int t) { return runs_of_16(t) ? 64 : 32; }
constexpr int block_bytes(int t) { return code_bytes(t) + scale_bytes(t) + (has_mins(t) ? 32 : 0); }

constexpr int kGroupRows = 8;  // rows interleaved per group
constexpr int kTokenPad = 8;   // PackedX rows are padded (with zeros) to a multiple of this (every tile's tokens divide it)

}  // namespace packed
}  // namespace lazyllm_edge
