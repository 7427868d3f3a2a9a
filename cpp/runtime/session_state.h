// Everything a session owns: KV cache, aux cache, working buffers, all carved from one arena.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "base/error.h"
#include "lazyllm_edge/lazyllm_edge.hpp"
#include "model/model.h"
#include "base/arena.h"
#include "base/thread_pool.h"

namespace lazyllm_edge {

// KV per (layer, position), fp16. Presence is a prefix of layers per token: token p has KV at
// layers [0, frontier[p]), because a token only ever advances one layer at a time.
struct KvCache {
    uint16_t* k = nullptr;        // (n_layer, n_ctx, kv_dim) fp16
    uint16_t* v = nullptr;        // (n_layer, n_ctx, kv_dim) fp16
    int32_t* frontier = nullptr;  // (n_ctx) layers computed per position
    int64_t layer_stride = 0;     // n_ctx * kv_dim
    uint16_t* k_at(int layer, int pos, int kv_dim) const { return k + layer * layer_stride + static_cast<int64_t>(pos) * kv_dim; }
    uint16_t* v_at(int layer, int pos, int kv_dim) const { return v + layer * layer_stride + static_cast<int64_t>(pos) * kv_dim; }
};

// Hidden state of a pruned token: entry p holds h[frontier[p]][p] (its input to the first layer it has
// not computed) and is live exactly when 0 < frontier[p] < n_layer.
struct AuxCache {
    float* hidden = nullptr;      // (n_ctx, d_model) fp32
};

// Per-forward working buffers. Prefill processes each layer in micro-batches of up to n_ubatch tokens.
struct Workspace {
    int n_ubatch = 0;
    float* hidden = nullptr;          // (n_ctx, d_model) residual stream of the tokens being computed
    int32_t* compute_positions = nullptr;  // (n_ctx) positions being computed at this layer, sorted
    int32_t* active_positions = nullptr;   // (n_ctx) active set at this layer, sorted
    int32_t* kept_positions = nullptr;     // (n_ctx) selection output
    int32_t* order = nullptr;              // (n_ctx) selection scratch
    float* importance = nullptr;           // (n_ctx)
    float* importance_scores = nullptr;    // (n_ctx)
    int32_t* attend_end = nullptr;         // (n_ubatch)
    int32_t* attend_begin = nullptr;       // (n_ubatch)
    float* norm = nullptr;            // (n_ubatch, d_model)
    float* q = nullptr;               // (n_ubatch, q_dim)
    float* k = nullptr;               // (n_ubatch, kv_dim)
    float* v = nullptr;               // (n_ubatch, kv_dim)
    float* attn_out = nullptr;        // (n_ubatch, q_dim)
    float* proj = nullptr;            // (n_ubatch, d_model)
    float* gate = nullptr;            // (n_ubatch, ffn_dim)
    float* up = nullptr;              // (n_ubatch, ffn_dim)
    float* attention_scratch = nullptr;  // (n_threads, attention_scratch_floats)
    float* last_q = nullptr;          // (q_dim) query of the last token at this layer
    float* rope_global = nullptr;     // (n_ctx, rope_dim) cos/sin
    float* rope_local = nullptr;      // (n_ctx, rope_dim) cos/sin for sliding-window layers (gemma3)
    float* logits = nullptr;          // (n_vocab)
};

struct CudaSession;

struct SessionImpl {
    std::shared_ptr<Model> model;
    ModelImpl* m = nullptr;
    const ModelHparams* hp = nullptr;
    int n_ctx = 0;
    LazyConfig lazy;
    std::vector<float> keep_per_layer;         // (n_layer) keep fraction after each layer, prefill steps
    std::vector<float> keep_per_layer_decode;  // (n_layer) the same for decode steps
    std::unique_ptr<ThreadPool> pool;
    Arena arena;
    KvCache kv_cache;
    AuxCache aux_cache;
    Workspace ws;
    std::vector<int32_t> tokens;  // context, capacity n_ctx
    SessionStats stats;
    std::vector<Session::ImportanceRecord> importance_log;
    bool record_importance = false;
    std::shared_ptr<CudaSession> cuda;  // device caches and buffers (backend "cuda"); then the host arena
                                        // holds only the frontier mirror, RoPE tables and logits
    std::atomic<bool> busy{false};  // set while a call mutates the session (see SessionUse)
};

// Marks the session in use for one call; a second thread entering meanwhile gets Error(busy) instead of
// racing on the caches.
class SessionUse {
public:
    explicit SessionUse(SessionImpl& s) : s_(s) {
        if (s_.busy.exchange(true, std::memory_order_acquire))
            throw_error(ErrorCode::busy, "this session is already in use by another thread (use one session per thread)");
    }
    ~SessionUse() { s_.busy.store(false, std::memory_order_release); }
    SessionUse(const SessionUse&) = delete;
    SessionUse& operator=(const SessionUse&) = delete;

private:
    SessionImpl& s_;
};

// Runs the layers over the new tokens (already appended to s.tokens), pruning after layer l to
// keep_per_layer[l] of the active set (nullptr: a dense step). Returns the last position's logits; with
// all_logits, writes (n_new, n_vocab) there (dense only).
const float* cpu_forward(SessionImpl& s, int n_new, float* all_logits, const float* keep_per_layer);

}  // namespace lazyllm_edge
