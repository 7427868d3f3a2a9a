#include "cli/interactive.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <vector>

#include "api/chat_format.h"
#include "base/error.h"
#include "cli/report.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm_edge {
namespace {

std::atomic<bool>* sigint_flag = nullptr;
int sigint_pipe[2] = {-1, -1};  // the handler writes a byte: a read at the prompt wakes up even if ^C came just before

void on_sigint(int) {
    if (sigint_flag) sigint_flag->store(true);
    const int saved = errno;
    const char byte = 1;
    if (write(sigint_pipe[1], &byte, 1) < 0) {  // (full: a wake-up is pending anyway)
    }
    errno = saved;
}

void catch_sigint(std::atomic<bool>& flag) {
    sigint_flag = &flag;
    if (pipe(sigint_pipe) == 0) {
        for (int fd : sigint_pipe) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // (the prompt waits in poll, which the pipe wakes)
    sigaction(SIGINT, &sa, nullptr);
}

// Forgets the Ctrl-C of a reply that has ended: only one pressed at the prompt exits.
void clear_sigint(std::atomic<bool>& flag) {
    char buf[64];
    while (read(sigint_pipe[0], buf, sizeof buf) > 0) {
    }
    flag.store(false);
}

enum class Input { line, end, interrupted };

// One line of stdin (without its newline), waiting in poll() on stdin and the SIGINT pipe; `pending` keeps what a
// read brought beyond the line (piped input).
Input read_line(std::string& line, std::string& pending, std::atomic<bool>& interrupted) {
    for (;;) {
        const size_t eol = pending.find('\n');
        if (eol != std::string::npos) {
            line = pending.substr(0, eol);
            pending.erase(0, eol + 1);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            return Input::line;
        }
        pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sigint_pipe[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0 && errno != EINTR) return Input::end;
        if (interrupted.load() || (fds[1].revents & POLLIN)) return Input::interrupted;
        if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {  // end of input: a last line without a newline still counts
            if (pending.empty()) return Input::end;
            line.swap(pending);
            pending.clear();
            return Input::line;
        }
        pending.append(buf, static_cast<size_t>(n));
    }
}

// The text that continues a conversation after the assistant's reply with a new user message: the end of the
// assistant's turn, the user's turn and the assistant prompt. Found by rendering a conversation with and without
// the new turn (the templates the CLI renders are concatenations of turns).
std::string continuation_text(const std::string& tmpl, const std::string& user) {
    const std::string before = render_chat(tmpl, {{"user", "x"}});
    const std::string after = render_chat(tmpl, {{"user", "x"}, {"assistant", ""}, {"user", user}});
    if (after.compare(0, before.size(), before) != 0)
        throw_error(ErrorCode::unsupported, "the chat template does not render a conversation turn by turn");
    return after.substr(before.size());
}

// The whole prompt of a turn: the first renders the conversation from the start (BOS as the model asks); a later one
// is the context (the earlier turns and replies, as generated) plus the new turn.
std::vector<int32_t> turn_prompt(const Session& session, const std::string& system, const std::string& user) {
    const Model& model = *session.model();
    const std::string& tmpl = model.info().chat_template;
    if (session.n_past() == 0) {
        std::vector<ChatMessage> messages;
        if (!system.empty()) messages.push_back({"system", system});
        messages.push_back({"user", user});
        return model.tokenizer().encode(render_chat(tmpl, messages), true, true);
    }
    std::vector<int32_t> ids = session.tokens();
    const std::vector<int32_t> turn = model.tokenizer().encode(continuation_text(tmpl, user), false, true);
    ids.insert(ids.end(), turn.begin(), turn.end());
    return ids;
}

void reply(Session& session, const InteractiveOptions& options, const std::string& user) {
    GenerationParams gp = options.generation;
    gp.reuse_prefix = true;
    Generation generation(session, turn_prompt(session, options.system_prompt, user), gp);
    GeneratedPiece piece;
    while (generation.next(piece)) {
        std::fwrite(piece.text.data(), 1, piece.text.size(), stdout);
        std::fflush(stdout);
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);
    print_reply_timings(session, generation);
    if (!options.prompt_cache.empty()) session.save_state(options.prompt_cache);
}

// A line starting with '/': true when it was a command.
bool run_command(Session& session, const std::string& line) {
    auto argument = [&](size_t skip) {
        const size_t b = line.find_first_not_of(' ', skip);
        return b == std::string::npos ? std::string() : line.substr(b);
    };
    if (line == "/reset") {
        session.reset();
        std::fprintf(stderr, "[lazyllm-edge] the conversation starts over\n");
    } else if (line.rfind("/save ", 0) == 0 && !argument(6).empty()) {
        session.save_state(argument(6));
        std::fprintf(stderr, "[lazyllm-edge] saved %d tokens to %s\n", session.n_past(), argument(6).c_str());
    } else if (line.rfind("/load ", 0) == 0 && !argument(6).empty()) {
        session.load_state(argument(6));
        std::fprintf(stderr, "[lazyllm-edge] loaded %d tokens from %s\n", session.n_past(), argument(6).c_str());
    } else {
        return false;
    }
    return true;
}

}  // namespace

int run_interactive(Session& session, const InteractiveOptions& options, std::atomic<bool>& interrupted) {
    catch_sigint(interrupted);
    std::fprintf(stderr,
                 "[lazyllm-edge] interactive chat: type a message; /reset, /save FILE, /load FILE; Ctrl-C stops a reply, "
                 "Ctrl-C at the prompt or Ctrl-D exits\n");
    if (!options.prompt_cache.empty()) {
        std::FILE* f = std::fopen(options.prompt_cache.c_str(), "rb");
        if (f) {
            std::fclose(f);
            try {
                session.load_state(options.prompt_cache);
                std::fprintf(stderr, "[lazyllm-edge] loaded %d tokens from %s\n", session.n_past(), options.prompt_cache.c_str());
            } catch (const Error& e) {
                std::fprintf(stderr, "[lazyllm-edge] not using %s: %s\n", options.prompt_cache.c_str(), e.what());
            }
        }
    }
    std::string line, pending;
    for (;;) {
        clear_sigint(interrupted);  // a Ctrl-C that came as the last reply ended is not one at the prompt
        std::fputs("> ", stdout);
        std::fflush(stdout);
        const Input input = read_line(line, pending, interrupted);
        if (input != Input::line) {
            std::fputc('\n', stdout);
            return 0;
        }
        if (line.empty()) continue;
        try {
            if (line[0] == '/' && run_command(session, line)) continue;
            reply(session, options, line);
        } catch (const Error& e) {
            // the session is as the failed call left it (a bad file changes nothing); the chat goes on
            std::fprintf(stderr, "error: %s\n", e.what());
        }
    }
}

}  // namespace lazyllm_edge
