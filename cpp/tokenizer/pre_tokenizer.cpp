#include "tokenizer/pre_tokenizer.h"

#include <unordered_map>

#include "base/error.h"
#include "tokenizer/unicode.h"

namespace lazyllm_edge {

using unicode::cpt_flags;
using unicode::kWhitespaceBit;

namespace {

using Offsets = std::vector<size_t>;  // lengths (in code points) of consecutive pieces

// ---------------------------------------------------------------------------------------------
// llama.cpp's custom splitters (unicode_regex_split_custom_gpt2 / _llama3), on code points.
// ---------------------------------------------------------------------------------------------

struct Flags {
    uint8_t f = 0;
    bool in_range = false;
    bool letter() const { return in_range && (f & 7) == unicode::ucat_letter; }
    bool number() const { return in_range && (f & 7) == unicode::ucat_number; }
    bool mark() const { return in_range && (f & 7) == unicode::ucat_mark; }
    bool space() const { return in_range && (f & kWhitespaceBit); }
    bool any() const { return in_range; }  // as_uint() != 0
};

constexpr uint32_t OUT_OF_RANGE = 0xFFFFFFFF;

template <bool kLlama3>
Offsets split_custom(const std::vector<uint32_t>& cpts, const Offsets& offsets) {
    Offsets out;
    out.reserve(offsets.size());
    size_t start = 0;
    for (size_t offset : offsets) {
        const size_t ini = start, end = start + offset;
        start = end;
        auto get_cpt = [&](size_t pos) -> uint32_t { return (ini <= pos && pos < end) ? cpts[pos] : OUT_OF_RANGE; };
        auto get_flags = [&](size_t pos) -> Flags {
            Flags fl;
            if (ini <= pos && pos < end) {
                fl.f = cpt_flags(cpts[pos]);
                fl.in_range = true;
            }
            return fl;
        };
        size_t prev_end = ini;
        auto add = [&](size_t e) -> size_t {
            const size_t len = e - prev_end;
            if (len > 0) out.push_back(len);
            prev_end = e;
            return len;
        };
        auto lower = [](uint32_t c) -> uint32_t { return (c >= 'A' && c <= 'Z') ? c + 32 : c; };

        for (size_t pos = ini; pos < end;) {
            const uint32_t cpt = get_cpt(pos);
            const Flags flags = get_flags(pos);

            if (cpt == '\'' && pos + 1 < end) {
                const uint32_t n1 = kLlama3 ? lower(get_cpt(pos + 1)) : get_cpt(pos + 1);
                if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                    pos += add(pos + 2);
                    continue;
                }
                if (pos + 2 < end) {
                    const uint32_t n2 = kLlama3 ? lower(get_cpt(pos + 2)) : get_cpt(pos + 2);
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                        pos += add(pos + 3);
                        continue;
                    }
                }
            }

            if (kLlama3) {
                // [^\r\n\p{L}\p{N}]?\p{L}+
                if (!(cpt == '\r' || cpt == '\n' || flags.number())) {
                    if (flags.letter() || get_flags(pos + 1).letter()) {
                        pos++;
                        while (get_flags(pos).letter()) pos++;
                        add(pos);
                        continue;
                    }
                }
                // \p{N}{1,3}
                if (flags.number()) {
                    size_t i0 = pos;
                    while (get_flags(pos).number()) {
                        if (++pos - i0 >= 3) {
                            add(pos);
                            i0 = pos;
                        }
                    }
                    add(pos);
                    continue;
                }
                // <space>?[^\s\p{L}\p{N}]+[\r\n]*
                Flags flags2 = (cpt == ' ' ? get_flags(pos + 1) : flags);
                if (!(flags2.space() || flags2.letter() || flags2.number()) && flags.any()) {
                    pos += (cpt == ' ');
                    while (!(flags2.space() || flags2.letter() || flags2.number()) && flags2.any()) {
                        flags2 = get_flags(++pos);
                    }
                    uint32_t c2 = get_cpt(pos);
                    while (c2 == '\r' || c2 == '\n') c2 = get_cpt(++pos);
                    add(pos);
                    continue;
                }
                size_t nws = 0, last_rn = 0;
                while (get_flags(pos + nws).space()) {
                    const uint32_t c2 = get_cpt(pos + nws);
                    if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
                    nws++;
                }
                if (last_rn > 0) {  // \s*[\r\n]+
                    pos = last_rn;
                    add(pos);
                    continue;
                }
                if (nws > 1 && get_cpt(pos + nws) != OUT_OF_RANGE) {  // \s+(?!\S)
                    pos += nws - 1;
                    add(pos);
                    continue;
                }
                if (nws > 0) {
                    pos += nws;
                    add(pos);
                    continue;
                }
                add(++pos);
            } else {
                Flags flags2 = (cpt == ' ' ? get_flags(pos + 1) : flags);
                if (flags2.letter()) {  // <space>?\p{L}+
                    pos += (cpt == ' ');
                    while (flags2.letter()) flags2 = get_flags(++pos);
                    add(pos);
                    continue;
                }
                if (flags2.number()) {  // <space>?\p{N}+
                    pos += (cpt == ' ');
                    while (flags2.number()) flags2 = get_flags(++pos);
                    add(pos);
                    continue;
                }
                if (!(flags2.space() || flags2.letter() || flags2.number()) && flags2.any()) {
                    pos += (cpt == ' ');
                    while (!(flags2.space() || flags2.letter() || flags2.number()) && flags2.any()) {
                        flags2 = get_flags(++pos);
                    }
                    add(pos);
                    continue;
                }
                size_t nws = 0;
                while (get_flags(pos + nws).space()) nws++;
                if (nws > 1 && get_cpt(pos + nws) != OUT_OF_RANGE) {
                    pos += nws - 1;
                    add(pos);
                    continue;
                }
                if (nws > 0) {
                    pos += nws;
                    add(pos);
                    continue;
                }
                add(++pos);
            }
        }
    }
    return out;
}

// llama.cpp's unicode_regex_split_custom_qwen35: the qwen2 regex with combining marks in letter runs,
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
Offsets split_qwen35(const std::vector<uint32_t>& cpts, const Offsets& offsets) {
    Offsets out;
    out.reserve(offsets.size());
    size_t start = 0;
    for (size_t offset : offsets) {
        const size_t ini = start, end = start + offset;
        start = end;
        auto get_cpt = [&](size_t pos) -> uint32_t { return (ini <= pos && pos < end) ? cpts[pos] : OUT_OF_RANGE; };
        auto get_flags = [&](size_t pos) -> Flags {
            Flags fl;
            if (ini <= pos && pos < end) {
                fl.f = cpt_flags(cpts[pos]);
                fl.in_range = true;
            }
            return fl;
        };
        auto letter_or_mark = [](const Flags& f) { return f.letter() || f.mark(); };
        size_t prev_end = ini;
        auto add = [&](size_t e) -> size_t {
            const size_t len = e - prev_end;
            if (len > 0) out.push_back(len);
            prev_end = e;
            return len;
        };
        auto lower = [](uint32_t c) -> uint32_t { return (c >= 'A' && c <= 'Z') ? c + 32 : c; };

        for (size_t pos = ini; pos < end;) {
            const uint32_t cpt = get_cpt(pos);
            const Flags flags = get_flags(pos);
            // contractions, case-insensitive
            if (cpt == '\'' && pos + 1 < end) {
                const uint32_t n1 = lower(get_cpt(pos + 1));
                if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                    pos += add(pos + 2);
                    continue;
                }
                if (pos + 2 < end) {
                    const uint32_t n2 = lower(get_cpt(pos + 2));
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                        pos += add(pos + 3);
                        continue;
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+
            if (!(cpt == '\r' || cpt == '\n' || flags.number())) {
                if (letter_or_mark(flags) || letter_or_mark(get_flags(pos + 1))) {
                    pos++;
                    while (letter_or_mark(get_flags(pos))) pos++;
                    add(pos);
                    continue;
                }
            }
            // \p{N}
            if (flags.number()) {
                add(++pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{M}\p{N}]+[\r\n]*
            Flags flags2 = (cpt == ' ' ? get_flags(pos + 1) : flags);
            auto other = [&](const Flags& f) { return !(f.space() || f.letter() || f.mark() || f.number()); };
            if (other(flags2) && flags.any()) {
                pos += (cpt == ' ');
                while (other(flags2) && flags2.any()) flags2 = get_flags(++pos);
                uint32_t c2 = get_cpt(pos);
                while (c2 == '\r' || c2 == '\n') c2 = get_cpt(++pos);
                add(pos);
                continue;
            }
            size_t nws = 0, last_rn = 0;
            while (get_flags(pos + nws).space()) {
                const uint32_t c2 = get_cpt(pos + nws);
                if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
                nws++;
            }
            if (last_rn > 0) {  // \s*[\r\n]+
                pos = last_rn;
                add(pos);
                continue;
            }
            if (nws > 1 && get_cpt(pos + nws) != OUT_OF_RANGE) {  // \s+(?!\S)
                pos += nws - 1;
                add(pos);
                continue;
            }
            if (nws > 0) {  // \s+
                pos += nws;
                add(pos);
                continue;
            }
            add(++pos);
        }
    }
    return out;
}

// llama.cpp's unicode_regex_split_custom_newlines: [^\n]+|[\n]+
Offsets split_newline_runs(const std::vector<uint32_t>& cpts, const Offsets& offsets) {
    Offsets out;
    out.reserve(offsets.size());
    size_t start = 0;
    for (size_t offset : offsets) {
        const size_t end = start + offset;
        for (size_t pos = start; pos < end;) {
            const bool newline = cpts[pos] == '\n';
            const size_t run = pos;
            while (pos < end && (cpts[pos] == '\n') == newline) pos++;
            out.push_back(pos - run);
        }
        start = end;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Regexes that llama.cpp runs through std::regex on the "collapsed" text: every code point >= 128
// becomes one byte naming its category (0xD1 N, 0xD2 L, 0xD3 P, 0xD4 M, 0xD5 S, 0xD0 other,
// 0x0B whitespace); \p{X} becomes [<byte><ASCII members>]. ECMAScript leftmost-first semantics;
// text between matches becomes its own piece.
// ---------------------------------------------------------------------------------------------

uint8_t collapse(uint32_t cpt) {
    if (cpt < 128) return static_cast<uint8_t>(cpt);
    const uint8_t f = cpt_flags(cpt);
    if (f & kWhitespaceBit) return 0x0B;
    switch (f & 7) {
        case unicode::ucat_number: return 0xD1;
        case unicode::ucat_letter: return 0xD2;
        case unicode::ucat_punctuation: return 0xD3;
        case unicode::ucat_mark: return 0xD4;
        case unicode::ucat_symbol: return 0xD5;
        default: return 0xD0;
    }
}

inline bool cL(uint8_t c) { return c == 0xD2 || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
inline bool cN(uint8_t c) { return c == 0xD1 || (c >= '0' && c <= '9'); }
inline bool cS(uint8_t c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }  // std::regex \s, "C" locale
inline bool cUp(uint8_t c) { return c == 0xD2 || (c >= 'A' && c <= 'Z'); }   // (?=\p{L})[^a-z]
inline bool cLo(uint8_t c) { return c == 0xD2 || (c >= 'a' && c <= 'z'); }   // (?=\p{L})[^A-Z]
inline bool cOther(uint8_t c) { return !cS(c) && !cL(c) && !cN(c); }         // [^\s\p{L}\p{N}]
inline bool cRN(uint8_t c) { return c == '\r' || c == '\n'; }
// [\p{P}\$\+<=>\^~\|] (default) -- the collapsed \p{P} ASCII set is !-#%-*,-/:-;?-@[-]_{}
inline bool cPunctDefault(uint8_t c) {
    if (c == 0xD3) return true;
    if (c >= 0x80) return false;
    if ((c >= 0x21 && c <= 0x23) || (c >= 0x25 && c <= 0x2A) || (c >= 0x2C && c <= 0x2F) || (c >= 0x3A && c <= 0x3B) ||
        (c >= 0x3F && c <= 0x40) || (c >= 0x5B && c <= 0x5D) || c == 0x5F || c == 0x7B || c == 0x7D)
        return true;
    return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' || c == '|';
}

// Match of the contraction group (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]) at p; returns end or p.
size_t contraction(const uint8_t* c, size_t p, size_t end) {
    if (p < end && c[p] == '\'' && p + 1 < end) {
        const uint8_t a = c[p + 1] | 0x20;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return p + 2;
        if (p + 2 < end) {
            const uint8_t b = c[p + 2] | 0x20;
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return p + 3;
        }
    }
    return p;
}

// Shared tail of the llama3-family regexes: \s*[\r\n]+|\s+(?!\S)|\s+   (returns p when no match)
size_t match_spaces(const uint8_t* c, size_t p, size_t end) {
    if (!cS(c[p])) return p;
    size_t r = p, last_rn = 0;
    bool has_rn = false;
    while (r < end && cS(c[r])) {
        if (cRN(c[r])) {
            last_rn = r;
            has_rn = true;
        }
        r++;
    }
    if (has_rn) return last_rn + 1;
    if (r == end) return r;
    if (r - p >= 2) return r - 1;
    return r;
}

// qwen2: (?:contractions)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_qwen2(const uint8_t* c, size_t p, size_t end) {
    size_t q = contraction(c, p, end);
    if (q > p) return q;
    const uint8_t ch = c[p];
    if (!cRN(ch) && !cL(ch) && !cN(ch) && p + 1 < end && cL(c[p + 1])) {
        q = p + 2;
        while (q < end && cL(c[q])) q++;
        return q;
    }
    if (cL(ch)) {
        q = p + 1;
        while (q < end && cL(c[q])) q++;
        return q;
    }
    if (cN(ch)) return p + 1;
    size_t s = p;
    if (ch == ' ' && p + 1 < end && cOther(c[p + 1])) s = p + 1;
    if (cOther(c[s])) {
        q = s + 1;
        while (q < end && cOther(c[q])) q++;
        while (q < end && cRN(c[q])) q++;
        return q;
    }
    return match_spaces(c, p, end);
}

// gpt-4o / tekken letters: [^\r\n\p{L}\p{N}]?UP*LO+C?|[^\r\n\p{L}\p{N}]?UP+LO*C?   (returns p if none)
size_t match_cased_word(const uint8_t* c, size_t p, size_t end, bool with_contractions) {
    const uint8_t ch = c[p];
    const bool can_prefix = !cRN(ch) && !cL(ch) && !cN(ch);
    for (int alt = 0; alt < 2; ++alt) {
        for (int use_prefix = 1; use_prefix >= 0; --use_prefix) {
            if (use_prefix && !can_prefix) continue;
            const size_t s = p + (use_prefix ? 1 : 0);
            size_t u = s;
            while (u < end && cUp(c[u])) u++;
            size_t e = p;
            bool ok = false;
            if (alt == 0) {  // UP* LO+ : greedy UP*, backtrack until LO+ can start
                for (size_t k = u + 1; k-- > s;) {
                    if (k < end && cLo(c[k])) {
                        e = k + 1;
                        while (e < end && cLo(c[e])) e++;
                        ok = true;
                        break;
                    }
                }
            } else if (u > s) {  // UP+ LO*
                e = u;
                while (e < end && cLo(c[e])) e++;
                ok = true;
            }
            if (ok) return with_contractions ? contraction(c, e, end) : e;
        }
    }
    return p;
}

size_t match_gpt4o(const uint8_t* c, size_t p, size_t end, bool tekken) {
    size_t q = match_cased_word(c, p, end, !tekken);
    if (q > p) return q;
    const uint8_t ch = c[p];
    if (cN(ch)) {
        q = p + 1;
        if (!tekken)
            while (q < end && q < p + 3 && cN(c[q])) q++;
        return q;
    }
    size_t s = p;
    if (ch == ' ' && p + 1 < end && cOther(c[p + 1])) s = p + 1;
    if (cOther(c[s])) {
        q = s + 1;
        while (q < end && cOther(c[q])) q++;
        while (q < end && (cRN(c[q]) || c[q] == '/')) q++;
        return q;
    }
    return match_spaces(c, p, end);
}

template <typename Match>
Offsets split_regex(const std::vector<uint8_t>& col, const Offsets& offsets, Match match) {
    Offsets out;
    out.reserve(offsets.size());
    size_t start = 0;
    for (size_t offset : offsets) {
        const size_t ini = start, end = start + offset;
        start = end;
        size_t gap = ini, p = ini;
        while (p < end) {
            const size_t q = match(col.data(), p, end);
            if (q > p) {
                if (p > gap) out.push_back(p - gap);
                out.push_back(q - p);
                p = gap = q;
            } else {
                p++;
            }
        }
        if (end > gap) out.push_back(end - gap);
    }
    return out;
}

// \p{P} on the collapsed text: 0xD3 and the ASCII punctuation !-#%-*,-/:-;?-@[-]_{}
inline bool cPunct(uint8_t c) {
    if (c == 0xD3) return true;
    return (c >= 0x21 && c <= 0x23) || (c >= 0x25 && c <= 0x2A) || (c >= 0x2C && c <= 0x2F) || (c >= 0x3A && c <= 0x3B) ||
           (c >= 0x3F && c <= 0x40) || (c >= 0x5B && c <= 0x5D) || c == 0x5F || c == 0x7B || c == 0x7D;
}

// \s?X+ on the collapsed text (returns p when no match)
template <typename Member>
size_t match_space_then_run(const uint8_t* c, size_t p, size_t end, Member member) {
    size_t s = p;
    if (cS(c[p]) && p + 1 < end && member(c[p + 1])) s = p + 1;
    if (!member(c[s])) return p;
    size_t q = s + 1;
    while (q < end && member(c[q])) q++;
    return q;
}

// ---------------------------------------------------------------------------------------------
// Regexes without \p{..} that llama.cpp runs through std::wregex on the code points, with every
// non-ASCII whitespace code point replaced by 0x0B (so \s, the "C" locale's, still sees it).
// ---------------------------------------------------------------------------------------------

inline uint32_t wide(uint32_t cpt) { return (cpt > 0x7F && (cpt_flags(cpt) & kWhitespaceBit)) ? 0x0B : cpt; }
inline bool wS(uint32_t c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }

struct CptRange {
    uint32_t first, last;
};

template <size_t N>
bool in_ranges(const CptRange (&ranges)[N], uint32_t c) {
    for (const CptRange& r : ranges)
        if (c >= r.first && c <= r.last) return true;
    return false;
}

// deepseek-llm's letter class, as written in llama.cpp's regex (A-Za-z and the cased letters of other scripts)
constexpr CptRange kDeepseekLetters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF}, {0x1C4, 0x293},
    {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A},
    {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5},
    {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57},
    {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134},
    {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F},
    {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2},
    {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
// [!-/:-~！-／：-～‘-‟　-。]
constexpr CptRange kDeepseekPunct[] = {{0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};
// [一-龥ࠀ-一가-퟿]
constexpr CptRange kCjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};

// Splits each piece at the leftmost-first matches of `match` over the wide (whitespace-mapped) code points.
template <typename Match>
Offsets split_wide(const std::vector<uint32_t>& cpts, const Offsets& offsets, Match match) {
    std::vector<uint32_t> w(cpts.size());
    for (size_t i = 0; i < cpts.size(); ++i) w[i] = wide(cpts[i]);
    Offsets out;
    out.reserve(offsets.size());
    size_t start = 0;
    for (size_t offset : offsets) {
        const size_t ini = start, end = start + offset;
        start = end;
        size_t gap = ini, p = ini;
        while (p < end) {
            const size_t q = match(w.data(), p, end);
            if (q > p) {
                if (p > gap) out.push_back(p - gap);
                out.push_back(q - p);
                p = gap = q;
            } else {
                p++;
            }
        }
        if (end > gap) out.push_back(end - gap);
    }
    return out;
}

// \s?[class]+ over wide code points (returns p when no match)
template <size_t N>
size_t match_wide_space_then_run(const uint32_t* w, size_t p, size_t end, const CptRange (&ranges)[N]) {
    size_t s = p;
    if (wS(w[p]) && p + 1 < end && in_ranges(ranges, w[p + 1])) s = p + 1;
    if (!in_ranges(ranges, w[s])) return p;
    size_t q = s + 1;
    while (q < end && in_ranges(ranges, w[q])) q++;
    return q;
}

// bloom:  ?[^(\s|.,!?…。，、।۔،)]+   (std::wregex on code points; non-ASCII whitespace -> 0x0B)
bool bloom_allowed(uint32_t c) {
    if (c < 128) {
        if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return false;
        return !(c == '(' || c == '|' || c == '.' || c == ',' || c == '!' || c == '?' || c == ')');
    }
    if (cpt_flags(c) & kWhitespaceBit) return false;
    return !(c == 0x2026 || c == 0x3002 || c == 0xFF0C || c == 0x3001 || c == 0x0964 || c == 0x06D4 || c == 0x060C);
}

}  // namespace

PreTokenizer make_pre_tokenizer(const std::string& pre) {
    static const std::unordered_map<std::string, int> groups = {
        {"", 0}, {"default", 0},
        {"llama3", 1}, {"llama-v3", 1}, {"llama-bpe", 1}, {"falcon3", 1}, {"falcon-h1", 1}, {"pixtral", 1},
        {"midm-2.0", 1}, {"lfm2", 1}, {"jina-v5-nano", 1},
        {"dbrx", 2}, {"smaug-bpe", 2}, {"chatglm-bpe", 2}, {"glm4", 2},
        {"falcon", 3},
        {"starcoder", 4}, {"refact", 4}, {"command-r", 4}, {"smollm", 4}, {"codeshell", 4}, {"exaone", 4},
        {"minerva-7b", 4}, {"mellum2", 4},
        {"gpt-2", 5}, {"phi-2", 5}, {"jina-es", 5}, {"jina-de", 5}, {"gigachat", 5}, {"jina-v2-es", 5},
        {"jina-v2-de", 5}, {"a.x-4.0", 5}, {"mellum", 5}, {"modern-bert", 5}, {"mpt", 5}, {"olmo", 5},
        {"jais", 5}, {"trillion", 5}, {"granite-docling", 5}, {"exaone4", 5}, {"jina-v1-en", 5},
        {"jina-v2-code", 5}, {"roberta-bpe", 5},
        {"qwen2", 6}, {"deepseek-r1-qwen", 6}, {"kormo", 6}, {"f2llmv2", 6}, {"stablelm2", 6}, {"hunyuan", 6},
        {"megrez", 6}, {"solar-open", 6}, {"grok-2", 6},
        {"poro-chat", 7}, {"bloom", 7}, {"gpt3-finnish", 7},
        {"viking", 8},
        {"gpt-4o", 9}, {"llama4", 9}, {"kanana2", 9}, {"talkie", 9}, {"minimax-m2", 9},
        {"tekken", 10},
        {"deepseek-llm", 11},
        {"deepseek-coder", 12},
        {"qwen35", 13},
        {"gemma4", 14}, {"granite-embed-multi-311m", 14},
    };
    // llama.cpp's clean_up_tokenization_spaces is on for byte-level BPE except for these pre-tokenizers
    static const char* const kNoCleanSpaces[] = {
        "deepseek-llm", "deepseek-coder", "command-r", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "qwen35",
        "poro-chat", "viking", "tekken", "smollm", "gpt-4o", "llama4", "kanana2", "talkie", "trillion",
        "granite-docling", "hunyuan", "grok-2", "minimax-m2", "solar-open",
    };
    auto it = groups.find(pre);
    if (it == groups.end()) throw Error(ErrorCode::model_load, "unsupported pre-tokenizer type: '" + pre + "'");
    PreTokenizer pt;
    switch (it->second) {
        case 0: pt.steps = {SplitKind::punct_default, SplitKind::gpt2, SplitKind::digits, SplitKind::digits3}; break;
        case 1: pt.steps = {SplitKind::llama3}; pt.ignore_merges = true; break;
        case 2: pt.steps = {SplitKind::llama3}; break;
        case 3: pt.steps = {SplitKind::punct_falcon, SplitKind::gpt2, SplitKind::digits3}; break;
        case 4: pt.steps = {SplitKind::digit, SplitKind::gpt2}; break;
        case 5: pt.steps = {SplitKind::gpt2}; break;
        case 6: pt.steps = {SplitKind::qwen2}; break;
        case 7: pt.steps = {SplitKind::bloom}; break;
        case 8: pt.steps = {SplitKind::bloom, SplitKind::digit}; break;
        case 9: pt.steps = {SplitKind::gpt4o}; break;
        case 10: pt.steps = {SplitKind::tekken}; pt.ignore_merges = true; break;
        case 11:
            pt.steps = {SplitKind::line_break, SplitKind::deepseek_letters, SplitKind::deepseek_punct,
                        SplitKind::trailing_spaces, SplitKind::cjk, SplitKind::digits};
            break;
        case 12:
            pt.steps = {SplitKind::line_break, SplitKind::letters, SplitKind::punct, SplitKind::cjk, SplitKind::digit};
            break;
        case 13: pt.steps = {SplitKind::qwen35}; break;
        case 14:  // SentencePiece-style BPE: spaces escaped, merges over raw UTF-8, split only at newlines
            pt.steps = {SplitKind::newline_runs};
            pt.byte_encode = false;
            pt.escape_spaces = true;
            break;
    }
    pt.clean_spaces = true;
    for (const char* name : kNoCleanSpaces)
        if (pre == name) pt.clean_spaces = false;
    return pt;
}

std::vector<std::string> pre_tokenize(std::string_view text, const PreTokenizer& pt) {
    const std::vector<uint32_t> cpts = unicode::cpts_from_utf8(text);
    Offsets offsets = {cpts.size()};
    std::vector<uint8_t> col;
    auto collapsed = [&]() -> const std::vector<uint8_t>& {
        if (col.empty() && !cpts.empty()) {
            col.resize(cpts.size());
            for (size_t i = 0; i < cpts.size(); ++i) col[i] = collapse(cpts[i]);
        }
        return col;
    };
    if (cpts.empty()) return {};
    for (SplitKind k : pt.steps) {
        switch (k) {
            case SplitKind::gpt2: offsets = split_custom<false>(cpts, offsets); break;
            case SplitKind::llama3: offsets = split_custom<true>(cpts, offsets); break;
            case SplitKind::qwen2: offsets = split_regex(collapsed(), offsets, match_qwen2); break;
            case SplitKind::qwen35: offsets = split_qwen35(cpts, offsets); break;
            case SplitKind::newline_runs: offsets = split_newline_runs(cpts, offsets); break;
            case SplitKind::line_break:
                offsets = split_wide(cpts, offsets,
                                     [](const uint32_t* w, size_t p, size_t) { return (w[p] == '\r' || w[p] == '\n') ? p + 1 : p; });
                break;
            case SplitKind::deepseek_letters:
                offsets = split_wide(cpts, offsets, [](const uint32_t* w, size_t p, size_t e) {
                    return match_wide_space_then_run(w, p, e, kDeepseekLetters);
                });
                break;
            case SplitKind::deepseek_punct:
                offsets = split_wide(cpts, offsets, [](const uint32_t* w, size_t p, size_t e) {
                    return match_wide_space_then_run(w, p, e, kDeepseekPunct);
                });
                break;
            case SplitKind::trailing_spaces:
                offsets = split_wide(cpts, offsets, [](const uint32_t* w, size_t p, size_t e) {
                    size_t q = p;
                    while (q < e && wS(w[q])) q++;
                    return (q > p && q == e) ? q : p;
                });
                break;
            case SplitKind::cjk:
                offsets = split_wide(cpts, offsets, [](const uint32_t* w, size_t p, size_t e) {
                    size_t q = p;
                    while (q < e && in_ranges(kCjk, w[q])) q++;
                    return q;
                });
                break;
            case SplitKind::letters:
                offsets = split_regex(collapsed(), offsets,
                                      [](const uint8_t* c, size_t p, size_t e) { return match_space_then_run(c, p, e, cL); });
                break;
            case SplitKind::punct:
                offsets = split_regex(collapsed(), offsets,
                                      [](const uint8_t* c, size_t p, size_t e) { return match_space_then_run(c, p, e, cPunct); });
                break;
            case SplitKind::gpt4o:
                offsets = split_regex(collapsed(), offsets,
                                      [](const uint8_t* c, size_t p, size_t e) { return match_gpt4o(c, p, e, false); });
                break;
            case SplitKind::tekken:
                offsets = split_regex(collapsed(), offsets,
                                      [](const uint8_t* c, size_t p, size_t e) { return match_gpt4o(c, p, e, true); });
                break;
            case SplitKind::digit:
                offsets = split_regex(collapsed(), offsets,
                                      [](const uint8_t* c, size_t p, size_t) { return cN(c[p]) ? p + 1 : p; });
                break;
            case SplitKind::digits:
                offsets = split_regex(collapsed(), offsets, [](const uint8_t* c, size_t p, size_t e) {
                    size_t q = p;
                    while (q < e && cN(c[q])) q++;
                    return q;
                });
                break;
            case SplitKind::punct_default:
            case SplitKind::punct_falcon: {
                const bool falcon = k == SplitKind::punct_falcon;
                offsets = split_regex(collapsed(), offsets, [falcon](const uint8_t* c, size_t p, size_t e) {
                    size_t q = p;
                    while (q < e && (cPunctDefault(c[q]) || (falcon && c[q] == '`'))) q++;
                    return q;
                });
                break;
            }
            case SplitKind::digits3:
                offsets = split_regex(collapsed(), offsets, [&cpts](const uint8_t*, size_t p, size_t e) {
                    auto d = [&](size_t i) { return cpts[i] >= '0' && cpts[i] <= '9'; };
                    return (p + 2 < e && d(p) && d(p + 1) && d(p + 2)) ? p + 3 : p;
                });
                break;
            case SplitKind::bloom:
                offsets = split_regex(collapsed(), offsets, [&cpts](const uint8_t*, size_t p, size_t e) {
                    size_t s = p;
                    if (cpts[p] == ' ' && p + 1 < e && bloom_allowed(cpts[p + 1])) s = p + 1;
                    if (!bloom_allowed(cpts[s])) return p;
                    size_t q = s + 1;
                    while (q < e && bloom_allowed(cpts[q])) q++;
                    return q;
                });
                break;
        }
    }
    std::vector<std::string> words;
    words.reserve(offsets.size());
    size_t start = 0;
    for (size_t len : offsets) {
        std::string w;
        for (size_t i = start; i < start + len; ++i) unicode::append_utf8(w, cpts[i]);
        words.push_back(std::move(w));
        start += len;
    }
    return words;
}

}  // namespace lazyllm_edge
