#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <memory>

namespace lazyllm_edge {
namespace unicode {

namespace {

struct FlagTable {
    std::unique_ptr<uint8_t[]> flags;
    FlagTable() : flags(new uint8_t[0x110000]) {
        for (size_t i = 0; i < kCategoryRangesCount; ++i) {
            const uint32_t lo = kCategoryRanges[i].first;
            const uint32_t hi = i + 1 < kCategoryRangesCount ? kCategoryRanges[i + 1].first : 0x110000;
            std::fill(flags.get() + lo, flags.get() + hi, kCategoryRanges[i].category);
        }
        for (size_t i = 0; i < kWhitespaceCount; ++i) flags[kWhitespace[i]] |= kWhitespaceBit;
    }
};

const FlagTable& flag_table() {
    static const FlagTable table;
    return table;
}

struct ByteMap {
    std::array<std::string, 256> to_utf8;
    std::array<int16_t, 512> from_cpt;  // code points used by the mapping are < 324
    ByteMap() {
        from_cpt.fill(-1);
        std::array<bool, 256> direct{};
        for (int ch = 0x21; ch <= 0x7E; ++ch) direct[ch] = true;
        for (int ch = 0xA1; ch <= 0xAC; ++ch) direct[ch] = true;
        for (int ch = 0xAE; ch <= 0xFF; ++ch) direct[ch] = true;
        int n = 0;
        for (int ch = 0; ch < 256; ++ch) {
            const uint32_t cpt = direct[ch] ? static_cast<uint32_t>(ch) : static_cast<uint32_t>(256 + n++);
            append_utf8(to_utf8[ch], cpt);
            from_cpt[cpt] = static_cast<int16_t>(ch);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

}  // namespace

uint8_t cpt_flags(uint32_t cpt) {
    if (cpt >= 0x110000) return ucat_undefined;
    return flag_table().flags[cpt];
}

// Mirrors llama.cpp unicode_cpt_from_utf8 (structure checks only).
static bool decode_one(std::string_view s, size_t& off, uint32_t& out) {
    const auto b = [&](size_t k) { return static_cast<uint8_t>(s[off + k]); };
    const uint8_t c0 = b(0);
    if (!(c0 & 0x80)) { out = c0; off += 1; return true; }
    if (!(c0 & 0x40)) return false;
    if (!(c0 & 0x20)) {
        if (off + 1 >= s.size() || (b(1) & 0xC0) != 0x80) return false;
        out = ((c0 & 0x1F) << 6) | (b(1) & 0x3F); off += 2; return true;
    }
    if (!(c0 & 0x10)) {
        if (off + 2 >= s.size() || (b(1) & 0xC0) != 0x80 || (b(2) & 0xC0) != 0x80) return false;
        out = ((c0 & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F); off += 3; return true;
    }
    if (!(c0 & 0x08)) {
        if (off + 3 >= s.size() || (b(1) & 0xC0) != 0x80 || (b(2) & 0xC0) != 0x80 || (b(3) & 0xC0) != 0x80) return false;
        out = ((c0 & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F); off += 4; return true;
    }
    return false;
}

std::vector<uint32_t> cpts_from_utf8(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    size_t off = 0;
    while (off < s.size()) {
        uint32_t c;
        if (decode_one(s, off, c)) {
            out.push_back(c);
        } else {
            ++off;
            out.push_back(0xFFFD);
        }
    }
    return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
    if (cpt <= 0x7F) {
        out.push_back(static_cast<char>(cpt));
    } else if (cpt <= 0x7FF) {
        out.push_back(static_cast<char>(0xC0 | ((cpt >> 6) & 0x1F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt <= 0xFFFF) {
        out.push_back(static_cast<char>(0xE0 | ((cpt >> 12) & 0x0F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt <= 0x10FFFF) {
        out.push_back(static_cast<char>(0xF0 | ((cpt >> 18) & 0x07)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else {
        out += "\xEF\xBF\xBD";
    }
}

const std::string& byte_to_utf8(uint8_t b) { return byte_map().to_utf8[b]; }

int utf8_to_byte(uint32_t cpt) {
    if (cpt >= 512) return -1;
    return byte_map().from_cpt[cpt];
}

int utf8_check(std::string_view s, size_t i) {
    const uint8_t c0 = static_cast<uint8_t>(s[i]);
    if (c0 < 0x80) return 1;
    int n;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c0 >= 0xC2 && c0 <= 0xDF) {
        n = 2;
    } else if (c0 >= 0xE0 && c0 <= 0xEF) {
        n = 3;
        if (c0 == 0xE0) lo = 0xA0;
        if (c0 == 0xED) hi = 0x9F;
    } else if (c0 >= 0xF0 && c0 <= 0xF4) {
        n = 4;
        if (c0 == 0xF0) lo = 0x90;
        if (c0 == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int k = 1; k < n; ++k) {
        if (i + k >= s.size()) return 0;
        const uint8_t c = static_cast<uint8_t>(s[i + k]);
        const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (c < l || c > h) return -1;
    }
    return n;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const int n = utf8_check(s, i);
        if (n > 0) {
            out.append(s.data() + i, n);
            i += n;
        } else if (n == 0) {  // truncated at the end: one replacement for the whole prefix
            out += "\xEF\xBF\xBD";
            break;
        } else {
            // maximal subpart: skip the lead and any continuation bytes that were valid so far
            size_t j = i + 1;
            const uint8_t c0 = static_cast<uint8_t>(s[i]);
            if (c0 >= 0xC2 && c0 <= 0xF4) {
                // count how many following bytes were acceptable before the failure
                std::string_view rest = s.substr(i);
                for (size_t k = 1; k < rest.size() && k < 4; ++k) {
                    std::string tmp(rest.substr(0, k));
                    if (utf8_check(tmp, 0) == 0) j = i + k; else break;
                }
            }
            out += "\xEF\xBF\xBD";
            i = j;
        }
    }
    return out;
}

}  // namespace unicode
}  // namespace lazyllm_edge
