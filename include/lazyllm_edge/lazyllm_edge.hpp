// lazyllm_edge C++ API: load a GGUF model, run sessions with an optional LazyLLM prune schedule,
// sample tokens. Errors are reported by throwing lazyllm_edge::Error (see ErrorCode).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lazyllm_edge/error.hpp"
#include "lazyllm_edge/numerics.hpp"

namespace lazyllm_edge {

class Tokenizer;
class Sampler;
class Generation;
struct ModelImpl;
struct SessionImpl;

struct ModelParams {
    int n_threads = 0;          // 0 = number of physical cores
    std::string backend = "cpu";  // "cpu", "cuda" (Error(unsupported) without CUDA or a device), "auto"
    bool use_mmap = true;
};

struct ModelInfo {
    std::string architecture;   // "llama", "qwen2", ...
    std::string name;
    int n_layer = 0;
    int d_model = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    int ffn_dim = 0;
    int n_vocab = 0;
    int n_ctx_train = 0;
    std::string chat_template;
    // (n_layer) 1 where a LazyLLM stage ranks every token: global attention after any linear-attention layer (a
    // sliding-window layer's attention sees only its window). Relative stages and presets go to these layers.
    std::vector<uint8_t> stage_layers;
};

class Model {
public:
    // Error(model_load) for a missing/corrupt/unsupported file.
    static std::shared_ptr<Model> load(const std::string& path, const ModelParams& params = {});
    ~Model();
    const ModelInfo& info() const;
    const Tokenizer& tokenizer() const;
    const ModelParams& params() const;
    ModelImpl& impl() const { return *impl_; }

private:
    Model() = default;
    std::unique_ptr<ModelImpl> impl_;
};

// One stage of a prune schedule: after computing `layer`, keep the `keep_fraction` most attended
// tokens of the active set (by the last token's attention at that layer).
struct PruneStage {
    int layer = 0;
    float keep_fraction = 1.0f;
};

// How a pruning layer scores the active tokens from the last token's attention (softmax per query head):
// averaged over the heads (the LazyLLM paper's signal) or the largest over the heads (a token that one head
// retrieves sharply, such as a needle's digits, is not averaged away).
enum class ImportanceSignal { mean_heads = 0, max_heads = 1 };

struct LazyConfig {
    std::vector<PruneStage> schedule;         // stages of multi-token (prefill) steps; empty = dense
    bool prune_decode = true;                 // also prune during one-token (decode) steps
    std::vector<PruneStage> decode_schedule;  // stages of decode steps when prune_decode; empty = `schedule`
    // Decode steps: at most this many earlier tokens computed per layer besides the new one. Tokens that have
    // KV at a layer are attended there at no cost; a pruned token costs a layer's compute to revive, so only
    // the `revival_budget` most attended of them are (ranked at the layer below). -1: every pruned token the
    // decode stages keep active is revived (the first decode step then pays for what the prefill skipped).
    int revival_budget = -1;
    ImportanceSignal importance = ImportanceSignal::mean_heads;
    // How many of the last tokens' queries rank the tokens (1: the last token's, as in the paper; more: the
    // prompt's question too, SnapKV's observation window). A decode step has one new query.
    int query_window = 1;
    // Each token's importance becomes the largest within `pool_radius` positions of it (SnapKV's pooling; 0: its
    // own). A question's words draw attention to the matching words of the text before the answer that follows
    // them (a needle's digits after "the magic number is"); pooling keeps that answer with its neighbours.
    int pool_radius = 0;
    // Decode steps' own pooling radius when >= 0 (-1: pool_radius). A decode step ranks only to spend its revival
    // budget, and there pooling can spend it on the neighbours of one attended token instead of on other tokens the
    // continuation needs (gemma3 keeps more of the dense model's next tokens without it, SmolLM2 fewer).
    int decode_pool_radius = -1;
    // Each stage keeps at least this many tokens (0: only its fraction). A prompt's fixed part (chat template, system
    // prompt, question) ranks high at every stage; a fraction of a short prompt can leave it no room for the text the
    // question needs (Qwen's aggressive stages kept 94 tokens of a 2k prompt and cut the needle at rank 96).
    int min_kept_tokens = 0;
    // The pooling radius of a step.
    int pool(bool decode_step) const { return decode_step && decode_pool_radius >= 0 ? decode_pool_radius : pool_radius; }
    // The stages a step uses: a one-token step prunes only when prune_decode is on, and with a revival budget
    // only by its own decode stages.
    const std::vector<PruneStage>& stages(bool decode_step) const {
        static const std::vector<PruneStage> none;
        if (!decode_step) return schedule;
        if (!prune_decode) return none;
        return decode_schedule.empty() && revival_budget < 0 ? schedule : decode_schedule;
    }
    // The revival budget of a step (-1: none), decode steps only.
    int budget(bool decode_step) const { return decode_step && prune_decode ? revival_budget : -1; }
    bool enabled() const { return !stages(false).empty() || !stages(true).empty() || revival_budget >= 0; }
};

struct SessionParams {
    int n_ctx = 4096;
    LazyConfig lazy;
    Numerics numerics = Numerics::fast;  // the arithmetic (numerics.hpp); the CUDA backend refuses llama_cpp
};

struct SessionStats {
    int n_prompt_tokens = 0;            // tokens computed by the last prompt (a multi-token append, or the rest of
                                        // a prompt after reuse_prefix)
    int n_reused_tokens = 0;            // tokens of the last prompt kept from the cache instead (reuse_prefix)
    double ttft_s = 0;                  // time of the last prefill (append of >1 token), seconds
    double prefill_tokens_per_s = 0;
    double decode_tokens_per_s = 0;     // over one-token appends since the last prefill
    int n_decode_tokens = 0;
    double decode_time_s = 0;
    std::vector<int> layer_kv_tokens;   // per layer: context tokens that have KV there
    int64_t prefill_pairs_computed = 0; // (token, layer) pairs computed in the last prefill
    int64_t prefill_pairs_dense = 0;    // what dense would have computed
    int64_t total_pairs_computed = 0;   // since reset
    int64_t total_pairs_dense = 0;
    int64_t revived_tokens = 0;         // since reset: (token, layer) pairs resumed from the aux cache
    int64_t recomputed_pairs = 0;       // invariant counter: pairs computed twice (must stay 0)
};

class Session {
public:
    // Allocates the KV cache, aux cache and scratch once; Error(out_of_memory / invalid_argument).
    Session(std::shared_ptr<Model> model, const SessionParams& params);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void reset();
    // Keeps the first n tokens of the context (0 <= n <= n_past) and forgets the rest: their KV rows, aux-cache
    // state and layer frontier, as if never fed. The kept tokens stay exactly as computed (with LazyLLM, what they
    // pruned stays pruned and later steps can revive it).
    void truncate(int n);
    // Prefix reuse for a whole prompt `ids` (the context it should end up as): keeps the longest common prefix
    // of the context and ids, at most n - 1 tokens (the last prompt token is always computed, for its logits),
    // truncates the rest and returns how many were kept; append(ids + kept, n - kept) then completes the prompt.
    // Nothing is kept when the cached tokens were computed with another prune schedule or numerics than the
    // session's current ones. The stats' n_reused_tokens says how many were kept.
    int reuse_prefix(const int32_t* ids, int n);
    // Saved sessions (runtime/session_file.cpp): the context and the used part of the caches (each token's KV
    // layers, the aux-cache rows of pruned tokens), with the model file's sha256 and the session's shape. save
    // writes `path` + ".tmp" and renames it over `path`. load validates the whole file before it changes
    // anything: a file of another model or shape, a truncated or corrupted one, or one with more tokens than n_ctx
    // throws Error(state_file) and leaves the session as it was. A loaded session continues bit for bit as the
    // saved one would have (given the same schedule and numerics, which the loaded tokens count as computed with).
    void save_state(const std::string& path);
    void load_state(const std::string& path);
    // Feeds tokens after those already cached. Returns the last position's logits (n_vocab floats, valid
    // until the next call). With all_logits, writes (n, n_vocab) into `all_logits_out` (dense only).
    // A session is used by one thread at a time: a call made while another thread is inside append/reset/
    // set_lazy_config/append_and_sample throws Error(busy) and leaves the session untouched.
    // `cancel` (any thread, a signal handler) is polled between layers and between a layer's micro-batches: once
    // set, the call throws Error(cancelled) and the session is as before it (the flag is left set).
    const float* append(const int32_t* ids, int n, float* all_logits_out = nullptr,
                        const std::atomic<bool>* cancel = nullptr);
    // append() then sampler.sample() on its logits and the context, as one call (nothing can interleave).
    int32_t append_and_sample(const int32_t* ids, int n, Sampler& sampler);
    int n_past() const;
    int n_ctx() const;
    const std::vector<int32_t>& tokens() const;
    const SessionStats& stats() const;
    const LazyConfig& lazy_config() const;
    void set_lazy_config(const LazyConfig& lazy);  // validated; takes effect at the next append
    Numerics numerics() const;
    // Takes effect at the next append (the cached KV stays as computed); Error(unsupported) where the backend
    // lacks it (llama_cpp on CUDA), the session then unchanged.
    void set_numerics(Numerics numerics);
    const std::shared_ptr<Model>& model() const;

    // Last importance vector computed (debug/tests): positions and scores at the given pruning layer.
    struct ImportanceRecord {
        int layer = -1;
        std::vector<int32_t> positions;
        std::vector<float> scores;
    };
    void set_record_importance(bool on);  // keep the importance vectors of the next appends
    const std::vector<ImportanceRecord>& last_importance() const;
    // Hidden state stored in the aux cache for a position, or empty when it has none; and its layer.
    std::vector<float> aux_hidden(int position, int* layer) const;
    int token_frontier(int position) const;  // number of layers with KV for that position
    // Copies K and V (fp32, kv_dim(layer) floats each) of one (layer, position); false when absent. A layer that
    // shares another layer's K/V (gemma4) reads that layer's.
    bool read_kv(int layer, int position, float* k_out, float* v_out) const;
    int kv_dim(int layer) const;  // kv heads x head size of the layer (gemma4's layers differ)

private:
    friend class Generation;  // checks the session between its steps (see Generation)
    std::unique_ptr<SessionImpl> impl_;
};

// Validates a schedule for a model with n_layer layers; Error(invalid_argument) naming the problem.
void validate_lazy_config(const LazyConfig& lazy, int n_layer);
// Named presets ("off", "balanced", "aggressive") scaled to the model depth. With stage_layers (ModelInfo's; empty:
// every layer can take a stage) each stage goes to the nearest layer that can, after the stage before it; a stage
// with no such layer left is dropped.
LazyConfig lazy_preset(const std::string& name, int n_layer, const std::vector<uint8_t>& stage_layers = {});
// Parses "off" | preset name | "8:0.7,15:0.5" (layer:keep) | "0.27:0.7,..." (relative depth in [0,1)),
// optionally followed by "/DECODE": the decode steps' own stages (same forms), or "/off" for prefill only.
// Relative depths and presets go to stage_layers as in lazy_preset; absolute layers stay as written.
LazyConfig parse_lazy_spec(const std::string& spec, int n_layer, const std::vector<uint8_t>& stage_layers = {});

struct SamplingParams {
    float temperature = 0.8f;   // <= 0: greedy
    int top_k = 40;             // <= 0: off
    float top_p = 0.95f;        // 1: off
    float min_p = 0.05f;        // 0: off
    float repeat_penalty = 1.0f;
    int repeat_last_n = 64;
    uint64_t seed = 0;
    bool has_seed = false;      // false: seeded from the clock
};

void validate_sampling_params(const SamplingParams& p);

class Sampler {
public:
    Sampler(const SamplingParams& params, int n_vocab);
    // Picks the next token from logits (n_vocab), given the recent tokens for the repeat penalty.
    int32_t sample(const float* logits, const int32_t* recent, int n_recent);

private:
    SamplingParams params_;
    uint64_t rng_state_;
    std::vector<std::pair<float, int32_t>> candidates_;  // (logit, id), sized n_vocab once
    std::vector<float> penalized_;
};

// ---- generation: the one loop the Python iterator, the C API and the CLI drive ----

struct GenerationParams {
    SamplingParams sampling;              // for the Sampler the Generation makes (unused with a caller's Sampler)
    int max_tokens = -1;                  // tokens to generate at most; < 0: no limit
    std::vector<std::string> stop;        // UTF-8; the text ends before the first one found, which is not emitted ("" ignored)
    bool ignore_eos = false;              // go on past end-of-generation tokens (benchmarks)
    std::atomic<bool>* cancel = nullptr;  // a caller's flag (a signal handler's, the C API's), like cancel(); cleared when seen
    std::optional<LazyConfig> lazy;       // this generation's prune schedule; the session's own is restored when it ends
    // The prompt is the whole context rather than what follows it: the session keeps the longest common prefix
    // of its tokens and the prompt (Session::reuse_prefix, under this generation's schedule) and only the rest is
    // computed. Applied with the first token (a generation cancelled before it changes nothing).
    bool reuse_prefix = false;
};

enum class FinishReason { none, stop, length, cancelled };
const char* finish_reason_name(FinishReason reason);  // "none", "stop", "length", "cancelled"

struct GeneratedPiece {
    std::string text;    // whole UTF-8 characters; "" while a character or a possible stop string is incomplete
    int32_t token = -1;  // the token that completed it
};

// A generation over a session, one token per next(): the prompt is fed, then each token is sampled, turned into
// text and fed before the next one is sampled (Session::append_and_sample). It ends with a finish reason:
//   stop       an end-of-generation token (not fed, no text; unless ignore_eos), a stop string (the text before it
//              is emitted, the token that completed it is not fed) or stop();
//   length     max_tokens generated (the last one fed) or the context is full (the last one could not be fed);
//   cancelled  cancel() or the params' flag, checked between tokens.
// One thread drives next(); cancel() may come from any thread. The session stays usable by others between the
// steps: when a step finds that another call changed it (another generation, a reset, an append), the generation
// fails with Error(busy) ("superseded") instead of continuing on someone else's context.
class Generation {
public:
    // Feeds `prompt` after the session's context, then generates with a Sampler made from params.sampling.
    Generation(Session& session, std::vector<int32_t> prompt, const GenerationParams& params);
    // Continues after what the session was fed: the first token is sampled from `logits`, the logits of the
    // session's last append (the C API, whose Sampler lives across calls).
    Generation(Session& session, const float* logits, Sampler& sampler, const GenerationParams& params);
    ~Generation();
    Generation(const Generation&) = delete;
    Generation& operator=(const Generation&) = delete;

    // The next piece: one per token, then the text held back at the end (if any); false once finished. After an
    // error (thrown) the generation is over too.
    bool next(GeneratedPiece& piece);
    void cancel();  // any thread: finish "cancelled" before the next token (the last one is fed first; before the
                    // first token nothing is fed, not even the prompt)
    void stop();    // from the thread that drives next() (e.g. a callback): finish "stop" the same way
    FinishReason finish_reason() const;  // none while running or after an error
    int n_generated() const;             // tokens generated (end-of-generation tokens not counted)
    const float* logits() const;         // the logits of the session's last append (valid until its next call)

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace lazyllm_edge
