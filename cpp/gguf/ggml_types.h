// GGML tensor element types as stored in GGUF files: ids, block geometry, names.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lazyllm_edge {

// Numbers are the on-disk ids (ggml.h); do not renumber.
enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
};

struct GgmlTypeTraits {
    const char* name;     // "Q4_K"
    int block_size;       // elements per block (1 for plain floats)
    int type_size;        // bytes per block
    bool supported;       // this engine can compute with it
};

// Traits for a raw on-disk id, or nullptr for an id this engine does not know at all.
const GgmlTypeTraits* ggml_type_traits(uint32_t type_id);
inline const GgmlTypeTraits& ggml_traits(GgmlType t) { return *ggml_type_traits(static_cast<uint32_t>(t)); }
const char* ggml_type_name(GgmlType t);

// Bytes for one row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t ggml_row_size(GgmlType t, int64_t n) {
    const GgmlTypeTraits& tr = ggml_traits(t);
    return static_cast<size_t>(n / tr.block_size) * static_cast<size_t>(tr.type_size);
}

}  // namespace lazyllm_edge
