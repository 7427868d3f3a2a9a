// lazyllm-edge: command-line generation (or, with -i, a terminal chat: cli/interactive.cpp). Streams text to stdout,
// timings to stderr.
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "api/chat_format.h"
#include "api/model_cache.h"
#include "cli/interactive.h"
#include "cli/report.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "tokenizer/tokenizer.h"

using namespace lazyllm_edge;

namespace {

std::atomic<bool> interrupted{false};
constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells and llama.cpp report an interrupted run

// Ctrl-C sets `interrupted`: the generation stops between layers or tokens. Without SA_RESTART, so a blocking call
// (opening a FIFO, reading a slow file) returns EINTR instead of waiting on. SIGPIPE gets its default action back (a
// parent such as Python may have ignored it): `| head` ends the run like any other command's.
void install_signal_handlers() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = [](int) { interrupted.store(true); };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, nullptr);
    std::signal(SIGPIPE, SIG_DFL);
}

// Writes to stdout and flushes; a failed write (a full disk, a closed pipe) ends the run with an error.
void write_out(const std::string& text) {
    if ((!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) || std::fflush(stdout) != 0)
        throw std::runtime_error(std::string("writing to stdout failed: ") + std::strerror(errno));
}

// A whole integer argument in [lo, hi]: "5x", "", "abc" and out-of-range values are errors naming the option.
long long parse_integer(const std::string& option, const std::string& text, long long lo, long long hi) {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        throw std::invalid_argument(option + " expects an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                    "], got '" + text + "'");
    return v;
}

// A whole number argument ("0.8", "1e-3"); the range is the sampler's to check.
float parse_number(const std::string& option, const std::string& text) {
    char* end = nullptr;
    const float v = std::strtof(text.c_str(), &end);
    if (text.empty() || *end != '\0') throw std::invalid_argument(option + " expects a number, got '" + text + "'");
    return v;
}

// --seed: -1 (or absent) draws a random seed, as llama.cpp's; else an integer in [0, 2^64).
void parse_seed(const std::string& text, SamplingParams* sp) {
    if (text == "-1") {
        sp->has_seed = false;
        return;
    }
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || text[0] == '+' || *end != '\0' || errno == ERANGE)
        throw std::invalid_argument("--seed expects -1 (random) or an integer in [0, 2^64), got '" + text + "'");
    sp->seed = v;
    sp->has_seed = true;
}

// The prompt file's bytes; a directory or an unreadable file is an argument error. Reading a FIFO may block until
// a writer comes: Ctrl-C ends the wait (EINTR).
std::string read_prompt_file(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        throw std::invalid_argument("prompt file '" + path + "' is a directory");
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == EINTR) return {};
        throw std::invalid_argument("cannot read prompt file '" + path + "': " + std::strerror(errno));
    }
    std::string text;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            text.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno != EINTR) {
            const int err = errno;
            ::close(fd);
            throw std::invalid_argument("cannot read prompt file '" + path + "': " + std::strerror(err));
        }
        if (n == 0 || interrupted.load()) break;
    }
    ::close(fd);
    return text;
}

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: lazyllm-edge [options]\n"
                 "  -m, --model FILE      GGUF model (default: the cached SmolLM2-135M-Instruct)\n"
                 "  -p, --prompt TEXT     prompt (with -i: the system prompt)\n"
                 "  -f, --file FILE       read the prompt from a file\n"
                 "  -n, --n-predict N     tokens to generate (default 128; -1 = until end or context full)\n"
                 "  -t, --threads N       threads (default: physical cores)\n"
                 "  -c, --ctx-size N      context size (default 4096)\n"
                 "      --backend B       cpu | cuda | auto (default cpu; auto takes a CUDA GPU when there is one)\n"
                 "      --temp T          temperature (default 0.8; 0 = greedy)\n"
                 "      --top-k N         (default 40)   --top-p P (default 0.95)   --min-p P (default 0.05)\n"
                 "      --repeat-penalty R (default 1.0)\n"
                 "      --seed N          random seed (default -1: a random one)\n"
                 "      --stop STR        end the text before STR (repeatable; STR is not printed)\n"
                 "      --chat            wrap the prompt in the model's chat template\n"
                 "  -i, --interactive     chat in the terminal (the model's template; each turn reuses the cached\n"
                 "                        conversation; Ctrl-C stops a reply; /reset, /save FILE, /load FILE)\n"
                 "      --prompt-cache FILE  load the session from FILE when it exists and matches the model, reuse\n"
                 "                        the prompt's cached prefix, save the session to FILE after the prompt\n"
                 "                        (with -i: after each reply)\n"
                 "      --lazy SPEC       LazyLLM pruning: off | balanced | aggressive | layer:keep,...\n"
                 "                        (+ importance:mean|max, window:N, pool:N: how tokens are ranked;\n"
                 "                        floor:N: every stage keeps at least N tokens)\n"
                 "                        [/DECODE]: decode steps' own stages (layer:keep,... | preset | off),\n"
                 "                        revive:N: at most N pruned tokens revived per layer and step,\n"
                 "                        pool:N: decode steps' own pooling radius\n"
                 "      --no-prune-decode prune in prefill only (as SPEC/off does)\n"
                 "      --numerics MODE   fast (default) | fp32 (every matmul in exact fp32) | llama.cpp (llama.cpp's\n"
                 "                        CPU arithmetic, bit for bit; slower; CPU only) | int8 (fast with 8-bit\n"
                 "                        prefill activations as llama.cpp: faster prefill, its precision; CPU only)\n"
                 "      --ignore-eos      do not stop at end-of-generation tokens (for benchmarks)\n"
                 "  -h, --help\n"
                 "      --version\n");
}

bool file_exists(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    install_signal_handlers();
    std::string model_path, prompt, lazy_spec = "off", backend = "cpu";
    std::string prompt_cache;
    bool have_prompt = false, chat = false, no_prune_decode = false, ignore_eos = false, interactive = false;
    int n_predict = 128, n_threads = 0, n_ctx = 4096;
    Numerics numerics = Numerics::fast;
    SamplingParams sp;
    std::vector<std::string> stops;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument("missing value for " + a);
                return argv[++i];
            };
            auto next_int = [&](long long lo, long long hi) { return static_cast<int>(parse_integer(a, next(), lo, hi)); };
            auto next_number = [&]() { return parse_number(a, next()); };
            if (a == "--version") {
                std::printf("lazyllm-edge %s\n", LAZYLLM_EDGE_VERSION);
                return 0;
            }
            if (a == "-m" || a == "--model") model_path = next();
            else if (a == "-p" || a == "--prompt") prompt = next(), have_prompt = true;
            else if (a == "-f" || a == "--file") {
                prompt = read_prompt_file(next());
                if (interrupted.load()) return kExitInterrupted;
                have_prompt = true;
            } else if (a == "-n" || a == "--n-predict") n_predict = next_int(-1, std::numeric_limits<int>::max());
            else if (a == "-t" || a == "--threads") n_threads = next_int(0, 1024);
            else if (a == "-c" || a == "--ctx-size") n_ctx = next_int(1, 1 << 24);
            else if (a == "--numerics") numerics = parse_numerics(next());
            else if (a == "--temp") sp.temperature = next_number();
            else if (a == "--top-k") sp.top_k = next_int(std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
            else if (a == "--top-p") sp.top_p = next_number();
            else if (a == "--min-p") sp.min_p = next_number();
            else if (a == "--repeat-penalty") sp.repeat_penalty = next_number();
            else if (a == "--seed") parse_seed(next(), &sp);
            else if (a == "--stop") stops.push_back(next());
            else if (a == "--chat") chat = true;
            else if (a == "-i" || a == "--interactive") interactive = true;
            else if (a == "--prompt-cache") prompt_cache = next();
            else if (a == "--lazy") lazy_spec = next();
            else if (a == "--backend") backend = next();
            else if (a == "--no-prune-decode") no_prune_decode = true;
            else if (a == "--ignore-eos") ignore_eos = true;
            else if (a == "-h" || a == "--help") {
                usage(stdout);
                return 0;
            } else throw std::invalid_argument("unknown option '" + a + "'");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        usage(stderr);
        return 2;
    }
    if (!have_prompt && !interactive) {
        std::fprintf(stderr, "error: give a prompt with -p TEXT or -f FILE\n");
        usage(stderr);
        return 2;
    }
    if (model_path.empty()) {
        model_path = default_model_path();
        if (!file_exists(model_path)) {
            std::fprintf(stderr, "error: no -m given and the default model is not cached at %s\n  fetch it with: %s\n",
                         model_path.c_str(), kDefaultModelFetchHint);
            return 1;
        }
    }

    try {
        ModelParams mp;
        mp.n_threads = n_threads;
        mp.backend = backend;
        auto model = Model::load(model_path, mp);
        const Tokenizer& tok = model->tokenizer();
        SessionParams params;
        params.n_ctx = n_ctx;
        params.lazy = parse_lazy_spec(lazy_spec, model->info().n_layer, model->info().stage_layers);
        params.numerics = numerics;
        if (no_prune_decode) params.lazy.prune_decode = false;
        Session session(model, params);

        GenerationParams gp;
        gp.sampling = sp;
        gp.max_tokens = n_predict;
        gp.stop = stops;
        gp.ignore_eos = ignore_eos;
        gp.cancel = &interrupted;  // Ctrl-C: finish "cancelled" inside the prefill or after the current token
        if (interactive) {
            InteractiveOptions options;
            options.generation = gp;
            options.system_prompt = prompt;
            options.prompt_cache = prompt_cache;
            return run_interactive(session, options, interrupted);
        }
        if (!prompt_cache.empty() && file_exists(prompt_cache)) {
            try {
                session.load_state(prompt_cache);
            } catch (const Error& e) {  // another model, a damaged file: computed afresh, and saved over
                std::fprintf(stderr, "[lazyllm-edge] not using the prompt cache: %s\n", e.what());
            }
        }

        // --chat: the prompt is a message, so special-token text in it stays text (it cannot write a turn marker)
        std::vector<int32_t> ids = chat ? encode_chat(tok, render_chat_parts(model->info().chat_template, {{"user", prompt}}), true)
                                        : tok.encode(prompt, true, false);
        if (static_cast<int>(ids.size()) > n_ctx)
            throw Error(ErrorCode::context_full, "prompt has " + std::to_string(ids.size()) + " tokens, n_ctx is " + std::to_string(n_ctx));
        gp.reuse_prefix = true;  // (the session is empty unless the prompt cache filled it)
        Generation generation(session, ids, gp);
        write_out(chat ? std::string() : prompt);

        GeneratedPiece piece;
        bool first = true;
        while (generation.next(piece)) {
            // after the first step the session holds exactly the prompt (the first token is fed by the next step)
            if (first && !prompt_cache.empty()) session.save_state(prompt_cache);
            first = false;
            write_out(piece.text);
        }
        if (first && !prompt_cache.empty() && session.n_past() == static_cast<int>(ids.size()))
            session.save_state(prompt_cache);  // (a reply that ended at its first token)
        write_out("\n");
        print_reply_timings(session, generation);
        if (generation.finish_reason() == FinishReason::cancelled) return kExitInterrupted;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return interrupted.load() ? kExitInterrupted : 1;  // (a call that Ctrl-C broke off: EINTR)
    }
    return interrupted.load() ? kExitInterrupted : 0;
}
