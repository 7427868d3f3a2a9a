// lazyllm-edge: command-line generation (or, with -i, a terminal chat: cli/interactive.cpp). Streams text to stdout,
// timings to stderr.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <sys/stat.h>
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
                 "      --seed N          random seed\n"
                 "      --stop STR        end the text before STR (repeatable; STR is not printed)\n"
                 "      --chat            wrap the prompt in the model's chat template\n"
                 "  -i, --interactive     chat in the terminal (the model's template; each turn reuses the cached\n"
                 "                        conversation; Ctrl-C stops a reply; /reset, /save FILE, /load FILE)\n"
                 "      --prompt-cache FILE  load the session from FILE when it exists and matches the model, reuse\n"
                 "                        the prompt's cached prefix, save the session to FILE after the prompt\n"
                 "                        (with -i: after each reply)\n"
                 "      --lazy SPEC       LazyLLM pruning: off | balanced | aggressive | layer:keep,...\n"
                 "                        (+ importance:mean|max, window:N: how tokens are ranked)\n"
                 "                        [/DECODE]: decode steps' own stages (layer:keep,... | preset | off),\n"
                 "                        revive:N: at most N pruned tokens revived per layer and step\n"
                 "      --no-prune-decode prune in prefill only (as SPEC/off does)\n"
                 "      --numerics MODE   fast (default) | fp32 (every matmul in exact fp32) | llama.cpp (llama.cpp's\n"
                 "                        CPU arithmetic, bit for bit; slower; CPU only)\n"
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
            auto next_int = [&]() { return std::stoi(next()); };
            if (a == "--version") {
                std::printf("lazyllm-edge %s\n", LAZYLLM_EDGE_VERSION);
                return 0;
            }
            if (a == "-m" || a == "--model") model_path = next();
            else if (a == "-p" || a == "--prompt") prompt = next(), have_prompt = true;
            else if (a == "-f" || a == "--file") {
                std::string path = next();
                std::ifstream in(path, std::ios::binary);
                if (!in) throw std::invalid_argument("cannot read prompt file '" + path + "'");
                std::stringstream ss;
                ss << in.rdbuf();
                prompt = ss.str();
                have_prompt = true;
            } else if (a == "-n" || a == "--n-predict") n_predict = next_int();
            else if (a == "-t" || a == "--threads") n_threads = next_int();
            else if (a == "-c" || a == "--ctx-size") n_ctx = next_int();
            else if (a == "--numerics") numerics = parse_numerics(next());
            else if (a == "--temp") sp.temperature = std::stof(next());
            else if (a == "--top-k") sp.top_k = next_int();
            else if (a == "--top-p") sp.top_p = std::stof(next());
            else if (a == "--min-p") sp.min_p = std::stof(next());
            else if (a == "--repeat-penalty") sp.repeat_penalty = std::stof(next());
            else if (a == "--seed") sp.seed = std::stoull(next()), sp.has_seed = true;
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
        params.lazy = parse_lazy_spec(lazy_spec, model->info().n_layer);
        params.numerics = numerics;
        if (no_prune_decode) params.lazy.prune_decode = false;
        Session session(model, params);
        GenerationParams gp;
        gp.sampling = sp;
        gp.max_tokens = n_predict;
        gp.stop = stops;
        gp.ignore_eos = ignore_eos;
        gp.cancel = &interrupted;  // Ctrl-C: finish "cancelled" after the current token
        if (interactive) {
            InteractiveOptions options;
            options.generation = gp;
            options.system_prompt = prompt;
            options.prompt_cache = prompt_cache;
            return run_interactive(session, options, interrupted);
        }
        std::signal(SIGINT, [](int) { interrupted.store(true); });
        if (!prompt_cache.empty() && file_exists(prompt_cache)) {
            try {
                session.load_state(prompt_cache);
            } catch (const Error& e) {  // another model, a damaged file: computed afresh, and saved over
                std::fprintf(stderr, "[lazyllm-edge] not using the prompt cache: %s\n", e.what());
            }
        }

        std::string text = chat ? render_chat(model->info().chat_template, {{"user", prompt}}) : prompt;
        std::vector<int32_t> ids = tok.encode(text, true, chat);
        if (!ids.empty() && static_cast<int>(ids.size()) >= n_ctx)
            throw Error(ErrorCode::context_full, "prompt has " + std::to_string(ids.size()) + " tokens, n_ctx is " + std::to_string(n_ctx));
        gp.reuse_prefix = true;  // (the session is empty unless the prompt cache filled it)
        Generation generation(session, ids, gp);
        if (!chat) std::fwrite(prompt.data(), 1, prompt.size(), stdout);
        std::fflush(stdout);

        GeneratedPiece piece;
        bool first = true;
        while (generation.next(piece)) {
            // after the first step the session holds exactly the prompt (the first token is fed by the next step)
            if (first && !prompt_cache.empty()) session.save_state(prompt_cache);
            first = false;
            std::fwrite(piece.text.data(), 1, piece.text.size(), stdout);
            std::fflush(stdout);
        }
        if (first && !prompt_cache.empty() && session.n_past() == static_cast<int>(ids.size()))
            session.save_state(prompt_cache);  // (a reply that ended at its first token)
        std::fputc('\n', stdout);
        print_reply_timings(session, generation);
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
