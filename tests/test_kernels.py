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
            for threads in (1, 2, 3):
                y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=threads)
                assert y.shape == (n_tok, n_out)
                check_against_truth(y, x, w, f"{name} {isa} threads={threads} n_tok={n_tok}")
                # Optimized vs reference: both within the bound above, so within twice of it of each other.
                scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
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
