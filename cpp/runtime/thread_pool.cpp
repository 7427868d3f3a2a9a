#include "runtime/thread_pool.h"

#include <fstream>
#include <set>
#include <string>
#include <utility>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LLE_PAUSE() _mm_pause()
#else
#define LLE_PAUSE() std::this_thread::yield()
#endif

namespace lazyllm_edge {

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_.store(true);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run(TaskFn fn, void* context) {
    if (n_threads_ == 1) {
        fn(context, 0, 1);
        return;
    }
    task_ = fn;
    task_context_ = context;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    fn(context, 0, n_threads_);
    // spin for the stragglers, then yield: with more threads than free cores (several sessions at once) a
    // descheduled worker must get the core back instead of watching the caller spin
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
        if (spin < 20000) LLE_PAUSE();
        else std::this_thread::yield();
    }
}

void ThreadPool::worker_loop(int index) {
    unsigned seen = 0;
    for (;;) {
        // Spin a while for the next task (forward passes issue many in a row), then sleep.
        unsigned gen = generation_.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < 200000; ++spin) {
            LLE_PAUSE();
            gen = generation_.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            gen = generation_.load(std::memory_order_acquire);
        }
        seen = gen;
        if (stopping_.load()) return;
        task_(task_context_, index, n_threads_);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

int default_thread_count() {
    // Count distinct (physical id, core id) pairs; hyperthreads do not speed up these kernels.
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::set<std::pair<std::string, std::string>> cores;
    std::string line, physical = "0";
    while (std::getline(cpuinfo, line)) {
        auto value = [&] { auto p = line.find(':'); return p == std::string::npos ? std::string() : line.substr(p + 1); };
        if (line.rfind("physical id", 0) == 0) physical = value();
        else if (line.rfind("core id", 0) == 0) cores.insert({physical, value()});
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
    unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
}

}  // namespace lazyllm_edge
