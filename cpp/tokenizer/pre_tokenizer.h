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
    qwen35,          // qwen2 with [\p{L}\p{M}]+ letter runs and [^\s\p{L}\p{M}\p{N}]+   (llama.cpp custom)
    line_break,      // [\r\n]                                                              (std::wregex)
    deepseek_letters,// \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+  (deepseek-llm's list of cased-letter ranges) (std::wregex)
    deepseek_punct,  // \s?[!-/:-~！-／：-～‘-‟　-。]+                                    (std::wregex)
    trailing_spaces, // \s+$                                                                (std::wregex)
    cjk,             // [一-龥ࠀ-一가-퟿]+                                                  (std::wregex)
    letters,         // \s?\p{L}+
    punct,           // \s?\p{P}+
    newline_runs,    // [^\n]+|[\n]+                                                         (llama.cpp custom)
};

struct PreTokenizer {
    std::vector<SplitKind> steps;
    bool ignore_merges = false;  // llama3-style: a word that is a whole token skips the merges
    bool byte_encode = true;     // words are GPT-2 byte-mapped before the merges; false: raw UTF-8 (gemma4)
    bool escape_spaces = false;  // spaces become U+2581 before splitting, and back in pieces (gemma4)
    bool clean_spaces = false;   // detokenize removes the spaces before ?!., and some contractions (llama.cpp's list)
};

// Error(model_load) for an unknown / unsupported pre-tokenizer name.
PreTokenizer make_pre_tokenizer(const std::string& pre);

// Splits text into words (UTF-8, not yet byte-encoded). Invalid UTF-8 bytes become U+FFFD.
std::vector<std::string> pre_tokenize(std::string_view text, const PreTokenizer& pt);

}  // namespace lazyllm_edge
