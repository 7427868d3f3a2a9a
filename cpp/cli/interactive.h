// lazyllm-edge -i: a terminal chat with the model's template. The conversation is the session's context: each
// turn feeds the context plus the user's message rendered as a continuation (GenerationParams::reuse_prefix, so
// only the new message is computed), Ctrl-C stops a reply and returns to the prompt, Ctrl-C at the prompt or EOF
// exits; /reset, /save FILE, /load FILE; timings of each reply on stderr.
#pragma once
#include <atomic>
#include <string>

#include "lazyllm_edge/lazyllm_edge.hpp"

namespace lazyllm_edge {

struct InteractiveOptions {
    GenerationParams generation;  // sampling, max tokens per reply, stop strings; its cancel flag is Ctrl-C's
    std::string system_prompt;    // "" = none
    std::string prompt_cache;     // "" = none: else loaded at the start when it exists, saved after each reply
};

// Runs the chat on stdin/stdout until EOF or Ctrl-C at the prompt; returns the exit status.
int run_interactive(Session& session, const InteractiveOptions& options, std::atomic<bool>& interrupted);

}  // namespace lazyllm_edge
