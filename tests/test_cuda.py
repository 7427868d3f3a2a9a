"""The CUDA backend (cpp/cuda/) against the CPU backend: backend selection and its errors (everywhere),
then, where a GPU is present, the same models on both backends: every architecture and weight type of the
tiny fixtures, dense and LazyLLM, prefill and decode. The kernels themselves are tested one by one against
their CPU references by the CTest test_cuda_kernels (tests/cpp/test_cuda_kernels.cu)."""

import numpy as np
import pytest

import lazyllm_edge
from conftest import cuda_available, require_backend
from lazyllm_edge import _core


def prompt_ids(n, seed=0, vocab=267):
    return np.random.default_rng(seed).integers(0, vocab - 3, size=n).tolist()


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl(p_logits, q_logits):
    lp, lq = log_softmax(p_logits.astype(np.float64)), log_softmax(q_logits.astype(np.float64))
    return float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean())


# ---- backend selection (runs everywhere) ----

def test_backend_selection(tiny_model):
    path = str(tiny_model[0])
    count, detail = _core.cuda_devices()
    assert isinstance(detail, str) and detail
    assert lazyllm_edge.cuda_available() == (count > 0)
    auto = lazyllm_edge.Generator(path, n_ctx=32, backend="auto")
    assert auto.info["backend"] == ("cuda" if count > 0 else "cpu")
    assert lazyllm_edge.Generator(path, n_ctx=32).info["backend"] == "cpu"
    if count == 0:
        # a clear error naming the backend and the reason; the CPU keeps working
        with pytest.raises(lazyllm_edge.UnsupportedError, match="cuda"):
            lazyllm_edge.Generator(path, backend="cuda")
        assert np.isfinite(auto.append([1, 2, 3])).all()
    else:
        gpu = lazyllm_edge.Generator(path, n_ctx=32, backend="cuda")
        assert gpu.info["backend"] == "cuda"
        # llama.cpp numerics reproduce llama.cpp's CPU backend: refused on CUDA, at creation and later
        with pytest.raises(lazyllm_edge.UnsupportedError, match="llama.cpp"):
            lazyllm_edge.Generator(path, n_ctx=32, backend="cuda", numerics="llama.cpp")
        with pytest.raises(lazyllm_edge.UnsupportedError, match="llama.cpp"):
            gpu.set_numerics("llama.cpp")
        with pytest.raises(lazyllm_edge.UnsupportedError, match="int8"):
            gpu.set_numerics("int8")
        assert gpu.numerics == "fast"
        gpu.set_numerics("fp32")
        assert gpu.numerics == "fp32" and np.isfinite(gpu.append([1, 2, 3])).all()
    with pytest.raises(ValueError, match="backend"):
        lazyllm_edge.Generator(path, backend="gpu")


# ---- CUDA against CPU (GPU only) ----

CASES = [("llama", "F32"), ("llama", "F16"), ("llama", "Q8_0"), ("llama", "Q4_0"), ("llama", "Q4_1"),
         ("qwen2", "Q8_0"), ("qwen3", "F16"), ("gemma3", "F32"), ("gemma3", "Q4_1")]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """(cpu, cuda) Generators per tiny model case; the CPU side in exact fp32 (fp32 numerics: its int8 matmul
    path off) for the comparisons, the CUDA side's numerics set by each test."""
    require_backend("cuda")
    from make_tiny import write_tiny_model

    out = {}
    for arch, wtype in CASES:
        path = tmp_path_factory.mktemp("cuda") / f"tiny-{arch}-{wtype}.gguf"
        write_tiny_model(path, arch, 4, wtype)
        out[(arch, wtype)] = tuple(lazyllm_edge.Generator(str(path), n_ctx=256, backend=b, numerics="fp32")
                                   for b in ("cpu", "cuda"))
    return out


def with_gpu_numerics(pair, numerics):
    """The pair, its CUDA side set to `numerics`: "fp32" takes the near-fp32 3xTF32 prefill GEMMs, "fast" (the
    default) rounds their inputs to fp16/bf16."""
    cpu, gpu = pair
    gpu.set_numerics(numerics)
    return cpu, gpu


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[f"{a}-{t}" for a, t in CASES])
def test_dense_logits_match_cpu(pairs, case):
    """With near-fp32 GEMMs, all-position prefill logits (tensor-core GEMM, attention) and 6 decode steps
    (matrix-vector kernel) agree with the CPU's exact fp32 path (int8 off) within 1e-3 of the logit range."""
    cpu, gpu = with_gpu_numerics(pairs[case], "fp32")
    ids = prompt_ids(70, seed=7)
    a, b = cpu.logits(ids), gpu.logits(ids)
    scale = np.abs(a).max()
    assert np.abs(a - b).max() <= 1e-3 * scale, f"prefill max diff {np.abs(a - b).max():.3g} (scale {scale:.3g})"
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97
    cpu.reset(), gpu.reset()
    la, lb = cpu.append(ids[:40]), gpu.append(ids[:40])
    for step in range(6):
        assert np.abs(la - lb).max() <= 1e-3 * scale, f"decode step {step}"
        t = int(np.argmax(la))
        la, lb = cpu.append([t]), gpu.append([t])


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[f"{a}-{t}" for a, t in CASES])
def test_default_half_gemm_logits_close_to_cpu(pairs, case):
    """The default prefill GEMM (fast numerics: fp16 inputs, bf16 for gemma3, fp32 accumulation): all-position
    logits within 2 % of the logit range of the CPU's fp32 ones (bf16: 5 %), argmax equal at >= 90 % of positions;
    fp32 numerics on the same Generator come closer (the switch reaches the GEMMs)."""
    cpu, gpu = with_gpu_numerics(pairs[case], "fast")
    ids = prompt_ids(70, seed=7)
    a, b = cpu.logits(ids), gpu.logits(ids)
    bound = (0.05 if case[0] == "gemma3" else 0.02) * np.abs(a).max()
    assert np.abs(a - b).max() <= bound, f"max diff {np.abs(a - b).max():.3g} > {bound:.3g}"
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
    gpu.set_numerics("fp32")
    assert np.abs(a - gpu.logits(ids)).max() < np.abs(a - b).max()


@pytest.mark.cuda
@pytest.mark.parametrize("case", [("llama", "F32"), ("gemma3", "F32"), ("qwen2", "Q8_0")], ids=lambda c: "-".join(c))
@pytest.mark.parametrize("spec", ["1:0.5,2:0.5/2:0.7", "1:0.5,2:0.5,window:8,importance:max/revive:3"])
def test_lazy_matches_cpu(pairs, case, spec):
    """The same schedule prunes the same tokens on both backends (importance within 1e-4, identical active
    sets and frontiers), in prefill and in decode steps that revive parked tokens: stages, and the query window,
    max-over-heads signal and revival budget."""
    cpu, gpu = with_gpu_numerics(pairs[case], "fp32")
    try:
        ids = prompt_ids(60, seed=11)
        for g in (cpu, gpu):
            g.set_lazy(spec)
            g.reset()
            g.session.set_record_importance(True)
        la, lb = cpu.append(ids), gpu.append(ids)
        for (l1, p1, s1), (l2, p2, s2) in zip(cpu.session.importance, gpu.session.importance, strict=True):
            assert l1 == l2 and p1 == p2
            np.testing.assert_allclose(s2, s1, rtol=0, atol=1e-4)
        assert np.abs(la - lb).max() <= 2e-3 * np.abs(la).max()
        for _ in range(5):
            t = int(np.argmax(la))
            la, lb = cpu.append([t]), gpu.append([t])
            assert np.abs(la - lb).max() <= 2e-3 * np.abs(la).max()
        sa, sb = cpu.stats, gpu.stats
        for key in ("layer_kv_tokens", "total_pairs_computed", "revived_tokens", "recomputed_pairs"):
            assert sa[key] == sb[key], key
        assert sb["recomputed_pairs"] == 0 and sb["revived_tokens"] > 0
        n = gpu.n_past
        assert [cpu.session.token_frontier(p) for p in range(n)] == [gpu.session.token_frontier(p) for p in range(n)]
    finally:
        for g in (cpu, gpu):
            g.session.set_record_importance(False)
            g.set_lazy(None)


@pytest.mark.cuda
def test_default_model_lazy_balanced_close_to_dense(cuda_generator, default_model_path):
    """SmolLM2 on CUDA: the balanced preset on a ~900-token prompt computes about half the pairs, its
    next-token distribution stays close to dense and to the CPU's balanced one, and it prunes the same
    number of tokens per layer as the CPU (the counts follow from the schedule alone)."""
    gen = cuda_generator
    text = "The river wound through the valley, past farms and mills and the old stone bridge. " * 50
    ids = gen.tokenize(text)[:900]
    gen.set_lazy(None)
    gen.reset()
    dense = gen.append(ids)
    generic = str(_core.lazy_preset("balanced", gen.n_layer))  # the generic preset, not the model's calibrated one
    gen.set_lazy(generic)
    gen.reset()
    lazy = gen.append(ids)
    st = gen.stats
    assert st["prefill_pairs_computed"] < 0.6 * st["prefill_pairs_dense"]
    assert kl(dense[None], lazy[None]) < 1.0  # the CPU measures 0.55 on this repetitive prompt
    cpu = lazyllm_edge.Generator(str(default_model_path), n_ctx=1024, lazy=generic)
    cpu_lazy = cpu.append(ids)
    assert cpu.stats["layer_kv_tokens"] == st["layer_kv_tokens"]
    assert kl(cpu_lazy[None], lazy[None]) < 0.1  # same pruned computation on both backends
    gen.set_lazy(None)
    gen.reset()
