// Tokenizer built from the GGUF's tokenizer.ggml.* metadata: byte-level BPE ("gpt2") with the
// pre-tokenizer named by tokenizer.ggml.pre, SentencePiece-style BPE ("gemma4": merges over raw UTF-8 with
// spaces escaped as U+2581) and SentencePiece-style ("llama").
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lazyllm_edge {

class GgufFile;

// llama.cpp token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t { undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct TokenizerVocab {
    std::string model;                 // "gpt2", "gemma4" or "llama"
    std::string pre;                   // pre-tokenizer name ("smollm", "llama-bpe", "qwen2", "default", ...)
    std::string model_name;            // general.name, lowercased (llama.cpp sets some token attributes by it)
    std::vector<std::string> tokens;   // token text as stored (byte-level BPE: GPT-2 byte-to-unicode mapped)
    std::vector<float> scores;         // SentencePiece scores (may be empty for BPE)
    std::vector<int32_t> token_types;  // TokenType per token (may be empty -> all normal)
    std::vector<std::string> merges;   // BPE merges "a b"
    int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1, eot_id = -1, eom_id = -1;
    bool add_bos = false, add_eos = false, add_space_prefix = false;
};

// Reads tokenizer.ggml.* from the file; Error(model_load) on missing/inconsistent data.
TokenizerVocab read_tokenizer_vocab(const GgufFile& file);

class Tokenizer {
public:
    // Error(model_load) for an unknown tokenizer model or pre-tokenizer name.
    explicit Tokenizer(TokenizerVocab vocab);
    ~Tokenizer();

    // add_special: prepend BOS / append EOS as the vocab's flags say.
    // parse_special: text like "<|im_start|>" becomes the control/user-defined token instead of plain text.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // The text of the tokens as llama.cpp's llama_detokenize gives it: the pieces concatenated, the first one
    // without the leading space a SentencePiece prefix put there, spaces cleaned up where the vocabulary asks
    // (clean_up_tokenization_spaces). render_special=false drops control tokens (BOS/EOS/...).
    // Out-of-range ids -> Error(invalid_argument).
    std::string decode(const int32_t* ids, size_t n, bool render_special = true) const;
    std::string token_to_piece(int32_t id, bool render_special = true) const;  // raw bytes of one token, as is

    int32_t n_vocab() const;
    int32_t bos_id() const;
    int32_t eos_id() const;
    bool add_bos() const;
    bool is_end_of_generation(int32_t id) const;  // EOS, EOT, EOM and other end-of-turn control tokens
    bool is_control(int32_t id) const;
    const TokenizerVocab& vocab() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Turns a token stream into text pieces that are always whole UTF-8 sequences: bytes of an
// incomplete character are held back until the token that completes it arrives.
class StreamingDetokenizer {
public:
    explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool render_special = false);
    std::string push(int32_t id);  // may return "" while a character is incomplete
    std::string flush();           // whatever is held back (invalid bytes replaced by U+FFFD)
    void reset();

private:
    const Tokenizer& tokenizer_;
    bool render_special_;
    std::string pending_;
};

}  // namespace lazyllm_edge
