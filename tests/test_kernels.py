"""CPU kernel tests: dequantization (scalar vs gguf's numpy reference, AVX2 vs scalar) and matmul
(optimized vs scalar reference vs a float64 numpy product), for the 11 supported ggml types."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

from lazyllm_edge import _core  # noqa: E402

K = _core.kernels
HAS_AVX2 = K.detected_isa() != "scalar"
needs_avx2 = pytest.mark.skipif(not HAS_AVX2, reason="CPU lacks AVX2/FMA/F16C: only the scalar kernels exist here")

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
K_QUANTS = {"Q4_K", "Q5_K", "Q6_K"}
FLOAT_TYPES = {"F32", "F16", "BF16"}
# Byte offsets of the fp16 scale fields inside one block (ggml-common.h layouts).
SCALE_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# AVX2 vs scalar dequantization, as a fraction of the largest |value| in the row:
# 0 (bit-identical) where each element is a single product; types with a "+ m"/"- m" term may be
# contracted into one FMA by the compiler, which changes the result by at most one rounding of q*d.
AVX2_DEQ_BOUND = {t: 0.0 for t in TYPES}
AVX2_DEQ_BOUND.update({"Q4_1": 2.0**-22, "Q5_1": 2.0**-22, "Q4_K": 2.0**-22, "Q5_K": 2.0**-22})


def qtype(name):
    return Q[name]


def block_geometry(name):
    return gguf.GGML_QUANT_SIZES[qtype(name)]


def make_weights(name, n_rows, n_in, rng, source="quantized"):
    """Returns (bytes, row_bytes) for n_rows rows of n_in elements of type `name`."""
    bs, ts = block_geometry(name)
    assert n_in % bs == 0
    row_bytes = n_in // bs * ts
    if source == "quantized" and name not in K_QUANTS:
        a = (rng.standard_normal((n_rows, n_in)) * 0.5).astype(np.float32)
        q = np.ascontiguousarray(gguf_quantize(a, qtype(name)))
        return q.tobytes(), row_bytes
    # Random block bytes with sensible fp16 scales (gguf cannot quantize K-quants).
    raw = rng.integers(0, 256, size=(n_rows * n_in // bs, ts), dtype=np.uint8)
    for off in SCALE_FIELDS[name]:
        scale = rng.uniform(1e-3, 1e-2, size=raw.shape[0]).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(-1, 2)
    return raw.tobytes(), row_bytes


def reference_dequant(name, data, n_rows, row_bytes):
    arr = np.frombuffer(data, dtype=np.uint8).reshape(n_rows, row_bytes)
    if name == "F32":
        return arr.view(np.float32).copy()
    if name == "F16":
        return arr.view(np.float16).astype(np.float32)
    return gguf_dequantize(arr, qtype(name)).astype(np.float32)


SOURCES = [(t, "quantized") for t in TYPES] + [(t, "random") for t in TYPES if t not in FLOAT_TYPES]


@pytest.mark.parametrize("name,source", SOURCES)
def test_dequantize_scalar_matches_gguf(name, source):
    rng = np.random.default_rng(1234 + TYPES.index(name))
    n_rows, n_in = 5, 512
    data, row_bytes = make_weights(name, n_rows, n_in, rng, source)
    ref = reference_dequant(name, data, n_rows, row_bytes).ravel()
    got = K.dequantize(int(qtype(name)), data, n_rows * n_in, isa="scalar")
    assert got.dtype == np.float32 and got.shape == (n_rows * n_in,)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * float(np.abs(ref).max() + 1e-30))


@needs_avx2
@pytest.mark.parametrize("name,source", SOURCES)
def test_dequantize_avx2_matches_scalar(name, source):
    rng = np.random.default_rng(99 + TYPES.index(name))
    n_rows, n_in = 7, 768
    data, _ = make_weights(name, n_rows, n_in, rng, source)
    s = K.dequantize(int(qtype(name)), data, n_rows * n_in, isa="scalar").reshape(n_rows, n_in)
    v = K.dequantize(int(qtype(name)), data, n_rows * n_in, isa="avx2").reshape(n_rows, n_in)
    err = np.abs(v.astype(np.float64) - s)
    bound = AVX2_DEQ_BOUND[name] * np.abs(s).max(axis=1, keepdims=True)
    assert np.all(err <= bound), f"{name}: max err {err.max()} (bound factor {AVX2_DEQ_BOUND[name]})"
    if AVX2_DEQ_BOUND[name] == 0.0:
        assert np.array_equal(v.view(np.uint32), s.view(np.uint32))


@pytest.mark.parametrize("name", ["F16", "F32", "BF16"])
def test_dequantize_odd_lengths(name):
    # Plain float types have block size 1: any length, including SIMD tails.
    rng = np.random.default_rng(7)
    for n in (1, 7, 9, 33):
        data, _ = make_weights(name, 1, n, rng)
        ref = reference_dequant(name, data, 1, len(data)).ravel()
        for isa in ("scalar", "best"):
            np.testing.assert_array_equal(K.dequantize(int(qtype(name)), data, n, isa=isa), ref)


def test_dequantize_rejects_bad_input():
    with pytest.raises(ValueError):
        K.dequantize(int(Q.Q4_0), b"\0" * 18, 31)  # not a whole block
    with pytest.raises(ValueError):
        K.dequantize(int(Q.Q4_0), b"\0" * 17, 32)  # too few bytes
    with pytest.raises(ValueError):
        K.dequantize(int(Q.Q2_K), b"\0" * 84, 256)  # known but unsupported
    with pytest.raises(ValueError):
        K.dequantize(4, b"\0" * 18, 32)  # removed id


def shapes_for(name):
    if name in K_QUANTS:
        return [(256, 33), (1536, 20)]
    return [(256, 33), (576, 40), (1536, 17)]


MATMUL_CASES = [(t, n_in, n_out) for t in TYPES for (n_in, n_out) in shapes_for(t)]


def check_against_truth(y, x, w, label, rel=3e-5):
    """|y - y_true| <= rel * (|x| @ |W|^T) elementwise, y_true computed in float64."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    truth = x64 @ w64.T
    scale = np.abs(x64) @ np.abs(w64).T
    err = np.abs(y.astype(np.float64) - truth)
    worst = float((err / (scale + 1e-30)).max())
    assert np.all(err <= rel * scale + 1e-30), f"{label}: worst relative-to-|x||w| error {worst:.3g} > {rel}"


# ---- int8 decode path (n_tok <= 4, AVX2, Q4_0/Q4_1/Q8_0): x quantized to int8 blocks of 32 ----
INT8_TYPES = ("Q4_0", "Q4_1", "Q8_0")


def int8_bound(x, w):
    """Elementwise bound on |y_int8 - x @ W^T| from activation rounding. Per 32-block with a = max|x|:
    q = round(x * 127 / a) is off by <= 1/2, i.e. |x - (a/127) q| <= min(|x|, a/254) (q = 0 when |x| <= a/254);
    storing d = a/127 in fp16 adds |q| * |d - fp16(d)| <= 127 * (a/127) * 2^-11 (2^-10 here, for margin).
    The integer block dots are exact, so the rest is fp32 accumulation (covered by the callers' 3e-5 term)."""
    x64 = x.astype(np.float64)
    blocks = np.abs(x64).reshape(x.shape[0], -1, 32)
    a = blocks.max(axis=2, keepdims=True)
    e = (np.minimum(blocks, a / 254.0) + a * 2.0**-10).reshape(x.shape)
    return e @ np.abs(w.astype(np.float64)).T


def check_int8_against_truth(y, x, w, label):
    """Rigorous bound above plus fp32 slack, and the looser headline figure: <= 1e-2 of |x| @ |W|^T."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    truth = x64 @ w64.T
    scale = np.abs(x64) @ np.abs(w64).T
    err = np.abs(y.astype(np.float64) - truth)
    assert np.all(err <= int8_bound(x, w) + 3e-5 * scale + 1e-30), f"{label}: int8 bound exceeded"
    worst = float((err / (scale + 1e-30)).max())
    assert worst <= 1e-2, f"{label}: worst relative-to-|x||w| error {worst:.3g} > 1e-2"


def test_quantize_q8_1():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(32 * 12).astype(np.float32)
    x[32:64] = 0.0  # an all-zero block: d = s = 0
    x[64:96] *= 1e-3
    x[100] = 50.0  # an outlier block
    x[128:160] = rng.integers(-126, 126, 32) + 0.5  # amax 127 -> id = 1: exact halfway cases
    x[128] = 127.0
    q, d, s = K.quantize_q8_1(x, isa="scalar")
    assert np.all(np.abs(q) <= 127) and np.array_equal(q, np.round(q))
    a = np.abs(x.astype(np.float64)).reshape(-1, 32).max(axis=1)
    assert np.array_equal(d, (a / 127).astype(np.float32).astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(s, d * q.reshape(-1, 32).sum(axis=1, dtype=np.float64).astype(np.float32))
    assert d[1] == 0 and s[1] == 0 and np.all(q[32:64] == 0)
    np.testing.assert_array_equal(q[128:160], np.round(x[128:160]))  # round half to even
    xr = (d.astype(np.float64)[:, None] * q.reshape(-1, 32)).ravel()
    assert np.all(np.abs(xr - x) <= np.repeat(a / 254 + a * 2.0**-10, 32))
    if HAS_AVX2:
        for u, v in zip((q, d, s), K.quantize_q8_1(x, isa="avx2")):
            assert np.array_equal(u.view(np.uint32), v.view(np.uint32)), "AVX2 quantization differs from scalar"


@pytest.mark.parametrize("name", INT8_TYPES)
@pytest.mark.parametrize("n_in,n_out", [(576, 1536), (1536, 576), (576, 200), (64, 7)])
def test_matmul_int8(name, n_in, n_out):
    rng = np.random.default_rng(n_in + n_out + INT8_TYPES.index(name))
    data, _ = make_weights(name, n_out, n_in, rng)
    tid = int(qtype(name))
    w = K.dequantize(tid, data, n_out * n_in, isa="scalar").reshape(n_out, n_in)
    for n_tok in (1, 2, 3, 4, 9):
        x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        x[0, :32] *= 1e-4  # a block of tiny values next to normal ones
        ref8 = K.matmul_int8_reference(tid, data, n_in, n_out, x)
        check_int8_against_truth(ref8, x, w, f"{name} int8 reference n_tok={n_tok}")
        ref = K.matmul_reference(tid, data, n_in, n_out, x)
        scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
        assert np.all(np.abs(ref8.astype(np.float64) - ref) <= int8_bound(x, w) + 6e-5 * scale + 1e-30)
        if not HAS_AVX2 or n_tok > 4:
            continue
        for threads in (1, 2, 3):
            y = K.matmul(tid, data, n_in, n_out, x, isa="avx2", n_threads=threads)
            # Same integers and products as the reference; only the fp32 summation order differs.
            err = np.abs(y.astype(np.float64) - ref8)
            assert np.all(err <= 2e-6 * scale + 1e-30), f"{name} AVX2 vs int8 reference: {float((err / scale).max()):.3g}"


@pytest.mark.parametrize("name,n_in,n_out", MATMUL_CASES)
def test_matmul(name, n_in, n_out):
    rng = np.random.default_rng(n_in * 7 + n_out + TYPES.index(name))
    data, row_bytes = make_weights(name, n_out, n_in, rng)
    w = K.dequantize(int(qtype(name)), data, n_out * n_in, isa="scalar").reshape(n_out, n_in)
    tid = int(qtype(name))
    isas = ["scalar", "avx2"] if HAS_AVX2 else ["scalar"]
    for n_tok in (1, 3, 17, 130):
        x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        ref = K.matmul_reference(tid, data, n_in, n_out, x)
        assert ref.shape == (n_tok, n_out) and ref.dtype == np.float32
        check_against_truth(ref, x, w, f"{name} reference n_tok={n_tok}")
        for isa in isas:
            int8 = K.matmul_uses_int8(tid, n_tok, isa=isa)
            assert int8 == (isa == "avx2" and name in INT8_TYPES and n_tok <= 4 and K.int8_decode_enabled())
            for threads in (1, 2, 3):
                y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=threads)
                assert y.shape == (n_tok, n_out)
                scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
                if int8:  # int8 activations: the activation-rounding bound instead of fp32 rounding
                    check_int8_against_truth(y, x, w, f"{name} {isa} threads={threads} n_tok={n_tok}")
                    assert np.all(np.abs(y.astype(np.float64) - ref) <= int8_bound(x, w) + 6e-5 * scale + 1e-30)
                    K.set_int8_decode(False)  # the fp32 decode path it replaces, still used when switched off
                    try:
                        y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=threads)
                    finally:
                        K.set_int8_decode(True)
                check_against_truth(y, x, w, f"{name} {isa} threads={threads} n_tok={n_tok}")
                # Optimized vs reference: both within the bound above, so within twice of it of each other.
                assert np.all(np.abs(y.astype(np.float64) - ref) <= 6e-5 * scale + 1e-30)


def test_matmul_avx2_skip_reason():
    if not HAS_AVX2:
        pytest.skip("CPU lacks AVX2/FMA/F16C: AVX2 kernel comparisons are skipped")
    assert K.detected_isa() == "avx2"


def test_matmul_rejects_bad_input():
    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError):
        K.matmul(int(Q.Q8_0), b"\0" * 34, 64, 1, x)  # too few weight bytes
    with pytest.raises(ValueError):
        K.matmul(int(Q.Q8_0), b"\0" * 68, 32, 2, x)  # x has the wrong width
