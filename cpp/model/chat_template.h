// Chat templates that belong to an architecture rather than to a file.
#pragma once
#include <string>

namespace lazyllm_edge {

// The Jinja chat template an architecture uses when its GGUF carries none ("" when there is no default):
// gemma3 gets Gemma's turn format (BOS, system text folded into the first user turn, "model" role).
std::string default_chat_template(const std::string& architecture);

}  // namespace lazyllm_edge
