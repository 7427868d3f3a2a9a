// Checks the tokenizer against llama.cpp's reference tokenization.
//   tokenizer_check <model.gguf> <tokenizer.json>      exit code 0 = all checks pass
// Build (from the repo root):
//   g++ -O2 -std=c++17 -Icpp cpp/tokenizer/*.cpp cpp/gguf/gguf_reader.cpp cpp/gguf/ggml_types.cpp cpp/base/*.cpp
//       tests/cpp/tokenizer_check.cpp -o tests/cpp/tokenizer_check
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using namespace lazyllm_edge;

namespace {

// --- minimal JSON reader for [{"text": str, "ids": [int], "ids_parse_special": [int]}, ...] ---
struct Case {
    std::string text;
    std::vector<int32_t> ids, ids_special;
};

struct Json {
    const std::string& s;
    size_t p = 0;
    explicit Json(const std::string& str) : s(str) {}
    void ws() { while (p < s.size() && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) ++p; }
    void expect(char c) {
        ws();
        if (p >= s.size() || s[p] != c) throw std::runtime_error(std::string("json: expected ") + c);
        ++p;
    }
    bool peek(char c) { ws(); return p < s.size() && s[p] == c; }
    static void put_utf8(std::string& o, uint32_t c) {
        if (c < 0x80) o += char(c);
        else if (c < 0x800) { o += char(0xC0 | (c >> 6)); o += char(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) { o += char(0xE0 | (c >> 12)); o += char(0x80 | ((c >> 6) & 0x3F)); o += char(0x80 | (c & 0x3F)); }
        else { o += char(0xF0 | (c >> 18)); o += char(0x80 | ((c >> 12) & 0x3F)); o += char(0x80 | ((c >> 6) & 0x3F)); o += char(0x80 | (c & 0x3F)); }
    }
    uint32_t hex4() {
        uint32_t v = std::stoul(s.substr(p, 4), nullptr, 16);
        p += 4;
        return v;
    }
    std::string str() {
        expect('"');
        std::string o;
        while (s[p] != '"') {
            char c = s[p++];
            if (c != '\\') { o += c; continue; }
            char e = s[p++];
            switch (e) {
                case 'n': o += '\n'; break;
                case 't': o += '\t'; break;
                case 'r': o += '\r'; break;
                case 'b': o += '\b'; break;
                case 'f': o += '\f'; break;
                case 'u': {
                    uint32_t c1 = hex4();
                    if (c1 >= 0xD800 && c1 < 0xDC00 && s[p] == '\\' && s[p + 1] == 'u') {
                        p += 2;
                        uint32_t c2 = hex4();
                        c1 = 0x10000 + ((c1 - 0xD800) << 10) + (c2 - 0xDC00);
                    }
                    put_utf8(o, c1);
                    break;
                }
                default: o += e;
            }
        }
        ++p;
        return o;
    }
    std::vector<int32_t> ints() {
        std::vector<int32_t> v;
        expect('[');
        if (peek(']')) { ++p; return v; }
        for (;;) {
            ws();
            size_t q = p;
            while (q < s.size() && (s[q] == '-' || (s[q] >= '0' && s[q] <= '9'))) ++q;
            v.push_back(std::stoi(s.substr(p, q - p)));
            p = q;
            if (peek(',')) { ++p; continue; }
            expect(']');
            return v;
        }
    }
    std::vector<Case> cases() {
        std::vector<Case> out;
        expect('[');
        while (!peek(']')) {
            Case c;
            expect('{');
            while (!peek('}')) {
                std::string key = str();
                expect(':');
                if (key == "text") c.text = str();
                else if (key == "ids") c.ids = ints();
                else if (key == "ids_parse_special") c.ids_special = ints();
                else throw std::runtime_error("json: unexpected key " + key);
                if (peek(',')) ++p;
            }
            ++p;
            out.push_back(std::move(c));
            if (peek(',')) ++p;
        }
        return out;
    }
};

std::string show(const std::vector<int32_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
}

bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        unsigned char c = s[i];
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + n > s.size()) return false;
        for (int k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

int failures = 0;
void fail(const std::string& msg) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", msg.c_str());
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Streams ids through StreamingDetokenizer: every piece must be valid UTF-8 and the total must equal decode().
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, const std::string& what, int* n_held) {
    StreamingDetokenizer sd(tok, true);
    std::string all;
    for (int32_t id : ids) {
        std::string piece = sd.push(id);
        if (!valid_utf8(piece)) fail("stream piece is not valid UTF-8: " + what);
        if (piece.empty() && !tok.token_to_piece(id).empty()) ++*n_held;
        all += piece;
    }
    all += sd.flush();
    const std::string ref = tok.decode(ids.data(), ids.size(), true);
    if (all != ref) fail("streamed text differs from decode(): " + what);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <model.gguf> <tokenizer.json>\n", argv[0]);
        return 2;
    }
    try {
        auto t0 = std::chrono::steady_clock::now();
        auto file = GgufFile::open(argv[1]);
        TokenizerVocab vocab = read_tokenizer_vocab(*file);
        const double t_read = ms_since(t0);
        t0 = std::chrono::steady_clock::now();
        Tokenizer tok(vocab);
        const double t_build = ms_since(t0);
        std::printf("model=%s pre=%s n_vocab=%d bos=%d eos=%d add_bos=%d  (read %.1f ms, build %.1f ms)\n",
                    vocab.model.c_str(), vocab.pre.c_str(), tok.n_vocab(), tok.bos_id(), tok.eos_id(), tok.add_bos(),
                    t_read, t_build);

        std::ifstream in(argv[2], std::ios::binary);
        if (!in) throw std::runtime_error(std::string("cannot open ") + argv[2]);
        std::stringstream ss;
        ss << in.rdbuf();
        const std::string json = ss.str();
        const std::vector<Case> cases = Json(json).cases();

        int pass = 0, n_held = 0;
        for (size_t i = 0; i < cases.size(); ++i) {
            const Case& c = cases[i];
            const std::string label = "case " + std::to_string(i) + " " + c.text.substr(0, 40);
            bool ok = true;
            auto ids = tok.encode(c.text, false, false);
            if (ids != c.ids) {
                fail(label + "\n  got      " + show(ids) + "\n  expected " + show(c.ids));
                ok = false;
            }
            auto ids_s = tok.encode(c.text, false, true);
            if (ids_s != c.ids_special) {
                fail(label + " (parse_special)\n  got      " + show(ids_s) + "\n  expected " + show(c.ids_special));
                ok = false;
            }
            if (tok.decode(c.ids.data(), c.ids.size(), true) != c.text) {
                fail(label + ": decode(ids) != text");
                ok = false;
            }
            if (tok.decode(c.ids_special.data(), c.ids_special.size(), true) != c.text) {
                fail(label + ": decode(ids_parse_special) != text");
                ok = false;
            }
            check_stream(tok, c.ids, label, &n_held);
            if (ok) ++pass;
        }
        std::printf("reference cases: %d/%zu pass\n", pass, cases.size());

        // streaming across multi-byte characters
        const std::string multi = "emoji 🙂🚀👩‍💻 flags 🇫🇷 CJK 你好，世界！长上下文推理 こんにちは 한국어 Ünïcödé";
        auto mids = tok.encode(multi, false, false);
        int held = 0;
        check_stream(tok, mids, "multi-byte text", &held);
        std::vector<int32_t> byte_ids;  // one token per byte of "🙂你": every character is split
        for (unsigned char ch : std::string("🙂你")) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "<0x%02X>", ch);
            const std::string want = vocab.model == "gpt2" ? unicode::byte_to_utf8(ch) : std::string(hex);
            for (int32_t id = 0; id < tok.n_vocab(); ++id)
                if (vocab.tokens[id] == want) { byte_ids.push_back(id); break; }
        }
        if (byte_ids.size() != 7) fail("byte tokens not found");
        {
            StreamingDetokenizer sd(tok);
            std::string got;
            std::vector<std::string> parts;
            for (int32_t id : byte_ids) parts.push_back(sd.push(id));
            for (auto& p : parts) got += p;
            got += sd.flush();
            if (got != "🙂你") fail("byte-split stream: got '" + got + "'");
            for (size_t k = 0; k + 1 < parts.size(); ++k)
                if (!valid_utf8(parts[k])) fail("byte-split stream emitted broken UTF-8");
            if (parts.size() != 7 || !(parts[0].empty() && parts[2].empty() && parts[3] == "🙂" && parts[6] == "你")) fail("byte-split stream did not hold back bytes");
            // truncated sequence + flush -> U+FFFD
            StreamingDetokenizer sd2(tok);
            std::string t2 = sd2.push(byte_ids[0]);
            t2 += sd2.push(byte_ids[1]);
            if (!t2.empty()) fail("incomplete character was emitted");
            if (sd2.flush() != "\xEF\xBF\xBD") fail("flush of incomplete character should give U+FFFD");
        }
        std::printf("streaming: multi-byte ok (%d held-back tokens in references)\n", n_held + held);

        // decode/encode round trip on a long mixed text; timing for ~10k tokens
        std::string big;
        for (const Case& c : cases) big += c.text + "\n";
        std::string text10k;
        while (true) {
            text10k += big;
            if (tok.encode(text10k, false, false).size() >= 10000) break;
        }
        t0 = std::chrono::steady_clock::now();
        auto big_ids = tok.encode(text10k, false, false);
        const double t_enc = ms_since(t0);
        if (tok.decode(big_ids.data(), big_ids.size()) != text10k) fail("round trip of the long text");
        std::printf("encode %zu tokens (%zu bytes): %.1f ms\n", big_ids.size(), text10k.size(), t_enc);

        // add_special / is_end_of_generation / errors
        auto with_bos = tok.encode("Hello", true, false);
        if (tok.add_bos() != (!with_bos.empty() && with_bos[0] == tok.bos_id())) fail("add_special BOS handling");
        if (tok.eos_id() >= 0 && !tok.is_end_of_generation(tok.eos_id())) fail("EOS is not end-of-generation");
        for (const char* eot : {"<|im_end|>", "<end_of_turn>", "<|endoftext|>"}) {
            for (int32_t id = 0; id < tok.n_vocab(); ++id)
                if (vocab.tokens[id] == eot && !tok.is_end_of_generation(id)) fail(std::string(eot) + " is not EOG");
        }
        try {
            int32_t bad = tok.n_vocab();
            tok.decode(&bad, 1);
            fail("decode of an out-of-range id did not throw");
        } catch (const Error& e) {
            if (e.code() != ErrorCode::invalid_argument) fail("wrong error code for a bad id");
        }
        try {
            TokenizerVocab bad = vocab;
            bad.model = "gpt2";
            bad.pre = "no-such-pre";
            Tokenizer t(bad);
            fail("unknown pre-tokenizer accepted");
        } catch (const Error& e) {
            if (e.code() != ErrorCode::model_load || std::string(e.what()).find("no-such-pre") == std::string::npos)
                fail("wrong error for an unknown pre-tokenizer");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::printf("%d failure(s)\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
