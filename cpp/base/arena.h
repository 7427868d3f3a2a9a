// One allocation per lifetime: sizes are planned first, then pointers are carved from one block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "base/error.h"
#include "base/memory_limit.h"

namespace lazyllm_edge {

class Arena {
public:
    Arena() = default;
    ~Arena() { std::free(base_); }
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    // Planning pass: reserve(n) for every buffer, then allocate(), then carve() in the same order.
    template <class T>
    void reserve(int64_t count) { planned_ += round_up(sizeof(T) * static_cast<size_t>(count)); }

    // Bytes planned so far (a prefix of the block, for allocate's commit_bytes).
    size_t planned_bytes() const { return planned_; }

    // commit_bytes: how much of the block (from its start) to back with pages now; the rest is backed on
    // first touch. Default: all of it.
    void allocate(const char* what, size_t commit_bytes = SIZE_MAX) {
        std::free(base_);
        base_ = nullptr;
        offset_ = 0;
        if (planned_ == 0) return;
        // refuse up front what the machine cannot hold: overcommit would let posix_memalign succeed and
        // the OOM killer end the process at the first long prompt
        const size_t avail = available_memory_bytes();
        if (planned_ > avail)
            throw_error(ErrorCode::out_of_memory, std::string("the ") + what + " needs " + std::to_string(planned_ >> 20) +
                                                      " MiB but only " + std::to_string(avail >> 20) +
                                                      " MiB of memory are available (try a smaller n_ctx)");
        if (posix_memalign(&base_, kAlign, planned_) != 0 || base_ == nullptr)
            throw_error(ErrorCode::out_of_memory, std::string("cannot allocate ") + std::to_string(planned_ >> 20) +
                                                      " MiB for the " + what + " (try a smaller n_ctx)");
        size_ = planned_;
        // back the committed prefix now, so running out shows here and not mid-generation
        commit_pages(base_, commit_bytes < size_ ? commit_bytes : size_);
    }

    template <class T>
    T* carve(int64_t count) {
        size_t bytes = round_up(sizeof(T) * static_cast<size_t>(count));
        if (offset_ + bytes > size_) throw_error(ErrorCode::internal, "arena carve beyond its plan");
        T* p = reinterpret_cast<T*>(static_cast<uint8_t*>(base_) + offset_);
        offset_ += bytes;
        return p;
    }

    size_t size_bytes() const { return size_; }

private:
    static constexpr size_t kAlign = 64;
    static size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
    void* base_ = nullptr;
    size_t planned_ = 0;
    size_t size_ = 0;
    size_t offset_ = 0;
};

}  // namespace lazyllm_edge
