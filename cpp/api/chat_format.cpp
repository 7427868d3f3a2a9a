#include "api/chat_format.h"

#include "base/error.h"

namespace lazyllm_edge {

std::string render_chat(const std::string& tmpl, const std::vector<ChatMessage>& messages) {
    std::string out;
    auto has = [&](const char* s) { return tmpl.find(s) != std::string::npos; };
    if (has("<|im_start|>")) {  // ChatML (SmolLM2, Qwen)
        for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        out += "<|im_start|>assistant\n";
    } else if (has("<start_of_turn>")) {  // Gemma: system text is folded into the first user turn
        std::string system;
        for (const auto& m : messages) {
            if (m.role == "system") {
                system += m.content + "\n\n";
                continue;
            }
            const std::string role = m.role == "assistant" ? "model" : m.role;
            out += "<start_of_turn>" + role + "\n" + (role == "user" ? system : std::string()) + m.content + "<end_of_turn>\n";
            if (role == "user") system.clear();
        }
        out += "<start_of_turn>model\n";
    } else if (has("<|start_header_id|>")) {  // Llama 3
        for (const auto& m : messages)
            out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    } else {
        throw_error(ErrorCode::unsupported, "the model's chat template is not of a known family (chatml, gemma, llama3)");
    }
    return out;
}

}  // namespace lazyllm_edge
