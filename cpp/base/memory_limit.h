// How much memory a new allocation may take: checked before the session arena is allocated, so that an
// n_ctx too large for the machine fails at session creation instead of the OOM killer striking later.
#pragma once
#include <cstddef>

namespace lazyllm_edge {

// Bytes that can still be committed: the smallest of MemAvailable + SwapFree (/proc/meminfo), the
// cgroup's remaining limit, and $LAZYLLM_EDGE_MEMORY_LIMIT (bytes; lets an embedding app cap sessions).
// SIZE_MAX when nothing is known.
size_t available_memory_bytes();

// Touches every page of [p, p + n) so the memory is committed now (fails here, not mid-generation).
void commit_pages(void* p, size_t n);

}  // namespace lazyllm_edge
