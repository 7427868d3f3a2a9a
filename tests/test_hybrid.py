"""qwen35, the hybrid of gated delta-net linear-attention layers and full-attention layers, on tiny random models
(models/make_tiny.py): the NumPy reference (tests/numpy_reference.py), the recurrent state across steps, and the
LazyLLM rule for hybrids: a linear-attention layer's state must consume every token in order, so a stage may only
cut tokens after the last such layer (llama.cpp's own logits: tests/test_llama_cpp_tiny.py)."""
import numpy as np
import pytest

import lazyllm_edge
from make_tiny import write_tiny_model
from numpy_reference import forward

N_CTX = 1024
# full attention on every 3rd layer (2 and 5); the same with the layer kinds listed, ending in three attention
# layers (2, 4, 5), so a stage at layer 4 may cut tokens for layer 5
LAYOUTS = {"interval": None, "listed": [1, 1, 0, 1, 0, 0]}


def _tiny(tmp_path_factory, layout):
    path = tmp_path_factory.mktemp("hybrid") / f"tiny-qwen35-{layout}.gguf"
    hp, weights = write_tiny_model(path, "qwen35", 6, "F32", recurrent_layers=LAYOUTS[layout])
    return path, hp, weights


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def tiny(request, tmp_path_factory):
    return _tiny(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    return _tiny(tmp_path_factory, "listed")


def _ids(n, n_vocab, seed=1):
    return np.random.default_rng(seed).integers(0, n_vocab, n).tolist()


def _gen(path, **kw):
    return lazyllm_edge.Generator(str(path), n_ctx=N_CTX, n_threads=2, **kw)


@pytest.mark.parametrize("n", [24, 600])  # 600: two micro-batches of one step carry the states between them
def test_logits_match_numpy_reference(tiny, n):
    path, hp, weights = tiny
    gen = _gen(path, numerics="fp32")
    assert gen.info["architecture"] == "qwen35" and gen.info["n_layer"] == 6
    ids = _ids(n, hp["n_vocab"])
    got, want = gen.logits(ids), forward(hp, weights, ids)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 5e-3 * scale, f"max |Δ| {np.abs(got - want).max():.4g} (scale {scale:.3g})"
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_steps_carry_the_recurrent_state(tiny):
    """Chunks of any size after each other (prefills after prefills, then decode) give the logits of one prefill:
    the conv and delta-net states go on from where the last step left them."""
    path, hp, _ = tiny
    gen = _gen(path, numerics="fp32")
    ids = _ids(40, hp["n_vocab"], seed=2)
    full = gen.logits(ids)
    bound = 2e-3 * np.abs(full).max()
    start = 0
    for size in [1, 2, 5, 13, 3]:  # positions 0..23, then one token at a time
        last = gen.append(ids[start:start + size])
        start += size
        np.testing.assert_allclose(last, full[start - 1], atol=bound, err_msg=f"chunk ending at {start - 1}")
    for i in range(start, len(ids)):
        np.testing.assert_allclose(gen.append([ids[i]]), full[i], atol=bound, err_msg=f"decode position {i}")
    # reset starts from an empty state again
    gen.reset()
    np.testing.assert_array_equal(gen.append(ids[:10]), gen.logits(ids[:10])[-1])


def test_schedule_before_the_last_linear_layer_is_refused(tiny):
    path, hp, _ = tiny
    last_linear = max(l for l, r in enumerate(hp["recurrent"]) if r)
    with pytest.raises(ValueError, match=rf"prune layer 1 is before qwen35's last linear-attention layer \({last_linear}\)"):
        _gen(path, lazy="1:0.5")
    gen = _gen(path)
    with pytest.raises(ValueError, match="recurrent state must see every token in order"):
        gen.set_lazy("5:1.0/1:0.5")  # a decode stage too
    with pytest.raises(ValueError, match="linear-attention"):
        gen.set_lazy(lazyllm_edge.LazyConfig(schedule=[(0, 0.5)]))
    if last_linear == 4:  # interval layout: only the output layer is after it
        with pytest.raises(ValueError, match="LazyLLM cannot prune this model"):
            gen.set_lazy("2:0.5")
    gen.set_lazy(f"{last_linear + 1}:0.5")  # at the first layer after it: allowed


def test_lazy_all_ones_equals_dense_and_pruning_saves_pairs(listed):
    """Stages after the last linear-attention layer (3): all-ones is dense bit for bit, a stage at layer 4 cuts
    tokens for layer 5 only, nothing is computed twice, and decode steps revive the cut tokens at layer 5."""
    path, hp, _ = listed
    ids = _ids(40, hp["n_vocab"], seed=3)
    gen = _gen(path)
    dense = gen.append(ids).copy()
    dense_next = gen.append([7]).copy()
    gen.set_lazy("4:1.0,5:1.0")
    gen.reset()
    np.testing.assert_array_equal(gen.append(ids), dense)
    np.testing.assert_array_equal(gen.append([7]), dense_next)

    gen.set_lazy("4:0.25/off")
    gen.reset()
    gen.append(ids)
    st = gen.stats
    assert st["prefill_pairs_computed"] == 40 * 5 + 10  # every token through layers 0-4, a quarter through 5
    assert st["prefill_pairs_dense"] == 40 * 6
    assert st["recomputed_pairs"] == 0
    frontiers = [gen.session.token_frontier(p) for p in range(40)]
    assert sorted(set(frontiers)) == [5, 6] and frontiers.count(6) == 10
    # a decode step computes every cut token at layer 5 (from the aux cache, which holds its dense input there:
    # layers 0-4 saw every token) and the new token everywhere, so it gives the dense step's logits
    revived = gen.append([7])
    np.testing.assert_allclose(revived, dense_next, atol=2e-3 * np.abs(dense_next).max())
    st = gen.stats
    assert st["revived_tokens"] == 30
    assert st["recomputed_pairs"] == 0
    assert st["total_pairs_computed"] == 40 * 5 + 10 + 30 + 6 <= st["total_pairs_dense"]
    assert all(gen.session.token_frontier(p) == 6 for p in range(41))


def test_revival_budget_on_the_attention_layers(listed):
    path, hp, _ = listed
    ids = _ids(40, hp["n_vocab"], seed=5)
    gen = _gen(path, lazy="4:0.25/revive:3")
    gen.append(ids)
    for t in [3, 4, 5]:
        gen.append([t])
        st = gen.stats
        assert st["recomputed_pairs"] == 0
        assert st["total_pairs_computed"] <= st["total_pairs_dense"]
    # at most 3 revived per decode step, only at layer 5
    assert gen.stats["revived_tokens"] <= 9
    assert all(gen.session.token_frontier(p) in (5, 6) for p in range(43))


def test_failed_step_leaves_the_recurrent_state(listed):
    """A step that fails after the layers ran (all-position logits over a pruned context) changes nothing: the
    next appends give what they give without it."""
    path, hp, _ = listed
    ids = _ids(30, hp["n_vocab"], seed=6)
    gen = _gen(path, lazy="4:0.25/off")
    gen.append(ids)
    with pytest.raises(ValueError, match="dense session"):
        gen.session.append_all_logits([11, 12, 13])
    assert gen.n_past == 30
    after_failure = gen.append([11, 12, 13]).copy()
    gen.reset()
    gen.append(ids)
    np.testing.assert_array_equal(gen.append([11, 12, 13]), after_failure)


def test_linear_layers_keep_no_kv(listed):
    path, hp, _ = listed
    gen = _gen(path)
    gen.append(_ids(5, hp["n_vocab"]))
    k, v = gen.session.read_kv(2, 4)  # an attention layer: K/V of n_head_kv heads
    assert k.shape == (hp["n_head_kv"] * hp["head_dim"],)
    with pytest.raises(ValueError, match="layer 0 is a linear-attention layer: it keeps no K/V"):
        gen.session.read_kv(0, 4)


def test_cuda_refuses_qwen35(listed):
    """The CUDA backend has no gated delta-net layers: "cuda" is refused naming the architecture (or, without a
    device, the device), "auto" runs it on the CPU."""
    path, _, _ = listed
    with pytest.raises(lazyllm_edge.UnsupportedError, match="qwen35" if lazyllm_edge.cuda_available() else "cuda"):
        lazyllm_edge.Generator(str(path), n_ctx=64, backend="cuda")
    gen = lazyllm_edge.Generator(str(path), n_ctx=64, backend="auto")
    assert gen.append([1, 2, 3]).shape == (gen.info["n_vocab"],)


def _broken(tmp_path, monkeypatch, edit):
    """A tiny qwen35 whose weights or hyperparameters `edit(hp, weights)` changed before writing."""
    import make_tiny

    original = make_tiny.tiny_qwen35_weights

    def edited(*args, **kwargs):
        hp, weights = original(*args, **kwargs)
        edit(hp, weights)
        return hp, weights

    monkeypatch.setattr(make_tiny, "tiny_qwen35_weights", edited)
    path = tmp_path / "broken-qwen35.gguf"
    make_tiny.write_tiny_model(path, "qwen35", 3, "F32")
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda hp, w: w.pop("blk.1.ssm_a"), "model file has no tensor 'blk.1.ssm_a'"),
    (lambda hp, w: w.update({"blk.0.ssm_conv1d.weight": w["blk.0.ssm_conv1d.weight"][:, :3].copy()}),
     r"tensor 'blk.0.ssm_conv1d.weight' has shape \[3, 128\], expected \[4, 128\]"),
    (lambda hp, w: w.update({"blk.2.attn_q.weight": w["blk.2.attn_q.weight"][:128]}),  # no output gate rows
     r"tensor 'blk.2.attn_q.weight' has shape \[64, 128\], expected \[64, 256\]"),
    (lambda hp, w: hp["ssm"].update(n_v_heads=3), "ssm.time_step_rank is not a multiple of ssm.group_count"),
    (lambda hp, w: hp.update(rope_sections=[40, 0, 0, 0]), "rope.dimension_sections' does not fit the head dimension"),
])
def test_inconsistent_files_fail_at_load(tmp_path, monkeypatch, edit, message):
    path = _broken(tmp_path, monkeypatch, edit)
    with pytest.raises(lazyllm_edge.ModelLoadError, match=message):
        lazyllm_edge.Generator(str(path))


def test_context_grows_or_empties_but_is_not_cut(listed):
    """A recurrent state cannot be rewound by dropping K/V rows: truncate to 0 < n < n_past is refused and changes
    nothing; truncate(n_past) and truncate(0) are fine."""
    path, hp, _ = listed
    ids = _ids(30, hp["n_vocab"], seed=7)
    gen = _gen(path, numerics="fp32")
    full = gen.logits(ids)
    gen.append(ids[:20])
    with pytest.raises(lazyllm_edge.UnsupportedError, match="qwen35 keeps a recurrent state .* cannot be cut back to 10 tokens"):
        gen.session.truncate(10)
    assert gen.n_past == 20
    gen.session.truncate(20)
    np.testing.assert_allclose(gen.append(ids[20:]), full[-1], atol=2e-3 * np.abs(full).max())
    gen.session.truncate(0)
    np.testing.assert_allclose(gen.append(ids[:5]), full[4], atol=2e-3 * np.abs(full).max())


def test_prefix_reuse_takes_the_whole_context_or_nothing(listed):
    path, hp, _ = listed
    ids = _ids(30, hp["n_vocab"], seed=8)
    gen = _gen(path, numerics="fp32")
    full = gen.logits(ids)
    gen.append(ids[:20])
    assert gen.session.reuse_prefix(ids) == 20  # the prompt extends the context: all of it is reused
    np.testing.assert_allclose(gen.append(ids[20:]), full[-1], atol=2e-3 * np.abs(full).max())
    edited = ids[:10] + [(ids[10] + 1) % hp["n_vocab"]] + ids[11:]
    assert gen.session.reuse_prefix(edited) == 0  # a common prefix of 10 would need a cut: nothing is reused
    assert gen.n_past == 0
    # generate() reuses the prompt prefix by default: the second call's reply is a fresh generator's
    gen = _gen(path)
    first = [p.token for p in gen.generate(ids[:20], max_tokens=4, temperature=0)]
    again = [p.token for p in gen.generate(ids[:20] + first + ids[20:], max_tokens=4, temperature=0)]
    fresh = [p.token for p in _gen(path).generate(ids[:20] + first + ids[20:], max_tokens=4, temperature=0)]
    assert again == fresh


def test_saved_sessions_are_refused(listed, tmp_path):
    path, hp, _ = listed
    gen = _gen(path)
    gen.append(_ids(8, hp["n_vocab"]))
    with pytest.raises(lazyllm_edge.UnsupportedError, match="saved sessions: qwen35 keeps a recurrent state"):
        gen.save_state(tmp_path / "session.bin")
    with pytest.raises(lazyllm_edge.UnsupportedError, match="saved sessions: qwen35"):
        gen.load_state(tmp_path / "session.bin")
    assert gen.n_past == 8 and not (tmp_path / "session.bin").exists()
