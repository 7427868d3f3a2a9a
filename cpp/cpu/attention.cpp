#include "cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "cpu/kernels.h"
#include "cpu/llama_order/attention_llama.h"
#include "base/thread_pool.h"

namespace lazyllm_edge {
namespace {

constexpr int kTileRows = 48;         // rows (queries x query heads of one kv head) of a tile, at least one query
constexpr int kTargetTasks = 32;      // split key ranges when there are fewer (tile, kv head) tasks than this ...
constexpr int kMinChunkKeys = 1024;   // ... but never into chunks shorter than this
constexpr int kMaxPartialRows = 256;  // bound on (tiles x chunks x rows of all kv heads) of split partial results

int64_t round_up16(int64_t n) { return (n + 15) & ~int64_t{15}; }

int tile_queries(int group) { return std::max(1, kTileRows / group); }

// Rows of the largest tile and the floats of one thread's private scratch for it: m, l, acc + tile kernel.
int tile_rows_max(int group) { return tile_queries(group) * group; }
int64_t private_floats(int group, int head_dim) {
    const int rows = tile_rows_max(group);
    return 2 * round_up16(rows) + round_up16(static_cast<int64_t>(rows) * head_dim) +
           attention_tile_scratch_floats(rows, head_dim);
}
// Floats of the shared region holding the split partials (m, l, acc per row).
int64_t partial_floats(int head_dim) { return kMaxPartialRows * static_cast<int64_t>(head_dim + 2); }

// Key indices [lo, hi) some query of [q0, q0 + n) may see.
void tile_span(const AttentionParams& p, int q0, int n, int* lo, int* hi) {
    *lo = INT32_MAX;
    *hi = 0;
    for (int t = q0; t < q0 + n; ++t) {
        *lo = std::min(*lo, p.attend_begin ? p.attend_begin[t] : 0);
        *hi = std::max(*hi, p.attend_end[t]);
    }
    if (*hi < *lo) *hi = *lo;
}

// Output row of tile row r: query q0 + r / group, head kv_head * group + r % group.
float* out_row(const AttentionParams& p, int q0, int kv_head, int group, int r) {
    return p.out + (static_cast<int64_t>(q0 + r / group) * p.n_head + kv_head * group + r % group) * p.head_dim;
}

}  // namespace

int attention_block_keys(int head_dim) { return std::clamp((4096 / head_dim) & ~15, 16, 128); }

int64_t attention_tile_scratch_floats(int rows, int head_dim) {
    const int64_t bk = attention_block_keys(head_dim);
    // queries (rows, hd) + K and V blocks (bk, hd) + scores (rows, bk) + alpha (rows); the scalar tile needs less
    return round_up16(static_cast<int64_t>(rows) * head_dim) + 2 * round_up16(bk * head_dim) +
           round_up16(rows * bk) + round_up16(rows) + 16;
}

int64_t attention_scratch_floats(int n_ctx, int n_head, int n_head_kv, int head_dim) {
    const int group = n_head / n_head_kv;
    // the reference: scores (group, n_ctx) + accumulators (group, head_dim) + one converted K/V row (head_dim)
    const int64_t reference = static_cast<int64_t>(group) * n_ctx + static_cast<int64_t>(group) * head_dim + head_dim + 64;
    // the flash path: thread 0 also holds the shared partials (the layout is partials, then one private part per thread)
    const int64_t flash = partial_floats(head_dim) + private_floats(group, head_dim);
    return std::max({reference, flash, attention_llama_cpp_scratch_floats(n_ctx, n_head, n_head_kv, head_dim)});
}

namespace {

// attention_tile_scalar for one kv head (tile.n_kv_heads == 1).
void tile_one_head_scalar(const AttentionParams& p, const AttentionTile& tile, float* scratch) {
    const int group = p.n_head / p.n_head_kv;
    const int hd = p.head_dim;
    const int kv_dim = p.n_head_kv * hd;
    const int rows = tile.n_queries * group;
    const int bk = attention_block_keys(hd);
    float* s = scratch;                                       // (rows, bk) scores, then probabilities
    float* alpha = s + static_cast<int64_t>(rows) * bk;       // (rows) rescale of acc for this block
    float* kv = alpha + rows;                                 // (hd) one converted K or V row
    const float* q = p.q + (static_cast<int64_t>(tile.q0) * p.n_head + tile.kv_head * group) * hd;
    const int64_t q_stride = static_cast<int64_t>(p.n_head) * hd;  // between the tile's queries
    const int64_t head_off = static_cast<int64_t>(tile.kv_head) * hd;
    const float scale2 = p.scale * kLog2e;

    // empty accumulators
    for (int r = 0; r < rows; ++r) {
        tile.m[r] = -INFINITY;
        tile.l[r] = 0.0f;
        for (int d = 0; d < hd; ++d) tile.acc[static_cast<int64_t>(r) * hd + d] = 0.0f;
    }
    for (int j0 = tile.key_begin; j0 < tile.key_end; j0 += bk) {
        const int nb = std::min(bk, tile.key_end - j0);
        const int32_t* pos = p.kv_positions + j0;
        // scores in base 2: s[r][j] = scale * log2(e) * q_r . K_j
        for (int j = 0; j < nb; ++j) {
            const uint16_t* k = p.k_cache + static_cast<int64_t>(pos[j]) * kv_dim + head_off;
            for (int d = 0; d < hd; ++d) kv[d] = fp16_to_fp32(k[d]);
            for (int r = 0; r < rows; ++r) {
                const float* qr = q + (r / group) * q_stride + (r % group) * hd;
                float dot = 0.0f;
                for (int d = 0; d < hd; ++d) dot += qr[d] * kv[d];
                s[static_cast<int64_t>(r) * bk + j] = dot * scale2;
            }
        }
        // online softmax: per row, only the keys its query sees; others get probability 0
        for (int r = 0; r < rows; ++r) {
            const int t = tile.q0 + r / group;
            const int a = std::max((p.attend_begin ? p.attend_begin[t] : 0) - j0, 0);
            const int b = std::min(p.attend_end[t] - j0, nb);
            float* sr = s + static_cast<int64_t>(r) * bk;
            float mx = -INFINITY;
            for (int j = a; j < b; ++j) mx = std::max(mx, sr[j]);
            const float m_new = std::max(tile.m[r], mx);
            float sum = 0.0f;
            for (int j = 0; j < nb; ++j) {
                sr[j] = (j >= a && j < b) ? std::exp2(sr[j] - m_new) : 0.0f;
                sum += sr[j];
            }
            alpha[r] = a < b ? std::exp2(tile.m[r] - m_new) : 1.0f;
            tile.l[r] = tile.l[r] * alpha[r] + sum;
            tile.m[r] = m_new;
        }
        // acc = acc * alpha + P . V
        for (int r = 0; r < rows; ++r)
            for (int d = 0; d < hd; ++d) tile.acc[static_cast<int64_t>(r) * hd + d] *= alpha[r];
        for (int j = 0; j < nb; ++j) {
            const uint16_t* v = p.v_cache + static_cast<int64_t>(pos[j]) * kv_dim + head_off;
            for (int d = 0; d < hd; ++d) kv[d] = fp16_to_fp32(v[d]);
            for (int r = 0; r < rows; ++r) {
                const float w = s[static_cast<int64_t>(r) * bk + j];
                float* acc = tile.acc + static_cast<int64_t>(r) * hd;
                for (int d = 0; d < hd; ++d) acc[d] += w * kv[d];
            }
        }
    }
}

}  // namespace

void attention_tile_scalar(const AttentionParams& p, const AttentionTile& tile, float* scratch) {
    const int rows = tile.n_queries * (p.n_head / p.n_head_kv);
    for (int h = 0; h < tile.n_kv_heads; ++h) {
        AttentionTile one = tile;
        one.kv_head = tile.kv_head + h;
        one.n_kv_heads = 1;
        one.m = tile.m + h * rows;
        one.l = tile.l + h * rows;
        one.acc = tile.acc + static_cast<int64_t>(h) * rows * p.head_dim;
        tile_one_head_scalar(p, one, scratch);
    }
}

void attention(const AttentionParams& p, float* scratch, int n_ctx, ThreadPool& pool) {
    if (p.n_q <= 0) return;
    if (p.numerics == Numerics::llama_cpp) return attention_llama_cpp(p, scratch, n_ctx, pool);
    const int group = p.n_head / p.n_head_kv;
    const int hd = p.head_dim;
    const int bk = attention_block_keys(hd);
    const int tq = tile_queries(group);
    const int n_tiles = (p.n_q + tq - 1) / tq;
    const int rows_max = std::min(tq, p.n_q) * group;  // rows of one kv head in the largest tile
    const bool avx2 = active_isa() >= CpuIsa::avx2;

    // Enough (tile, kv head) tasks for the threads (prefill): one task each, over the tile's whole key span.
    // Too few (decode): tasks are (tile, chunk of its keys) for all kv heads at once, so that a task streams
    // whole K/V rows; the chunk count depends on the inputs only, bounded by the partials region and a
    // minimum chunk length, and chunks are merged with log-sum-exp.
    int chunks = 1;
    if (n_tiles * p.n_head_kv < kTargetTasks) {
        int max_span = 0;
        for (int i = 0; i < n_tiles; ++i) {
            int lo, hi;
            tile_span(p, i * tq, std::min(tq, p.n_q - i * tq), &lo, &hi);
            max_span = std::max(max_span, hi - lo);
        }
        chunks = std::min({(max_span + kMinChunkKeys - 1) / kMinChunkKeys, (kTargetTasks + n_tiles - 1) / n_tiles,
                           kMaxPartialRows / (n_tiles * rows_max * p.n_head_kv)});
        chunks = std::max(chunks, 1);
    }
    const bool split = chunks > 1;
    const int heads_per_task = split ? p.n_head_kv : 1;
    const int head_sets = p.n_head_kv / heads_per_task;
    const int rows_split = rows_max * p.n_head_kv;                  // rows of one split partial
    const int64_t slot = static_cast<int64_t>(rows_split) * (hd + 2);  // one partial: m, l, acc
    float* partials = scratch;                                      // (n_tiles, chunks) slots
    float* private_base = scratch + partial_floats(hd);
    const int64_t per_thread = private_floats(group, hd);

    // Tasks (tile, head set, chunk) are taken in order from a shared counter, the last tiles (most keys) first.
    std::atomic<int> next{0};
    const int n_work = n_tiles * head_sets * chunks;
    pool.run([&](int thread, int) {
        float* mine = private_base + per_thread * thread;
        float* m = mine;                               // (rows) for unsplit tasks
        float* l = m + round_up16(rows_max);           // (rows)
        float* acc = l + round_up16(rows_max);         // (rows, hd)
        float* tile_scratch = acc + round_up16(static_cast<int64_t>(rows_max) * hd);
        for (int w = next.fetch_add(1, std::memory_order_relaxed); w < n_work; w = next.fetch_add(1, std::memory_order_relaxed)) {
            const int tile_index = n_tiles - 1 - w / (head_sets * chunks);
            const int c = w / head_sets % chunks;
            AttentionTile tile;
            tile.q0 = tile_index * tq;
            tile.n_queries = std::min(tq, p.n_q - tile.q0);
            tile.kv_head = w % head_sets * heads_per_task;
            tile.n_kv_heads = heads_per_task;
            // this chunk of the tile's key span, in whole blocks
            int lo, hi;
            tile_span(p, tile.q0, tile.n_queries, &lo, &hi);
            const int chunk_len = ((hi - lo + chunks - 1) / chunks + bk - 1) / bk * bk;
            tile.key_begin = std::min(lo + c * chunk_len, hi);
            tile.key_end = std::min(tile.key_begin + chunk_len, hi);
            if (split) {
                float* part = partials + (static_cast<int64_t>(tile_index) * chunks + c) * slot;
                tile.m = part;
                tile.l = part + rows_split;
                tile.acc = part + 2 * rows_split;
            } else {
                tile.m = m;
                tile.l = l;
                tile.acc = acc;
            }
            if (avx2) attention_tile_avx2(p, tile, tile_scratch);
            else attention_tile_scalar(p, tile, tile_scratch);
            if (split) continue;
            // out = acc / l (a query that sees no key gets zeros)
            for (int r = 0; r < tile.n_queries * group; ++r) {
                float* o = out_row(p, tile.q0, tile.kv_head, group, r);
                const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
                for (int d = 0; d < hd; ++d) o[d] = acc[static_cast<int64_t>(r) * hd + d] * inv;
            }
        }
    });
    if (!split) return;

    // Merge the chunks of each (tile, kv head) with log-sum-exp (base 2), in chunk order.
    pool.parallel_for(static_cast<long>(n_tiles) * p.n_head_kv, [&](long begin, long end, int) {
        for (long task = begin; task < end; ++task) {
            const int tile_index = static_cast<int>(task / p.n_head_kv), g = static_cast<int>(task % p.n_head_kv);
            const int q0 = tile_index * tq, rows = std::min(tq, p.n_q - q0) * group;
            const float* parts = partials + static_cast<int64_t>(tile_index) * chunks * slot;
            for (int r = 0; r < rows; ++r) {
                const int i = g * rows + r;  // row in the partials, which hold every kv head of the tile
                float mx = -INFINITY;
                for (int c = 0; c < chunks; ++c) mx = std::max(mx, parts[c * slot + i]);
                float* o = out_row(p, q0, g, group, r);
                for (int d = 0; d < hd; ++d) o[d] = 0.0f;
                if (mx == -INFINITY) continue;
                float sum = 0.0f;
                for (int c = 0; c < chunks; ++c) {
                    const float* part = parts + c * slot;
                    const float m_c = part[i];
                    if (m_c == -INFINITY) continue;
                    const float w = std::exp2(m_c - mx);
                    sum += w * part[rows_split + i];
                    const float* a = part + 2 * rows_split + static_cast<int64_t>(i) * hd;
                    for (int d = 0; d < hd; ++d) o[d] += w * a[d];
                }
                const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                for (int d = 0; d < hd; ++d) o[d] *= inv;
            }
        }
    });
}

// One (query, kv-head group) with an exact softmax over a row of scores: the reference.
static void attention_task_reference(const AttentionParams& p, int t, int g, float* scratch) {
    const int group = p.n_head / p.n_head_kv;
    const int hd = p.head_dim;
    const int kv_dim = p.n_head_kv * hd;
    const int begin = p.attend_begin ? p.attend_begin[t] : 0;
    const int n = p.attend_end[t] - begin;
    float* scores = scratch;                                   // (group, n)
    float* row = scratch + static_cast<int64_t>(group) * n;    // (hd)
    for (int j = 0; j < n; ++j) {
        const uint16_t* k = p.k_cache + static_cast<int64_t>(p.kv_positions[begin + j]) * kv_dim + g * hd;
        for (int d = 0; d < hd; ++d) row[d] = fp16_to_fp32(k[d]);
        for (int h = 0; h < group; ++h) {
            const float* q = p.q + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
            float s = 0.0f;
            for (int d = 0; d < hd; ++d) s += q[d] * row[d];
            scores[h * n + j] = s * p.scale;
        }
    }
    for (int h = 0; h < group; ++h) {
        float* s = scores + static_cast<int64_t>(h) * n;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) mx = std::max(mx, s[j]);
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) {
            s[j] = std::exp(s[j] - mx);
            sum += s[j];
        }
        const float inv = n > 0 ? 1.0f / sum : 0.0f;
        float* out = p.out + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
        for (int d = 0; d < hd; ++d) out[d] = 0.0f;
        for (int j = 0; j < n; ++j) {
            const uint16_t* v = p.v_cache + static_cast<int64_t>(p.kv_positions[begin + j]) * kv_dim + g * hd;
            const float w = s[j] * inv;
            for (int d = 0; d < hd; ++d) out[d] += w * fp16_to_fp32(v[d]);
        }
    }
}

void attention_reference(const AttentionParams& p, float* scratch) {
    for (int t = 0; t < p.n_q; ++t)
        for (int g = 0; g < p.n_head_kv; ++g) attention_task_reference(p, t, g, scratch);
}

namespace {

// One head's softmax of q_h . k_j * scale over kv_positions[0, n): writes exp(s_j - max) to scores, returns their sum.
double head_softmax(const float* qh, const uint16_t* k_cache, const int32_t* kv_positions, int n, int kv_dim,
                    int head_offset, int head_dim, float scale, float* scores) {
    float mx = -INFINITY;
    for (int j = 0; j < n; ++j) {
        const uint16_t* k = k_cache + static_cast<int64_t>(kv_positions[j]) * kv_dim + head_offset;
        float s = 0.0f;
        for (int d = 0; d < head_dim; ++d) s += qh[d] * fp16_to_fp32(k[d]);
        scores[j] = s * scale;
        mx = std::max(mx, scores[j]);
    }
    double sum = 0.0;
    for (int j = 0; j < n; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
    }
    return sum;
}

}  // namespace

void last_token_importance(const float* q, const uint16_t* k_cache, const int32_t* kv_positions, int n,
                           int n_head, int n_head_kv, int head_dim, float scale, float* scores,
                           float* importance, bool max_over_heads) {
    const int group = n_head / n_head_kv;
    const int kv_dim = n_head_kv * head_dim;
    for (int j = 0; j < n; ++j) importance[j] = 0.0f;
    for (int h = 0; h < n_head; ++h) {
        const float* qh = q + static_cast<int64_t>(h) * head_dim;
        const double sum = head_softmax(qh, k_cache, kv_positions, n, kv_dim, h / group * head_dim, head_dim, scale, scores);
        if (max_over_heads) {
            const float w = static_cast<float>(1.0 / sum);
            for (int j = 0; j < n; ++j) importance[j] = std::max(importance[j], scores[j] * w);
        } else {
            const float w = static_cast<float>(1.0 / (sum * n_head));
            for (int j = 0; j < n; ++j) importance[j] += scores[j] * w;
        }
    }
}

// importance (n) from the per-head mass (n_head, n): the heads' maximum, or their mean.
static void combine_heads(const float* per_head, int n_head, int n, bool max_over_heads, float* importance) {
    for (int j = 0; j < n; ++j) {
        float v = 0.0f;
        for (int h = 0; h < n_head; ++h) {
            const float p = per_head[static_cast<int64_t>(h) * n + j];
            v = max_over_heads ? std::max(v, p) : v + p / n_head;
        }
        importance[j] = v;
    }
}

void importance_head_reference(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                               const int32_t* kv_positions, int n, int n_head, int head, int kv_dim, int head_offset,
                               int head_dim, float scale, float* scores, float* mass) {
    std::fill(mass, mass + n, 0.0f);
    for (int w = 0; w < n_q; ++w) {
        // causal: the query sees the keys at or before its position (kv_positions is sorted)
        const int n_seen = static_cast<int>(std::upper_bound(kv_positions, kv_positions + n, q_pos[w]) - kv_positions);
        const float* qh = q_rows + (static_cast<int64_t>(w) * n_head + head) * head_dim;
        const double sum = head_softmax(qh, k_cache, kv_positions, n_seen, kv_dim, head_offset, head_dim, scale, scores);
        const float wgt = static_cast<float>(1.0 / (sum * n_q));
        for (int j = 0; j < n_seen; ++j) mass[j] += scores[j] * wgt;
    }
}

void window_importance(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                       const int32_t* kv_positions, int n, int n_head, int n_head_kv, int head_dim, float scale,
                       float* scratch, float* importance, bool max_over_heads) {
    const int group = n_head / n_head_kv;
    const int kv_dim = n_head_kv * head_dim;
    float* scores = scratch;       // (n)
    float* per_head = scratch + n;  // (n_head, n) probability mass per head, summed over the queries
    for (int h = 0; h < n_head; ++h)
        importance_head_reference(q_rows, q_pos, n_q, k_cache, kv_positions, n, n_head, h, kv_dim, h / group * head_dim,
                                  head_dim, scale, scores, per_head + static_cast<int64_t>(h) * n);
    combine_heads(per_head, n_head, n, max_over_heads, importance);
}

void window_importance_fast(const float* q_rows, const int32_t* q_pos, int n_q, const uint16_t* k_cache,
                            const int32_t* kv_positions, int n, int n_head, int n_head_kv, int head_dim, float scale,
                            float* scratch, float* importance, bool max_over_heads, ThreadPool& pool) {
    const auto head_fn =
        active_isa() >= CpuIsa::avx2 && head_dim % 8 == 0 ? importance_head_avx2 : importance_head_reference;
    const int group = n_head / n_head_kv;
    const int kv_dim = n_head_kv * head_dim;
    float* per_head = scratch;                                  // (n_head, n) probability mass per head
    float* scores = scratch + static_cast<int64_t>(n_head) * n;  // (n_head, n) one scores row per head
    pool.parallel_for(n_head, [&](long h0, long h1, int) {
        for (long h = h0; h < h1; ++h)
            head_fn(q_rows, q_pos, n_q, k_cache, kv_positions, n, n_head, static_cast<int>(h), kv_dim,
                    static_cast<int>(h) / group * head_dim, head_dim, scale, scores + h * n, per_head + h * n);
    });
    combine_heads(per_head, n_head, n, max_over_heads, importance);
}

}  // namespace lazyllm_edge
