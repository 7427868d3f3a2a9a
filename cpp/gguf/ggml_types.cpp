#include "gguf/ggml_types.h"

namespace lazyllm_edge {

namespace {

constexpr int QK_K = 256;

struct Entry {
    uint32_t id;
    GgmlTypeTraits traits;
};

// Block geometry exactly as in ggml (ggml.c type_traits); ids 4, 5 (Q4_2/Q4_3) were removed upstream.
constexpr Entry kTable[] = {
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 2 + 16, true}},
    {3, {"Q4_1", 32, 2 + 2 + 16, true}},
    {6, {"Q5_0", 32, 2 + 4 + 16, true}},
    {7, {"Q5_1", 32, 2 + 2 + 4 + 16, true}},
    {8, {"Q8_0", 32, 2 + 32, true}},
    {9, {"Q8_1", 32, 4 + 4 + 32, false}},
    {10, {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, false}},
    {11, {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, false}},
    {12, {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, true}},
    {13, {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, true}},
    {14, {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, true}},
    {15, {"Q8_K", QK_K, 4 + QK_K + QK_K / 8, false}},
    {16, {"IQ2_XXS", QK_K, 2 + QK_K / 4, false}},
    {17, {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, false}},
    {18, {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, false}},
    {19, {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, false}},
    {20, {"IQ4_NL", 32, 2 + 16, false}},
    {21, {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false}},
    {22, {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, false}},
    {23, {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false}},
    {24, {"I8", 1, 1, false}},
    {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},
    {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},
    {29, {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false}},
    {30, {"BF16", 1, 2, true}},
};

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t type_id) {
    for (const Entry& e : kTable)
        if (e.id == type_id) return &e.traits;
    return nullptr;
}

const char* ggml_type_name(GgmlType t) {
    const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(t));
    return tr ? tr->name : "unknown";
}

}  // namespace lazyllm_edge
