// Core hardening checks: test_core <tiny-model.gguf>. One session from two threads never corrupts state (also
// when one of them changes its numerics);
// an n_ctx beyond the memory limit fails at session creation; the context end is an error, not a crash.
// The generation loop: stop strings with hold-back, finish reasons, a superseded generation, the lazy override.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "lazyllm_edge/lazyllm_edge.hpp"
#include "base/thread_pool.h"
#include "runtime/stop_strings.h"

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

// Numerics: each name parses back to its value, a bad name is refused; a session carries its value and changes it
// between calls, and a change while another thread appends is refused as busy (never applied mid-step).
void test_numerics(const std::shared_ptr<Model>& model) {
    for (Numerics n : {Numerics::fast, Numerics::fp32, Numerics::llama_cpp, Numerics::int8})
        CHECK(parse_numerics(numerics_name(n)) == n);
    CHECK(parse_numerics("default") == Numerics::fast && parse_numerics("llama_cpp") == Numerics::llama_cpp);
    CHECK(std::string(numerics_name(Numerics::int8)) == "int8");
    CHECK(code_of([] { parse_numerics("int4"); }) == ErrorCode::invalid_argument);
    SessionParams sp;
    sp.n_ctx = 512;
    sp.numerics = Numerics::llama_cpp;
    Session session(model, sp);
    CHECK(session.numerics() == Numerics::llama_cpp);
    std::atomic<int> appended{0}, other{0};
    std::thread appender([&] {
        int32_t token = 5;
        for (int i = 0; i < 300; ++i) {
            const ErrorCode c = code_of([&] { session.append(&token, 1); });
            if (c == ErrorCode::ok) ++appended;
            else if (c != ErrorCode::busy) ++other;
        }
    });
    int changed = 0, busy = 0;
    Numerics last = session.numerics();
    for (int i = 0; i < 300; ++i) {
        const Numerics want = i % 2 ? Numerics::fp32 : Numerics::fast;
        switch (code_of([&] { session.set_numerics(want); })) {
            case ErrorCode::ok: ++changed, last = want; break;
            case ErrorCode::busy: ++busy; break;
            default: ++other; break;
        }
    }
    appender.join();
    std::printf("numerics: %d changes, %d refused as busy, %d appends\n", changed, busy, appended.load());
    CHECK(other.load() == 0);
    CHECK(changed + busy == 300);
    CHECK(session.numerics() == last);
    CHECK(session.n_past() == appended.load());
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

// Text that could begin a stop string is held until decided; text before a stop string is emitted, the stop
// string and what follows are not.
void test_stop_strings() {
    bool stopped = false;
    StopStrings none({});
    CHECK(none.push("abc", &stopped) == "abc" && !stopped);

    StopStrings s({"END", "", "xyz"});
    CHECK(s.push("hello E", &stopped) == "hello " && !stopped);  // "E" could begin "END"
    CHECK(s.push("N", &stopped).empty() && !stopped);             // "EN" still could
    CHECK(s.push("Dless", &stopped).empty() && stopped);          // "END" complete: nothing more
    StopStrings t({"END"});
    CHECK(t.push("EN", &stopped).empty() && !stopped);
    CHECK(t.push("o", &stopped) == "ENo" && !stopped);  // "ENo" cannot begin it: released
    CHECK(t.push("x EN", &stopped) == "x " && !stopped);
    CHECK(t.flush() == "EN");  // the end of the stream releases what was held
    StopStrings first({"bc", "ab"});
    CHECK(first.push("xabc", &stopped) == "x" && stopped);  // the earliest stop string wins
    StopStrings utf8({"\xC3\xA9t\xC3\xA9"});                 // "été"
    CHECK(utf8.push("caf\xC3\xA9", &stopped) == "caf" && !stopped);
    CHECK(utf8.push(" \xC3\xA9t\xC3\xA9 !", &stopped) == "\xC3\xA9 " && stopped);
    CHECK(code_of([] { StopStrings bad({"\xC3"}); }) == ErrorCode::invalid_argument);  // not valid UTF-8
}

GenerationParams flat_sampling(int max_tokens) {
    GenerationParams p;
    p.sampling.temperature = 5.0f;  // a flat distribution: many different tokens
    p.sampling.top_k = 0;
    p.sampling.top_p = 1.0f;
    p.sampling.min_p = 0.0f;
    p.sampling.has_seed = true;
    p.sampling.seed = 7;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    return p;
}

int run(Generation& g, std::string* text = nullptr) {
    GeneratedPiece piece;
    int pieces = 0;
    while (g.next(piece)) {
        if (text) *text += piece.text;
        ++pieces;
    }
    return pieces;
}

void test_generation(const std::shared_ptr<Model>& model) {
    SessionParams sp;
    sp.n_ctx = 16;
    Session session(model, sp);
    const std::vector<int32_t> prompt = {1, 2, 3, 4};

    // max_tokens: the last token shown is fed too
    Generation five(session, prompt, flat_sampling(5));
    run(five);
    CHECK(five.finish_reason() == FinishReason::length && five.n_generated() == 5 && session.n_past() == 9);

    // a full context: the token that finds no room is shown but not fed
    session.reset();
    Generation all(session, prompt, flat_sampling(-1));
    run(all);
    CHECK(all.finish_reason() == FinishReason::length && all.n_generated() == 16 - 4 + 1 && session.n_past() == 16);

    // a cancel requested before the first step: nothing is fed, and the request is consumed
    session.reset();
    std::atomic<bool> flag{true};
    GenerationParams cancelled = flat_sampling(-1);
    cancelled.cancel = &flag;
    Generation c(session, prompt, cancelled);
    CHECK(run(c) == 0 && c.finish_reason() == FinishReason::cancelled && session.n_past() == 0 && !flag.load());
    // cancel() between tokens: the token shown last is fed
    Generation c2(session, prompt, flat_sampling(-1));
    GeneratedPiece piece;
    CHECK(c2.next(piece));
    c2.cancel();
    run(c2);
    CHECK(c2.finish_reason() == FinishReason::cancelled && c2.n_generated() == 1 && session.n_past() == 5);

    // another call between two steps: the generation fails instead of going on from someone else's context
    session.reset();
    Generation superseded(session, prompt, flat_sampling(-1));
    CHECK(superseded.next(piece));
    session.reset();
    CHECK(code_of([&] { superseded.next(piece); }) == ErrorCode::busy);
    CHECK(!superseded.next(piece) && superseded.finish_reason() == FinishReason::none);

    // a generation's own schedule holds while it runs; the session's comes back when it ends
    session.reset();
    GenerationParams lazy = flat_sampling(3);
    lazy.lazy = LazyConfig();
    lazy.lazy->schedule = {{1, 0.5f}};
    Generation own(session, prompt, lazy);
    CHECK(own.next(piece) && session.lazy_config().schedule.size() == 1);
    run(own);
    CHECK(own.finish_reason() == FinishReason::length && session.lazy_config().schedule.empty());

    // bad arguments are refused up front
    CHECK(code_of([&] { Generation g(session, {}, flat_sampling(1)); }) == ErrorCode::invalid_argument);
    GenerationParams bad = flat_sampling(1);
    bad.sampling.top_p = 2.0f;
    try {
        Generation g(session, prompt, bad);
        CHECK(false);
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "top_p must be in (0, 1], got 2.0");
    }
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
        test_numerics(model);
        test_limits(model);
        test_stop_strings();
        test_generation(model);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    if (failures) return 1;
    std::printf("core: all checks passed\n");
    return 0;
}
