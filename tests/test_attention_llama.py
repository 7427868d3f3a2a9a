"""llama.cpp-numerics attention (cpp/cpu/llama_order/attention_llama*.cpp, attention_llama.h): its AVX2 and scalar
phase kernels (prefill tasks, few-row phases, single-query decode), reached through attention() with llama.cpp
numerics, equal its step-by-step reference bit for bit on seeded random data over GQA ratios, head sizes, dense and
sparse active sets, sliding windows and thread counts; the reference equals a NumPy transcription of llama.cpp's
arithmetic bit for bit, and float64 attention within one fp16 step of the probabilities."""
import numpy as np
import pytest

from conftest import load_testing_module
from test_attention import GQA, ISAS, make_case, numpy_attention

K = load_testing_module().kernels
F32 = np.float32


def check(c, threads=(1, 2, 3)):
    ref = K.attention(**c, reference=True, numerics="llama.cpp")
    for isa in ISAS:
        for n in threads:
            got = K.attention(**c, isa=isa, n_threads=n, numerics="llama.cpp")
            assert np.array_equal(got, ref), f"{isa}, {n} threads: max diff {np.abs(got - ref).max():.3g}"
    return ref


@pytest.mark.parametrize("hd", [64, 256])
@pytest.mark.parametrize("heads", GQA, ids=lambda h: f"{h[0]}x{h[1]}")
@pytest.mark.parametrize("n_q,n_ctx", [(1, 1), (1, 7), (1, 2500), (3, 300), (37, 700)])
def test_dense_causal(hd, heads, n_q, n_ctx):
    check(make_case(n_q * 7919 + n_ctx + hd, n_q, n_ctx, heads[0], heads[1], hd))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_q,n_ctx,window", [(1, 2000, 512), (5, 1200, 100), (40, 600, 64)])
def test_sparse_and_window(sparse, n_q, n_ctx, window):
    check(make_case(n_q + window, n_q, n_ctx, 4, 1, 256, sparse=sparse, window=window))
    check(make_case(n_q + 1, n_q, n_ctx, 9, 3, 64, sparse=sparse))


def test_empty_query_and_odd_head_dim():
    ref = check(make_case(3, 6, 400, 9, 3, 64, window=50, empty_query=True))
    assert not ref[0].any()
    check(make_case(20, 11, 500, 6, 2, 20, sparse=True, window=200))  # hd % 8 != 0: scalar kernels


@pytest.mark.parametrize("n_head,n_head_kv,hd", [(6, 2, 40), (12, 4, 80), (8, 8, 24), (72, 8, 16), (66, 6, 8)])
def test_single_query_head_dim_tails_and_many_heads(n_head, n_head_kv, hd):
    """Decode: head dims that are not a multiple of 32 (a tail summed in double), and more heads than the
    phase path holds (one task per head)."""
    for sparse, n_ctx in [(False, 300), (True, 900)]:
        check(make_case(n_head + hd + n_ctx, 1, n_ctx, n_head, n_head_kv, hd, sparse=sparse))


def _hsum8(a):
    t = (a[..., 4:8] + a[..., 0:4]).astype(F32)
    return ((t[..., 0] + t[..., 2]).astype(F32) + (t[..., 1] + t[..., 3]).astype(F32)).astype(F32)


def _reduce32(acc):
    """ggml_vec_dot_f16's 32 lanes (..., 32) -> (...): ((l + l16) + (l8 + l24)) per l < 8, then
    ((c0 + c4) + (c1 + c5)) + ((c2 + c6) + (c3 + c7)), in float32."""
    c = ((acc[..., 0:8] + acc[..., 16:24]).astype(F32) + (acc[..., 8:16] + acc[..., 24:32]).astype(F32)).astype(F32)
    return (((c[..., 0] + c[..., 4]).astype(F32) + (c[..., 1] + c[..., 5]).astype(F32)).astype(F32)
            + ((c[..., 2] + c[..., 6]).astype(F32) + (c[..., 3] + c[..., 7]).astype(F32)).astype(F32)).astype(F32)


def ggml_attention(c):
    """llama.cpp's CPU attention in NumPy float32, one (query, head) at a time (expf from K.expf_ggml): tinyBLAS
    lane orders for batches, ggml_vec_dot_f16's for a single query."""
    n_head, n_head_kv = c["n_head"], c["n_head_kv"]
    q16 = c["q"].astype(np.float16).astype(F32)
    n_q, hd = q16.shape[0], q16.shape[1] // n_head
    k = c["k_cache"].view(np.float16).astype(F32)
    v = c["v_cache"].view(np.float16).astype(F32)
    out = np.zeros((n_q, n_head * hd), F32)
    for t in range(n_q):
        b, e = c["attend_begin"][t], c["attend_end"][t]
        pos = c["kv_positions"][b:e]
        if e <= b:
            continue
        for h in range(n_head):
            g = h // (n_head // n_head_kv)
            nl = 32 if n_q == 1 else 8
            n_lane_dims = hd - hd % 32 if n_q == 1 else hd
            lanes = np.zeros((len(pos), nl), F32)
            for d in range(n_lane_dims):
                lanes[:, d % nl] = (lanes[:, d % nl] + q16[t, h * hd + d] * k[pos, g * hd + d]).astype(F32)
            if n_q == 1:
                # ggml_vec_dot_f16: the dims past the last multiple of 32 are added to the reduced sum in double
                s = _reduce32(lanes).astype(np.float64)
                for d in range(n_lane_dims, hd):
                    s = s + (q16[t, h * hd + d] * k[pos, g * hd + d]).astype(F32).astype(np.float64)
                s = (s.astype(F32) * F32(c["scale"])).astype(F32)
            else:
                s = (_hsum8(lanes) * F32(c["scale"])).astype(F32)
            ex = K.expf_ggml((s - s.max()).astype(F32))
            total = 0.0
            for grp in np.unique(pos // 8):
                g8 = np.zeros(8, F32)
                g8[pos[pos // 8 == grp] % 8] = ex[pos // 8 == grp]
                total += float(_hsum8(g8))
            p = (ex * F32(1.0 / total)).astype(F32).astype(np.float16).astype(F32)
            vl = np.zeros((nl, hd), F32)
            for j in range(len(pos)):
                vl[pos[j] % nl] = (vl[pos[j] % nl] + p[j] * v[pos[j], g * hd:(g + 1) * hd]).astype(F32)
            out[t, h * hd:(h + 1) * hd] = _reduce32(vl.T) if n_q == 1 else _hsum8(vl.T)
    return out


@pytest.mark.parametrize("n_q,n_ctx,sparse,window,hd", [(1, 70, False, 0, 64), (1, 90, True, 30, 32), (1, 80, True, 0, 40),
                                                        (1, 50, False, 0, 24), (5, 60, True, 0, 16), (3, 90, True, 20, 24)])
def test_reference_is_llama_cpp_arithmetic(n_q, n_ctx, sparse, window, hd):
    c = make_case(23 + n_q, n_q, n_ctx, 6, 2, hd, sparse=sparse, window=window)
    assert np.array_equal(K.attention(**c, reference=True, numerics="llama.cpp"), ggml_attention(c))


@pytest.mark.parametrize("n_q,n_ctx,sparse,window", [(1, 900, False, 0), (13, 400, True, 0), (4, 300, True, 120)])
def test_reference_near_float64(n_q, n_ctx, sparse, window):
    c = make_case(17, n_q, n_ctx, 9, 3, 64, sparse=sparse, window=window)
    ref = K.attention(**c, reference=True, numerics="llama.cpp")
    # float64 attention of the fp16-rounded q; probabilities rounded to fp16 move at most 2^-11 of the mass
    c16 = {**c, "q": c["q"].astype(np.float16).astype(np.float32)}
    v_max = np.abs(c["v_cache"].view(np.float16).astype(np.float64)).max()
    np.testing.assert_allclose(ref, numpy_attention(c16), rtol=0, atol=2.0 ** -11 * v_max)
