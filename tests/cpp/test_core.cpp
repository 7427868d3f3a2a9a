// Core hardening checks: test_core <tiny-model.gguf>. One session from two threads never corrupts state;
// an n_ctx beyond the memory limit fails at session creation; the context end is an error, not a crash.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "lazyllm_edge/lazyllm_edge.hpp"
#include "base/thread_pool.h"

using namespace lazyllm_edge;

namespace {

int failures = 0;
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                                   \
        }                                                                                 \
    } while (0)

template <class F>
ErrorCode code_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.code();
    }
    return ErrorCode::ok;
}

// Thread pools created, used and destroyed back to back: every chunk runs exactly once and the destructor
// never hangs (a worker that woke for the last job while the pool was stopping once missed the stop).
void test_thread_pool_lifecycle() {
    for (int round = 0; round < 2000; ++round) {
        ThreadPool pool(2 + round % 3);
        std::vector<std::atomic<int>> hits(37);
        for (int job = 0; job < round % 4; ++job) {
            pool.parallel_for(static_cast<long>(hits.size()), [&](long b, long e, int) {
                for (long i = b; i < e; ++i) hits[i].fetch_add(1);
            });
        }
        for (auto& h : hits) CHECK(h.load() == round % 4);
    }
}

// Two threads hammer one session with one-token appends: each append either completes or is refused
// with Error(busy); the context holds exactly the completed ones.
void test_shared_session(const std::shared_ptr<Model>& model) {
    SessionParams sp;
    sp.n_ctx = 2048;
    Session session(model, sp);
    std::atomic<int> done{0}, busy{0}, other{0};
    auto worker = [&](int32_t token) {
        for (int i = 0; i < 400; ++i) {
            switch (code_of([&] { session.append(&token, 1); })) {
                case ErrorCode::ok: ++done; break;
                case ErrorCode::busy: ++busy; break;
                default: ++other; break;
            }
        }
    };
    std::thread a(worker, 5), b(worker, 7);
    a.join();
    b.join();
    std::printf("shared session: %d appends done, %d refused as busy\n", done.load(), busy.load());
    CHECK(other.load() == 0);
    CHECK(done.load() + busy.load() == 800);
    CHECK(session.n_past() == done.load());
    for (int32_t t : session.tokens()) CHECK(t == 5 || t == 7);
    for (int p = 0; p < session.n_past(); ++p) CHECK(session.token_frontier(p) == model->info().n_layer);
}

void test_limits(const std::shared_ptr<Model>& model) {
    setenv("LAZYLLM_EDGE_MEMORY_LIMIT", "8000000", 1);
    SessionParams big;
    big.n_ctx = 200000;
    try {
        Session s(model, big);
        CHECK(false);
    } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::out_of_memory);
        CHECK(std::string(e.what()).find("n_ctx") != std::string::npos);
    }
    unsetenv("LAZYLLM_EDGE_MEMORY_LIMIT");

    SessionParams sp;
    sp.n_ctx = 8;
    Session s(model, sp);
    std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};
    s.append(ids.data(), 8);
    CHECK(code_of([&] { s.append(ids.data(), 1); }) == ErrorCode::context_full);
    CHECK(s.n_past() == 8);
    s.reset();
    CHECK(s.n_past() == 0);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <tiny-model.gguf>\n", argv[0]);
        return 2;
    }
    try {
        ModelParams mp;
        mp.n_threads = 1;
        auto model = Model::load(argv[1], mp);
        test_thread_pool_lifecycle();
        test_shared_session(model);
        test_limits(model);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    if (failures) return 1;
    std::printf("core: all checks passed\n");
    return 0;
}
