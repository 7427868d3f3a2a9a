"""CPU kernel tests: dequantization (scalar vs gguf's numpy reference, AVX2 vs scalar) and matmul
(optimized vs scalar reference vs a float64 numpy product), for the 11 supported ggml types."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

from conftest import load_testing_module  # noqa: E402

K = load_testing_module().kernels
HAS_AVX2 = K.detected_isa() != "scalar"
ISA_LEVELS = ("avx2", "avxvnni", "avx512vnni")  # above scalar, each including avx2 (AVX-512 not always AVX-VNNI)
SUPPORTED_LEVELS = tuple(isa for isa in ISA_LEVELS if isa in K.supported_isas())  # the ones this CPU runs
# the levels above avx2 this CPU runs (their kernels must give the avx2 kernels' bits where the docs say so)
WIDER_ISAS = SUPPORTED_LEVELS[1:]
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


# ---- int8 path (AVX2, quantized weights; fast numerics: decode, llama.cpp numerics: any n_tok): x quantized as
# llama.cpp does, integer block dots ----
# Activation format per weight type (ggml's vec_dot_type): Q8_0/Q8_1 blocks of 32 (fp16 scale), Q8_K blocks
# of 256 (fp32 scale).
INT8_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
INT8_TOKENS = (1, 3, 4, 5, 17, 64)
DECODE_TOKENS = (1, 2, 3, 4)  # where fast numerics take the int8 path


def act_block(name):
    return 256 if name in K_QUANTS else 32


def int8_bound(x, w, name, mins=None):
    """Elementwise bound on |y_int8 - x @ W^T| from activation rounding. Per block with a = max|x|:
    q = round(x * 127 / a) is off by <= 1/2, i.e. |x - (a/127) q| <= min(|x|, a/254) (q = 0 when |x| <= a/254);
    Q8_0/Q8_1 store d = a/127 in fp16, adding |q| * |d - fp16(d)| <= 127 * (a/127) * 2^-11 (2^-10 here, for
    margin); Q8_K keeps d in fp32 (2^-20 covers it). Q4_1/Q5_1 also use Q8_1's fp16 block sum s = d * sum(q):
    |m_w| * 2^-11 * |s| more per block (mins: (n_out, K/32) weight mins). The integer block dots are exact,
    so the rest is fp32 accumulation (covered by the callers' slack term)."""
    bs, fp16 = act_block(name), name not in K_QUANTS
    x64 = x.astype(np.float64)
    blocks = np.abs(x64).reshape(x.shape[0], -1, bs)
    a = blocks.max(axis=2, keepdims=True)
    e = (np.minimum(blocks, a / 254.0) + a * (2.0**-10 if fp16 else 2.0**-20)).reshape(x.shape)
    bound = e @ np.abs(w.astype(np.float64)).T
    if mins is not None:
        s = np.abs(x64).reshape(x.shape[0], -1, 32).sum(axis=2) * (1 + 2.0**-9)  # >= |s|
        bound += 2.0**-11 * s @ np.abs(mins).T
    return bound


def weight_mins(name, data, n_out, n_in):
    """Per-block mins m (fp16 at byte 2) of Q4_1/Q5_1 rows, (n_out, n_in/32); None for other types."""
    if name not in ("Q4_1", "Q5_1"):
        return None
    _, ts = block_geometry(name)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, ts)
    return raw[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(n_out, n_in // 32)


def check_int8_against_truth(y, x, w, name, label, mins=None):
    """Rigorous bound above plus fp32 slack, and the looser headline figure: <= 1e-2 of |x| @ |W|^T."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    truth = x64 @ w64.T
    scale = np.abs(x64) @ np.abs(w64).T
    err = np.abs(y.astype(np.float64) - truth)
    assert np.all(err <= int8_bound(x, w, name, mins) + 3e-5 * scale + 1e-30), f"{label}: int8 bound exceeded"
    worst = float((err / (scale + 1e-30)).max())
    assert worst <= 1e-2, f"{label}: worst relative-to-|x||w| error {worst:.3g} > 1e-2"


def np_quantize_q8_1(x):
    """ggml's AVX2 quantize_row_q8_1 in NumPy float32 arithmetic: (q, d, s) per block of 32."""
    b = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        iscale = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(b * iscale[:, None]).astype(np.int32)  # np.rint: round half to even, like vroundps
    f16 = lambda v: v.astype(np.float16).astype(np.float32)
    return q.ravel(), f16(d), f16(d * q.sum(axis=1).astype(np.float32))


def np_quantize_q8_K(x):
    """ggml's quantize_row_q8_K_ref in NumPy float32 arithmetic: (q, d, bsums) per block of 256."""
    b = x.astype(np.float32).reshape(-1, 256)
    first = np.abs(b).argmax(axis=1)  # first element of largest magnitude
    mx = b[np.arange(len(b)), first]
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = (np.float32(-127) / mx).astype(np.float32)
        q = np.minimum(np.rint(b * iscale[:, None]), 127)
        d = (np.float32(1) / iscale).astype(np.float32)
    zero = mx == 0
    q[zero], d[zero] = 0, 0
    q = q.astype(np.int32)
    return q.ravel(), d, q.reshape(-1, 16).sum(axis=1)


def awkward_activations(rng, n, block):
    """Normal values plus the cases the quantizers must get right: an all-zero block, tiny values, an outlier,
    exact halfway cases (amax 127 gives scale 1), ties for the largest magnitude of either sign."""
    x = rng.standard_normal(n).astype(np.float32)
    x[block:2 * block] = 0.0
    x[2 * block:3 * block] *= 1e-3
    x[3 * block + 5] = 50.0
    h = slice(4 * block, 5 * block)
    x[h] = rng.integers(-126, 126, block) + 0.5
    x[4 * block] = 127.0
    x[5 * block + 3], x[5 * block + 9] = -8.0, 8.0  # the first one (negative) decides Q8_K's sign
    x[6 * block + 1], x[6 * block + 2] = 8.0, -8.0
    return x


def test_quantize_q8_1():
    rng = np.random.default_rng(5)
    x = awkward_activations(rng, 32 * 12, 32)
    q, d, s = K.quantize_q8_1(x, isa="scalar")
    nq, nd, ns = np_quantize_q8_1(x)
    np.testing.assert_array_equal(q, nq)
    np.testing.assert_array_equal(d, nd)
    np.testing.assert_array_equal(s, ns)
    assert d[1] == 0 and s[1] == 0 and np.all(q[32:64] == 0)
    np.testing.assert_array_equal(q[128:160], np.round(x[128:160]))  # round half to even
    a = np.abs(x.astype(np.float64)).reshape(-1, 32).max(axis=1)
    xr = (d.astype(np.float64)[:, None] * q.reshape(-1, 32)).ravel()
    assert np.all(np.abs(xr - x) <= np.repeat(a / 254 + a * 2.0**-10, 32))
    if HAS_AVX2:
        for u, v in zip((q, d, s), K.quantize_q8_1(x, isa="avx2")):
            assert np.array_equal(u.view(np.uint32), v.view(np.uint32)), "AVX2 quantization differs from scalar"


def test_quantize_q8_K():
    rng = np.random.default_rng(6)
    x = awkward_activations(rng, 256 * 8, 256)
    q, d, bsums = K.quantize_q8_K(x, isa="scalar")
    nq, nd, nb = np_quantize_q8_K(x)
    np.testing.assert_array_equal(q, nq)
    np.testing.assert_array_equal(d, nd)
    np.testing.assert_array_equal(bsums, nb)
    assert d[1] == 0 and np.all(q[256:512] == 0) and np.all(bsums[16:32] == 0)
    assert d[5] > 0 and d[6] < 0  # sign of the first largest element (-8 in block 5, +8 in block 6)
    assert np.all(np.abs(q) <= 127)
    a = np.abs(x.astype(np.float64)).reshape(-1, 256).max(axis=1)
    xr = (d.astype(np.float64)[:, None] * q.reshape(-1, 256)).ravel()
    assert np.all(np.abs(xr - x) <= np.repeat(a / 254 * (1 + 1e-6), 256))
    if HAS_AVX2:
        for u, v in zip((q, d, bsums), K.quantize_q8_K(x, isa="avx2")):
            assert np.array_equal(u.view(np.uint32), v.view(np.uint32)), "AVX2 quantization differs from scalar"


INT8_SHAPES = [(576, 40), (1536, 17), (64, 7), (640, 1)]


@pytest.mark.parametrize("name", INT8_TYPES)
@pytest.mark.parametrize("n_in,n_out", INT8_SHAPES)
def test_matmul_int8(name, n_in, n_out):
    """Scalar reference against the float64 product (activation-rounding bound) at any token count; the AVX2
    kernels of the fast order (decode batches) against the scalar reference (same integers, only the fp32 summation
    order differs), for several thread counts and odd row counts; and a token's result does not depend on the batch
    or thread split."""
    if name in K_QUANTS:
        n_in = max(256, n_in // 256 * 256)
    rng = np.random.default_rng(n_in + n_out + INT8_TYPES.index(name))
    data, _ = make_weights(name, n_out, n_in, rng)
    tid = int(qtype(name))
    w = K.dequantize(tid, data, n_out * n_in, isa="scalar").reshape(n_out, n_in)
    mins = weight_mins(name, data, n_out, n_in)
    for n_tok in INT8_TOKENS:
        x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        x[0, :32] *= 1e-4  # a block of tiny values next to normal ones
        ref8 = K.matmul_int8_reference(tid, data, n_in, n_out, x)
        check_int8_against_truth(ref8, x, w, name, f"{name} int8 reference n_tok={n_tok}", mins)
        if not HAS_AVX2 or n_tok not in DECODE_TOKENS:
            continue
        assert K.matmul_uses_int8(tid, n_tok, isa="avx2")
        scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
        single = np.stack([K.matmul(tid, data, n_in, n_out, x[t:t + 1], isa="avx2", n_threads=1)[0] for t in range(n_tok)])
        for threads in (1, 2, 3):
            y = K.matmul(tid, data, n_in, n_out, x, isa="avx2", n_threads=threads)
            err = np.abs(y.astype(np.float64) - ref8)
            assert np.all(err <= 2e-6 * scale + 1e-30), f"{name} AVX2 vs int8 reference: {float((err / scale).max()):.3g}"
            assert np.array_equal(y.view(np.uint32), single.view(np.uint32)), f"{name}: batch/thread split changed bits"
        # the levels above AVX2 (AVX-512: K-quant decode on 512-bit vectors) give the AVX2 kernels' bits
        for isa in WIDER_ISAS:
            y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=2)
            assert np.array_equal(y.view(np.uint32), single.view(np.uint32)), f"{name}: {isa} differs from avx2"


@pytest.mark.skipif(not HAS_AVX2, reason="the llama.cpp order is an AVX2 kernel variant")
@pytest.mark.parametrize("name", INT8_TYPES)
def test_matmul_int8_llama_cpp_order(name):
    """With llama.cpp numerics every batch takes the int8 kernels, summing in ggml's fp32 order (checked bit for bit
    against llama.cpp's logits in test_llama_cpp_numerics.py): same integers as the int8 reference, so the same
    bound; the bits do not depend on the thread split (they do on the token count: ggml's gemm and gemv orders)
    and differ from the fast order's."""
    n_in, n_out = (512, 24) if name in K_QUANTS else (96, 24)
    rng = np.random.default_rng(7 + INT8_TYPES.index(name))
    data, _ = make_weights(name, n_out, n_in, rng)
    tid = int(qtype(name))
    w = K.dequantize(tid, data, n_out * n_in, isa="scalar").reshape(n_out, n_in)
    orders_differ = False
    for n_tok in (1, 5, 9):
        assert K.matmul_uses_int8(tid, n_tok, isa="avx2", numerics="llama.cpp")
        x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        ref8 = K.matmul_int8_reference(tid, data, n_in, n_out, x)
        scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
        first = None
        for threads in (1, 2, 3):
            y = K.matmul(tid, data, n_in, n_out, x, isa="avx2", n_threads=threads, numerics="llama.cpp")
            err = np.abs(y.astype(np.float64) - ref8)
            assert np.all(err <= 2e-6 * scale + 1e-30), f"{name}: {float((err / scale).max()):.3g}"
            if first is None:
                first = y
            assert np.array_equal(y.view(np.uint32), first.view(np.uint32)), f"{name}: thread split changed bits"
        if n_tok == 1:  # a decode token: the fast order's kernels give other bits
            fast = K.matmul(tid, data, n_in, n_out, x, isa="avx2", n_threads=1, numerics="fast")
            orders_differ = not np.array_equal(fast.view(np.uint32), first.view(np.uint32))
    assert orders_differ, f"{name}: llama.cpp numerics computed the fast order's bits"


def ggml_cpu():
    """ctypes handles on the ggml CPU library that ships with llama-cpp-python (the engine of the reference
    outputs), or None when it is not installed."""
    try:
        import llama_cpp
    except Exception:  # noqa: BLE001 - any import failure means: not available
        return None
    import ctypes
    import os

    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    try:
        base = ctypes.CDLL(os.path.join(lib, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        cpu = ctypes.CDLL(os.path.join(lib, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]

    p = ctypes.c_void_p
    for fn, res, args in [("ggml_init", p, [InitParams]), ("ggml_new_tensor_2d", p, [p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
                          ("ggml_mul_mat", p, [p, p, p]), ("ggml_new_graph", p, [p]), ("ggml_build_forward_expand", None, [p, p]),
                          ("ggml_get_data", p, [p]), ("ggml_free", None, [p])]:
        getattr(base, fn).restype, getattr(base, fn).argtypes = res, args
    cpu.ggml_graph_compute_with_ctx.restype, cpu.ggml_graph_compute_with_ctx.argtypes = ctypes.c_int, [p, p, ctypes.c_int]

    def mul_mat(tid, wbytes, n_in, n_out, x):
        ctx = base.ggml_init(InitParams(64 << 20, None, False))
        try:
            wt = base.ggml_new_tensor_2d(ctx, tid, n_in, n_out)
            xt = base.ggml_new_tensor_2d(ctx, 0, n_in, x.shape[0])  # F32
            ctypes.memmove(base.ggml_get_data(wt), wbytes, len(wbytes))
            xc = np.ascontiguousarray(x, dtype=np.float32)
            ctypes.memmove(base.ggml_get_data(xt), xc.ctypes.data, xc.nbytes)
            yt = base.ggml_mul_mat(ctx, wt, xt)
            graph = base.ggml_new_graph(ctx)
            base.ggml_build_forward_expand(graph, yt)
            assert cpu.ggml_graph_compute_with_ctx(ctx, graph, 1) == 0
            y = np.empty((x.shape[0], n_out), dtype=np.float32)
            ctypes.memmove(y.ctypes.data, base.ggml_get_data(yt), y.nbytes)
            return y
        finally:
            base.ggml_free(ctx)

    return mul_mat


@needs_avx2
@pytest.mark.parametrize("name", INT8_TYPES)
def test_matmul_int8_matches_ggml(name):
    """The int8 path, in either order, reproduces ggml-cpu's own mul_mat (llama-cpp-python's library) to fp32
    summation-order noise (seen: <= 2e-7 of |x| @ |W|^T), where the exact fp32 product differs by ~1e-3."""
    mul_mat = ggml_cpu()
    if mul_mat is None:
        pytest.skip("llama-cpp-python (ggml's CPU library) is not installed")
    rng = np.random.default_rng(40 + INT8_TYPES.index(name))
    n_in, n_out = (512, 40) if name in K_QUANTS else (576, 40)
    data, _ = make_weights(name, n_out, n_in, rng)
    tid = int(qtype(name))
    w = K.dequantize(tid, data, n_out * n_in, isa="scalar").reshape(n_out, n_in)
    # ggml's vec_dot (and, for K-quants from 64 tokens, its tiled GEMM); fast numerics multiply in int8 in decode only
    for numerics, n_tok in (("fast", 1), ("fast", 4), ("llama.cpp", 1), ("llama.cpp", 5), ("llama.cpp", 80)):
        assert K.matmul_uses_int8(tid, n_tok, isa="avx2", numerics=numerics)
        x = (rng.standard_normal((n_tok, n_in)) * rng.uniform(0.1, 10, (n_tok, 1))).astype(np.float32)
        x[:, 7] += 3.0
        want = mul_mat(tid, data, n_in, n_out, x).astype(np.float64)
        scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
        for label, y in [(numerics, K.matmul(tid, data, n_in, n_out, x, isa="avx2", n_threads=2, numerics=numerics)),
                         ("reference", K.matmul_int8_reference(tid, data, n_in, n_out, x))]:
            worst = float((np.abs(y - want) / scale).max())
            assert worst <= 1e-6, f"{name} {label} n_tok={n_tok}: {worst:.3g} of |x||w| from ggml"


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
            int8 = K.matmul_uses_int8(tid, n_tok, isa=isa)  # fast numerics
            assert int8 == (isa == "avx2" and name in INT8_TYPES and n_tok <= 4)
            # prefill: the packed int8 GEMM (weights packed as at load; one pass here, 8-bit activations)
            packed = K.matmul_uses_packed(tid, n_tok, isa=isa)
            assert packed == (isa == "avx2" and name in INT8_TYPES and n_tok > 4)
            int8 = int8 or packed
            for threads in (1, 2, 3):
                y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=threads)
                assert y.shape == (n_tok, n_out)
                scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
                if int8:  # int8 activations: the activation-rounding bound instead of fp32 rounding
                    mins = weight_mins(name, data, n_out, n_in)
                    check_int8_against_truth(y, x, w, name, f"{name} {isa} threads={threads} n_tok={n_tok}", mins)
                    # the fp32 path it replaces, which fp32 numerics take
                    assert not K.matmul_uses_int8(tid, n_tok, isa=isa, numerics="fp32")
                    y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=threads, numerics="fp32")
                check_against_truth(y, x, w, f"{name} {isa} threads={threads} n_tok={n_tok}")
                # Optimized vs reference: both within the bound above, so within twice of it of each other.
                assert np.all(np.abs(y.astype(np.float64) - ref) <= 6e-5 * scale + 1e-30)


@pytest.mark.parametrize("names", [("Q4_1", "Q4_1", "Q4_1"), ("Q4_K", "Q5_0", "Q6_K"), ("Q8_0", "F16"), ("Q5_K", "Q4_K")])
@pytest.mark.parametrize("n_tok", [1, 3, 9])
@pytest.mark.parametrize("numerics", ["fast", "fp32", "llama.cpp", "int8"])
def test_matmul_shared_input(names, n_tok, numerics):
    """q/k/v and gate/up go out as one call (x quantized once per format, one dispatch over all rows): the
    outputs equal separate matmul() calls in the same numerics bit for bit, with mixed activation formats and odd
    row counts, and fall back to separate calls when a weight has no int8 path."""
    n_in = 512
    rng = np.random.default_rng(len(names) * 10 + n_tok)
    weights = []
    for i, name in enumerate(names):
        n_out = 37 + 64 * i
        data, _ = make_weights(name, n_out, n_in, rng)
        weights.append((int(qtype(name)), data, n_out))
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    for threads in (1, 2, 3):
        outs = K.matmul_shared_input(weights, n_in, x, n_threads=threads, numerics=numerics)
        assert len(outs) == len(weights)
        for (tid, data, n_out), y in zip(weights, outs):
            expect = K.matmul(tid, data, n_in, n_out, x, isa="best", n_threads=threads, numerics=numerics)
            assert y.shape == (n_tok, n_out)
            assert np.array_equal(y.view(np.uint32), expect.view(np.uint32)), f"{names} {tid}: differs from matmul()"
    with pytest.raises(ValueError):
        K.matmul_shared_input([], n_in, x)
    with pytest.raises(ValueError):
        K.matmul_shared_input(weights[:1], n_in + 32, x)


def test_numerics_choose_the_int8_path():
    """fast and int8: this int8 path in decode (up to 4 tokens; prefill takes the packed GEMM); fp32: never int8;
    llama.cpp: int8 at every token count. Only for quantized weights with an int8 kernel, only with AVX2."""
    q4_1, f16 = int(Q.Q4_1), int(Q.F16)
    for n_tok, fast, llama in ((1, True, True), (4, True, True), (5, False, True), (64, False, True)):
        assert K.matmul_uses_int8(q4_1, n_tok, isa="avx2", numerics="fast") == (HAS_AVX2 and fast)
        assert K.matmul_uses_int8(q4_1, n_tok, isa="avx2", numerics="int8") == (HAS_AVX2 and fast)
        assert K.matmul_uses_int8(q4_1, n_tok, isa="avx2", numerics="llama.cpp") == (HAS_AVX2 and llama)
        assert not K.matmul_uses_int8(q4_1, n_tok, isa="avx2", numerics="fp32")
        for numerics in ("fast", "fp32", "llama.cpp"):
            assert not K.matmul_uses_int8(q4_1, n_tok, isa="scalar", numerics=numerics)
            assert not K.matmul_uses_int8(f16, n_tok, isa="avx2", numerics=numerics)
    assert K.matmul_uses_int8(q4_1, 1, isa="avx2", numerics="default") == HAS_AVX2  # the old name of "fast"
    with pytest.raises(ValueError, match="numerics"):
        K.matmul_uses_int8(q4_1, 1, numerics="int4")


def test_matmul_avx2_skip_reason():
    if not HAS_AVX2:
        pytest.skip("CPU lacks AVX2/FMA/F16C: AVX2 kernel comparisons are skipped")
    assert K.detected_isa() in ISA_LEVELS


def test_matmul_rejects_bad_input():
    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError):
        K.matmul(int(Q.Q8_0), b"\0" * 34, 64, 1, x)  # too few weight bytes
    with pytest.raises(ValueError):
        K.matmul(int(Q.Q8_0), b"\0" * 68, 32, 2, x)  # x has the wrong width


# ---- packed int8 prefill GEMM (fast and int8 numerics, more than 4 tokens): weights repacked at load into groups of 8
# rows, x quantized once per matrix (two passes, what fast numerics uses: 15 bits per block of 32, code and rounding
# residual; one pass, int8 numerics: llama.cpp's own activations, Q8_K for K-quant weights, Q8_1 for the others),
# integer dots, one kernel per ISA level chosen at run time. Every level does the same integer sums and fp32
# operations per (row, parity) lane as the scalar reference: equal bits. ----
PACKED_SHAPES = [(512, 37), (1536, 16), (256, 9), (64, 1)]
PACKED_TOKENS = (5, 8, 13, 130)
PACKED_ORDER = np.array([8 * ((j % 16) // 4) + 4 * (j // 16) + j % 4 for j in range(32)])  # position of code j


def packed_bound(x, w, passes, q8_K=False):
    """Elementwise bound on |y - x @ W^T| from the activation rounding, with a = max|x| and d = a/127 per block of
    32 (per 256 for Q8_K): one pass |x - d q| <= min(|x|, d/2), plus Q8_1's fp16 scale (relative 2^-11, or half
    an fp16 subnormal step) times |q| <= 127; two passes (q_hi + q_lo/128) <= d/256."""
    x64 = np.abs(x.astype(np.float64))
    blocks = x64.reshape(x.shape[0], -1, 256 if q8_K else 32)
    d = blocks.max(axis=2, keepdims=True) / 127.0
    if passes == 2:
        e = np.broadcast_to(d / 256, blocks.shape)
    else:
        e = np.minimum(blocks, d / 2) + (0 if q8_K else 127 * np.maximum(d * 2.0**-11, 2.0**-25))
    return e.reshape(x.shape) @ np.abs(w.astype(np.float64)).T


def packed_shape(name, n_in):
    return max(256, n_in // 256 * 256) if name in K_QUANTS else n_in


@pytest.mark.parametrize("passes,q8_K", [(1, False), (1, True), (2, False)])
def test_quantize_packed(passes, q8_K):
    """The AVX2 quantizer gives the reference's bits (awkward blocks included); the codes are stored in the packed
    order (per block: codes 0-3, 16-19, 4-7, 20-23, ...). One pass: exactly llama.cpp's activations (the codes,
    scales and Q8_1 sums of quantize_q8_1 / quantize_q8_K). Two passes: x rebuilt within d/256. The sums match."""
    rng = np.random.default_rng(passes + 2 * q8_K)
    n = 2048 if q8_K else 256
    x = np.stack([awkward_activations(rng, n, 256 if q8_K else 32), rng.standard_normal(n).astype(np.float32) * 3])
    ref = K.quantize_packed(x, isa="scalar", passes=passes, q8_K=q8_K)
    for isa in SUPPORTED_LEVELS:
        got = K.quantize_packed(x, isa=isa, passes=passes, q8_K=q8_K)
        for a, b, what in zip(ref, got, ("codes", "d", "nsum", "xs")):
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"{isa} {what} differs from the reference"
    q, d, nsum, xs = ref
    n_tok, nb = x.shape[0], x.shape[1] // 32
    q = q.reshape(n_tok, nb, passes, 32)[:, :, :, PACKED_ORDER]
    codes = q[:, :, 0] * 128 + q[:, :, 1] if passes == 2 else q[:, :, 0]
    xs = xs.reshape(n_tok, nb, 2)
    if passes == 1:
        for t in range(n_tok):
            if q8_K:
                lq, ld, _ = K.quantize_q8_K(x[t], isa="scalar")
                np.testing.assert_array_equal(d[t], np.repeat(ld, 8))
                np.testing.assert_array_equal(xs[t, :, 0], d[t] * codes[t].sum(axis=1).astype(np.float32))
            else:
                lq, ld, ls = K.quantize_q8_1(x[t], isa="scalar")
                np.testing.assert_array_equal(d[t], ld)
                np.testing.assert_array_equal(xs[t, :, 0], ls)
            np.testing.assert_array_equal(codes[t].ravel(), lq)
    else:
        assert np.abs(q[:, :, 1]).max() <= 64
        amax = np.abs(x).reshape(n_tok, nb, 32).max(axis=2)
        np.testing.assert_array_equal(d, (amax / np.float32(127) / np.float32(128)).astype(np.float32))
        err = np.abs(codes * d[:, :, None].astype(np.float64) - x.reshape(n_tok, nb, 32))
        assert np.all(err <= amax[:, :, None] / 127.0 / 256 * (1 + 1e-6) + 1e-30)
        np.testing.assert_array_equal(xs[:, :, 0], d * codes.sum(axis=2).astype(np.float32))
    np.testing.assert_array_equal(-nsum.reshape(n_tok, nb, 2), codes.reshape(n_tok, nb, 2, 16).sum(axis=3))
    np.testing.assert_array_equal(xs[:, :, 1], 0)


@pytest.mark.parametrize("name", INT8_TYPES)
@pytest.mark.parametrize("n_in,n_out", PACKED_SHAPES)
@pytest.mark.parametrize("passes", [1, 2])
def test_matmul_packed(name, n_in, n_out, passes):
    """The scalar reference against the float64 product (activation-rounding bound); every ISA level the CPU runs
    (forced in turn), any thread count, against the reference bit for bit; a token's result does not depend on
    the batch it is in."""
    n_in = packed_shape(name, n_in)
    rng = np.random.default_rng(n_in + n_out + 10 * passes + INT8_TYPES.index(name))
    data, _ = make_weights(name, n_out, n_in, rng)
    tid = int(qtype(name))
    w = K.dequantize(tid, data, n_out * n_in, isa="scalar").reshape(n_out, n_in)
    x_all = rng.standard_normal((max(PACKED_TOKENS), n_in)).astype(np.float32)
    x_all[0, :32] *= 1e-4  # a block of tiny values next to normal ones
    x_all[1, 5] = 40.0  # an outlier
    for n_tok in PACKED_TOKENS:
        x = x_all[:n_tok]
        ref = K.matmul_packed_reference(tid, data, n_in, n_out, x, passes=passes)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        err = np.abs(ref - x64 @ w64.T)
        assert np.all(err <= packed_bound(x, w, passes, passes == 1 and name in K_QUANTS)
                      + 3e-6 * (np.abs(x64) @ np.abs(w64).T) + 1e-30), \
            f"{name} packed reference n_tok={n_tok} passes={passes}: bound exceeded"
        if passes == 1:  # llama.cpp's activations: its integer sums, combined in another fp32 order
            i8 = K.matmul_int8_reference(tid, data, n_in, n_out, x)
            assert np.all(np.abs(ref - i8) <= 1e-5 * (np.abs(x64) @ np.abs(w64).T) + 1e-30), \
                f"{name} one pass n_tok={n_tok}: not llama.cpp's int8 product"
        for isa in SUPPORTED_LEVELS:
            assert K.matmul_uses_packed(tid, n_tok, isa=isa)
            for threads in (1, 2, 3):
                y = K.matmul(tid, data, n_in, n_out, x, isa=isa, n_threads=threads, passes=passes)
                assert np.array_equal(y.view(np.uint32), ref.view(np.uint32)), \
                    f"{name} {isa} threads={threads} n_tok={n_tok} passes={passes}: differs from the reference"
    if SUPPORTED_LEVELS:  # batch independence: the first 13 tokens of a 130-token batch
        big = K.matmul(tid, data, n_in, n_out, x_all, passes=passes)
        small = K.matmul(tid, data, n_in, n_out, x_all[:13], passes=passes)
        assert np.array_equal(big[:13].view(np.uint32), small.view(np.uint32))


def test_numerics_choose_the_packed_path():
    """fast and int8 numerics with more than 4 tokens, packed weight types, AVX2 or above; never fp32 or llama.cpp.
    int8 numerics take one pass whatever the weight was packed for (the model packs for two, fast's 15 bits)."""
    q4_k, f16 = int(Q.Q4_K), int(Q.F16)
    for n_tok in (1, 4, 5, 512):
        for isa in ISA_LEVELS:
            assert K.matmul_uses_packed(q4_k, n_tok, isa=isa) == (HAS_AVX2 and n_tok > 4)
            assert K.matmul_uses_packed(q4_k, n_tok, isa=isa, numerics="int8") == (HAS_AVX2 and n_tok > 4)
            assert not K.matmul_uses_packed(q4_k, n_tok, isa=isa, numerics="fp32")
            assert not K.matmul_uses_packed(q4_k, n_tok, isa=isa, numerics="llama.cpp")
            assert not K.matmul_uses_packed(f16, n_tok, isa=isa)
        assert not K.matmul_uses_packed(q4_k, n_tok, isa="scalar")
    with pytest.raises(ValueError, match="isa"):
        K.matmul_uses_packed(q4_k, 8, isa="sse2")
    if SUPPORTED_LEVELS:
        rng = np.random.default_rng(8)
        for name in ("Q4_K", "Q6_K", "Q4_1", "Q8_0"):
            data, _ = make_weights(name, 24, 512, rng)
            x = rng.standard_normal((9, 512)).astype(np.float32)
            tid = int(qtype(name))
            one = K.matmul_packed_reference(tid, data, 512, 24, x, passes=1)
            two = K.matmul_packed_reference(tid, data, 512, 24, x, passes=2)
            for isa in SUPPORTED_LEVELS:
                y8 = K.matmul(tid, data, 512, 24, x, isa=isa, numerics="int8", passes=2)
                yf = K.matmul(tid, data, 512, 24, x, isa=isa, numerics="fast", passes=2)
                assert np.array_equal(y8.view(np.uint32), one.view(np.uint32)), f"{name} {isa}: int8 is not one pass"
                assert np.array_equal(yf.view(np.uint32), two.view(np.uint32)), f"{name} {isa}: fast is not two passes"
