"""Per-row operations (cpp/cpu/ops.cpp, ops_avx2.cpp) and expf_ggml (kernels.cpp, simd_avx2.h): llama.cpp's CPU
arithmetic, checked against NumPy transcriptions of it (bit for bit where the transcription is exact) and the AVX2
code against the scalar code (bit for bit) on seeded random data, extremes included."""
import numpy as np
import pytest

from conftest import load_testing_module

K = load_testing_module().kernels
HAS_AVX2 = K.detected_isa() != "scalar"
F32 = np.float32


def _fma(a, b, c):
    # float32 a*b + c with one rounding: the float64 product of two float32 values is exact, and the float64 sum
    # rounds at most once more far below float32's precision for the magnitudes used here
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(F32)


def expf_ggml_numpy(x):
    """ggml_v_expf (AVX2/FMA) step by step, for |n| <= 126 (the polynomial path)."""
    x = np.asarray(x, F32)
    h = lambda s: F32(float.fromhex(s))
    shift = h("0x1.8p23")
    z = _fma(x, h("0x1.715476p+0"), shift)
    n = (z - shift).astype(F32)
    b = _fma(-n, h("0x1.7f7d1cp-20"), _fma(-n, h("0x1.62e4p-1"), x))
    k = ((z.view(np.uint32) << np.uint32(23)) + F32(1).view(np.uint32)).astype(np.uint32).view(F32)
    u = (b * b).astype(F32)
    j = _fma(_fma(_fma(h("0x1.0e4020p-7"), b, h("0x1.573e2ep-5")), u, _fma(h("0x1.555e66p-3"), b, h("0x1.fffdb6p-2"))),
             u, (h("0x1.ffffecp-1") * b).astype(F32))
    return _fma(j, k, k)


def test_expf_ggml_is_llama_cpp_expf():
    x = np.random.default_rng(0).uniform(-87, 87, 20000).astype(F32)
    got = K.expf_ggml(x)
    assert np.array_equal(got, expf_ggml_numpy(x))
    # an exp: within 2 ulp of the float64 value
    want = np.exp(x.astype(np.float64))
    assert (np.abs(got - want) <= 2 * np.spacing(want.astype(F32))).all()
    # outside the polynomial range: overflow to inf, underflow to 0, no NaN
    big = K.expf_ggml(np.array([-200, -104.5, -90, 89.0, 100, 300, -np.inf, np.inf, 88.7], F32))
    assert big[0] == 0 and big[1] == 0 and 0 < big[2] < 1e-38
    assert np.isinf(big[3:6]).all() and big[6] == 0 and np.isinf(big[7])
    assert np.isfinite(big[8]) and abs(big[8] / np.exp(np.float64(F32(88.7))) - 1) < 1e-6


def _gate_up(seed, n=4099, scale=4.0):
    rng = np.random.default_rng(seed)
    gate = (rng.standard_normal(n) * scale).astype(F32)
    gate[:8] = [0.0, -0.0, 9.99, 10.0, -10.0, -9.99, 95.0, -120.0]  # GELU table limits, expf overflow paths
    return gate, rng.standard_normal(n).astype(F32)


@pytest.mark.parametrize("seed", [1, 2])
def test_swiglu_is_llama_cpp_silu(seed):
    gate, up = _gate_up(seed)
    got = K.activation("swiglu", gate, up, isa="scalar")
    ok = np.abs(gate) < 80  # the transcription covers the polynomial path of expf
    e = expf_ggml_numpy(-gate[ok])
    want = ((gate[ok] / (F32(1) + e).astype(F32)).astype(F32) * up[ok]).astype(F32)
    assert np.array_equal(got[ok], want)
    silu = gate.astype(np.float64) / (1 + np.exp(-gate.astype(np.float64))) * up
    np.testing.assert_allclose(got, silu, rtol=1e-5, atol=1e-30)
    if HAS_AVX2:
        assert np.array_equal(K.activation("swiglu", gate, up, isa="avx2"), got)


@pytest.mark.parametrize("seed", [3, 4])
def test_geglu_is_llama_cpp_gelu_table(seed):
    gate, up = _gate_up(seed)
    got = K.activation("geglu", gate, up, isa="scalar")
    # limits as ggml: 0 at or below -10, the identity at or above 10
    assert got[4] == 0 and got[3] == F32(gate[3] * up[3]) and got[6] == F32(gate[6] * up[6]) and got[7] == 0
    # inside: gelu_tanh of the fp16-rounded input, rounded to fp16, times up (one fp16 ulp of slack: NumPy's tanh
    # is not libm's)
    inside = np.abs(gate) < 10
    x16 = gate[inside].astype(np.float16).astype(np.float64)
    gelu = 0.5 * x16 * (1 + np.tanh(0.7978845608028654 * x16 * (1 + 0.044715 * x16 * x16)))
    g16 = gelu.astype(np.float16)
    u = up[inside].astype(np.float64)
    err = np.abs(got[inside].astype(np.float64) - g16.astype(np.float64) * u)
    ulp = np.spacing(np.abs(g16)).astype(np.float64)
    # (plus 3e-7 absolute: below x ~ -4, 1 + tanh cancels in fp32, in ggml's table as here)
    assert (err <= (1.01 * ulp + 1e-6 * np.abs(g16.astype(np.float64)) + 3e-7) * np.abs(u) + 1e-30).all()
    if HAS_AVX2:
        assert np.array_equal(K.activation("geglu", gate, up, isa="avx2"), got)


@pytest.mark.parametrize("seed", [3, 4])
def test_gelu_is_llama_cpp_gelu_table(seed):
    """ops gelu (ggml_gelu: gemma4's per-layer embedding gate) then mul_in_place: gelu alone is the table's value
    (the limits outside (-10, 10)), and times `up` it is geglu to the bit."""
    gate, up = _gate_up(seed)
    alone = K.activation("gelu", gate, np.ones_like(up), isa="scalar")
    assert alone[4] == 0 and alone[3] == gate[3] and alone[6] == gate[6] and alone[7] == 0
    inside = np.abs(gate) < 10
    x16 = gate[inside].astype(np.float16).astype(np.float64)
    g16 = (0.5 * x16 * (1 + np.tanh(0.7978845608028654 * x16 * (1 + 0.044715 * x16 * x16)))).astype(np.float16)
    assert (alone[inside] == alone[inside].astype(np.float16)).all()  # table values are fp16
    err = np.abs(alone[inside].astype(np.float64) - g16.astype(np.float64))
    assert (err <= 1.01 * np.spacing(np.abs(g16)).astype(np.float64) + 3e-7).all()
    assert np.array_equal(K.activation("gelu", gate, up, isa="scalar"), K.activation("geglu", gate, up, isa="scalar"))


def test_moe_route_is_softmax_top_k_renormalized():
    """gemma4's routing: the k largest softmax probabilities (ties to the lower expert), in decreasing order,
    renormalized over the k, as llama.cpp's build_moe_ffn."""
    rng = np.random.default_rng(12)
    for n, k in [(4, 2), (8, 3), (128, 8), (5, 5)]:
        logits = (rng.standard_normal(n) * 3).astype(F32)
        selected, weights = K.moe_route(logits, k)
        p = np.exp(logits.astype(np.float64) - logits.max())
        p /= p.sum()
        want = np.argsort(-p, kind="stable")[:k]
        assert list(selected) == list(want)
        np.testing.assert_allclose(weights, p[want] / p[want].sum(), rtol=1e-6)
    # ties go to the lower index; equal logits, equal weights
    selected, weights = K.moe_route(np.array([0.5, 2.0, 0.5, 2.0, 0.5], dtype=F32), 3)
    assert list(selected) == [1, 3, 0]
    assert weights[0] == weights[1] and weights[0] > weights[2]
    with pytest.raises(ValueError, match="k must be"):
        K.moe_route(np.zeros(4, dtype=F32), 5)


@pytest.mark.parametrize("neox", [True, False])
def test_rope_rotation(neox):
    rng = np.random.default_rng(5)
    n_heads, head_dim, rope_dim = 3, 64, 48
    pos = np.array([0, 1, 7, 300, 4095], dtype=np.int32)
    x = rng.standard_normal((len(pos), n_heads * head_dim)).astype(F32)
    got = K.rope(x, pos, n_heads, rope_dim, 10000.0, neox=neox, isa="scalar")
    # float64 rotation by pos * base^(-2i/rope_dim); dims past rope_dim unchanged
    want = x.astype(np.float64).reshape(len(pos), n_heads, head_dim).copy()
    theta = pos[:, None] * 10000.0 ** (-2 * np.arange(rope_dim // 2) / rope_dim)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    a = np.arange(rope_dim // 2) if neox else 2 * np.arange(rope_dim // 2)
    b = a + rope_dim // 2 if neox else a + 1
    x0, x1 = want[:, :, a].copy(), want[:, :, b].copy()
    want[:, :, a], want[:, :, b] = x0 * c - x1 * s, x0 * s + x1 * c
    # theta is built in fp32 steps as ggml does: at position 4095 its relative error is ~1e-6
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=5e-3)
    np.testing.assert_array_equal(got.reshape(want.shape)[:, :, rope_dim:], x.reshape(want.shape)[:, :, rope_dim:])
    if HAS_AVX2:
        assert np.array_equal(K.rope(x, pos, n_heads, rope_dim, 10000.0, neox=neox, isa="avx2"), got)


def test_rms_norm_sums_fp32_squares_in_double():
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(2048) * 30).astype(F32)
    w = rng.standard_normal(2048).astype(F32)
    got = K.rms_norm(x, w, 1e-6)
    mean = F32(np.cumsum((x * x).astype(F32).astype(np.float64))[-1] / len(x))
    scale = F32(1) / np.sqrt(mean + F32(1e-6), dtype=F32)
    assert np.array_equal(got, ((x * scale).astype(F32) * w).astype(F32))


def test_bad_input():
    with pytest.raises(ValueError):
        K.activation("relu", np.zeros(4, F32), np.zeros(4, F32))
    with pytest.raises(ValueError):
        K.activation("swiglu", np.zeros(4, F32), np.zeros(5, F32))
    with pytest.raises(ValueError):
        K.rope(np.zeros((2, 8), F32), np.zeros(3, np.int32), 1, 8, 10000.0)
