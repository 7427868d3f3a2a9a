// llama.cpp's CPU attention arithmetic (attention_llama.h, `llama_cpp` numerics): the driver (prefill tasks, decode
// phases), the scalar phase kernels and the step-by-step reference.
#include "cpu/llama_order/attention_llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/kernels.h"
#include "base/thread_pool.h"

namespace lazyllm_edge {
namespace {

constexpr int kTileRowsHd64 = 48;     // rows (queries x query heads of one kv head) of a prefill task at head_dim 64
constexpr int kTargetTasks = 16;      // fewer (tile, kv head) tasks than this: run the phases over all rows ...
constexpr int kMaxPhaseRows = 64;     // ... when the rows are this few (decode)
constexpr int kPvDims = 16;           // output dims of one decode P.V task

int64_t round_up16(int64_t n) { return (n + 15) & ~int64_t{15}; }

float fp16_round(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

// 8 lanes summed in llama.cpp's order (tinyBLAS / ggml hsum).
float hsum8(const float* a) {
    const float t0 = a[4] + a[0], t1 = a[5] + a[1], t2 = a[6] + a[2], t3 = a[7] + a[3];
    return (t0 + t2) + (t1 + t3);
}

// Rows of one prefill task: whole queries (all heads of one kv head), about kTileRowsHd64 * 64 / head_dim.
int tile_queries(int group, int head_dim) {
    const int rows = std::max(group, kTileRowsHd64 * 64 / std::max(head_dim, 1));
    return std::max(1, rows / group);
}

// Key indices [lo, hi) some query of [q0, q0 + n) may see.
void tile_span(const AttentionParams& p, int q0, int n, int* lo, int* hi) {
    *lo = INT32_MAX;
    *hi = 0;
    for (int t = q0; t < q0 + n; ++t) {
        if (p.attend_end[t] <= (p.attend_begin ? p.attend_begin[t] : 0)) continue;
        *lo = std::min(*lo, p.attend_begin ? p.attend_begin[t] : 0);
        *hi = std::max(*hi, p.attend_end[t]);
    }
    if (*hi <= *lo) *lo = *hi = 0;
}

// order[...] = the keys [0, n) grouped by lane pos % 8, each group in increasing position; bucket[0..8].
void bucket_by_lane(const int32_t* pos, int n, int32_t* order, int* bucket) {
    int count[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < n; ++j) ++count[pos[j] & 7];
    bucket[0] = 0;
    for (int i = 0; i < 8; ++i) bucket[i + 1] = bucket[i] + count[i];
    int fill[8];
    for (int i = 0; i < 8; ++i) fill[i] = bucket[i];
    for (int j = 0; j < n; ++j) order[fill[pos[j] & 7]++] = j;
}

// ---------------- scalar kernels (same bits as the AVX2 ones) ----------------

void scores_scalar(const float* q16, int rows, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld) {
    for (int j = 0; j < n; ++j) {
        const uint16_t* kr = k.row(j);
        for (int r = 0; r < rows; ++r) {
            const float* q = q16 + static_cast<int64_t>(r) * hd;
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int d = 0; d < hd; ++d) lane[d & 7] += q[d] * fp16_to_fp32(kr[d]);  // exact products
            s[r * ld + j] = hsum8(lane) * scale;
        }
    }
}

void softmax_scalar(float* s, const int32_t* pos, int n, int b, int e, float* /*group*/) {
    if (e <= b) {
        std::fill(s, s + n, 0.0f);
        return;
    }
    float mx = -INFINITY;
    for (int j = b; j < e; ++j) mx = std::max(mx, s[j]);
    double sum = 0.0;
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int32_t cur = pos[b] >> 3;
    for (int j = b; j < e; ++j) {
        if ((pos[j] >> 3) != cur) {
            sum += hsum8(lanes);
            std::fill(lanes, lanes + 8, 0.0f);
            cur = pos[j] >> 3;
        }
        s[j] = expf_ggml(s[j] - mx);
        lanes[pos[j] & 7] = s[j];
    }
    sum += hsum8(lanes);
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = 0; j < n; ++j) s[j] = (j >= b && j < e) ? fp16_round(s[j] * inv) : 0.0f;
}

void pv_scalar(const float* p, int rows, int64_t ld, const KvRows& v, const int32_t* order, const int* bucket,
               int hd, int d0, int d1, float* lanes) {
    for (int r = 0; r < rows; ++r)
        for (int i = 0; i < 8; ++i) {
            float* acc = lanes + (static_cast<int64_t>(r) * 8 + i) * hd;
            for (int x = bucket[i]; x < bucket[i + 1]; ++x) {
                const int j = order[x];
                const float w = p[r * ld + j];
                const uint16_t* vr = v.row(j);
                for (int d = d0; d < d1; ++d) acc[d] += w * fp16_to_fp32(vr[d]);  // exact products
            }
        }
}

void combine_scalar(const float* lanes, int rows, int hd, int d0, int d1, float* out, int64_t out_stride) {
    for (int r = 0; r < rows; ++r) {
        const float* l = lanes + static_cast<int64_t>(r) * 8 * hd;
        for (int d = d0; d < d1; ++d) {
            const float a[8] = {l[d], l[hd + d], l[2 * hd + d], l[3 * hd + d],
                                l[4 * hd + d], l[5 * hd + d], l[6 * hd + d], l[7 * hd + d]};
            out[r * out_stride + d] = hsum8(a);
        }
    }
}

// llama.cpp's ggml_vec_dot_f16 (AVX2), which it uses instead of tinyBLAS when a matmul has one column (a
// single query: llamafile_sgemm needs n >= 2): lane i % 32 sums x[i] * y[i] in order (4 accumulators of 8),
// then ((l + l16) + (l8 + l24)) per lane l < 8 and ((c0 + c4) + (c1 + c5)) + ((c2 + c6) + (c3 + c7)).
float reduce32(const float* acc, int stride) {
    float c[8];
    for (int l = 0; l < 8; ++l)
        c[l] = (acc[l * stride] + acc[(16 + l) * stride]) + (acc[(8 + l) * stride] + acc[(24 + l) * stride]);
    return ((c[0] + c[4]) + (c[1] + c[5])) + ((c[2] + c[6]) + (c[3] + c[7]));
}

void scores32_scalar(const float* q16, int rows, int hd, const KvRows& k, int n, float scale, float* s, int64_t ld) {
    const int np = hd - hd % 32;
    for (int j = 0; j < n; ++j) {
        const uint16_t* kr = k.row(j);
        for (int r = 0; r < rows; ++r) {
            const float* q = q16 + static_cast<int64_t>(r) * hd;
            float lanes[32] = {};
            for (int d = 0; d < np; ++d) lanes[d % 32] += q[d] * fp16_to_fp32(kr[d]);  // exact products
            double sum = reduce32(lanes, 1);
            for (int d = np; d < hd; ++d) sum += static_cast<double>(q[d] * fp16_to_fp32(kr[d]));
            s[r * ld + j] = static_cast<float>(sum) * scale;
        }
    }
}

void pv32_scalar(const float* p, int rows, int64_t ld, const KvRows& v, int n, int hd, int d0, int d1, float* acc) {
    for (int j = 0; j < n; ++j) {
        const uint16_t* vr = v.row(j);
        for (int r = 0; r < rows; ++r) {
            float* lane = acc + (static_cast<int64_t>(r) * 32 + (v.pos[j] & 31)) * hd;
            const float w = p[r * ld + j];
            for (int d = d0; d < d1; ++d) lane[d] += w * fp16_to_fp32(vr[d]);  // exact products
        }
    }
}

void combine32_scalar(const float* acc, int rows, int hd, int d0, int d1, float* out, int64_t out_stride) {
    for (int r = 0; r < rows; ++r)
        for (int d = d0; d < d1; ++d) out[r * out_stride + d] = reduce32(acc + static_cast<int64_t>(r) * 32 * hd + d, hd);
}

const LlamaAttentionKernels& kernels_for(const AttentionParams& p) {
#if defined(__x86_64__)
    if (active_isa() >= CpuIsa::avx2 && p.head_dim % 8 == 0) return kLlamaAttentionAvx2;
#endif
    return kLlamaAttentionScalar;
}

// Per-thread scratch of a prefill task: q16 (rows, hd), scores (rows, n_ctx), lanes (rows, 8, hd), softmax
// groups, block order.
struct TaskScratch {
    float* q16;
    float* s;
    float* lanes;
    float* group;
    int32_t* order;
};
int64_t task_floats(int rows, int n_ctx, int hd) {
    const int64_t task = round_up16(static_cast<int64_t>(rows) * hd) + round_up16(static_cast<int64_t>(rows) * n_ctx) +
                         round_up16(static_cast<int64_t>(rows) * 8 * hd) + round_up16(8 * (static_cast<int64_t>(n_ctx) + 2)) +
                         round_up16(n_ctx);
    const int64_t single_head = 9 * static_cast<int64_t>(n_ctx) + 33 * static_cast<int64_t>(hd) + 64;  // single_query_head
    return std::max(task, single_head);
}
TaskScratch carve_task(float* base, int rows, int n_ctx, int hd) {
    TaskScratch t;
    t.q16 = base;
    t.s = t.q16 + round_up16(static_cast<int64_t>(rows) * hd);
    t.lanes = t.s + round_up16(static_cast<int64_t>(rows) * n_ctx);
    t.group = t.lanes + round_up16(static_cast<int64_t>(rows) * 8 * hd);
    t.order = reinterpret_cast<int32_t*>(t.group + round_up16(8 * (static_cast<int64_t>(n_ctx) + 2)));
    return t;
}

// Query row r of kv head g in queries [q0, q0 + nq): query q0 + r / group, head g * group + r % group.
int64_t q_row(const AttentionParams& p, int q0, int g, int group, int r) {
    return (static_cast<int64_t>(q0 + r / group) * p.n_head + g * group + r % group) * p.head_dim;
}

// Scores (phase 1) of `rows` rows (q16) over the span keys [lo, hi), block by block.
void scores_blocks(const LlamaAttentionKernels& kn, const AttentionParams& p, int g, const float* q16, int rows, int lo,
                   int hi, float* s, int64_t ld) {
    const int hd = p.head_dim, bk = attention_block_keys(hd);
    KvRows k{p.k_cache + static_cast<int64_t>(g) * hd, nullptr, static_cast<int64_t>(p.n_head_kv) * hd};
    for (int j0 = lo; j0 < hi; j0 += bk) {
        k.pos = p.kv_positions + j0;
        kn.scores(q16, rows, hd, k, std::min(bk, hi - j0), p.scale, s + (j0 - lo), ld);
    }
}

// P.V (phase 3) of `rows` rows over the span keys [lo, hi) into lanes, output dims [d0, d1).
void pv_blocks(const LlamaAttentionKernels& kn, const AttentionParams& p, int g, const float* s, int rows, int64_t ld,
               int lo, int hi, int d0, int d1, int32_t* order, float* lanes) {
    const int hd = p.head_dim, bk = attention_block_keys(hd);
    KvRows v{p.v_cache + static_cast<int64_t>(g) * hd, nullptr, static_cast<int64_t>(p.n_head_kv) * hd};
    for (int j0 = lo; j0 < hi; j0 += bk) {
        const int n = std::min(bk, hi - j0);
        int bucket[9];
        v.pos = p.kv_positions + j0;
        bucket_by_lane(v.pos, n, order, bucket);
        kn.pv(s + (j0 - lo), rows, ld, v, order, bucket, hd, d0, d1, lanes);
    }
}

// One prefill task: queries [q0, q0 + nq) with the heads of kv head g.
void run_task(const LlamaAttentionKernels& kn, const AttentionParams& p, int q0, int nq, int g, const TaskScratch& ts,
              int64_t ld) {
    const int hd = p.head_dim, group = p.n_head / p.n_head_kv, rows = nq * group;
    for (int r = 0; r < rows; ++r) {
        const float* q = p.q + q_row(p, q0, g, group, r);
        for (int d = 0; d < hd; ++d) ts.q16[r * hd + d] = fp16_round(q[d]);
    }
    int lo, hi;
    tile_span(p, q0, nq, &lo, &hi);
    scores_blocks(kn, p, g, ts.q16, rows, lo, hi, ts.s, ld);
    for (int r = 0; r < rows; ++r) {
        const int t = q0 + r / group;
        const int b = std::max((p.attend_begin ? p.attend_begin[t] : 0) - lo, 0);
        const int e = std::max(std::min(p.attend_end[t] - lo, hi - lo), b);
        kn.softmax(ts.s + r * ld, p.kv_positions + lo, hi - lo, b, e, ts.group);
    }
    std::fill(ts.lanes, ts.lanes + static_cast<int64_t>(rows) * 8 * hd, 0.0f);
    pv_blocks(kn, p, g, ts.s, rows, ld, lo, hi, 0, hd, ts.order, ts.lanes);
    for (int r = 0; r < rows; ++r)
        kn.combine(ts.lanes + static_cast<int64_t>(r) * 8 * hd, 1, hd, 0, hd, p.out + q_row(p, q0, g, group, r), 0);
}

// Shared scratch of the phase paths (few rows, and a single query): q16 and scores of all rows, their lanes (8
// per row, or 32 per head for a single query), and the lane order of the whole span.
int64_t phase_lane_floats(int n_head, int hd) {
    return round_up16(static_cast<int64_t>(std::max(8 * kMaxPhaseRows, 32 * std::min(n_head, kMaxPhaseRows))) * hd);
}
int64_t phase_floats(int n_ctx, int n_head, int hd) {
    return round_up16(static_cast<int64_t>(kMaxPhaseRows) * hd) + round_up16(static_cast<int64_t>(kMaxPhaseRows) * n_ctx) +
           phase_lane_floats(n_head, hd) + round_up16(n_ctx);
}

// Decode: all rows (kv head major) through scores (split by key blocks), softmax (by rows) and P.V (split by
// kv head and output dims).
void run_phases(const LlamaAttentionKernels& kn, const AttentionParams& p, float* shared, float* private_base,
                int64_t per_thread, int n_ctx, ThreadPool& pool) {
    const int hd = p.head_dim, group = p.n_head / p.n_head_kv;
    const int rows_per_head = p.n_q * group, rows = rows_per_head * p.n_head_kv;
    int lo, hi;
    tile_span(p, 0, p.n_q, &lo, &hi);
    const int span = hi - lo;
    const int64_t ld = std::max(span, 1);
    float* q16 = shared;                                                            // (rows, hd)
    float* s = q16 + round_up16(static_cast<int64_t>(kMaxPhaseRows) * hd);          // (rows, ld)
    float* lanes = s + round_up16(static_cast<int64_t>(kMaxPhaseRows) * n_ctx);     // (rows, 8, hd)
    int32_t* order = reinterpret_cast<int32_t*>(lanes + phase_lane_floats(p.n_head, hd));
    for (int g = 0; g < p.n_head_kv; ++g)
        for (int r = 0; r < rows_per_head; ++r) {
            const float* q = p.q + q_row(p, 0, g, group, r);
            float* dst = q16 + static_cast<int64_t>(g * rows_per_head + r) * hd;
            for (int d = 0; d < hd; ++d) dst[d] = fp16_round(q[d]);
        }
    const int bk = attention_block_keys(hd);
    const int n_blocks = (span + bk - 1) / bk;
    pool.parallel_for(static_cast<long>(n_blocks) * p.n_head_kv, [&](long begin, long end, int) {
        for (long w = begin; w < end; ++w) {
            const int g = static_cast<int>(w % p.n_head_kv), j0 = lo + static_cast<int>(w / p.n_head_kv) * bk;
            scores_blocks(kn, p, g, q16 + static_cast<int64_t>(g) * rows_per_head * hd, rows_per_head, j0,
                          std::min(j0 + bk, hi), s + static_cast<int64_t>(g) * rows_per_head * ld + (j0 - lo), ld);
        }
    });
    pool.parallel_for(rows, [&](long begin, long end, int thread) {
        float* group_scratch = private_base + per_thread * thread;
        for (long r = begin; r < end; ++r) {
            const int t = static_cast<int>(r % rows_per_head) / group;
            const int b = std::max((p.attend_begin ? p.attend_begin[t] : 0) - lo, 0);
            const int e = std::max(std::min(p.attend_end[t] - lo, span), b);
            kn.softmax(s + r * ld, p.kv_positions + lo, span, b, e, group_scratch);
        }
    });
    int bucket[9];
    bucket_by_lane(p.kv_positions + lo, span, order, bucket);
    std::fill(lanes, lanes + static_cast<int64_t>(rows) * 8 * hd, 0.0f);
    const int dim_tasks = (hd + kPvDims - 1) / kPvDims;
    pool.parallel_for(static_cast<long>(p.n_head_kv) * dim_tasks, [&](long begin, long end, int) {
        for (long w = begin; w < end; ++w) {
            const int g = static_cast<int>(w / dim_tasks), d0 = static_cast<int>(w % dim_tasks) * kPvDims;
            const int d1 = std::min(d0 + kPvDims, hd);
            KvRows v{p.v_cache + static_cast<int64_t>(g) * hd, p.kv_positions + lo, static_cast<int64_t>(p.n_head_kv) * hd};
            float* lg = lanes + static_cast<int64_t>(g) * rows_per_head * 8 * hd;
            kn.pv(s + static_cast<int64_t>(g) * rows_per_head * ld, rows_per_head, ld, v, order, bucket, hd, d0, d1, lg);
            for (int r = 0; r < rows_per_head; ++r)
                kn.combine(lg + static_cast<int64_t>(r) * 8 * hd, 1, hd, d0, d1, p.out + q_row(p, 0, g, group, r), 0);
        }
    });
}

// One query head of a single-query call (decode), one kernel call per step: the reference (scalar kernels) and
// the path for more than kMaxPhaseRows heads. scratch: n + 32 * hd + 8 * (n + 2) + hd floats.
void single_query_head(const LlamaAttentionKernels& kn, const AttentionParams& p, int h, float* scratch) {
    const int group = p.n_head / p.n_head_kv, hd = p.head_dim, g = h / group;
    const int begin = p.attend_begin ? p.attend_begin[0] : 0;
    const int n = std::max(p.attend_end[0] - begin, 0);
    const int32_t* pos = p.kv_positions + begin;
    float* out = p.out + static_cast<int64_t>(h) * hd;
    if (n == 0) {
        std::fill(out, out + hd, 0.0f);
        return;
    }
    float* s = scratch;                                           // (n) scores, then probabilities
    float* acc = s + round_up16(n);                               // (32, hd) lanes by position % 32
    float* group_scratch = acc + 32 * static_cast<int64_t>(hd);   // (8 * (n + 2))
    float* q16 = group_scratch + 8 * (static_cast<int64_t>(n) + 2);  // (hd)
    const float* q = p.q + static_cast<int64_t>(h) * hd;
    for (int d = 0; d < hd; ++d) q16[d] = fp16_round(q[d]);
    const int64_t kv_dim = static_cast<int64_t>(p.n_head_kv) * hd;
    kn.scores32(q16, 1, hd, KvRows{p.k_cache + static_cast<int64_t>(g) * hd, pos, kv_dim}, n, p.scale, s, n);
    kn.softmax(s, pos, n, 0, n, group_scratch);
    std::fill(acc, acc + 32 * static_cast<int64_t>(hd), 0.0f);
    kn.pv32(s, 1, n, KvRows{p.v_cache + static_cast<int64_t>(g) * hd, pos, kv_dim}, n, hd, 0, hd, acc);
    kn.combine32(acc, 1, hd, 0, hd, out, hd);
}

// A single query (decode), all heads in ggml_vec_dot_f16's order, in three phases like run_phases: scores split by
// (kv head, key block), the softmax by heads, P.V by (kv head, 16 output dims). n_head <= kMaxPhaseRows.
void run_single_query(const LlamaAttentionKernels& kn, const AttentionParams& p, float* shared, float* private_base,
                      int64_t per_thread, int n_ctx, ThreadPool& pool) {
    const int hd = p.head_dim, group = p.n_head / p.n_head_kv;
    const int64_t kv_dim = static_cast<int64_t>(p.n_head_kv) * hd;
    const int begin = p.attend_begin ? p.attend_begin[0] : 0;
    const int n = std::max(p.attend_end[0] - begin, 0);
    const int32_t* pos = p.kv_positions + begin;
    if (n == 0) {
        std::fill(p.out, p.out + static_cast<int64_t>(p.n_head) * hd, 0.0f);
        return;
    }
    const int64_t ld = n;
    float* q16 = shared;                                                            // (n_head, hd)
    float* s = q16 + round_up16(static_cast<int64_t>(kMaxPhaseRows) * hd);          // (n_head, ld)
    float* acc = s + round_up16(static_cast<int64_t>(kMaxPhaseRows) * n_ctx);       // (n_head, 32, hd)
    for (int64_t i = 0; i < static_cast<int64_t>(p.n_head) * hd; ++i) q16[i] = fp16_round(p.q[i]);
    const int bk = attention_block_keys(hd);
    const int n_blocks = (n + bk - 1) / bk;
    pool.parallel_for(static_cast<long>(n_blocks) * p.n_head_kv, [&](long b, long e, int) {
        for (long w = b; w < e; ++w) {
            const int g = static_cast<int>(w % p.n_head_kv), j0 = static_cast<int>(w / p.n_head_kv) * bk;
            const KvRows k{p.k_cache + static_cast<int64_t>(g) * hd, pos + j0, kv_dim};
            kn.scores32(q16 + static_cast<int64_t>(g) * group * hd, group, hd, k, std::min(bk, n - j0), p.scale,
                        s + static_cast<int64_t>(g) * group * ld + j0, ld);
        }
    });
    pool.parallel_for(p.n_head, [&](long b, long e, int thread) {
        float* group_scratch = private_base + per_thread * thread;
        for (long h = b; h < e; ++h) kn.softmax(s + h * ld, pos, n, 0, n, group_scratch);
    });
    const int dim_tasks = (hd + kPvDims - 1) / kPvDims;
    pool.parallel_for(static_cast<long>(p.n_head_kv) * dim_tasks, [&](long b, long e, int) {
        for (long w = b; w < e; ++w) {
            const int g = static_cast<int>(w / dim_tasks), d0 = static_cast<int>(w % dim_tasks) * kPvDims;
            const int d1 = std::min(d0 + kPvDims, hd);
            float* ag = acc + static_cast<int64_t>(g) * group * 32 * hd;
            for (int l = 0; l < group * 32; ++l) std::fill(ag + static_cast<int64_t>(l) * hd + d0, ag + static_cast<int64_t>(l) * hd + d1, 0.0f);
            const KvRows v{p.v_cache + static_cast<int64_t>(g) * hd, pos, kv_dim};
            kn.pv32(s + static_cast<int64_t>(g) * group * ld, group, ld, v, n, hd, d0, d1, ag);
            kn.combine32(ag, group, hd, d0, d1, p.out + static_cast<int64_t>(g) * group * hd, hd);
        }
    });
}

}  // namespace

const LlamaAttentionKernels kLlamaAttentionScalar = {scores_scalar, softmax_scalar, pv_scalar, combine_scalar,
                                                     scores32_scalar, pv32_scalar, combine32_scalar};


int64_t attention_llama_cpp_scratch_floats(int n_ctx, int n_head, int n_head_kv, int head_dim) {
    const int group = n_head / n_head_kv;
    const int rows = tile_queries(group, head_dim) * group;
    // thread 0 also holds the shared phase region (the layout is: phase region, then one task region per thread)
    const int64_t reference = 9 * static_cast<int64_t>(n_ctx) + 33 * static_cast<int64_t>(head_dim) + 64;
    return std::max(reference, phase_floats(n_ctx, n_head, head_dim) + task_floats(rows, n_ctx, head_dim));
}

void attention_llama_cpp(const AttentionParams& p, float* scratch, int n_ctx, ThreadPool& pool) {
    if (p.n_q <= 0) return;
    const LlamaAttentionKernels& kn = kernels_for(p);
    const int group = p.n_head / p.n_head_kv;
    const int hd = p.head_dim;
    const int tq = tile_queries(group, hd);
    const int n_tiles = (p.n_q + tq - 1) / tq;
    const int rows_max = std::min(tq, p.n_q) * group;
    const int64_t per_thread = task_floats(tq * group, n_ctx, hd);
    float* private_base = scratch + phase_floats(n_ctx, p.n_head, hd);
    if (p.n_q == 1) {  // one query: llama.cpp's single-column order
        if (p.n_head <= kMaxPhaseRows) {
            run_single_query(kn, p, scratch, private_base, per_thread, n_ctx, pool);
        } else {
            pool.parallel_for(p.n_head, [&](long begin, long end, int thread) {
                for (long h = begin; h < end; ++h) single_query_head(kn, p, static_cast<int>(h), private_base + per_thread * thread);
            });
        }
        return;
    }
    if (n_tiles * p.n_head_kv < kTargetTasks && p.n_q * p.n_head <= kMaxPhaseRows) {
        run_phases(kn, p, scratch, private_base, per_thread, n_ctx, pool);
        return;
    }
    (void)rows_max;
    // Tasks (tile, kv head), the last tiles (most keys) first.
    const long n_work = static_cast<long>(n_tiles) * p.n_head_kv;
    pool.parallel_for(n_work, [&](long begin, long end, int thread) {
        const TaskScratch ts = carve_task(private_base + per_thread * thread, tq * group, n_ctx, hd);
        for (long w = begin; w < end; ++w) {
            const int tile = n_tiles - 1 - static_cast<int>(w / p.n_head_kv), g = static_cast<int>(w % p.n_head_kv);
            const int q0 = tile * tq;
            int lo, hi;
            tile_span(p, q0, std::min(tq, p.n_q - q0), &lo, &hi);
            run_task(kn, p, q0, std::min(tq, p.n_q - q0), g, ts, std::max(hi - lo, 1));
        }
    });
}

// One (query, kv-head group), step by step as the header describes: the reference.
static void attention_task_llama_reference(const AttentionParams& p, int t, int g, float* scratch) {
    const int group = p.n_head / p.n_head_kv;
    const int hd = p.head_dim;
    const int kv_dim = p.n_head_kv * hd;
    const int begin = p.attend_begin ? p.attend_begin[t] : 0;
    const int n = std::max(p.attend_end[t] - begin, 0);
    const int32_t* pos = p.kv_positions + begin;
    float* e = scratch;                     // (n) scores, then probabilities
    float* lanes = scratch + n;             // (8, hd)
    for (int h = 0; h < group; ++h) {
        const float* q = p.q + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
        float* out = p.out + (static_cast<int64_t>(t) * p.n_head + g * group + h) * hd;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
            const uint16_t* k = p.k_cache + static_cast<int64_t>(pos[j]) * kv_dim + g * hd;
            float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int d = 0; d < hd; ++d) lane[d % 8] += fp16_round(q[d]) * fp16_to_fp32(k[d]);
            e[j] = hsum8(lane) * p.scale;
            mx = std::max(mx, e[j]);
        }
        // sum over groups of 8 positions, each group's lanes summed by hsum8, groups added in double
        double sum = 0.0;
        for (int j = 0; j < n;) {
            float grp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            const int32_t group_of = pos[j] / 8;
            for (; j < n && pos[j] / 8 == group_of; ++j) grp[pos[j] % 8] = expf_ggml(e[j] - mx);
            sum += hsum8(grp);
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int j = 0; j < n; ++j) e[j] = fp16_round(expf_ggml(e[j] - mx) * inv);
        std::fill(lanes, lanes + 8 * hd, 0.0f);
        for (int j = 0; j < n; ++j) {
            const uint16_t* v = p.v_cache + static_cast<int64_t>(pos[j]) * kv_dim + g * hd;
            float* lane = lanes + (pos[j] % 8) * hd;
            for (int d = 0; d < hd; ++d) lane[d] += e[j] * fp16_to_fp32(v[d]);
        }
        for (int d = 0; d < hd; ++d) {
            const float a[8] = {lanes[d], lanes[hd + d], lanes[2 * hd + d], lanes[3 * hd + d],
                                lanes[4 * hd + d], lanes[5 * hd + d], lanes[6 * hd + d], lanes[7 * hd + d]};
            out[d] = n > 0 ? hsum8(a) : 0.0f;
        }
    }
}

void attention_llama_cpp_reference(const AttentionParams& p, float* scratch) {
    if (p.n_q == 1) {
        for (int h = 0; h < p.n_head; ++h) single_query_head(kLlamaAttentionScalar, p, h, scratch);
        return;
    }
    for (int t = 0; t < p.n_q; ++t)
        for (int g = 0; g < p.n_head_kv; ++g) attention_task_llama_reference(p, t, g, scratch);
}

}  // namespace lazyllm_edge
