// Tokenizer: byte-level BPE ("gpt2") and SentencePiece-style ("llama"), matching llama.cpp's
// llama-vocab.cpp (special-token partitioning, llm_tokenizer_bpe / llm_tokenizer_spm, token_to_piece).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <set>
#include <string_view>
#include <unordered_map>

#include "base/error.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace lazyllm_edge {

namespace {

// llama.cpp llama_token_attr bits
enum : uint32_t {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_LSTRIP = 1 << 7,  // a parsed special token takes the whitespace before it away
    ATTR_RSTRIP = 1 << 8,  // ... and after it
};

bool is_c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }  // isspace, "C" locale

uint32_t attr_from_type(int32_t t) {
    switch (static_cast<TokenType>(t)) {
        case TokenType::unknown: return ATTR_UNKNOWN;
        case TokenType::unused: return ATTR_UNUSED;
        case TokenType::normal: return ATTR_NORMAL;
        case TokenType::control: return ATTR_CONTROL;
        case TokenType::user_defined: return ATTR_USER_DEFINED;
        case TokenType::byte: return ATTR_BYTE;
        default: return ATTR_UNDEFINED;
    }
}

const char* kSpaceEscape = "\xE2\x96\x81";  // U+2581

// llama.cpp's clean_spaces passes in llama_detokenize, in place as there: " ?", " !", " .", " ," lose the space;
// " ' " becomes "'"; " 's", " 'm", " 're", " 've" lose the space.
void clean_up_tokenization_spaces(std::string& s) {
    char* text = s.data();
    const size_t total1 = s.size();
    size_t total = total1 ? 1 : 0;
    for (size_t i = 1; i < total1; ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        text[total++] = x;
    }
    const size_t total2 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < total2; ++i) {
        const char x = text[i];
        if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;           // the space before
            text[++i] = '\0';  // the space after (skipped, and no longer a space for the next test)
        }
        text[total++] = x;
    }
    const size_t total3 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < total3; ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
            const char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm') total--;
            else if (i + 2 < total3 && ((x1 == 'r' && text[i + 2] == 'e') || (x1 == 'v' && text[i + 2] == 'e'))) total--;
        }
        text[total++] = x;
    }
    s.resize(total);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return;
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    for (;;) {
        const size_t hit = s.find(from, pos);
        if (hit == std::string::npos) break;
        out.append(s, pos, hit - pos);
        out += to;
        pos = hit + from.size();
    }
    out.append(s, pos, std::string::npos);
    s.swap(out);
}

// Trie over special-token texts for finding their occurrences in one pass.
struct Trie {
    struct Node {
        std::vector<std::pair<uint8_t, int32_t>> kids;
        int32_t id = -1;
    };
    std::vector<Node> nodes{1};
    void insert(const std::string& s, int32_t id) {
        int32_t n = 0;
        for (unsigned char ch : s) {
            int32_t next = -1;
            for (auto& k : nodes[n].kids)
                if (k.first == ch) { next = k.second; break; }
            if (next < 0) {
                next = static_cast<int32_t>(nodes.size());
                nodes[n].kids.emplace_back(ch, next);
                nodes.emplace_back();
            }
            n = next;
        }
        nodes[n].id = id;
    }
    int32_t child(int32_t n, uint8_t ch) const {
        for (auto& k : nodes[n].kids)
            if (k.first == ch) return k.second;
        return -1;
    }
};

struct Fragment {
    int32_t token;  // -1: raw text
    size_t off, len;
};

}  // namespace

struct Tokenizer::Impl {
    TokenizerVocab v;
    bool is_bpe = false;
    PreTokenizer pre;
    std::vector<uint32_t> attrs;
    std::unordered_map<std::string_view, int32_t> token_to_id;
    std::unordered_map<std::string, int32_t> bpe_ranks;  // key: left + '\xFF' + right
    std::vector<int32_t> special_cache;                  // longest first
    std::vector<int32_t> special_rank;                   // id -> position in special_cache (or -1)
    Trie special_trie;
    std::set<int32_t> eog;
    std::vector<std::string> pieces;  // token_to_piece(id, special=true)
    int32_t byte_tokens[256];

    int32_t text_to_token(std::string_view s) const {
        auto it = token_to_id.find(s);
        return it == token_to_id.end() ? -1 : it->second;
    }

    int find_bpe_rank(std::string_view l, std::string_view r) const {
        std::string key;
        key.reserve(l.size() + r.size() + 1);
        key.append(l).push_back('\xFF');
        key.append(r);
        auto it = bpe_ranks.find(key);
        return it == bpe_ranks.end() ? -1 : it->second;
    }

    void build();
    void partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
    void bpe_tokenize(std::string_view text, std::vector<int32_t>& out) const;
    void spm_tokenize(const std::string& text, std::vector<int32_t>& out) const;
    std::string make_piece(int32_t id) const;
};

void Tokenizer::Impl::build() {
    if (v.model == "gpt2" || v.model == "gemma4") {
        is_bpe = true;
        pre = make_pre_tokenizer(v.pre);
    } else if (v.model == "llama") {
        is_bpe = false;
    } else {
        throw Error(ErrorCode::model_load, "unsupported tokenizer model: '" + v.model + "'");
    }
    const size_t n = v.tokens.size();
    if (n == 0) throw Error(ErrorCode::model_load, "tokenizer vocabulary is empty");
    if (!v.scores.empty() && v.scores.size() < n)
        throw Error(ErrorCode::model_load, "tokenizer scores shorter than the vocabulary");
    if (!v.token_types.empty() && v.token_types.size() < n)
        throw Error(ErrorCode::model_load, "tokenizer token types shorter than the vocabulary");
    if (v.scores.size() < n) v.scores.resize(n, 0.0f);

    for (size_t i = 0; i < n; ++i)
        if (v.tokens[i].empty()) v.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";

    token_to_id.reserve(n * 2);
    attrs.resize(n);
    for (size_t i = 0; i < n; ++i) {
        if (!token_to_id.emplace(std::string_view(v.tokens[i]), static_cast<int32_t>(i)).second)
            throw Error(ErrorCode::model_load, "duplicate token in vocabulary: '" + v.tokens[i] + "'");
        attrs[i] = v.token_types.empty() ? ATTR_NORMAL : attr_from_type(v.token_types[i]);
    }

    if (is_bpe) {
        bpe_ranks.reserve(v.merges.size() * 2);
        for (size_t i = 0; i < v.merges.size(); ++i) {
            const std::string& m = v.merges[i];
            const size_t pos = m.find(' ', 1);
            std::string key;
            if (pos != std::string::npos) {
                key = m.substr(0, pos);
                key.push_back('\xFF');
                key.append(m, pos + 1, std::string::npos);
            } else {
                key = "\xFF";
            }
            bpe_ranks.emplace(std::move(key), static_cast<int>(i));
        }
    }

    auto in_range = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
    for (int32_t* id : {&v.bos_id, &v.eos_id, &v.unk_id, &v.pad_id, &v.eot_id, &v.eom_id})
        if (!in_range(*id)) *id = -1;

    // --- llama.cpp's text heuristics for special tokens (ids in increasing order) ---
    auto force_control = [&](int32_t id) { attrs[id] |= ATTR_CONTROL; };
    auto text_in = [](const std::string& t, std::initializer_list<const char*> list) {
        for (const char* s : list)
            if (t == s) return true;
        return false;
    };
    int32_t fim_ids[6] = {-1, -1, -1, -1, -1, -1};
    const std::initializer_list<const char*> fim_lists[6] = {
        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
         "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"},
        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<SUF>",
         "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"},
        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
         "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"},
        {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
        {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
        {"<|file_sep|>"},
    };
    const char* deepseek_eos = "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>";
    for (size_t i = 0; i < n; ++i) {
        const std::string& t = v.tokens[i];
        const int32_t id = static_cast<int32_t>(i);
        if (v.eot_id < 0 && (text_in(t, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                         "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<end_of_utterance>"}) ||
                             t == deepseek_eos)) {
            v.eot_id = id;
            force_control(id);
        }
        if (v.eom_id < 0 && t == "<|eom_id|>") {
            v.eom_id = id;
            force_control(id);
        }
        for (int k = 0; k < 6; ++k) {
            if (fim_ids[k] < 0 && text_in(t, fim_lists[k])) {
                fim_ids[k] = id;
                force_control(id);
            }
        }
    }
    // unused control tokens
    for (size_t i = 0; i < n; ++i)
        if ((attrs[i] & ATTR_CONTROL) && v.tokens[i].find("unused") != std::string::npos) attrs[i] |= ATTR_UNUSED;
    for (int k = 3; k < 6; ++k)
        if (fim_ids[k] >= 0) eog.insert(fim_ids[k]);
    for (size_t i = 0; i < n; ++i) {
        const std::string& t = v.tokens[i];
        if (text_in(t, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "[e~["}) ||
            t == deepseek_eos) {
            eog.insert(static_cast<int32_t>(i));
            force_control(static_cast<int32_t>(i));
        }
    }
    for (size_t i = 0; i < n; ++i) {  // gpt-oss: always render these
        const std::string& t = v.tokens[i];
        if (t == "<|channel|>" || t == "<|message|>" || t == "<|start|>" || t == "<|constrain|>") attrs[i] = ATTR_USER_DEFINED;
    }
    for (int32_t id : {v.eos_id, v.eot_id, v.eom_id})
        if (id >= 0) eog.insert(id);
    {  // o200k_harmony / solar-open: <|end|> is not end-of-generation when <|return|>+<|call|> exist
        bool has_return = false, has_call = false, has_flush = false;
        int32_t end_id = -1;
        for (int32_t id : eog) {
            const std::string& t = v.tokens[id];
            if (t == "<|return|>") has_return = true;
            else if (t == "<|call|>" || t == "<|calls|>") has_call = true;
            else if (t == "<|flush|>") has_flush = true;
            else if (t == "<|end|>") end_id = id;
        }
        if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
            eog.erase(end_id);
            attrs[end_id] = ATTR_USER_DEFINED;
        }
        bool has_tool_response = false;
        int32_t s_id = -1;
        for (int32_t id : eog) {
            if (v.tokens[id] == "<|tool_response>") has_tool_response = true;
            else if (v.tokens[id] == "</s>") s_id = id;
        }
        if (has_tool_response && s_id >= 0) {
            eog.erase(s_id);
            attrs[s_id] = ATTR_NORMAL;
        }
    }

    // special tokens cache: longest first
    for (size_t i = 0; i < n; ++i)
        if (attrs[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) special_cache.push_back(static_cast<int32_t>(i));
    std::stable_sort(special_cache.begin(), special_cache.end(),
                     [&](int32_t a, int32_t b) { return v.tokens[a].size() > v.tokens[b].size(); });
    // llama.cpp's attributes by model name: Phi-3's special tokens (and </s>) strip the whitespace after them
    if (v.model_name.find("phi-3") != std::string::npos || v.model_name.find("phi3") != std::string::npos) {
        for (int32_t id : special_cache) attrs[id] |= ATTR_RSTRIP;
        if (const int32_t id = text_to_token("</s>"); id >= 0) attrs[id] |= ATTR_RSTRIP;
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"})
            if (const int32_t id = text_to_token(t); id >= 0) attrs[id] &= ~ATTR_RSTRIP;
    }
    special_rank.assign(n, -1);
    for (size_t r = 0; r < special_cache.size(); ++r) {
        special_rank[special_cache[r]] = static_cast<int32_t>(r);
        special_trie.insert(v.tokens[special_cache[r]], special_cache[r]);
    }

    // byte tokens
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        int32_t id = -1;
        if (is_bpe && pre.byte_encode) {
            id = text_to_token(unicode::byte_to_utf8(static_cast<uint8_t>(b)));
        } else if (is_bpe) {  // SentencePiece-style BPE (gemma4): <0xXX> byte-fallback tokens only
            const char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            id = text_to_token(buf);
        } else {
            const char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            id = text_to_token(buf);
            if (id < 0) id = text_to_token(std::string(1, static_cast<char>(b)));
        }
        byte_tokens[b] = id;
    }

    pieces.resize(n);
    for (size_t i = 0; i < n; ++i) pieces[i] = make_piece(static_cast<int32_t>(i));
}

std::string Tokenizer::Impl::make_piece(int32_t id) const {
    const uint32_t attr = attrs[id];
    const std::string& text = v.tokens[id];
    if (attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) return text;
    if (attr & ATTR_NORMAL) {
        if (!is_bpe || pre.escape_spaces) {
            std::string r = text;
            replace_all(r, kSpaceEscape, " ");
            return r;
        }
        std::string out;
        for (uint32_t cpt : unicode::cpts_from_utf8(text)) {
            const int b = unicode::utf8_to_byte(cpt);
            if (b >= 0) {
                out.push_back(static_cast<char>(b));
            } else {  // llama_decode_text
                std::string u;
                unicode::append_utf8(u, cpt);
                out += "[UNK_BYTE_0x";
                char buf[4];
                for (unsigned char c : u) {
                    snprintf(buf, sizeof buf, "%02x", c);
                    out += buf;
                }
                out += text + "]";
            }
        }
        return out;
    }
    if (attr & ATTR_BYTE) {
        if (text.size() >= 5) return std::string(1, static_cast<char>(std::strtol(text.substr(3, 2).c_str(), nullptr, 16)));
        return std::string();
    }
    return std::string();
}

// llama.cpp tokenizer_st_partition: each special token, longest first, splits every remaining raw
// fragment at its leftmost non-overlapping occurrences. Occurrences are found with one trie pass.
void Tokenizer::Impl::partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
    out.clear();
    if (text.empty()) return;
    // occurrences grouped by special rank
    std::vector<std::pair<int32_t, uint32_t>> occ;  // (rank, position)
    for (size_t p = 0; p < text.size(); ++p) {
        int32_t node = 0;
        for (size_t q = p; q < text.size(); ++q) {
            node = special_trie.child(node, static_cast<uint8_t>(text[q]));
            if (node < 0) break;
            const int32_t id = special_trie.nodes[node].id;
            if (id >= 0 && (parse_special || !(attrs[id] & (ATTR_CONTROL | ATTR_UNKNOWN))))
                occ.emplace_back(special_rank[id], static_cast<uint32_t>(p));
        }
    }
    if (occ.empty()) {
        out.push_back({-1, 0, text.size()});
        return;
    }
    std::sort(occ.begin(), occ.end());
    // per byte: -1 raw text, a token id where a token starts, -2 inside a token, -3 whitespace a token stripped
    std::vector<int32_t> claim(text.size(), -1);
    size_t i = 0;
    while (i < occ.size()) {
        const int32_t rank = occ[i].first;
        const int32_t id = special_cache[rank];
        const size_t len = v.tokens[id].size();
        size_t last_end = 0;
        for (; i < occ.size() && occ[i].first == rank; ++i) {
            const size_t p = occ[i].second;
            if (p < last_end) continue;
            bool free = true;
            for (size_t k = p; k < p + len; ++k)
                if (claim[k] != -1) { free = false; break; }
            if (!free) continue;
            claim[p] = id;
            for (size_t k = p + 1; k < p + len; ++k) claim[k] = -2;  // continuation
            last_end = p + len;
            // LSTRIP / RSTRIP: the raw text's whitespace next to the token is dropped (up to the next token)
            if (attrs[id] & ATTR_LSTRIP)
                for (size_t k = p; k > 0 && claim[k - 1] == -1 && is_c_space(text[k - 1]); --k) claim[k - 1] = -3;
            if (attrs[id] & ATTR_RSTRIP)
                for (size_t k = p + len; k < text.size() && claim[k] == -1 && is_c_space(text[k]); ++k) {
                    claim[k] = -3;
                    last_end = k + 1;
                }
        }
    }
    size_t raw_start = 0;
    for (size_t p = 0; p < text.size();) {
        if (claim[p] >= 0) {
            if (p > raw_start) out.push_back({-1, raw_start, p - raw_start});
            out.push_back({claim[p], p, v.tokens[claim[p]].size()});
            p += v.tokens[claim[p]].size();
            raw_start = p;
        } else if (claim[p] == -3) {  // stripped whitespace ends the raw text before it
            if (p > raw_start) out.push_back({-1, raw_start, p - raw_start});
            raw_start = ++p;
        } else {
            ++p;
        }
    }
    if (text.size() > raw_start) out.push_back({-1, raw_start, text.size() - raw_start});
}

namespace {
struct Symbol {
    int prev, next;
    const char* text;
    size_t n;
};
struct BpeBigram {
    int left, right;
    int rank;
    size_t size;
};
struct BpeCmp {
    bool operator()(const BpeBigram& l, const BpeBigram& r) const {
        return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
    }
};
struct SpmBigram {
    int left, right;
    float score;
    size_t size;
};
struct SpmCmp {
    bool operator()(const SpmBigram& l, const SpmBigram& r) const {
        return (l.score < r.score) || (l.score == r.score && l.left > r.left);
    }
};
}  // namespace

void Tokenizer::Impl::bpe_tokenize(std::string_view text, std::vector<int32_t>& out) const {
    const std::vector<std::string> raw_words = pre_tokenize(text, pre);
    std::vector<Symbol> symbols;
    std::priority_queue<BpeBigram, std::vector<BpeBigram>, BpeCmp> queue;
    std::string word;
    for (const std::string& raw : raw_words) {
        word.clear();
        if (pre.byte_encode)
            for (unsigned char c : raw) word += unicode::byte_to_utf8(c);
        else
            word = raw;
        symbols.clear();
        queue = {};
        // a word that is a token skips the merges: llama3-style vocabularies, and gemma4's runs of newlines
        if (pre.ignore_merges || (pre.escape_spaces && word.find_first_not_of('\n') == std::string::npos)) {
            const int32_t id = text_to_token(word);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
        }
        for (size_t off = 0, idx = 0; off < word.size(); ++idx) {
            Symbol s;
            s.text = word.data() + off;
            s.n = std::min(word.size() - off, unicode::utf8_len(word[off]));
            off += s.n;
            s.prev = static_cast<int>(idx) - 1;
            s.next = off == word.size() ? -1 : static_cast<int>(idx) + 1;
            symbols.push_back(s);
        }
        auto add_bigram = [&](int l, int r) {
            if (l == -1 || r == -1) return;
            const int rank = find_bpe_rank(std::string_view(symbols[l].text, symbols[l].n),
                                           std::string_view(symbols[r].text, symbols[r].n));
            if (rank < 0) return;
            queue.push({l, r, rank, symbols[l].n + symbols[r].n});
        };
        for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_bigram(i - 1, i);
        while (!queue.empty()) {
            const BpeBigram b = queue.top();
            queue.pop();
            Symbol& ls = symbols[b.left];
            Symbol& rs = symbols[b.right];
            // stale: symbols are contiguous in the word, so the pair is unchanged iff still adjacent with the same size
            if (ls.n == 0 || rs.n == 0 || ls.next != b.right || ls.n + rs.n != b.size) continue;
            ls.n += rs.n;
            rs.n = 0;
            ls.next = rs.next;
            if (rs.next >= 0) symbols[rs.next].prev = b.left;
            add_bigram(ls.prev, b.left);
            add_bigram(b.left, ls.next);
        }
        for (int i = 0; i != -1 && !symbols.empty(); i = symbols[i].next) {
            const Symbol& s = symbols[i];
            if (s.n == 0) continue;
            const int32_t id = text_to_token(std::string_view(s.text, s.n));
            if (id >= 0) {
                out.push_back(id);
            } else {  // llama.cpp's fallback: each byte of the symbol's text as a token, where there is one
                for (size_t k = 0; k < s.n; ++k) {
                    const int32_t bid = pre.byte_encode ? text_to_token(std::string_view(s.text + k, 1))
                                                        : byte_tokens[static_cast<uint8_t>(s.text[k])];
                    if (bid >= 0) out.push_back(bid);
                }
            }
        }
    }
}

void Tokenizer::Impl::spm_tokenize(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<Symbol> symbols;
    symbols.reserve(text.size());
    for (size_t off = 0, idx = 0; off < text.size(); ++idx) {
        Symbol s;
        s.text = text.data() + off;
        s.n = std::min(text.size() - off, unicode::utf8_len(text[off]));
        off += s.n;
        s.prev = static_cast<int>(idx) - 1;
        s.next = off == text.size() ? -1 : static_cast<int>(idx) + 1;
        symbols.push_back(s);
    }
    std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmCmp> queue;
    auto add_bigram = [&](int l, int r) {
        if (l == -1 || r == -1) return;
        const std::string_view t(symbols[l].text, symbols[l].n + symbols[r].n);
        const int32_t id = text_to_token(t);
        if (id < 0) return;
        queue.push({l, r, v.scores[id], t.size()});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_bigram(i - 1, i);
    while (!queue.empty()) {
        const SpmBigram b = queue.top();
        queue.pop();
        Symbol& ls = symbols[b.left];
        Symbol& rs = symbols[b.right];
        if (ls.n == 0 || rs.n == 0 || ls.n + rs.n != b.size) continue;
        ls.n += rs.n;
        rs.n = 0;
        ls.next = rs.next;
        if (rs.next >= 0) symbols[rs.next].prev = b.left;
        add_bigram(ls.prev, b.left);
        add_bigram(b.left, ls.next);
    }
    for (int i = 0; i != -1 && !symbols.empty(); i = symbols[i].next) {
        const Symbol& s = symbols[i];
        const int32_t id = text_to_token(std::string_view(s.text, s.n));
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // merged symbols are always tokens, so this is one character that is not: byte fallback
        for (size_t k = 0; k < s.n; ++k) {
            const int32_t bid = byte_tokens[static_cast<uint8_t>(s.text[k])];
            if (bid >= 0) out.push_back(bid);
            else if (v.unk_id >= 0) out.push_back(v.unk_id);
        }
    }
}

Tokenizer::Tokenizer(TokenizerVocab vocab) : impl_(new Impl) {
    impl_->v = std::move(vocab);
    impl_->build();
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const Impl& m = *impl_;
    std::vector<int32_t> out;
    std::vector<Fragment> frags;
    m.partition(text, parse_special, frags);
    if (add_special && m.v.add_bos && m.v.bos_id >= 0) out.push_back(m.v.bos_id);
    if (m.is_bpe) {
        for (const Fragment& f : frags) {
            if (f.token >= 0) {
                out.push_back(f.token);
            } else if (m.pre.escape_spaces) {
                std::string t(text.substr(f.off, f.len));
                replace_all(t, " ", kSpaceEscape);
                m.bpe_tokenize(t, out);
            } else {
                m.bpe_tokenize(text.substr(f.off, f.len), out);
            }
        }
    } else {
        bool prev_special = true;
        for (const Fragment& f : frags) {
            if (f.token >= 0) {
                out.push_back(f.token);
                prev_special = true;
                continue;
            }
            std::string t;
            if (m.v.add_space_prefix && prev_special) t = " ";
            t.append(text.substr(f.off, f.len));
            replace_all(t, " ", kSpaceEscape);
            m.spm_tokenize(t, out);
            prev_special = false;
        }
    }
    if (add_special && m.v.add_eos && m.v.eos_id >= 0) out.push_back(m.v.eos_id);
    return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
    if (id < 0 || id >= n_vocab())
        throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(id) + " out of range");
    if (!render_special && (impl_->attrs[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) return std::string();
    return impl_->pieces[id];
}

// As llama.cpp's llama_detokenize (remove_special off): the first token's piece loses one leading space where
// the vocabulary prefixes text with one (SentencePiece), then the clean-up of tokenization spaces where the
// vocabulary asks for it.
std::string Tokenizer::decode(const int32_t* ids, size_t n, bool render_special) const {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        const int32_t id = ids[i];
        if (id < 0 || id >= n_vocab())
            throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(id) + " out of range");
        if (!render_special && (impl_->attrs[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) continue;
        const std::string& piece = impl_->pieces[id];
        const bool strip = i == 0 && impl_->v.add_space_prefix && !piece.empty() && piece[0] == ' ';
        out.append(piece, strip ? 1 : 0, std::string::npos);
    }
    if (impl_->is_bpe && impl_->pre.clean_spaces) clean_up_tokenization_spaces(out);
    return out;
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->v.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->v.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->v.eos_id; }
bool Tokenizer::add_bos() const { return impl_->v.add_bos; }
bool Tokenizer::is_end_of_generation(int32_t id) const { return id >= 0 && impl_->eog.count(id) > 0; }
bool Tokenizer::is_control(int32_t id) const {
    return id >= 0 && id < n_vocab() && (impl_->attrs[id] & ATTR_CONTROL) != 0;
}
const TokenizerVocab& Tokenizer::vocab() const { return impl_->v; }

// ---------------------------------------------------------------------------------------------

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool render_special)
    : tokenizer_(tokenizer), render_special_(render_special) {}

std::string StreamingDetokenizer::push(int32_t id) {
    pending_ += tokenizer_.token_to_piece(id, render_special_);
    std::string out;
    size_t i = 0;
    while (i < pending_.size()) {
        const int n = unicode::utf8_check(pending_, i);
        if (n > 0) {
            out.append(pending_, i, n);
            i += n;
        } else if (n == 0) {
            break;  // incomplete character at the end: hold back
        } else {
            // invalid: emit U+FFFD for the maximal invalid subpart
            size_t j = i + 1;
            const std::string_view rest(pending_.data() + i, pending_.size() - i);
            for (size_t k = 1; k < rest.size() && k < 4; ++k) {
                if (unicode::utf8_check(rest.substr(0, k), 0) == 0) j = i + k; else break;
            }
            out += "\xEF\xBF\xBD";
            i = j;
        }
    }
    pending_.erase(0, i);
    return out;
}

std::string StreamingDetokenizer::flush() {
    std::string out = unicode::utf8_sanitize(pending_);
    pending_.clear();
    return out;
}

void StreamingDetokenizer::reset() { pending_.clear(); }

}  // namespace lazyllm_edge
