// Persistent worker threads that run one job at a time, split into chunks that any thread may claim
// (the caller included). Workers spin briefly then sleep, so back-to-back kernels in a forward pass pay no
// wake-up cost; and since chunks are claimed rather than assigned, a worker that is late (descheduled on a
// busy machine) delays nothing: the threads that are running take its share.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace lazyllm_edge {

class ThreadPool {
public:
    using TaskFn = void (*)(void* context, int index, int n_threads);

    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs fn(context, i, size()) once for every i in [0, size()), each on whichever thread claims it, and
    // waits. Calls with different i may run one after the other on the same thread.
    void run(TaskFn fn, void* context);

    // Convenience: f(index, n_threads) for every index in [0, size()).
    template <class F>
    void run(F&& f) {
        run([](void* c, int i, int n) { (*static_cast<F*>(c))(i, n); }, static_cast<void*>(&f));
    }

    // Splits [0, n) into contiguous chunks (a few per thread) and calls f(begin, end, thread_index) for each;
    // thread_index (in [0, size())) is the thread running the call, so no two concurrent calls share one.
    template <class F>
    void parallel_for(long n, F&& f) {
        if (n <= 0) return;
        const int n_chunks = static_cast<int>(std::min<long>(n, static_cast<long>(n_threads_) * kChunksPerThread));
        struct Context {
            F* f;
            long n;
            int n_chunks;
        } ctx{&f, n, n_chunks};
        dispatch(
            [](void* c, int chunk, int thread) {
                const Context& x = *static_cast<Context*>(c);
                (*x.f)(x.n * chunk / x.n_chunks, x.n * (chunk + 1) / x.n_chunks, thread);
            },
            &ctx, n_chunks);
    }

private:
    using ChunkFn = void (*)(void* context, int chunk, int thread);
    // Runs fn(context, c, thread) for every chunk c in [0, n_chunks) over the pool and waits.
    void dispatch(ChunkFn fn, void* context, int n_chunks);
    // Claims and runs chunks of the current job until none is left.
    void run_chunks(int thread);
    void worker_loop(int index);

    int n_threads_;
    std::vector<std::thread> workers_;
    ChunkFn fn_ = nullptr;                  // the current job, published before job_
    void* context_ = nullptr;
    std::atomic<uint64_t> job_{0};          // generation << 32 | chunk count << 16 | next unclaimed chunk
    std::atomic<int> finished_{0};          // chunks of the current job finished
    std::atomic<bool> stopping_{false};
    uint32_t generation_ = 0;               // caller side: generation of the last job
    std::mutex mutex_;
    std::condition_variable wake_;          // a new job (or stop) for sleeping workers
    std::mutex done_mutex_;
    std::condition_variable all_done_;      // the thread finishing the last chunk signals the caller
    // ~0.1 ms of spinning covers the gaps between the kernels of one forward pass; past that, sleep.
    static constexpr int kSpinIterations = 1 << 13;
    static constexpr int kChunksPerThread = 4;
    static constexpr int kMaxChunks = 0xffff;  // more run on the caller alone
    static uint64_t pack_job(uint32_t generation, int n_chunks) {
        return static_cast<uint64_t>(generation) << 32 | static_cast<uint64_t>(n_chunks) << 16;
    }
};

// Number of physical cores (falls back to hardware_concurrency).
int default_thread_count();

}  // namespace lazyllm_edge
