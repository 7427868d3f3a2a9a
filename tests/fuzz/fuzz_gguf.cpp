// libFuzzer target: arbitrary bytes as a GGUF file -> reader, typed getters, tokenizer vocab, tokenizer,
// encode/decode/stream. A bad file must end in Error (any code), never a crash, hang or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

using namespace lazyllm_edge;

namespace {

// Every getter on every key, with whatever type it has (wrong types must throw Error, not misread).
void touch_metadata(const GgufFile& f) {
    for (const std::string& key : f.keys()) {
        try { f.get_string(key); } catch (const Error&) {}
        try { f.get_int(key, 0); } catch (const Error&) {}
        try { f.get_float(key, 0); } catch (const Error&) {}
        try { f.get_bool(key, false); } catch (const Error&) {}
        try { f.get_string_array(key); } catch (const Error&) {}
        try { f.get_float_array(key); } catch (const Error&) {}
        try { f.get_int_array(key); } catch (const Error&) {}
    }
    for (const GgufTensor& t : f.tensors()) f.find_tensor(t.name);
}

void exercise_tokenizer(const Tokenizer& tok) {
    static const char* texts[] = {"Hello world", " <|im_start|>user\nhi 你好 🙂<|im_end|>", "\xff\xfe broken \xe4\xbd",
                                  "  tabs\tand\nnewlines  123456 it's"};
    for (const char* text : texts) {
        for (int special = 0; special < 2; ++special) {
            std::vector<int32_t> ids = tok.encode(text, special != 0, special != 0);
            tok.decode(ids.data(), ids.size(), special != 0);
            StreamingDetokenizer sd(tok, special != 0);
            for (int32_t id : ids) sd.push(id);
            sd.flush();
        }
    }
    const int32_t n = tok.n_vocab();
    for (int32_t id = 0; id < n && id < 512; ++id) {
        tok.token_to_piece(id, true);
        tok.is_end_of_generation(id);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto file = GgufFile::from_memory(data, size);
        touch_metadata(*file);
        Tokenizer tok(read_tokenizer_vocab(*file));
        exercise_tokenizer(tok);
    } catch (const Error&) {
        // rejected cleanly: the expected outcome for most inputs
    }
    return 0;
}
