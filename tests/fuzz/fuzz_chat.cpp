// libFuzzer target: the C++ chat path (the CLI's --chat, le_chat_render): a chat template and messages from arbitrary
// bytes (NUL-separated: template, then role/content pairs) rendered by api/chat_format.cpp and tokenized with special
// tokens parsed, as the CLI feeds it, by the tokenizer of $LAZYLLM_EDGE_FUZZ_MODEL. Checks: a template of no known
// family is refused with Error(unsupported) and nothing else is thrown; a rendered prompt holds every message's
// content and ends with the assistant's turn opened; tokenizing it neither crashes nor hangs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "api/chat_format.h"
#include "base/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

using namespace lazyllm_edge;

namespace {

std::unique_ptr<Tokenizer> tokenizer;

[[noreturn]] void crash(const char* what) {
    std::fprintf(stderr, "fuzz_chat: %s\n", what);
    std::abort();
}

std::vector<std::string> split_nul(const uint8_t* data, size_t size) {
    std::vector<std::string> parts(1);
    for (size_t i = 0; i < size; ++i) {
        if (data[i] == 0) parts.emplace_back();
        else parts.back() += static_cast<char>(data[i]);
    }
    return parts;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* path = std::getenv("LAZYLLM_EDGE_FUZZ_MODEL");
    if (!path) crash("set LAZYLLM_EDGE_FUZZ_MODEL to a GGUF file");
    auto file = GgufFile::open(path, false);
    tokenizer = std::make_unique<Tokenizer>(read_tokenizer_vocab(*file));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::vector<std::string> parts = split_nul(data, size);
    std::vector<ChatMessage> messages;
    for (size_t i = 1; i + 1 < parts.size(); i += 2) messages.push_back({parts[i], parts[i + 1]});
    std::string prompt;
    try {
        prompt = render_chat(parts[0], messages);
    } catch (const Error& e) {
        if (e.code() != ErrorCode::unsupported) crash("an error other than unsupported from render_chat");
        return 0;
    } catch (...) {
        crash("a non-Error exception from render_chat");
    }
    for (const ChatMessage& m : messages)
        if (prompt.find(m.content) == std::string::npos) crash("a message's content is missing from the prompt");
    static const char* openers[] = {"<|im_start|>assistant\n", "<start_of_turn>model\n",
                                    "<|start_header_id|>assistant<|end_header_id|>\n\n"};
    bool opened = false;
    for (const char* o : openers) {
        const std::string s(o);
        opened |= prompt.size() >= s.size() && prompt.compare(prompt.size() - s.size(), s.size(), s) == 0;
    }
    if (!opened) crash("the prompt does not end with the assistant's turn opened");
    try {
        tokenizer->encode(prompt, true, true);
    } catch (const Error&) {  // text the tokenizer refuses (invalid UTF-8) is reported, not a crash
    }
    return 0;
}
