// See interrupt.h. A chained SIGINT handler, installed for the length of one native call: it stores to a lock-free
// atomic (async-signal-safe) and then calls the handler Python had, which records the signal for the interpreter.
#include "interrupt.h"

#include <pythread.h>

#include <csignal>
#include <cstring>

namespace nb = nanobind;

namespace {

std::atomic<std::atomic<bool>*> target{nullptr};  // the flag of the call in progress
std::atomic<bool> seen{false};                      // SIGINT came during it (the flag itself may be consumed)
struct sigaction python_action;                    // the handler Python had installed (chained)
unsigned long main_thread = 0;                     // Python's main thread, the only one its signal handlers run in

void on_sigint(int sig, siginfo_t* info, void* context) {
    if (std::atomic<bool>* flag = target.load()) {
        flag->store(true);
        seen.store(true);
    }
    if (python_action.sa_flags & SA_SIGINFO) python_action.sa_sigaction(sig, info, context);
    else if (python_action.sa_handler != SIG_IGN && python_action.sa_handler != SIG_DFL) python_action.sa_handler(sig);
}

unsigned long python_main_thread() {
    if (main_thread == 0) main_thread = nb::cast<unsigned long>(nb::module_::import_("threading").attr("main_thread")().attr("ident"));
    return main_thread;
}

}  // namespace

InterruptScope::InterruptScope(std::atomic<bool>& flag) {
    if (PyThread_get_thread_ident() != python_main_thread() || target.load()) return;  // (not nested)
    struct sigaction current;
    if (sigaction(SIGINT, nullptr, &current) != 0) return;
    // only over a handler of Python's: SIG_IGN / SIG_DFL (signal.signal(SIGINT, SIG_IGN) ...) stay as the user set them
    if (!(current.sa_flags & SA_SIGINFO) && (current.sa_handler == SIG_IGN || current.sa_handler == SIG_DFL)) return;
    python_action = current;
    seen.store(false);
    struct sigaction ours;
    std::memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_sigint;
    ours.sa_flags = SA_SIGINFO | (current.sa_flags & SA_ONSTACK);
    sigemptyset(&ours.sa_mask);
    target.store(&flag);
    if (sigaction(SIGINT, &ours, nullptr) != 0) {
        target.store(nullptr);
        return;
    }
    installed_ = true;
}

InterruptScope::~InterruptScope() {
    if (!installed_) return;
    sigaction(SIGINT, &python_action, nullptr);
    target.store(nullptr);
}

void InterruptScope::raise_if_interrupted() {
    if (!installed_ || !seen.load()) return;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
}
