"""The architectures without a registry model (phi3, smollm3, gemma4, qwen35) against llama.cpp itself: the tiny random model
models/make_tiny.py writes (seeded, F32) run through llama.cpp once (tests/data/tiny_llama_cpp/make_reference.py,
llama-cpp-python 0.3.36, CPU) and through this engine here. The test writes the model again and checks it is the
one the reference was made from (make_tiny.content_sha256), then holds the logits to what the real models reach:
the same top-1 at every position and differences of fp16-KV size. The quantized tinies (gemma4_q8_0 and the
mixture-of-experts gemma4_moe_q8_0) are compared with numerics="llama.cpp" only: llama.cpp quantizes the activations of every matmul, the engine's own numerics do not
in a prefill."""
from pathlib import Path

import numpy as np
import pytest

import lazyllm_edge
from conftest import BACKENDS, require_backend
from make_tiny import content_sha256, write_tiny_model

DATA = Path(__file__).parent / "data" / "tiny_llama_cpp"
NAMES = sorted(p.stem for p in DATA.glob("*.npz"))
CPU_ONLY = {"gemma4", "qwen35"}  # refused by the CUDA backend (UnsupportedError naming it)


@pytest.fixture(scope="module", params=NAMES)
def case(request, tmp_path_factory):
    name = request.param
    ref = dict(np.load(DATA / f"{name}.npz"))
    ref.setdefault("arch", np.array(name))
    ref.setdefault("weight_type", np.array("F32"))
    arch, n_expert = str(ref["arch"]), int(ref.get("n_expert", 0))
    path = tmp_path_factory.mktemp("tiny") / f"tiny-{name}.gguf"
    write_tiny_model(path, arch, int(ref["n_layer"]), str(ref["weight_type"]), **({"n_expert": n_expert} if n_expert else {}))
    assert content_sha256(path) == str(ref["content_sha256"]), f"{name}: make_tiny no longer writes the reference's model"
    return arch, path, ref


def _own_numerics_comparable(ref):
    if str(ref["weight_type"]) != "F32":
        pytest.skip("quantized weights: llama.cpp quantizes the activations, only numerics='llama.cpp' compares")


def test_architectures_have_references():
    assert {"phi3", "smollm3", "gemma4", "gemma4_q8_0", "gemma4_moe_q8_0", "qwen35"} <= set(NAMES)


def _logits(path, ref, numerics, backend="cpu"):
    gen = lazyllm_edge.Generator(str(path), n_ctx=int(ref["n_ctx"]), n_threads=2, numerics=numerics, backend=backend)
    got = gen.logits(ref["ids"].tolist())
    assert got.shape == ref["logits"].shape
    return gen, got


def test_llama_cpp_numerics_reproduce_llama_cpp(case):
    """numerics="llama.cpp": the same top-1 at every position, differences near fp32 rounding."""
    arch, path, ref = case
    gen, got = _logits(path, ref, "llama.cpp")
    assert gen.info["architecture"] == arch
    want = ref["logits"]
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1), err_msg=f"{arch}: top-1 differs from llama.cpp")
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max(), f"{arch}: max |Δ| {np.abs(got - want).max():.4g}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("numerics", ["fast", "fp32"])
def test_logits_match_llama_cpp(case, numerics, backend):
    """The engine's own arithmetic: differences of fp16-KV size, and the same top-1 wherever llama.cpp's two best
    logits are more than 0.01 apart (a near tie may go either way)."""
    arch, path, ref = case
    _own_numerics_comparable(ref)
    if backend == "cuda" and arch in CPU_ONLY:
        require_backend(backend)
        with pytest.raises(lazyllm_edge.UnsupportedError, match=f"does not support architecture '{arch}'"):
            _logits(path, ref, numerics, backend)
        return
    _, got = _logits(path, ref, numerics, require_backend(backend))
    want = ref["logits"]
    bound = 5e-3 * np.abs(want).max()
    assert np.abs(got - want).max() <= bound, f"{arch}: max |Δ| {np.abs(got - want).max():.4g} (bound {bound:.3g})"
    top2 = np.sort(want, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.01
    assert decided.mean() >= 0.9
    np.testing.assert_array_equal(got.argmax(1)[decided], want.argmax(1)[decided], err_msg=f"{arch} ({numerics}): top-1")


def test_decode_matches_llama_cpp(case):
    """Token by token after a prefill: the same logits (the KV cache path, RoPE at later positions); a quantized
    tiny with numerics="llama.cpp"."""
    arch, path, ref = case
    numerics = "fast" if str(ref["weight_type"]) == "F32" else "llama.cpp"
    gen = lazyllm_edge.Generator(str(path), n_ctx=int(ref["n_ctx"]), n_threads=2, numerics=numerics)
    ids, want = ref["ids"].tolist(), ref["logits"]
    gen.append(ids[:30])
    for i in range(30, len(ids)):
        got = gen.append([ids[i]])
        assert got.argmax() == want[i].argmax(), f"{arch} position {i}"
        assert np.abs(got - want[i]).max() <= 5e-3 * np.abs(want).max(), f"{arch} position {i}"
