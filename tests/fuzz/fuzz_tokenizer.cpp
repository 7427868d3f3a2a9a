// libFuzzer target: arbitrary bytes as text through a real tokenizer (the GGUF in $LAZYLLM_EDGE_FUZZ_MODEL,
// SmolLM2's byte-level BPE in CI). Checks: no crash/hang; streamed pieces are valid UTF-8 and add up to
// decode(); valid UTF-8 text round-trips through encode/decode.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "core_error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

using namespace lazyllm_edge;

namespace {

std::unique_ptr<Tokenizer> tokenizer;

bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = s[i];
        const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + n > s.size()) return false;
        for (int k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
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
        if (!special && tok.vocab().model == "gpt2" && valid_utf8(text) && !tok.add_bos() && decoded != text)
            crash("valid UTF-8 text does not round-trip");
    }
    return 0;
}
