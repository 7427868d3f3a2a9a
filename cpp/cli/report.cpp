#include "cli/report.h"

#include <cstdio>

namespace lazyllm_edge {

void print_reply_timings(const Session& session, const Generation& generation) {
    const SessionStats& st = session.stats();
    std::fprintf(stderr,
                 "\n[lazyllm-edge] prompt %d tokens (%d reused from the cache), TTFT %.3f s (%.1f tok/s), generated %d "
                 "tokens (%.1f tok/s), prefill computed %.1f%% of dense, finish: %s\n",
                 st.n_prompt_tokens, st.n_reused_tokens, st.ttft_s, st.prefill_tokens_per_s, generation.n_generated(),
                 st.decode_tokens_per_s,
                 st.prefill_pairs_dense ? 100.0 * st.prefill_pairs_computed / st.prefill_pairs_dense : 100.0,
                 finish_reason_name(generation.finish_reason()));
    std::fflush(stderr);
}

}  // namespace lazyllm_edge
