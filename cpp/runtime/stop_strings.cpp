#include "runtime/stop_strings.h"

#include <algorithm>

#include "base/error.h"
#include "tokenizer/unicode.h"

namespace lazyllm_edge {

StopStrings::StopStrings(const std::vector<std::string>& stops) {
    for (const std::string& s : stops) {
        if (s.empty()) continue;
        // valid UTF-8 starts at a character boundary, so cutting the text where one begins never splits a character
        if (unicode::utf8_sanitize(s) != s) throw_error(ErrorCode::invalid_argument, "stop string is not valid UTF-8");
        stops_.push_back(s);
    }
}

std::string StopStrings::push(const std::string& text, bool* stopped) {
    *stopped = false;
    held_ += text;
    if (stops_.empty()) return take_held();
    // the earliest complete stop string: emitted text never ends with the start of one, so it lies in held_
    size_t first = std::string::npos;
    for (const std::string& s : stops_) first = std::min(first, held_.find(s));
    if (first != std::string::npos) {
        std::string before = held_.substr(0, first);
        held_.clear();
        *stopped = true;
        return before;
    }
    const size_t release = held_.size() - held_back_length();
    std::string out = held_.substr(0, release);
    held_.erase(0, release);
    return out;
}

std::string StopStrings::flush() { return take_held(); }

std::string StopStrings::take_held() {
    std::string out;
    out.swap(held_);
    return out;
}

// Length of the longest end of held_ that begins a stop string (could still become one).
size_t StopStrings::held_back_length() const {
    size_t longest = 0;
    for (const std::string& s : stops_) longest = std::max(longest, s.size());
    const size_t first = held_.size() >= longest ? held_.size() - longest + 1 : 0;  // a whole stop string is not held
    for (size_t start = first; start < held_.size(); ++start) {
        const size_t n = held_.size() - start;
        for (const std::string& s : stops_)
            if (n < s.size() && s.compare(0, n, held_, start, n) == 0) return n;
    }
    return 0;
}

}  // namespace lazyllm_edge
