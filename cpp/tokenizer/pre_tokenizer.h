// Byte-level BPE pre-tokenizers: hand-written equivalents of the regex lists that llama.cpp's
// llm_tokenizer_bpe uses per tokenizer.ggml.pre, applied in sequence like unicode_regex_split.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lazyllm_edge {

enum class SplitKind {
    gpt2,            // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)   (llama.cpp custom)
    llama3,          // llama3 regex with \p{N}{1,3}                                            (llama.cpp custom)
    qwen2,           // llama3 regex with \p{N}, via llama.cpp's collapsed std::regex path
    digit,           // \p{N}
    digits,          // \p{N}+
    digits3,         // [0-9][0-9][0-9]
    punct_default,   // [\p{P}\$\+<=>\^~\|]+
    punct_falcon,    // [\p{P}\$\+<=>\^~\|`]+
    bloom,           //  ?[^(\s|.,!?…。，、।۔،)]+
    gpt4o,           // gpt-4o / tekken style (case-split letters), with \p{N}{1,3}
    tekken,          // tekken: like gpt4o without contractions, \p{N}, [\r\n/]*
};

struct PreTokenizer {
    std::vector<SplitKind> steps;
    bool ignore_merges = false;  // llama3-style: a word that is a whole token skips the merges
};

// Error(model_load) for an unknown / unsupported pre-tokenizer name.
PreTokenizer make_pre_tokenizer(const std::string& pre);

// Splits text into words (UTF-8, not yet byte-encoded). Invalid UTF-8 bytes become U+FFFD.
std::vector<std::string> pre_tokenize(std::string_view text, const PreTokenizer& pt);

}  // namespace lazyllm_edge
