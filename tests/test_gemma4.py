"""gemma4 on its tiny model (make_tiny.GEMMA4_LAYER_TYPES: 8 layers, sliding and full ones with their own head
sizes, layers 6 and 7 attending over the K/V of layers 4 (sliding) and 5 (full)): the layer shapes and the
shared K/V, and LazyLLM where a layer reads another layer's K/V. The logits against llama.cpp are in
test_llama_cpp_tiny.py, against the NumPy reference (and decode = prefill, all-ones = dense) in
test_architectures.py.

The rule for shared-KV layers: a shared layer attends over the tokens active at it (as every layer does), with
its source layer's K/V. Active sets only shrink through a step's layers and a revived token is computed from
its frontier on, so every token active at a shared layer was computed at the source layer (in this step or an
earlier one) and has K/V there; a token pruned before the source layer is attended by neither, and a token
pruned between the source and the shared layer is not attended by the shared layer although its K/V exist
(pruned means not attended by later layers)."""
import numpy as np
import pytest

import lazyllm_edge
from make_tiny import GEMMA4_LAYER_TYPES, write_tiny_model
from numpy_reference import forward_gemma4

N_LAYER = len(GEMMA4_LAYER_TYPES)
N_CTX = 128


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-gemma4.gguf"
    hp, weights = write_tiny_model(path, "gemma4", N_LAYER, "F32")
    return lazyllm_edge.Generator(str(path), n_ctx=N_CTX, n_threads=2), hp, weights


def _ids(n, n_vocab, seed):
    return np.random.default_rng(seed).integers(0, n_vocab, n).tolist()


def test_layer_shapes_and_shared_kv(tiny):
    """Each layer's K/V rows have its own size; the shared layers read their source layer's rows."""
    gen, hp, _ = tiny
    assert gen.info["architecture"] == "gemma4"
    assert hp["kv_source"] == [0, 1, 2, 3, 4, 5, 4, 5]
    gen.reset()
    gen.append(_ids(20, hp["n_vocab"], seed=1))
    s = gen.session
    for layer in range(N_LAYER):
        k, v = s.read_kv(layer, 19)
        assert len(k) == len(v) == hp["n_head_kv_of"][layer] * hp["head_dim_of"][layer]
    for shared, source in [(6, 4), (7, 5)]:
        for p in (0, 7, 19):
            k, v = s.read_kv(shared, p)
            k_src, v_src = s.read_kv(source, p)
            np.testing.assert_array_equal(k, k_src)
            np.testing.assert_array_equal(v, v_src)
    # full layers have no attn_v: V is K's projection, normed without weight (so not K itself, which is roped)
    k, v = s.read_kv(2, 19)
    assert not np.array_equal(k, v)
    gen.reset()


# stages before the source layers (1: sliding, 2: full), between the sources and the shared layers (5), at a
# shared layer (6: ranked with layer 4's K), and several at once
SCHEDULES = [[(1, 0.5)], [(2, 0.5)], [(5, 0.4)], [(6, 0.5)], [(1, 0.6), (5, 0.5)], [(0, 0.3), (3, 0.5), (6, 0.5)]]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: ",".join(f"{l}:{k}" for l, k in s))
def test_pruned_prefill_matches_numpy_reference(tiny, schedule):
    """A pruned prefill: the same tokens kept at every stage (each position's frontier) and the last position's
    logits as the NumPy reference of the rule (numpy_reference.forward_gemma4 with a schedule)."""
    gen, hp, weights = tiny
    ids = _ids(40, hp["n_vocab"], seed=3)
    gen.set_lazy(schedule)
    gen.reset()
    got = gen.append(ids)
    want, frontier = forward_gemma4(hp, weights, ids, dict(schedule), kv_fp16=True)
    assert [gen.session.token_frontier(p) for p in range(len(ids))] == frontier.tolist()
    assert frontier.min() < N_LAYER  # something was pruned
    scale = np.abs(want[-1]).max()
    assert np.abs(got - want[-1]).max() <= 5e-3 * scale
    st = gen.stats
    assert st["prefill_pairs_computed"] == frontier.sum() < st["prefill_pairs_dense"]
    assert st["recomputed_pairs"] == 0
    gen.set_lazy(None)
    gen.reset()


def test_tokens_pruned_before_the_source_layer_are_revived_through_it(tiny):
    """Prefill prunes at layer 2 (full, before the K/V sources 4 and 5), decode steps do not prune: the first decode
    step revives the pruned tokens at layer 3 and computes them through the sources before the shared layers read
    them. Every pair once, nothing recomputed; afterwards every token has K/V at every layer."""
    gen, hp, _ = tiny
    ids = _ids(40, hp["n_vocab"], seed=5)
    gen.set_lazy("2:0.5/off")
    gen.reset()
    gen.append(ids)
    pruned = [p for p in range(len(ids)) if gen.session.token_frontier(p) == 3]
    assert len(pruned) >= 15
    prefill_pairs = gen.stats["prefill_pairs_computed"]
    gen.append([ids[0]])
    st = gen.stats
    assert st["recomputed_pairs"] == 0
    assert st["revived_tokens"] == len(pruned)
    assert all(gen.session.token_frontier(p) == N_LAYER for p in range(len(ids) + 1))
    # the decode step computed the new token at every layer and the pruned ones from layer 3 on: the dense total
    assert st["total_pairs_computed"] == prefill_pairs + N_LAYER + len(pruned) * (N_LAYER - 3)
    assert st["total_pairs_computed"] == st["total_pairs_dense"]
    for p in pruned[:5]:
        assert np.array_equal(gen.session.read_kv(6, p)[0], gen.session.read_kv(4, p)[0])
    gen.set_lazy(None)
    gen.reset()


def test_revival_budget_on_shared_layers(tiny):
    """Decode steps with a revival budget after a pruned prefill: at most budget + 1 tokens computed per layer,
    nothing recomputed, never more than dense; tokens left pruned keep their frontier below the sources."""
    gen, hp, _ = tiny
    ids = _ids(40, hp["n_vocab"], seed=6)
    gen.set_lazy("2:0.4/revive:2")
    gen.reset()
    gen.append(ids)
    for i in range(4):
        before = gen.stats["total_pairs_computed"]
        gen.append([ids[i]])
        st = gen.stats
        assert st["total_pairs_computed"] - before <= 3 * N_LAYER
        assert st["recomputed_pairs"] == 0
        assert st["total_pairs_computed"] <= st["total_pairs_dense"]
    assert any(gen.session.token_frontier(p) == 3 for p in range(len(ids)))
    gen.set_lazy(None)
    gen.reset()


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-gemma4-moe.gguf"
    hp, weights = write_tiny_model(path, "gemma4", N_LAYER, "F32", n_expert=4)
    return lazyllm_edge.Generator(str(path), n_ctx=N_CTX, n_threads=2, numerics="fp32"), hp, weights


def test_mixture_of_experts_matches_numpy_reference(tiny_moe):
    """The mixture-of-experts layout (every layer: shared expert + 2 of 4 routed experts, fused and separate
    gate/up, per-expert down scales) against the NumPy reference. This tiny's expert norms amplify ggml's fp16
    GELU table (the engine's, as llama.cpp's) against NumPy's exact GELU to ~1 % of the logit scale; the engine
    gives llama.cpp's own logits on the Q8_0 version to ~1e-6 (test_llama_cpp_tiny, gemma4_moe_q8_0)."""
    gen, hp, weights = tiny_moe
    ids = _ids(32, hp["n_vocab"], seed=10)
    got = gen.logits(ids)
    want = forward_gemma4(hp, weights, ids, kv_fp16=True)
    assert np.abs(got - want).max() <= 2e-2 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_mixture_of_experts_lazy_invariants(tiny_moe):
    """All-ones = dense to the bit, pruning saves pairs, nothing recomputed, and the pruned tokens revived in the
    next step through the experts: every pair once."""
    gen, hp, _ = tiny_moe
    ids = _ids(40, hp["n_vocab"], seed=11)
    gen.reset()
    dense = gen.append(ids).copy()
    gen.set_lazy([(2, 1.0), (5, 1.0)])
    gen.reset()
    np.testing.assert_array_equal(gen.append(ids), dense)
    gen.set_lazy("2:0.5,5:0.5/off")
    gen.reset()
    gen.append(ids)
    assert gen.stats["prefill_pairs_computed"] < gen.stats["prefill_pairs_dense"]
    gen.append([ids[1]])
    st = gen.stats
    assert st["recomputed_pairs"] == 0 and st["revived_tokens"] > 0
    assert st["total_pairs_computed"] == st["total_pairs_dense"]
    gen.set_lazy(None)
    gen.reset()


def _without_keys(path, out, keys):
    """Copies a GGUF file leaving out the metadata `keys`."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    writer = gguf.GGUFWriter(str(out), str(reader.fields["general.architecture"].contents()))
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture" or field.name in keys:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(field.name, field.contents(), field.types[0])
    for t in reader.tensors:
        writer.add_tensor(t.name, np.asarray(t.data).reshape(tuple(reversed([int(x) for x in t.shape]))))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.mark.parametrize("key, message", [("gemma4.expert_count", "ffn_gate_inp.weight' but no expert_count"),
                                          ("gemma4.expert_feed_forward_length", "expert_feed_forward_length' is missing"),
                                          ("gemma4.feed_forward_length", "feed_forward_length' is missing"),
                                          ("gemma4.attention.sliding_window_pattern", "must be an array")])
def test_missing_metadata_is_named(tmp_path, key, message):
    """A router without expert_count, experts without their FFN size, no FFN sizes, no layer types: errors at
    load naming what is missing."""
    path = tmp_path / "tiny-gemma4-moe.gguf"
    write_tiny_model(path, "gemma4", N_LAYER, "F32", n_expert=4)
    with pytest.raises(lazyllm_edge.ModelLoadError, match=message):
        lazyllm_edge.Generator(str(_without_keys(path, tmp_path / "broken.gguf", {key})))


@pytest.mark.parametrize("weight_type", ["Q8_0", "F16"])
def test_quantized_tiny_matches_numpy_reference(tmp_path, weight_type):
    """Quantized weights (per-layer embedding table included): the engine against the NumPy reference on the
    dequantized weights."""
    from numpy_reference import load_gguf_weights

    path = tmp_path / f"tiny-gemma4-{weight_type}.gguf"
    hp, _ = write_tiny_model(path, "gemma4", N_LAYER, weight_type)
    weights = load_gguf_weights(path)
    ids = _ids(24, hp["n_vocab"], seed=8)
    got = lazyllm_edge.Generator(str(path), n_ctx=N_CTX, n_threads=2, numerics="fp32").logits(ids)
    want = forward_gemma4(hp, weights, ids)
    assert np.abs(got - want).max() <= 5e-3 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_cuda_refuses_gemma4_and_auto_takes_the_cpu(tmp_path):
    """The CUDA backend lacks gemma4's kernels: backend="cuda" raises UnsupportedError naming the architecture
    where a GPU is (without one it raises for the missing device), "auto" runs it on the CPU."""
    from conftest import cuda_available

    path = tmp_path / "tiny-gemma4.gguf"
    hp, _ = write_tiny_model(path, "gemma4", N_LAYER, "F32")
    match = "does not support architecture 'gemma4'" if cuda_available() else "backend 'cuda'"
    with pytest.raises(lazyllm_edge.UnsupportedError, match=match):
        lazyllm_edge.Generator(str(path), backend="cuda")
    gen = lazyllm_edge.Generator(str(path), n_ctx=N_CTX, n_threads=2, backend="auto")
    assert gen.info["backend"] == "cpu"
    assert gen.logits(_ids(8, hp["n_vocab"], seed=9)).shape == (8, hp["n_vocab"])


@pytest.mark.parametrize("lazy", [None, "2:0.5,5:0.5"])
def test_saved_session_continues_bit_for_bit(tiny, tmp_path, lazy):
    """A saved session of a model whose layers differ in K/V width and share K/V: only the layers with a cache of their
    own are written (each with its width), and loading it continues exactly as the saved session."""
    gen, hp, _ = tiny
    path = gen.path
    saved = lazyllm_edge.Generator(path, n_ctx=N_CTX, n_threads=2, lazy=lazy)
    ids = _ids(40, hp["n_vocab"], 11)
    saved.append(ids)
    file = tmp_path / "gemma4.bin"
    saved.save_state(file)
    frontier = [saved.session.token_frontier(p) for p in range(saved.n_past)]
    if lazy:
        assert min(frontier) < N_LAYER
    width = [hp["n_head_kv_of"][layer] * hp["head_dim_of"][layer] for layer in range(N_LAYER)]
    own = [layer for layer in range(N_LAYER) if hp["kv_source"][layer] == layer]
    assert len(set(hp["head_dim_of"])) > 1 and len(own) < N_LAYER  # layers of two head sizes, and shared ones
    kv = sum(2 * 2 * width[layer] * sum(f > layer for f in frontier) for layer in own)
    # a pruned token's aux row: its hidden state and its per-layer inputs (what reviving it needs of its position)
    aux = 4 * (saved.info["d_model"] + N_LAYER * hp["per_layer_dim"]) * sum(f < N_LAYER for f in frontier)
    assert file.stat().st_size == 80 + 8 + 8 * len(ids) + kv + aux  # the shared layers write nothing of their own

    loaded = lazyllm_edge.Generator(path, n_ctx=N_CTX, n_threads=2, lazy=lazy)
    loaded.load_state(file)
    assert [loaded.session.token_frontier(p) for p in range(loaded.n_past)] == frontier
    more = _ids(4, hp["n_vocab"], 12)
    outs = []
    for g in (saved, loaded):
        logits = [g.append(more)]
        logits.append(g.append([int(np.argmax(logits[-1]))]))
        outs.append(np.stack(logits))
    assert np.array_equal(outs[0], outs[1])
