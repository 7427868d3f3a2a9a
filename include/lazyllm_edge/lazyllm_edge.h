/* lazyllm_edge C API: a stable, plain-C interface over the C++ core, for embedding in applications.
 *
 * Conventions
 *  - Objects are opaque handles (le_model, le_session) created and freed by the library.
 *  - Every function returns an le_status; LE_OK is 0. On failure, le_last_error() gives a message for the
 *    calling thread (valid until that thread's next call into the library). Nothing aborts, exits or
 *    writes to stdout/stderr.
 *  - Parameter structs start with `api_version`; fill them with the le_*_params_init() functions below
 *    (inline, so they record the header's LE_API_VERSION). The library rejects a struct from an
 *    incompatible header with LE_ERR_ABI; le_check_abi(LE_API_VERSION) checks once up front.
 *  - Output text buffers: pass (buf, cap); *len receives the needed length (without the NUL). When
 *    cap <= needed the call returns LE_ERR_BUFFER_TOO_SMALL and writes nothing else; otherwise the text is
 *    written NUL-terminated. Token arrays work the same way with a count.
 *
 * Threads: different sessions (also of one model) may be used from different threads at once. One
 * session used from two threads at once gets LE_ERR_BUSY in the second caller (nothing is corrupted).
 * le_session_cancel() may be called from any thread or a signal handler. A model may be shared by many
 * sessions; each session keeps its model's weights alive, so le_model_free() may come first.
 *
 * Model files: with use_mmap=1 (default) the file is mapped read-only. Deleting or renaming the file
 * while it is loaded is safe (the mapping keeps the data). Truncating or rewriting it in place is not:
 * the process may see changed weights or be killed by SIGBUS. Load with use_mmap=0 (the file is read
 * into memory) when files may be replaced in place.
 */
#ifndef LAZYLLM_EDGE_H
#define LAZYLLM_EDGE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(LE_BUILDING_LIBRARY)
#    define LE_API __declspec(dllexport)
#  else
#    define LE_API __declspec(dllimport)
#  endif
#else
#  define LE_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Major changes break the ABI; minor versions only add functions, and fields at the end of a params struct (the
 * library reads a new field only from a struct whose api_version has it). */
#define LE_API_VERSION_MAJOR 1
#define LE_API_VERSION_MINOR 5  /* 1.1: le_session_generate_until; 1.2: le_session_params.numerics;
                                   1.3: le_session_feed_prompt, le_session_truncate, le_session_save, le_session_load,
                                   le_chat_tokenize; 1.4: LE_NUMERICS_INT8; 1.5: le_model_stage_layers */
#define LE_API_VERSION ((LE_API_VERSION_MAJOR << 16) | LE_API_VERSION_MINOR)

typedef enum le_status {
    LE_OK = 0,
    LE_ERR_MODEL_LOAD = 1,        /* missing, corrupt or unsupported model file */
    LE_ERR_INVALID_ARGUMENT = 2,  /* a bad value or a NULL handle */
    LE_ERR_OUT_OF_MEMORY = 3,     /* e.g. n_ctx too large for the available memory */
    LE_ERR_CONTEXT_FULL = 4,      /* more tokens than the session's n_ctx */
    LE_ERR_CANCELLED = 5,
    LE_ERR_UNSUPPORTED = 6,       /* e.g. a backend not built in, an unknown chat template family */
    LE_ERR_INTERNAL = 7,
    LE_ERR_BUSY = 8,              /* the session is in use by another thread */
    LE_ERR_ABI = 9,               /* header and library versions are incompatible */
    LE_ERR_BUFFER_TOO_SMALL = 10, /* *len / *n_out says how much is needed */
    LE_ERR_STATE_FILE = 11        /* a saved session that cannot be read, written or loaded here (another model or
                                     shape, truncated, corrupted; API 1.3) */
} le_status;

typedef int32_t le_token;
typedef struct le_model le_model;
typedef struct le_session le_session;

/* ---- version, errors ---- */
LE_API uint32_t le_api_version(void);              /* the library's LE_API_VERSION */
LE_API le_status le_check_abi(uint32_t header_version);  /* pass LE_API_VERSION */
LE_API const char* le_last_error(void);            /* this thread's last error message ("" after success) */
LE_API const char* le_status_name(le_status status);

/* ---- model ---- */
typedef struct le_model_params {
    uint32_t api_version;
    int32_t n_threads;    /* 0: number of physical cores */
    const char* backend;  /* "cpu", "cuda" (LE_ERR_UNSUPPORTED without a CUDA build or device) or "auto"
                             (CUDA when a device is present, else CPU); NULL = "cpu" */
    int32_t use_mmap;     /* 1: map the file (default); 0: read it into memory */
} le_model_params;

static inline void le_model_params_init(le_model_params* p) {
    p->api_version = LE_API_VERSION;
    p->n_threads = 0;
    p->backend = "cpu";
    p->use_mmap = 1;
}

/* Strings point into the model and stay valid until le_model_free. */
typedef struct le_model_info {
    const char* architecture;   /* "llama", "qwen2", "qwen3", "gemma3" */
    const char* name;
    const char* chat_template;  /* Jinja source from the GGUF ("" if none) */
    int32_t n_layer, d_model, n_head, n_head_kv, head_dim, ffn_dim;
    int32_t n_vocab, n_ctx_train, n_threads;
    le_token bos_id, eos_id;    /* -1 when absent */
} le_model_info;

/* params may be NULL (defaults). */
LE_API le_status le_model_load(const char* path, const le_model_params* params, le_model** out);
LE_API void le_model_free(le_model* model);  /* NULL is fine; sessions keep the weights alive */
LE_API le_status le_model_describe(const le_model* model, le_model_info* out);
/* The layers (ascending) where a LazyLLM prune stage ranks every token: global attention after any linear-attention
 * layer (a sliding-window layer ranks only its window). Presets and relative stages ("0.4:0.1") are placed on these;
 * an absolute schedule ("5:0.3,11:0.3") should be. Every layer on a model with global attention throughout, and on
 * one with no such layer before the last (presets then go by depth alone). LE_ERR_BUFFER_TOO_SMALL with *n_out set
 * when cap is too small. API 1.5. */
LE_API le_status le_model_stage_layers(const le_model* model, int32_t* out, size_t cap, size_t* n_out);

/* ---- tokenizer ---- */
LE_API le_status le_tokenize(const le_model* model, const char* text, size_t text_len, int add_special,
                             int parse_special, le_token* out, size_t cap, size_t* n_out);
LE_API le_status le_detokenize(const le_model* model, const le_token* ids, size_t n, int render_special, char* buf,
                               size_t cap, size_t* len);
LE_API le_status le_token_to_piece(const le_model* model, le_token id, int render_special, char* buf, size_t cap,
                                   size_t* len);
LE_API le_status le_token_is_end_of_generation(const le_model* model, le_token id, int* out);

/* Renders messages with the model's chat template family (chatml, gemma, llama3) plus the assistant
 * prompt; LE_ERR_UNSUPPORTED for other templates. */
typedef struct le_chat_message {
    const char* role;     /* "system", "user", "assistant" */
    const char* content;
} le_chat_message;
LE_API le_status le_chat_render(const le_model* model, const le_chat_message* messages, size_t n, char* buf,
                                size_t cap, size_t* len);
/* Token ids of the rendered chat prompt (BOS as the model asks), ready to feed: the template's markers are special
 * tokens, while special-token text inside a message ("<|im_end|>", ...) is tokenized as plain text, so a message
 * cannot forge a turn. (Tokenizing le_chat_render's text with parse_special would read such text as markers.)
 * LE_ERR_BUFFER_TOO_SMALL with *n_out set when cap is too small. API 1.3. */
LE_API le_status le_chat_tokenize(const le_model* model, const le_chat_message* messages, size_t n, le_token* out,
                                  size_t cap, size_t* n_out);

/* ---- session ---- */
typedef struct le_prune_stage {
    int32_t layer;
    float keep_fraction;
} le_prune_stage;

/* The arithmetic a session computes with. */
typedef enum le_numerics {
    LE_NUMERICS_FAST = 0,      /* default. CPU: int8 prefill with 15-bit activations (about exact fp32), int8 decode as
                                  llama.cpp; CUDA: fp16/bf16 prefill GEMMs */
    LE_NUMERICS_FP32 = 1,      /* every matmul in (near-)exact fp32 (CPU: no int8; CUDA: 3xTF32 prefill GEMMs) */
    LE_NUMERICS_LLAMA_CPP = 2, /* llama.cpp's CPU arithmetic bit for bit (int8 prefill too, ggml's orders, its
                                  attention); slower; CPU only (LE_ERR_UNSUPPORTED on CUDA) */
    LE_NUMERICS_INT8 = 3       /* FAST with 8-bit prefill activations in llama.cpp's formats: 1.3-1.5x faster prefill
                                  on VNNI CPUs, llama.cpp's precision; CPU only (API 1.4) */
} le_numerics;

typedef struct le_session_params {
    uint32_t api_version;
    int32_t n_ctx;
    /* LazyLLM pruning: either a spec ("off", "balanced", "aggressive", "8:0.7,15:0.5", "0.3:0.7,...", each
     * optionally followed by "/DECODE", the decode steps' own stages: "12:0.1/20:0.5", "12:0.1/off")
     * or, when lazy is NULL, an explicit schedule used for prefill and decode steps (n_schedule = 0: dense). */
    const char* lazy;
    const le_prune_stage* schedule;
    size_t n_schedule;
    int32_t prune_decode;  /* 1: prune in decode steps too, 0: prefill only, -1: as the preset or spec says (balanced and schedules: 1, aggressive and "X/off": 0) */
    int32_t numerics;      /* an le_numerics (API 1.2; a 1.0/1.1 struct computes with LE_NUMERICS_FAST) */
} le_session_params;

static inline void le_session_params_init(le_session_params* p) {
    p->api_version = LE_API_VERSION;
    p->n_ctx = 4096;
    p->lazy = NULL;
    p->schedule = NULL;
    p->n_schedule = 0;
    p->prune_decode = -1;
    p->numerics = LE_NUMERICS_FAST;
}

typedef struct le_sampling_params {
    uint32_t api_version;
    float temperature;     /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n;
    uint64_t seed;
    int32_t has_seed;      /* 0: seeded from the clock */
} le_sampling_params;

static inline void le_sampling_params_init(le_sampling_params* p) {
    p->api_version = LE_API_VERSION;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
    p->has_seed = 0;
}

/* Allocates the whole session (KV cache, buffers) at once: LE_ERR_OUT_OF_MEMORY here, not later. */
LE_API le_status le_session_create(le_model* model, const le_session_params* params, le_session** out);
LE_API void le_session_free(le_session* session);  /* NULL is fine; not while another thread uses it */
LE_API le_status le_session_reset(le_session* session);  /* empties the context */

/* Feed tokens/text after the cached context (LE_ERR_CONTEXT_FULL beyond n_ctx; the session is unchanged). */
LE_API le_status le_session_feed_tokens(le_session* session, const le_token* ids, size_t n);
LE_API le_status le_session_feed_text(le_session* session, const char* text, size_t text_len, int add_special,
                                      int parse_special);
/* Prefix reuse (API 1.3): `ids` is the whole prompt (e.g. a conversation rendered again with a new message). The
 * longest common prefix of the context and ids is kept (at most n - 1 tokens: the last one is always computed, for
 * its logits; nothing when the context was computed with another schedule or numerics), the rest of the context is
 * truncated and the rest of ids fed. *n_reused (may be NULL) receives how many tokens were kept. A bad id or a
 * prompt longer than n_ctx fails before anything changes. */
LE_API le_status le_session_feed_prompt(le_session* session, const le_token* ids, size_t n, int32_t* n_reused);
/* Keeps the first n tokens of the context and forgets the rest (0 <= n <= n_past). No logits until the next feed. */
LE_API le_status le_session_truncate(le_session* session, int32_t n);
/* Saved sessions (API 1.3): the context and the used part of the caches, with the model file's sha256. Save writes
 * path + ".tmp" and renames it over path. Load checks the whole file first: another model or shape, a truncated or
 * corrupted file, or more tokens than n_ctx give LE_ERR_STATE_FILE and leave the session as it was. After a load
 * there are no logits: continue with le_session_feed_prompt (the whole prompt; it reuses the loaded tokens). */
LE_API le_status le_session_save(le_session* session, const char* path);
LE_API le_status le_session_load(le_session* session, const char* path);
/* Samples the next token from the logits of the last feed (does not feed it). params may be NULL. */
LE_API le_status le_session_sample(le_session* session, const le_sampling_params* params, le_token* out);

typedef enum le_finish_reason {
    LE_FINISH_NONE = 0,
    LE_FINISH_STOP = 1,       /* end-of-generation token (not fed), a stop string or the callback returned non-zero */
    LE_FINISH_LENGTH = 2,     /* max_tokens reached or the context is full */
    LE_FINISH_CANCELLED = 3   /* le_session_cancel() */
} le_finish_reason;

/* Called with each piece of text (whole UTF-8 characters, not NUL-terminated; may be empty when a
 * character is incomplete) and the token that produced it. Return non-zero to stop. */
typedef int (*le_piece_callback)(const char* piece, size_t len, le_token token, void* user_data);

/* Generates after what was fed (feed a prompt first): samples, streams the piece, feeds the token, until an
 * end-of-generation token, max_tokens (< 0: no limit), a full context or a cancel. Returns LE_OK with
 * *finish set (finish and n_generated may be NULL). */
LE_API le_status le_session_generate(le_session* session, const le_sampling_params* params, int32_t max_tokens,
                                     le_piece_callback callback, void* user_data, le_finish_reason* finish,
                                     int32_t* n_generated);
/* le_session_generate that also ends at stop strings (n_stop NUL-terminated UTF-8 strings; "" is ignored): the
 * text before the first one found is streamed, the stop string itself is not, and the token that completed it is
 * not fed (LE_FINISH_STOP). Text that could begin a stop string is held back until the next tokens decide, so a
 * piece may be empty or carry the text of earlier tokens. Since API 1.1. */
LE_API le_status le_session_generate_until(le_session* session, const le_sampling_params* params, int32_t max_tokens,
                                           const char* const* stop, size_t n_stop, le_piece_callback callback,
                                           void* user_data, le_finish_reason* finish, int32_t* n_generated);
/* Stops the running le_session_generate of this session after its current token, or the running
 * le_session_feed_* between two layers (LE_ERR_CANCELLED; nothing of it is fed, the session is as before it).
 * Any thread; async-signal-safe. Without one running, the next feed or generate stops at once; the request is
 * consumed by it. A NULL session: LE_ERR_INVALID_ARGUMENT with le_last_error() set. */
LE_API le_status le_session_cancel(le_session* session);

typedef struct le_session_stats {
    int32_t n_past, n_ctx;
    int32_t n_prompt_tokens;          /* tokens of the last multi-token feed */
    double ttft_s;                    /* time of the last prefill */
    double prefill_tokens_per_s, decode_tokens_per_s;
    int32_t n_decode_tokens;
    double decode_time_s;
    int64_t prefill_pairs_computed, prefill_pairs_dense;  /* (token, layer) pairs: LazyLLM saving */
    int64_t total_pairs_computed, total_pairs_dense;
} le_session_stats;
LE_API le_status le_session_get_stats(const le_session* session, le_session_stats* out);
/* Per layer: context tokens that have KV there (n_layer entries; fewer than n_past where tokens were pruned). */
LE_API le_status le_session_layer_tokens(const le_session* session, int32_t* out, size_t cap, size_t* n_out);

#ifdef __cplusplus
}
#endif

#endif /* LAZYLLM_EDGE_H */
