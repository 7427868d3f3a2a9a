// The packed int8 GEMM on AVX-VNNI (vpdpbusd on 256-bit vectors; tiles of 8 rows x 4 tokens). Compiled with
// -mavx2 -mfma -mf16c -mavxvnni; only called after a cpuid + xgetbv check (matmul_packed.cpp).
#if defined(__x86_64__)
#include "cpu/matmul_packed_ymm.h"

namespace lazyllm_edge {
namespace avxvnni {

bool gemm_packed_rows(uint32_t type, const uint8_t* packed, int64_t K, int64_t n_out, int64_t row0, int64_t row1,
                      const PackedX& px, int64_t n_tok, float* y, int64_t ldy) {
    return packed_rows_for_type<Ymm<true>, 2, 4>(type, packed, K, n_out, row0, row1, px, n_tok, y, ldy);
}

}  // namespace avxvnni
}  // namespace lazyllm_edge
#endif  // __x86_64__
