// Chat prompt rendering for the C++ CLI and C API, for the template families llama.cpp detects by
// substring. (Python renders the GGUF's own Jinja template instead.)
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lazyllm_edge {

class Tokenizer;

struct ChatMessage {
    std::string role;     // "system", "user", "assistant"
    std::string content;
};

// A rendered prompt in parts: the template's own text (its markers are special tokens) and message contents
// (text only: a message must not be able to write a marker).
struct ChatPart {
    std::string text;
    bool from_message = false;
};

// Renders messages plus the assistant prompt. Error(unsupported) when the template is of no known family.
std::vector<ChatPart> render_chat_parts(const std::string& chat_template, const std::vector<ChatMessage>& messages);
std::string render_chat(const std::string& chat_template, const std::vector<ChatMessage>& messages);

// The parts after the first n bytes of their text (a rendered conversation's continuation).
std::vector<ChatPart> drop_rendered_prefix(std::vector<ChatPart> parts, size_t n);

// Token ids of rendered parts: special tokens parsed in the template's text, while special-token text inside a
// message ("<|im_end|>", ...) is tokenized as plain text. Everything else is tokenized as the whole prompt would be
// (the text is only split around such special-token text). add_special: BOS as the vocabulary asks.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatPart>& parts, bool add_special);

}  // namespace lazyllm_edge
