#include "base/memory_limit.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace lazyllm_edge {
namespace {

// First number in a small file, or false (missing file, "max", garbage).
bool read_number(const char* path, uint64_t* out) {
    FILE* f = std::fopen(path, "r");
    if (!f) return false;
    unsigned long long v = 0;
    const bool ok = std::fscanf(f, "%llu", &v) == 1;
    std::fclose(f);
    if (ok) *out = v;
    return ok;
}

// MemAvailable + SwapFree in bytes, or false on kernels without /proc/meminfo.
bool meminfo_available(uint64_t* out) {
    FILE* f = std::fopen("/proc/meminfo", "r");
    if (!f) return false;
    char line[256];
    uint64_t avail = 0, swap = 0;
    bool have = false;
    while (std::fgets(line, sizeof line, f)) {
        unsigned long long kb = 0;
        if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = kb * 1024, have = true;
        else if (std::sscanf(line, "SwapFree: %llu kB", &kb) == 1) swap = kb * 1024;
    }
    std::fclose(f);
    if (have) *out = avail + swap;
    return have;
}

// Remaining room under a cgroup v2 or v1 memory limit.
bool cgroup_available(uint64_t* out) {
    uint64_t limit = 0, used = 0;
    if (read_number("/sys/fs/cgroup/memory.max", &limit) && read_number("/sys/fs/cgroup/memory.current", &used)) {
        *out = limit > used ? limit - used : 0;
        return true;
    }
    if (read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes", &limit) &&
        read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes", &used) && limit < (1ull << 60)) {
        *out = limit > used ? limit - used : 0;
        return true;
    }
    return false;
}

}  // namespace

size_t available_memory_bytes() {
    uint64_t best = UINT64_MAX, v = 0;
    if (meminfo_available(&v)) best = std::min(best, v);
    if (cgroup_available(&v)) best = std::min(best, v);
    if (const char* env = std::getenv("LAZYLLM_EDGE_MEMORY_LIMIT"); env && *env) {
        char* end = nullptr;
        const unsigned long long cap = std::strtoull(env, &end, 10);
        if (end && *end == '\0') best = std::min<uint64_t>(best, cap);
    }
    return best >= SIZE_MAX ? SIZE_MAX : static_cast<size_t>(best);
}

void commit_pages(void* p, size_t n) {
    const long page = sysconf(_SC_PAGESIZE);
    const size_t step = page > 0 ? static_cast<size_t>(page) : 4096;
    // one write per page is enough to back it; volatile keeps the compiler from dropping the stores
    volatile uint8_t* b = static_cast<volatile uint8_t*>(p);
    for (size_t off = 0; off < n; off += step) b[off] = 0;
}

}  // namespace lazyllm_edge
