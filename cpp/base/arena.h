// One host allocation per lifetime, sized and carved from a BufferPlan.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/buffer_plan.h"
#include "base/error.h"
#include "base/memory_limit.h"

namespace lazyllm_edge {

class Arena {
public:
    static constexpr size_t kAlignment = 64;  // a cache line, and the widest SIMD load

    Arena() = default;
    ~Arena() { std::free(base_); }
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    // Allocates the plan's bytes and carves every buffer. The plan's committed buffers are backed with pages
    // now; the rest on first touch (buffers that fill in proportion to the prompt cost memory only when used).
    void allocate(const BufferPlan& plan, const char* what) {
        std::free(base_);
        base_ = nullptr;
        size_ = plan.bytes();
        if (size_ > 0) {
            // refuse up front what the machine cannot hold: overcommit would let posix_memalign succeed and
            // the OOM killer end the process at the first long prompt
            const size_t avail = available_memory_bytes();
            if (size_ > avail)
                throw_error(ErrorCode::out_of_memory, std::string("the ") + what + " needs " + std::to_string(size_ >> 20) +
                                                          " MiB but only " + std::to_string(avail >> 20) +
                                                          " MiB of memory are available (try a smaller n_ctx)");
            if (posix_memalign(&base_, plan.alignment() < kAlignment ? kAlignment : plan.alignment(), size_) != 0 ||
                base_ == nullptr)
                throw_error(ErrorCode::out_of_memory, std::string("cannot allocate ") + std::to_string(size_ >> 20) +
                                                          " MiB for the " + what + " (try a smaller n_ctx)");
            // back the committed prefix now, so running out shows here and not mid-generation
            commit_pages(base_, plan.commit_bytes());
        }
        plan.carve(base_);
    }

    size_t size_bytes() const { return size_; }

private:
    void* base_ = nullptr;
    size_t size_ = 0;
};

}  // namespace lazyllm_edge
