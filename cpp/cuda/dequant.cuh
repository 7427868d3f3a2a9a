// Device dequantizers: 8 consecutive weights of one row at a time, for every type the CPU path supports.
// Each follows ggml-quants.c (and cpp/cpu/kernels.cpp's scalar reference) exactly; k0 is a multiple of 8,
// so the 8 values lie in one block (one sub-block of a K-quant) and share its scales.
#pragma once
#include <cstdint>
#include <cuda_fp16.h>

#include "gguf/ggml_types.h"

namespace lazyllm_edge {
namespace cuda {

__device__ __forceinline__ float load_half(const uint8_t* p) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(p[0] | (p[1] << 8))));
}

template <GgmlType T>
struct Dequant;

template <>
struct Dequant<GgmlType::F32> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const float* r = reinterpret_cast<const float*>(row) + k0;
        for (int i = 0; i < 8; ++i) y[i] = r[i];
    }
};
template <>
struct Dequant<GgmlType::F16> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const __half* r = reinterpret_cast<const __half*>(row) + k0;
        for (int i = 0; i < 8; ++i) y[i] = __half2float(r[i]);
    }
};
template <>
struct Dequant<GgmlType::BF16> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint16_t* r = reinterpret_cast<const uint16_t*>(row) + k0;
        for (int i = 0; i < 8; ++i) y[i] = __uint_as_float(static_cast<uint32_t>(r[i]) << 16);
    }
};
// block_q4_0: d (fp16), qs[16]; element j < 16 is the low nibble of qs[j], j >= 16 the high nibble of qs[j-16]
template <>
struct Dequant<GgmlType::Q4_0> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 32) * 18;
        const float d = load_half(b);
        const int j0 = k0 % 32, shift = j0 < 16 ? 0 : 4;
        const uint8_t* qs = b + 2 + (j0 % 16);
        for (int i = 0; i < 8; ++i) y[i] = static_cast<float>(((qs[i] >> shift) & 0x0F) - 8) * d;
    }
};
template <>
struct Dequant<GgmlType::Q4_1> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 32) * 20;
        const float d = load_half(b), m = load_half(b + 2);
        const int j0 = k0 % 32, shift = j0 < 16 ? 0 : 4;
        const uint8_t* qs = b + 4 + (j0 % 16);
        for (int i = 0; i < 8; ++i) y[i] = static_cast<float>((qs[i] >> shift) & 0x0F) * d + m;
    }
};
// block_q5_0: d, qh (32 bits, bit j = 5th bit of element j), qs[16]
template <>
struct Dequant<GgmlType::Q5_0> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 32) * 22;
        const float d = load_half(b);
        const uint32_t qh = b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<uint32_t>(b[5]) << 24);
        const int j0 = k0 % 32, shift = j0 < 16 ? 0 : 4;
        const uint8_t* qs = b + 6 + (j0 % 16);
        for (int i = 0; i < 8; ++i) {
            const int q = ((qs[i] >> shift) & 0x0F) | (((qh >> (j0 + i)) & 1) << 4);
            y[i] = static_cast<float>(q - 16) * d;
        }
    }
};
template <>
struct Dequant<GgmlType::Q5_1> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 32) * 24;
        const float d = load_half(b), m = load_half(b + 2);
        const uint32_t qh = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<uint32_t>(b[7]) << 24);
        const int j0 = k0 % 32, shift = j0 < 16 ? 0 : 4;
        const uint8_t* qs = b + 8 + (j0 % 16);
        for (int i = 0; i < 8; ++i) {
            const int q = ((qs[i] >> shift) & 0x0F) | (((qh >> (j0 + i)) & 1) << 4);
            y[i] = static_cast<float>(q) * d + m;
        }
    }
};
template <>
struct Dequant<GgmlType::Q8_0> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 32) * 34;
        const float d = load_half(b);
        const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2) + (k0 % 32);
        for (int i = 0; i < 8; ++i) y[i] = static_cast<float>(qs[i]) * d;
    }
};

// K-quant 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* q, int* d, int* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// block_q4_K (256): d, dmin, scales[12], qs[128]; 64-element chunk c uses bytes qs[32c, 32c+32):
// its first 32 elements are the low nibbles (sub-block 2c), the next 32 the high nibbles (2c+1).
template <>
struct Dequant<GgmlType::Q4_K> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 256) * 144;
        const int j = k0 % 256, sub = j / 32, chunk = j / 64, l0 = j % 32, shift = (sub & 1) * 4;
        int sc, mn;
        scale_min_k4(sub, b + 4, &sc, &mn);
        const float d = load_half(b) * sc, m = load_half(b + 2) * mn;
        const uint8_t* q = b + 16 + chunk * 32 + l0;
        for (int i = 0; i < 8; ++i) y[i] = d * ((q[i] >> shift) & 0xF) - m;
    }
};
// block_q5_K (256): d, dmin, scales[12], qh[32], qs[128]; as Q4_K plus a 5th bit: bit `sub` of qh[l]
template <>
struct Dequant<GgmlType::Q5_K> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 256) * 176;
        const int j = k0 % 256, sub = j / 32, chunk = j / 64, l0 = j % 32, shift = (sub & 1) * 4;
        int sc, mn;
        scale_min_k4(sub, b + 4, &sc, &mn);
        const float d = load_half(b) * sc, m = load_half(b + 2) * mn;
        const uint8_t* qh = b + 16 + l0;
        const uint8_t* q = b + 48 + chunk * 32 + l0;
        for (int i = 0; i < 8; ++i)
            y[i] = d * (((q[i] >> shift) & 0xF) + ((qh[i] >> sub) & 1 ? 16 : 0)) - m;
    }
};
// block_q6_K (256): ql[128], qh[64], scales[16] (int8), d; 128-element half n, within it quarter
// g = (j % 128) / 32 takes low/high nibbles of ql[64n + 32(g&1) + l] and bits 2g of qh[32n + l].
template <>
struct Dequant<GgmlType::Q6_K> {
    __device__ static void run(const uint8_t* row, int k0, float* y) {
        const uint8_t* b = row + (k0 / 256) * 210;
        const int j = k0 % 256, n = j / 128, g = (j % 128) / 32, l0 = j % 32;
        const float d = load_half(b + 208);
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n;
        const float ds = d * sc[l0 / 16 + 2 * g];
        const uint8_t* ql = b + 64 * n + 32 * (g & 1) + l0;
        const uint8_t* qh = b + 128 + 32 * n + l0;
        const int shift = g < 2 ? 0 : 4;
        for (int i = 0; i < 8; ++i) {
            const int q = (((ql[i] >> shift) & 0xF) | (((qh[i] >> (2 * g)) & 3) << 4)) - 32;
            y[i] = ds * q;
        }
    }
};

// Calls f.template operator()<T>() for the runtime type; false for a type without a device dequantizer.
template <class F>
bool dispatch_type(GgmlType t, F&& f) {
    switch (t) {
        case GgmlType::F32: f.template operator()<GgmlType::F32>(); return true;
        case GgmlType::F16: f.template operator()<GgmlType::F16>(); return true;
        case GgmlType::BF16: f.template operator()<GgmlType::BF16>(); return true;
        case GgmlType::Q4_0: f.template operator()<GgmlType::Q4_0>(); return true;
        case GgmlType::Q4_1: f.template operator()<GgmlType::Q4_1>(); return true;
        case GgmlType::Q5_0: f.template operator()<GgmlType::Q5_0>(); return true;
        case GgmlType::Q5_1: f.template operator()<GgmlType::Q5_1>(); return true;
        case GgmlType::Q8_0: f.template operator()<GgmlType::Q8_0>(); return true;
        case GgmlType::Q4_K: f.template operator()<GgmlType::Q4_K>(); return true;
        case GgmlType::Q5_K: f.template operator()<GgmlType::Q5_K>(); return true;
        case GgmlType::Q6_K: f.template operator()<GgmlType::Q6_K>(); return true;
        default: return false;
    }
}

}  // namespace cuda
}  // namespace lazyllm_edge
