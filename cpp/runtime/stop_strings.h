// Stop strings over streamed text: what cannot be part of a stop string is released at once, what could begin
// one is held until the following text decides.
#pragma once
#include <string>
#include <vector>

namespace lazyllm_edge {

class StopStrings {
public:
    // Error(invalid_argument) for a stop string that is not valid UTF-8; empty ones are dropped.
    explicit StopStrings(const std::vector<std::string>& stops);
    // Adds text (whole UTF-8 characters) and returns the part that can be emitted now. When a stop string is
    // complete, returns the text before it, sets *stopped and drops the rest.
    std::string push(const std::string& text, bool* stopped);
    std::string flush();  // the held text, at the end of the stream

private:
    size_t held_back_length() const;
    std::string take_held();

    std::vector<std::string> stops_;
    std::string held_;
};

}  // namespace lazyllm_edge
