// Chat prompt rendering for the C++ CLI and C API, for the template families llama.cpp detects by
// substring. (Python renders the GGUF's own Jinja template instead.)
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace lazyllm_edge {

struct ChatMessage {
    std::string role;     // "system", "user", "assistant"
    std::string content;
};

// Renders messages plus the assistant prompt. Error(unsupported) when the template is of no known family.
std::string render_chat(const std::string& chat_template, const std::vector<ChatMessage>& messages);

}  // namespace lazyllm_edge
