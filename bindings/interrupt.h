// Ctrl-C during a native call: while an InterruptScope lives (on Python's main thread, with Python's SIGINT handler
// in place), SIGINT also sets a flag the core polls between layers and micro-batches, so a long prefill stops within
// one micro-batch instead of running to its end with the GIL released. Python's own handler still runs (chained), so
// the KeyboardInterrupt is Python's: raise_if_interrupted() delivers it when the call returns.
#pragma once
#include <nanobind/nanobind.h>

#include <atomic>

class InterruptScope {
public:
    // With the GIL held. `flag` is set by SIGINT until the scope ends (it is not cleared here).
    explicit InterruptScope(std::atomic<bool>& flag);
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;

    // With the GIL held, after the call: when SIGINT came during it, runs Python's signal handlers now (not at some
    // later bytecode) and throws their exception (KeyboardInterrupt) as nb::python_error.
    void raise_if_interrupted();

private:
    bool installed_ = false;  // false: nothing installed (not the main thread, or no Python handler)
};
