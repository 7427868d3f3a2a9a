#include "api/chat_format.h"

#include <algorithm>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm_edge {

std::vector<ChatPart> render_chat_parts(const std::string& tmpl, const std::vector<ChatMessage>& messages) {
    std::vector<ChatPart> out;
    auto text = [&](std::string s) { out.push_back({std::move(s), false}); };
    auto content = [&](const std::string& s) { out.push_back({s, true}); };
    auto has = [&](const char* s) { return tmpl.find(s) != std::string::npos; };
    if (has("<|im_start|>")) {  // ChatML (SmolLM2, Qwen)
        for (const auto& m : messages) {
            text("<|im_start|>" + m.role + "\n");
            content(m.content);
            text("<|im_end|>\n");
        }
        text("<|im_start|>assistant\n");
    } else if (has("<start_of_turn>")) {  // Gemma: system text is folded into the turn after it (as its template does)
        std::vector<const std::string*> system;
        auto turn = [&](const std::string& role, const std::string* body) {
            text("<start_of_turn>" + role + "\n");
            for (const std::string* s : system) {
                content(*s);
                text("\n\n");
            }
            system.clear();
            if (body) content(*body);
            text("<end_of_turn>\n");
        };
        for (const auto& m : messages) {
            if (m.role == "system") system.push_back(&m.content);
            else turn(m.role == "assistant" ? "model" : m.role, &m.content);
        }
        if (!system.empty()) turn("user", nullptr);  // (system text with no turn after it: a user turn of its own)
        text("<start_of_turn>model\n");
    } else if (has("<|start_header_id|>")) {  // Llama 3
        for (const auto& m : messages) {
            text("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n");
            content(m.content);
            text("<|eot_id|>");
        }
        text("<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else {
        throw_error(ErrorCode::unsupported, "the model's chat template is not of a known family (chatml, gemma, llama3)");
    }
    return out;
}

std::string render_chat(const std::string& tmpl, const std::vector<ChatMessage>& messages) {
    std::string out;
    for (const ChatPart& part : render_chat_parts(tmpl, messages)) out += part.text;
    return out;
}

std::vector<ChatPart> drop_rendered_prefix(std::vector<ChatPart> parts, size_t n) {
    size_t i = 0;
    for (; i < parts.size() && n >= parts[i].text.size(); ++i) n -= parts[i].text.size();
    parts.erase(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(i));
    if (!parts.empty()) parts.front().text.erase(0, n);
    return parts;
}

namespace {

// The texts of the control tokens that parse_special would read in `text`, longest first.
std::vector<std::string> special_texts_in(const Tokenizer& tokenizer, const std::string& text) {
    std::vector<std::string> found;
    for (int32_t id : tokenizer.encode(text, false, true))
        if (tokenizer.is_control(id)) {
            std::string piece = tokenizer.token_to_piece(id, true);
            if (!piece.empty() && std::find(found.begin(), found.end(), piece) == found.end()) found.push_back(piece);
        }
    std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    return found;
}

}  // namespace

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatPart>& parts, bool add_special) {
    // segments: (text, literal); the template's text and ordinary message text are joined, so they tokenize as the
    // whole prompt would; special-token text from a message is a literal segment of its own
    std::vector<std::pair<std::string, bool>> segments(1, {std::string(), false});
    auto add = [&](const std::string& s, bool literal) {
        if (literal) segments.push_back({s, true}), segments.push_back({std::string(), false});
        else segments.back().first += s;
    };
    for (const ChatPart& part : parts) {
        if (!part.from_message) {
            add(part.text, false);
            continue;
        }
        const std::vector<std::string> specials = special_texts_in(tokenizer, part.text);
        size_t at = 0;
        while (at < part.text.size()) {
            size_t next = std::string::npos;
            const std::string* which = nullptr;
            for (const std::string& s : specials) {  // the earliest occurrence (longest first at a tie)
                const size_t p = part.text.find(s, at);
                if (p < next) next = p, which = &s;
            }
            if (!which) {
                add(part.text.substr(at), false);
                break;
            }
            add(part.text.substr(at, next - at), false);
            add(*which, true);
            at = next + which->size();
        }
    }
    std::vector<int32_t> ids;
    bool first = true;
    for (const auto& [text, literal] : segments) {
        if (text.empty()) continue;
        const std::vector<int32_t> part = tokenizer.encode(text, first && add_special, !literal);
        ids.insert(ids.end(), part.begin(), part.end());
        first = false;
    }
    if (first && add_special) ids = tokenizer.encode("", true, true);  // (nothing rendered: BOS alone, as encode gives)
    return ids;
}

}  // namespace lazyllm_edge
