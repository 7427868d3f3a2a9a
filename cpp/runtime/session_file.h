// Saved sessions: the file format, its writer and its validating reader (Session::save_state / load_state, the
// C API's le_session_save / le_session_load, the CLI's --prompt-cache and /save, /load).
//
// Layout (version 1, little-endian), only the used part of the caches:
//   header   magic "LZEDGESS" · u32 version · model file sha256 (32 bytes) · i32 n_layer, n_vocab, d_model,
//            kv_width (K/V elements per token over the layers with a cache of their own) · u32 kv_type (1: fp16) · u32 rope_factors (which RoPE frequency factors the keys were
//            rotated with: 1 phi3's long LongRoPE factors, chosen by a large n_ctx; 0 the model's only ones) ·
//            i32 n_tokens · u64 payload_bytes                                                        (80 bytes)
//   payload  i32 tokens[n] · i32 frontier[n] (layers with KV per token, each in [1, n_layer]) ·
//            per layer l with a cache of its own: the K rows, then the V rows, of the tokens with KV there
//            (frontier > l), by position, (c_l, kv_dim(l)) fp16 as the caches store them (a layer that reads
//            another layer's K/V, gemma4's shared-KV layers, has none: its source's rows are written) ·
//            the aux rows of the pruned tokens (frontier < n_layer), by position, (n_pruned, aux_width) fp32: the
//            aux cache's hidden state (d_model), then what else a revived token needs of its position (gemma4:
//            its per-layer inputs, n_layer * per_layer_dim; nothing for the other architectures)
//   trailer  u64 checksum of header and payload (64-bit FNV-1a over 8-byte words)
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/sha256.h"

namespace lazyllm_edge {

struct SessionImpl;

// What a file must match to load into a session.
struct SessionFileShape {
    Sha256Digest model_sha256{};
    int n_layer = 0, n_vocab = 0, d_model = 0, kv_dim = 0;
    // (n_layer) each layer's K/V row width, 0 for a layer without a cache of its own; empty: kv_dim at every layer
    std::vector<int32_t> layer_kv_dim;
    int aux_width = 0;  // floats per aux row (SessionBackend::aux_row_width); 0: d_model
    uint32_t rope_factors = 0;  // 1: the session's n_ctx chose the model's long LongRoPE factors (phi3)
    int n_ctx = 0;  // the loading session's: a file with more tokens does not fit
};

// A layer's K/V row width in the file (0: no rows of its own), and the sum over the layers (the header's kv_width).
int layer_kv_width(const SessionFileShape& shape, int layer);
int64_t kv_width(const SessionFileShape& shape);
int aux_row_width(const SessionFileShape& shape);

// What a file holds, read from the caches' layout: rows [0, n) of a layer's K and V caches, (n, kv_dim(layer)) fp16
// each, and rows [0, n) of the aux cache, (n, d_model) fp32.
struct SessionContents {
    const int32_t* tokens = nullptr;    // (n)
    const int32_t* frontier = nullptr;  // (n)
    int n = 0;
    std::function<void(int layer, uint16_t* k, uint16_t* v)> read_kv_rows;
    std::function<void(float* aux)> read_aux_rows;
};

// A file parsed and validated; the rows are views into its bytes.
struct SessionImage {
    std::vector<int32_t> tokens;    // (n)
    std::vector<int32_t> frontier;  // (n)
    const uint8_t* kv = nullptr;    // per layer: K rows, then V rows, of the tokens with KV there (fp16)
    const uint8_t* aux = nullptr;   // rows of the pruned tokens (fp32)
};

// Where a writer's bytes go (a file, memory); the checksum is taken on the way.
class ByteSink {
public:
    virtual ~ByteSink() = default;
    virtual void write(const void* data, size_t size) = 0;
};

// Writes the whole file (header, payload, trailer) into `out`. Allocates staging rows for one layer.
void write_session_file(const SessionFileShape& shape, const SessionContents& contents, ByteSink& out);
// Validates every field, size and the checksum against `expected`; Error(state_file) naming the problem.
SessionImage parse_session_file(const uint8_t* data, size_t size, const SessionFileShape& expected);

// The session's shape (its model's digest, computed once per model) and the file operations on a session (the
// caller holds its in-use guard). save writes path + ".tmp" and renames it; load changes the session only once
// the whole file is valid.
SessionFileShape session_file_shape(const SessionImpl& s);
void save_session_file(SessionImpl& s, const std::string& path);
void load_session_file(SessionImpl& s, const std::string& path);

}  // namespace lazyllm_edge
