// What the CLI prints to stderr after a reply: prompt tokens (computed and reused), TTFT, decode speed, finish.
#pragma once
#include "lazyllm_edge/lazyllm_edge.hpp"

namespace lazyllm_edge {

void print_reply_timings(const Session& session, const Generation& generation);

}  // namespace lazyllm_edge
