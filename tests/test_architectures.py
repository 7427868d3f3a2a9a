"""Each supported architecture on a tiny generated GGUF against the NumPy reference forward
(tests/numpy_reference.py, written from the architecture definitions), and unknown architectures. The hybrid
qwen35 has tests of its own (tests/test_hybrid.py)."""
import numpy as np
import pytest

import lazyllm_edge
from make_tiny import write_tiny_model
from numpy_reference import forward

ARCHS = ["llama", "qwen2", "qwen3", "gemma3", "gemma4", "phi3", "smollm3"]
# gemma3 tiny: 6 layers so layer 5 is global and 0-4 slide over an 8-token window; smollm3: layer 3 has no RoPE;
# gemma4 tiny: 8 layers, 6 and 7 sharing the K/V of 4 (sliding) and 5 (full) (make_tiny.GEMMA4_LAYER_TYPES).
LAYERS = {"llama": 4, "qwen2": 4, "qwen3": 4, "gemma3": 6, "gemma4": 8, "phi3": 4, "smollm3": 4}
N_CTX = 128  # > the phi3 tiny's original context (64): its sessions take the long LongRoPE factors


def _tiny(arch, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / f"tiny-{arch}.gguf"
    hp, weights = write_tiny_model(path, arch, LAYERS[arch], "F32")
    return arch, lazyllm_edge.Generator(str(path), n_ctx=N_CTX, n_threads=2), hp, weights


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request, tmp_path_factory):
    return _tiny(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    return _tiny("gemma3", tmp_path_factory)


def _ids(n, n_vocab, seed=1):
    return np.random.default_rng(seed).integers(0, n_vocab, n).tolist()


def test_logits_match_numpy_reference(tiny):
    arch, gen, hp, weights = tiny
    assert gen.info["architecture"] == arch
    ids = _ids(24, hp["n_vocab"])  # longer than gemma3's 8-token window
    got = gen.logits(ids)
    want = forward(hp, weights, ids, n_ctx=N_CTX)
    # the engine keeps K/V in fp16: differences of a few 1e-3 relative to the logit scale
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 5e-3 * scale, f"{arch}: max |Δ| {np.abs(got - want).max():.4g} (scale {scale:.3g})"
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_incremental_decode_matches_prefill(tiny):
    arch, gen, hp, _ = tiny
    ids = _ids(20, hp["n_vocab"], seed=2)
    full = gen.logits(ids)
    gen.reset()
    gen.append(ids[:12])
    for i in range(12, 20):
        last = gen.append([ids[i]])
        np.testing.assert_allclose(last, full[i], atol=2e-3 * np.abs(full[i]).max(), err_msg=f"{arch} position {i}")
    gen.reset()


def test_lazy_all_ones_equals_dense_and_pruning_saves_pairs(tiny):
    arch, gen, hp, _ = tiny
    ids = _ids(40, hp["n_vocab"], seed=3)
    gen.reset()
    dense = gen.append(ids).copy()
    gen.set_lazy([(1, 1.0), (2, 1.0)])
    gen.reset()
    np.testing.assert_array_equal(gen.append(ids), dense)
    gen.set_lazy([(0, 0.5), (2, 0.5)])
    gen.reset()
    gen.append(ids)
    st = gen.stats
    assert st["prefill_pairs_computed"] < st["prefill_pairs_dense"], arch
    assert st["recomputed_pairs"] == 0
    gen.set_lazy(None)
    gen.reset()


@pytest.mark.parametrize("arch", ["mamba"])
def test_unknown_architecture_is_named(tmp_path, arch):
    path = tmp_path / f"tiny-{arch}.gguf"
    write_tiny_model(path, arch, 2, "F32")
    with pytest.raises(lazyllm_edge.ModelLoadError, match=f"unsupported model architecture '{arch}'"):
        lazyllm_edge.Generator(str(path))


@pytest.mark.parametrize("model, pre, message", [("gpt2", "superbpe-x", "unsupported pre-tokenizer type: 'superbpe-x'"),
                                                 ("rwkv", None, "unsupported tokenizer model: 'rwkv'"),
                                                 ("bert", None, "unsupported tokenizer model: 'bert'")])
def test_unknown_tokenizer_is_named(tmp_path, model, pre, message):
    path = tmp_path / "tiny-tokenizer.gguf"
    write_tiny_model(path, "llama", 1, "F32", tokenizer_model=model, tokenizer_pre=pre)
    with pytest.raises(lazyllm_edge.ModelLoadError, match=message):
        lazyllm_edge.Generator(str(path))


def test_sliding_layer_ranks_only_the_window(tiny_gemma3):
    """gemma3: a stage on a sliding layer ranks the tokens inside the last token's window; the tokens
    before it get no attention there by construction and stay active (the global layer 5 sees them)."""
    _, gen, hp, _ = tiny_gemma3
    ids = _ids(30, hp["n_vocab"], seed=4)
    window = hp["sliding_window"]
    gen.set_lazy([(1, 0.5)])  # layer 1 slides
    gen.reset()
    gen.session.set_record_importance(True)
    gen.append(ids)
    (layer, positions, scores), = gen.session.importance
    assert layer == 1
    assert list(positions) == list(range(30 - window, 30))
    assert abs(sum(scores) - 1.0) < 1e-4  # a softmax over the window only
    for p in range(30 - window):  # out-of-window tokens kept: computed through every layer
        assert gen.session.token_frontier(p) == hp["n_layer"]
    dropped = [p for p in range(30 - window, 30) if gen.session.token_frontier(p) == 2]
    assert len(dropped) == window // 2
    gen.session.set_record_importance(False)
    gen.set_lazy(None)
    gen.reset()
