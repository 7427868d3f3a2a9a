#include "base/thread_pool.h"

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
        job_.store(pack_job(++generation_, 0), std::memory_order_release);  // a job with nothing to claim
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run(TaskFn fn, void* context) {
    struct Context {
        TaskFn fn;
        void* context;
        int n;
    } ctx{fn, context, n_threads_};
    dispatch([](void* c, int chunk, int) { const Context& x = *static_cast<Context*>(c); x.fn(x.context, chunk, x.n); },
             &ctx, n_threads_);
}

void ThreadPool::dispatch(ChunkFn fn, void* context, int n_chunks) {
    if (n_chunks <= 0) return;
    if (n_threads_ == 1 || n_chunks == 1 || n_chunks > kMaxChunks) {  // nothing to share: no wake-ups
        for (int c = 0; c < n_chunks; ++c) fn(context, c, 0);
        return;
    }
    // publish the job, then open its chunks to the workers
    fn_ = fn;
    context_ = context;
    finished_.store(0, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        job_.store(pack_job(++generation_, n_chunks), std::memory_order_release);
    }
    wake_.notify_all();
    run_chunks(0);
    // Spin briefly for chunks still running on other threads, then sleep until the last one signals: with
    // more threads than free cores a spinning caller would steal the core a worker needs.
    for (int spin = 0; spin < kSpinIterations; ++spin) {
        if (finished_.load(std::memory_order_acquire) == n_chunks) return;
        LLE_PAUSE();
    }
    std::unique_lock<std::mutex> lock(done_mutex_);
    all_done_.wait(lock, [&] { return finished_.load(std::memory_order_acquire) == n_chunks; });
}

void ThreadPool::run_chunks(int thread) {
    uint64_t job = job_.load(std::memory_order_acquire);
    for (;;) {
        // A chunk is claimed by moving the counter in the job word (generation, chunk count and counter are
        // one atomic): a job published meanwhile makes the exchange fail, so a claimed chunk always belongs
        // to the job whose fn_/context_ are read below (that job cannot finish, and no other be published,
        // before the chunk is done).
        const int n = static_cast<int>(job >> 16 & 0xffff);
        const int chunk = static_cast<int>(job & 0xffff);
        if (chunk >= n) return;
        if (!job_.compare_exchange_weak(job, job + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
        fn_(context_, chunk, thread);
        if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
            std::lock_guard<std::mutex> lock(done_mutex_);  // pairs with the caller's wait: no lost wake-up
            all_done_.notify_one();
        }
        job = job_.load(std::memory_order_acquire);
    }
}

void ThreadPool::worker_loop(int index) {
    uint32_t seen = 0;  // generation of the last job this worker looked at
    for (;;) {
        // Spin a while for the next job (forward passes issue many in a row), then sleep.
        auto generation = [&] { return static_cast<uint32_t>(job_.load(std::memory_order_acquire) >> 32); };
        for (int spin = 0; generation() == seen && spin < kSpinIterations; ++spin) LLE_PAUSE();
        if (generation() == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation() != seen; });
        }
        // Read the generation before the stop flag: the destructor sets the flag before it publishes its
        // (empty) job, so a worker that saw that job's generation also sees the flag. Reading it after the
        // flag could record the stop job as seen without stopping, and the worker would wait forever.
        const uint32_t current = generation();
        if (stopping_.load()) return;
        seen = current;
        run_chunks(index);
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
