"""Attention kernels (cpp/cpu/attention*.cpp): the tiled online-softmax kernels (AVX2 and scalar, split-K for
decode) against the scalar exact-softmax reference on seeded random data, over GQA ratios, head sizes, dense
and sparse active sets, sliding windows and thread counts; the reference against float64 NumPy."""
import numpy as np
import pytest

from conftest import load_testing_module

K = load_testing_module().kernels
HAS_AVX2 = K.detected_isa() != "scalar"
ISAS = ["avx2", "scalar"] if HAS_AVX2 else ["scalar"]


def make_case(seed, n_q, n_ctx, n_head, n_head_kv, hd, sparse=False, window=0, empty_query=False):
    """Queries at the last n_q active positions of a context of n_ctx, each seeing the active positions
    <= its own (and inside `window` when given), like cpp/cpu/cpu_forward.cpp builds them."""
    rng = np.random.default_rng(seed)
    kv_dim = n_head_kv * hd
    k = rng.standard_normal((n_ctx, kv_dim)).astype(np.float16)
    v = rng.standard_normal((n_ctx, kv_dim)).astype(np.float16)
    if sparse:  # a LazyLLM-like active set: a random ~40% of the context, always with its last n_q positions
        keep = rng.random(n_ctx) < 0.4
        keep[n_ctx - n_q:] = True
        positions = np.flatnonzero(keep).astype(np.int32)
    else:
        positions = np.arange(n_ctx, dtype=np.int32)
    query_pos = positions[len(positions) - n_q:]
    end = (np.searchsorted(positions, query_pos, side="right")).astype(np.int32)
    begin = np.zeros(n_q, dtype=np.int32)
    if window:
        begin = np.searchsorted(positions, query_pos - window + 1, side="left").astype(np.int32)
    if empty_query:
        begin[0] = end[0]
    q = (rng.standard_normal((n_q, n_head * hd)) * 1.5).astype(np.float32)
    return dict(q=q, k_cache=k.view(np.uint16), v_cache=v.view(np.uint16), kv_positions=positions,
                attend_begin=begin, attend_end=end, n_head=n_head, n_head_kv=n_head_kv, scale=float(1 / np.sqrt(hd)))


def numpy_attention(c):
    """float64 exact attention from the same fp16 K/V."""
    n_head, n_head_kv = c["n_head"], c["n_head_kv"]
    q = c["q"].astype(np.float64)
    n_q = q.shape[0]
    hd = q.shape[1] // n_head
    k = c["k_cache"].view(np.float16).astype(np.float64)[c["kv_positions"]]
    v = c["v_cache"].view(np.float16).astype(np.float64)[c["kv_positions"]]
    out = np.zeros((n_q, n_head * hd))
    for t in range(n_q):
        b, e = c["attend_begin"][t], c["attend_end"][t]
        if e <= b:
            continue
        for h in range(n_head):
            g = h // (n_head // n_head_kv)
            s = k[b:e, g * hd:(g + 1) * hd] @ q[t, h * hd:(h + 1) * hd] * c["scale"]
            w = np.exp(s - s.max())
            out[t, h * hd:(h + 1) * hd] = (w / w.sum()) @ v[b:e, g * hd:(g + 1) * hd]
    return out


def check_against_reference(c, isas=ISAS, threads=(1, 2, 3)):
    ref = K.attention(**c, reference=True)
    bound = 2e-5 * max(np.abs(ref).max(), 1e-3)  # observed: ~2e-6 relative
    for isa in isas:
        first = None
        for n in threads:
            got = K.attention(**c, isa=isa, n_threads=n)
            err = np.abs(got - ref).max()
            assert err <= bound, f"{isa} with {n} threads: max abs error {err:.3g} > {bound:.3g}"
            # tiling and key splitting depend on the inputs only: the same bits for every thread count
            if first is None:
                first = got
            else:
                assert np.array_equal(got, first), f"{isa}: {n} threads differ from {threads[0]}"
        # fp32 numerics change only the matmuls: the same online softmax as fast
        fp32 = K.attention(**c, isa=isa, n_threads=threads[0], numerics="fp32")
        assert np.array_equal(fp32, first), f"{isa}: fp32 numerics changed the attention"
    return ref


GQA = [(4, 4), (6, 3), (9, 3), (8, 2), (4, 1)]  # group sizes 1, 2, 3, 4, 4


@pytest.mark.parametrize("hd", [64, 128, 256])
@pytest.mark.parametrize("heads", GQA, ids=lambda h: f"{h[0]}x{h[1]}")
@pytest.mark.parametrize("n_q,n_ctx", [(1, 1), (1, 7), (1, 2500), (3, 300), (8, 1000), (37, 700)])
def test_dense_causal(hd, heads, n_q, n_ctx):
    check_against_reference(make_case(n_q * 7919 + n_ctx + hd, n_q, n_ctx, heads[0], heads[1], hd))


@pytest.mark.parametrize("hd", [64, 128, 256])
@pytest.mark.parametrize("heads", [(9, 3), (4, 1)], ids=lambda h: f"{h[0]}x{h[1]}")
@pytest.mark.parametrize("n_q,n_ctx", [(1, 3000), (2, 1500), (29, 900)])
def test_sparse_active_set(hd, heads, n_q, n_ctx):
    check_against_reference(make_case(n_q + n_ctx + hd, n_q, n_ctx, heads[0], heads[1], hd, sparse=True))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_q,n_ctx,window", [(1, 2000, 512), (5, 1200, 100), (40, 600, 64), (1, 50, 16)])
def test_sliding_window(sparse, n_q, n_ctx, window):
    c = make_case(n_q + window, n_q, n_ctx, 4, 1, 256, sparse=sparse, window=window)
    assert (c["attend_begin"] > 0).any()
    check_against_reference(c)


@pytest.mark.parametrize("n_q", [1, 6])
def test_query_seeing_no_key_gets_zeros(n_q):
    c = make_case(3, n_q, 400, 9, 3, 64, window=50, empty_query=True)
    ref = check_against_reference(c)
    assert not ref[0].any()


@pytest.mark.parametrize("hd", [40, 20])  # hd % 16 == 8 (the 8-wide tail); hd % 8 != 0 (scalar tiles)
def test_odd_head_dims(hd):
    check_against_reference(make_case(hd, 1, 1300, 6, 2, hd))
    check_against_reference(make_case(hd + 1, 11, 500, 6, 2, hd, sparse=True, window=200))


@pytest.mark.parametrize("heads", [(9, 3), (6, 3), (4, 1)], ids=lambda h: f"{h[0]}x{h[1]}")
@pytest.mark.parametrize("n_ctx", [9, 37, 250])
def test_decode_row_equals_batched_row(heads, n_ctx):
    """Each query alone, over only the keys it sees (decode: few rows, a context ending at the query) gives the
    same bits as inside a batch (prefill: many rows, blocks holding later keys too), so KV-cached decoding
    reproduces a recompute exactly (one thread: one key chunk)."""
    c = make_case(n_ctx + heads[0], 9, n_ctx, heads[0], heads[1], 64)
    for isa in ISAS:
        batched = K.attention(**c, isa=isa, n_threads=1)
        for t in range(9):
            end = int(c["attend_end"][t])
            alone = {**c, "q": c["q"][t:t + 1].copy(), "kv_positions": c["kv_positions"][:end].copy(),
                     "attend_begin": c["attend_begin"][t:t + 1].copy(), "attend_end": c["attend_end"][t:t + 1].copy()}
            got = K.attention(**alone, isa=isa, n_threads=1)[0]
            assert np.array_equal(got, batched[t]), f"{isa} query {t}: max diff {np.abs(got - batched[t]).max():.3g}"


@pytest.mark.parametrize("n_q,n_ctx,sparse,window", [(1, 900, False, 0), (13, 400, True, 0), (4, 300, True, 120)])
def test_reference_matches_float64(n_q, n_ctx, sparse, window):
    c = make_case(17, n_q, n_ctx, 9, 3, 64, sparse=sparse, window=window)
    ref = K.attention(**c, reference=True)
    np.testing.assert_allclose(ref, numpy_attention(c), rtol=0, atol=2e-5 * np.abs(ref).max())


def test_rejects_bad_input():
    c = make_case(0, 2, 10, 4, 2, 8)
    with pytest.raises(ValueError):
        K.attention(**{**c, "n_head_kv": 3})
    with pytest.raises(ValueError):
        K.attention(**{**c, "attend_end": np.array([5, 11], dtype=np.int32)})
    with pytest.raises(ValueError):
        K.attention(**{**c, "kv_positions": c["kv_positions"][::-1].copy()})


# ---- the LazyLLM importance a session ranks with (window_importance_fast): the AVX2 kernel, heads split over the
# threads, against the scalar reference and a float64 NumPy computation; equal to them up to float rounding. ----
def numpy_importance(q, q_pos, k, positions, n_head, n_head_kv, scale, max_over_heads):
    hd = q.shape[1] // n_head
    kk = k.view(np.float16).astype(np.float64)[positions]  # (n, kv_dim)
    mass = np.zeros((n_head, len(positions)))
    for w in range(len(q)):
        seen = positions <= q_pos[w]
        for h in range(n_head):
            g = h // (n_head // n_head_kv)
            s = kk[seen, g * hd:(g + 1) * hd] @ q[w, h * hd:(h + 1) * hd].astype(np.float64) * scale
            p = np.exp(s - s.max())
            mass[h, seen] += p / p.sum() / len(q)
    return mass.max(axis=0) if max_over_heads else mass.mean(axis=0)


@pytest.mark.parametrize("hd,n_head,n_head_kv", [(64, 9, 3), (256, 4, 1), (64, 14, 2), (36, 4, 2)])
@pytest.mark.parametrize("n_q,n", [(1, 1), (1, 777), (5, 37), (32, 1500)])
def test_window_importance_kernel(hd, n_head, n_head_kv, n_q, n):
    rng = np.random.default_rng(hd + n_head + n_q + n)
    n_ctx = n + 64
    k = (rng.standard_normal((n_ctx, n_head_kv * hd)) * 2).astype(np.float16).view(np.uint16)
    positions = np.sort(rng.choice(n_ctx, n, replace=False)).astype(np.int32)
    q = (rng.standard_normal((n_q, n_head * hd)) * 0.5).astype(np.float32)
    q_pos = np.sort(rng.choice(np.arange(positions[-1] - 40, positions[-1] + 1), n_q, replace=False)).astype(np.int32)
    q_pos[-1] = positions[-1]  # the last query sees every key (the last token is always computed)
    scale = 1.0 / np.sqrt(hd)
    for max_over_heads in (False, True):
        want = numpy_importance(q, q_pos, k, positions, n_head, n_head_kv, scale, max_over_heads)
        ref = K.window_importance(q, q_pos, k, positions, n_head, n_head_kv, scale, max_over_heads, reference=True)
        np.testing.assert_allclose(ref, want, rtol=1e-4, atol=1e-7)
        for isa in ("scalar", "best"):
            for threads in (1, 3):
                got = K.window_importance(q, q_pos, k, positions, n_head, n_head_kv, scale, max_over_heads, isa=isa,
                                          n_threads=threads)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7, err_msg=f"{isa} threads={threads}")
                if isa == "scalar" or hd % 8:  # the reference itself where the AVX2 kernel does not apply
                    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
