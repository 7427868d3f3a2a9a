// The packed int8 GEMM's tile kernel and row driver, written once over an ISA's vector operations `S`
// (matmul_packed_avx2.cpp: AVX2 and AVX-VNNI on 256-bit vectors; matmul_packed_avx512.cpp: AVX-512 VNNI).
// Layout and arithmetic: matmul_packed.h. Included only by those files (each compiled for its ISA); everything
// has internal linkage, so no ISA's code can be picked by the linker for another's caller.
//
// S provides: VI / VF (int32 / fp32 vectors of 2 * kRows lanes, lane = (row, parity)), kRows (rows per vector),
// codes(block, c, sub) (chunk c of the block's codes for the vector's rows, as u8), dot<T>(acc, codes, x) (acc +
// the 4-code dots per lane, exact), scales8 / scales16 (a block's per-row or per-lane floats as lanes), bcast64,
// offset_init<shift>(nsum pair), and the fp32 operations.
#pragma once
#if defined(__x86_64__)
#include <cstdint>
#include <cstring>

#include "cpu/matmul_packed.h"

namespace lazyllm_edge {
namespace {

// y[t][r] for NT tokens from t0 (rows of px, padded) x MR vectors of rows; vector v reads the blocks at w[v]
// (its group's first block) through sub-vector sub[v] of the group. Outputs go to out (NT, MR * S::kRows).
template <class S, int T, int MR, int NT, int P>
void packed_tile(const uint8_t* const* w, const int* sub, const PackedX& px, int64_t t0, int64_t K, float* out) {
    using VI = typename S::VI;
    using VF = typename S::VF;
    constexpr int BB = packed::block_bytes(T);
    constexpr int CB = packed::code_bytes(T);
    const int64_t nb = K / 32;
    VF acc[MR][NT];
    for (int v = 0; v < MR; ++v)
        for (int t = 0; t < NT; ++t) acc[v][t] = S::fzero();
    for (int64_t b = 0; b < nb; ++b) {
        // this block of each vector's rows: codes by chunk, scales (and mins) as lanes
        VI wc[MR][4];
        VF sv[MR], mv[MR];
        for (int v = 0; v < MR; ++v) {
            const uint8_t* blk = w[v] + b * BB;
            S::prefetch(blk + 4 * BB);
            S::template codes<T>(blk, sub[v], wc[v]);
            const float* sc = reinterpret_cast<const float*>(blk + CB);
            sv[v] = packed::runs_of_16(T) ? S::scales16(sc, sub[v]) : S::scales8(sc, sub[v]);
            if constexpr (packed::has_mins(T)) mv[v] = S::scales8(sc + 8, sub[v]);
        }
        // against this block of each token
        for (int t = 0; t < NT; ++t) {
            const int64_t i = (t0 + t) * nb + b;  // (token, block)
            const int8_t* xq = px.q + i * 32 * P;
            VI dot[MR];
            for (int v = 0; v < MR; ++v) dot[v] = S::template offset_init<T>(px.nsum + 2 * i);
            if constexpr (P == 2) {  // the hi codes' sums, then 128 hi + lo
                VI hi[MR];
                for (int v = 0; v < MR; ++v) hi[v] = S::izero();
                for (int c = 0; c < 4; ++c) {
                    const VI xc = S::bcast64(xq + 8 * c);
                    for (int v = 0; v < MR; ++v) hi[v] = S::template dot<T>(hi[v], wc[v][c], xc);
                }
                for (int v = 0; v < MR; ++v) dot[v] = S::add_shifted7(dot[v], hi[v]);
                xq += 32;
            }
            for (int c = 0; c < 4; ++c) {
                const VI xc = S::bcast64(xq + 8 * c);
                for (int v = 0; v < MR; ++v) dot[v] = S::template dot<T>(dot[v], wc[v][c], xc);
            }
            const VF dx = S::fset1(px.d[i]);
            for (int v = 0; v < MR; ++v) acc[v][t] = S::fmadd(S::cvt(dot[v]), S::fmul(sv[v], dx), acc[v][t]);
            if constexpr (packed::has_mins(T)) {
                const VF xs = S::fbcast64(px.xs + 2 * i);
                for (int v = 0; v < MR; ++v) acc[v][t] = S::fmadd(mv[v], xs, acc[v][t]);
            }
        }
    }
    // each row: the sum of its two parity lanes
    for (int t = 0; t < NT; ++t)
        for (int v = 0; v < MR; ++v) {
            alignas(64) float lanes[2 * S::kRows];
            S::fstore(lanes, acc[v][t]);
            for (int r = 0; r < S::kRows; ++r) out[t * MR * S::kRows + v * S::kRows + r] = lanes[2 * r] + lanes[2 * r + 1];
        }
}

// Rows [row0, row1) of y (n_tok, n_out; stride ldy) from the packed matrix; row0 a multiple of the tile's rows.
// Cache blocking: a chunk of tokens whose codes stay in L2 sweeps over tiles of rows (their blocks stay in L2).
template <class S, int T, int MR, int NT, int P>
void packed_rows(const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1, const PackedX& px,
                 int64_t n_tok, float* y, int64_t ldy) {
    constexpr int kTileRows = MR * S::kRows;
    constexpr int kVecPerGroup = packed::kGroupRows / S::kRows;
    const size_t group_bytes = static_cast<size_t>(K / 32) * packed::block_bytes(T);
    int64_t tok_chunk = (512 * 1024 / (K * P)) / NT * NT;
    if (tok_chunk < NT) tok_chunk = NT;
    alignas(64) float out[NT * kTileRows];
    for (int64_t c0 = 0; c0 < n_tok; c0 += tok_chunk) {
        const int64_t c1 = n_tok - c0 < tok_chunk ? n_tok : c0 + tok_chunk;
        for (int64_t r0 = row0; r0 < row1; r0 += kTileRows) {
            const uint8_t* w[MR];
            int sub[MR];
            for (int v = 0; v < MR; ++v) {
                // a vector past the last group reads the last one again (its rows are not stored)
                int64_t row = r0 + v * S::kRows;
                if (row >= n_out) row = r0;
                w[v] = packed + static_cast<size_t>(row / packed::kGroupRows) * group_bytes;
                sub[v] = static_cast<int>((row / S::kRows) % kVecPerGroup);
            }
            const int64_t nr = (n_out - r0 < kTileRows ? n_out - r0 : kTileRows);
            for (int64_t t = c0; t < c1; t += NT) {  // px rows are padded to a multiple of NT
                packed_tile<S, T, MR, NT, P>(w, sub, px, t, K, out);
                const int64_t nt = c1 - t < NT ? c1 - t : NT;
                for (int64_t i = 0; i < nt; ++i) std::memcpy(y + (t + i) * ldy + r0, out + i * kTileRows, nr * sizeof(float));
            }
        }
    }
}

// packed_rows for the weight type `type` (a ggml type id); false for a type without a packed layout.
template <class S, int MR, int NT>
bool packed_rows_for_type(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                          const PackedX& px, int64_t n_tok, float* y, int64_t ldy) {
    switch (type) {
#define LAZYLLM_EDGE_PACKED_CASE(T)                                                                      \
    case packed::T:                                                                                      \
        if (px.passes == 2) packed_rows<S, packed::T, MR, NT, 2>(packed, K, n_out, row0, row1, px, n_tok, y, ldy); \
        else packed_rows<S, packed::T, MR, NT, 1>(packed, K, n_out, row0, row1, px, n_tok, y, ldy);                \
        return true;
        LAZYLLM_EDGE_PACKED_CASE(kQ4_0)
        LAZYLLM_EDGE_PACKED_CASE(kQ4_1)
        LAZYLLM_EDGE_PACKED_CASE(kQ5_0)
        LAZYLLM_EDGE_PACKED_CASE(kQ5_1)
        LAZYLLM_EDGE_PACKED_CASE(kQ8_0)
        LAZYLLM_EDGE_PACKED_CASE(kQ4_K)
        LAZYLLM_EDGE_PACKED_CASE(kQ5_K)
        LAZYLLM_EDGE_PACKED_CASE(kQ6_K)
#undef LAZYLLM_EDGE_PACKED_CASE
        default: return false;
    }
}

}  // namespace
}  // namespace lazyllm_edge
#endif  // __x86_64__
