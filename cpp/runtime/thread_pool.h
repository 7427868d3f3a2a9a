// Persistent worker threads that run one task at a time on all threads (caller included).
// Workers spin briefly then sleep, so back-to-back kernels in a forward pass pay no wake-up cost.
#pragma once
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace lazyllm_edge {

class ThreadPool {
public:
    using TaskFn = void (*)(void* context, int thread_index, int n_threads);

    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs fn(context, i, size()) for i in [0, size()) — index 0 on the calling thread — and waits.
    void run(TaskFn fn, void* context);

    // Convenience: f(thread_index, n_threads) on every thread.
    template <class F>
    void run(F&& f) {
        run([](void* c, int i, int n) { (*static_cast<F*>(c))(i, n); }, static_cast<void*>(&f));
    }

    // Splits [0, n) into contiguous chunks, one per thread: f(begin, end, thread_index).
    template <class F>
    void parallel_for(long n, F&& f) {
        run([&](int i, int nt) {
            long begin = n * i / nt, end = n * (i + 1) / nt;
            if (begin < end) f(begin, end, i);
        });
    }

private:
    void worker_loop(int index);

    int n_threads_;
    std::vector<std::thread> workers_;
    TaskFn task_ = nullptr;
    void* task_context_ = nullptr;
    std::atomic<unsigned> generation_{0};   // bumped once per run()
    std::atomic<int> pending_{0};           // workers still busy with the current run()
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::mutex done_mutex_;
    std::condition_variable done_;           // the last worker of a run() signals the caller
    // ~0.1 ms of spinning covers the gaps between the kernels of one forward pass; past that, sleep.
    static constexpr int kSpinIterations = 1 << 13;
};

// Number of physical cores (falls back to hardware_concurrency).
int default_thread_count();

}  // namespace lazyllm_edge
