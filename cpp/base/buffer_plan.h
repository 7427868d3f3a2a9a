// One table of buffers per owner: each buffer is named once, with its element count, and the same table
// sizes the allocation and carves it (llm.c's one allocation per lifetime, without a second list to keep
// in step). Host arenas (base/arena.h) and device allocations (cpp/cuda/) both take a plan.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <vector>

namespace lazyllm_edge {

class BufferPlan {
public:
    explicit BufferPlan(size_t alignment) : alignment_(alignment) {}

    // Adds a buffer of `count` T; `slot` receives its address when the plan is carved. `commit`: the
    // allocation backs this buffer with pages up front (only a leading run of buffers can be committed).
    template <class T>
    void add(T*& slot, int64_t count, bool commit = false) {
        static_assert(!std::is_void_v<T>, "name the element type: a void* slot has no element size");
        const size_t bytes = round_up(sizeof(T) * static_cast<size_t>(count > 0 ? count : 0));
        entries_.push_back({bytes, [&slot](void* p) { slot = static_cast<T*>(p); }});
        if (commit && commit_bytes_ == total_bytes_) commit_bytes_ += bytes;
        total_bytes_ += bytes;
    }

    size_t bytes() const { return total_bytes_; }
    size_t commit_bytes() const { return commit_bytes_; }
    size_t alignment() const { return alignment_; }

    // Points every slot into [base, base + bytes()), in the order the buffers were added.
    void carve(void* base) const {
        size_t offset = 0;
        for (const Entry& e : entries_) {
            e.bind(static_cast<uint8_t*>(base) + offset);
            offset += e.bytes;
        }
    }

private:
    struct Entry {
        size_t bytes;
        std::function<void(void*)> bind;
    };
    size_t round_up(size_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }
    size_t alignment_;
    size_t total_bytes_ = 0;
    size_t commit_bytes_ = 0;
    std::vector<Entry> entries_;
};

}  // namespace lazyllm_edge
