// libFuzzer target: arbitrary bytes as text through a real tokenizer (the GGUF in $LAZYLLM_EDGE_FUZZ_MODEL,
// SmolLM2's byte-level BPE in CI). Checks: no crash/hang; streamed pieces are valid UTF-8 and add up to
// decode(); valid UTF-8 text round-trips through encode/decode.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_set>

#include "base/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using namespace lazyllm_edge;

namespace {

std::unique_ptr<Tokenizer> tokenizer;
std::string missing_bytes;  // bytes whose GPT-2 byte symbol is not in the vocabulary

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF (what the tokenizer accepts).
bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = s[i];
        const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + n > s.size()) return false;
        uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < n; ++k) {
            const unsigned char cc = s[i + k];
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n;
    }
    return true;
}

[[noreturn]] void crash(const char* what) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    std::abort();  // libFuzzer records the input as a crasher
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* path = std::getenv("LAZYLLM_EDGE_FUZZ_MODEL");
    if (!path) crash("set LAZYLLM_EDGE_FUZZ_MODEL to a GGUF file");
    auto file = GgufFile::open(path, false);
    tokenizer = std::make_unique<Tokenizer>(read_tokenizer_vocab(*file));
    const auto& tokens = tokenizer->vocab().tokens;
    const std::unordered_set<std::string> known(tokens.begin(), tokens.end());
    for (int b = 0; b < 256; ++b)
        if (!known.count(unicode::byte_to_utf8(static_cast<uint8_t>(b)))) missing_bytes += static_cast<char>(b);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const Tokenizer& tok = *tokenizer;
    for (int special = 0; special < 2; ++special) {
        const std::vector<int32_t> ids = tok.encode(text, special != 0, special != 0);
        const std::string decoded = tok.decode(ids.data(), ids.size(), true);
        StreamingDetokenizer sd(tok, true);
        std::string streamed;
        for (int32_t id : ids) {
            const std::string piece = sd.push(id);
            if (!valid_utf8(piece)) crash("a streamed piece is not valid UTF-8");
            streamed += piece;
        }
        const std::string tail = sd.flush();
        if (!valid_utf8(tail)) crash("the flushed tail is not valid UTF-8");
        if (valid_utf8(decoded) && streamed + tail != decoded) crash("streamed text differs from decode()");
        // bytes without a byte token (SmolLM2 lacks 21) are dropped, as llama.cpp does: no round trip then
        const bool representable = text.find_first_of(missing_bytes) == std::string::npos;
        if (!special && tok.vocab().model == "gpt2" && valid_utf8(text) && representable && decoded != text)
            crash("valid UTF-8 text does not round-trip");
    }
    return 0;
}
