"""LazyLLM dynamic token pruning: exact invariants of the engine (cpp/cpu/cpu_forward.cpp, and
cpp/cuda/cuda_forward.cu where a GPU is present: the backend-parametrized tests run on both)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazyllm_edge
from conftest import BACKENDS, require_backend
from lazy_reference import forward_lazy, layer_kv


def triple(schedule):
    """(stages, prune_decode, decode stages) of a LazySchedule."""
    return schedule.schedule, schedule.prune_decode, schedule.decode_schedule


def prompt_ids(n, seed=0, vocab=267):
    return np.random.default_rng(seed).integers(0, vocab - 3, size=n).tolist()


@pytest.fixture(scope="module", params=BACKENDS)
def tiny(tiny_model, request):
    """The tiny model on each backend; on CUDA with fp32 numerics, i.e. near-fp32 prefill GEMMs (the exact
    comparisons with the NumPy reference below need them; the default fp16 GEMMs are compared in test_cuda.py)."""
    path, hp, weights = tiny_model
    numerics = "fp32" if request.param == "cuda" else "fast"
    gen = lazyllm_edge.Generator(str(path), n_ctx=512, backend=require_backend(request.param), numerics=numerics)
    yield gen, hp, weights


# ranks at every stage and keeps every token (ceil(0.99999 * n) == n below 10^4 tokens), so each stage goes
# through ranking, selection and compaction; a keep of 1.0 would skip the pruning code altogether
KEEPS_ALL = 0.99999


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_all_is_bit_identical_to_dense(default_model_path, backend):
    """A schedule that ranks and keeps every token: same bits as the dense path, in prefill and in decode."""
    require_backend(backend)
    dense = lazyllm_edge.Generator(str(default_model_path), n_ctx=1024, backend=backend)
    stages = [(3, KEEPS_ALL), (10, KEEPS_ALL), (20, KEEPS_ALL)]
    lazy = lazyllm_edge.Generator(str(default_model_path), n_ctx=1024, lazy=stages, backend=backend)
    ids = dense.tokenize("A long time ago, in a quiet village by the sea, there lived an old fisherman who " * 6)
    lazy.session.set_record_importance(True)
    a, b = dense.append(ids), lazy.append(ids)
    ranked = lazy.session.importance
    assert [r[0] for r in ranked] == [3, 10, 20]  # the stages ranked ...
    assert all(list(positions) == list(range(len(ids))) for _, positions, _ in ranked)  # ... every token
    assert np.array_equal(a, b)
    for _ in range(8):
        t = int(np.argmax(a))
        a, b = dense.append([t]), lazy.append([t])
        assert [r[0] for r in lazy.session.importance] == [3, 10, 20]  # decode steps rank too
        assert np.array_equal(a, b)
    lazy.session.set_record_importance(False)
    assert lazy.stats["total_pairs_computed"] == lazy.stats["total_pairs_dense"]
    assert lazy.stats["layer_kv_tokens"] == [len(ids) + 8] * lazy.n_layer


def test_importance_matches_numpy_reference(tiny):
    gen, hp, w = tiny
    ids = prompt_ids(40, seed=1)
    schedule = [(1, 0.5), (2, 0.5)]
    gen.set_lazy(schedule)
    gen.reset()
    gen.session.set_record_importance(True)
    logits = gen.append(ids)
    gen.session.set_record_importance(False)
    ref_logits, ref_records = forward_lazy(hp, w, ids, schedule)
    got = gen.session.importance
    assert [r[0] for r in got] == [r[0] for r in ref_records] == [1, 2]
    for (layer, positions, scores), (_, ref_positions, ref_scores) in zip(got, ref_records):
        assert positions == ref_positions.tolist(), f"active set differs at layer {layer}"
        np.testing.assert_allclose(scores, ref_scores, rtol=2e-3, atol=1e-6)
        assert abs(sum(scores) - 1.0) < 1e-4  # a probability distribution averaged over heads
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=2e-3 * np.abs(ref_logits).max())
    st_ = gen.stats
    # 40 tokens: layers 0,1 all; then 20; then 10 for layer 3
    assert st_["prefill_pairs_computed"] == 40 + 40 + 20 + 10
    assert st_["layer_kv_tokens"] == [40, 40, 20, 10]
    gen.set_lazy(None)


@pytest.mark.parametrize("window,signal,pool", [(1, "max", 0), (6, "mean", 0), (6, "max", 0), (1, "mean", 2), (6, "max", 3)])
def test_importance_signals_match_numpy_reference(tiny, window, signal, pool):
    """The query window (the last tokens' queries, causal), the max-over-heads signal and pooling over neighbouring
    positions rank and keep the same tokens as the NumPy reference, with the same importance values and logits."""
    gen, hp, w = tiny
    ids = prompt_ids(40, seed=5)
    schedule = [(1, 0.5), (2, 0.5)]
    gen.set_lazy(lazyllm_edge.LazyConfig(schedule=tuple(schedule), query_window=window, importance=signal,
                                         pool_radius=pool))
    gen.reset()
    gen.session.set_record_importance(True)
    logits = gen.append(ids)
    gen.session.set_record_importance(False)
    ref_logits, ref_records = forward_lazy(hp, w, ids, schedule, window=window, max_heads=signal == "max", pool=pool)
    got = gen.session.importance
    assert [r[0] for r in got] == [1, 2]
    for (layer, positions, scores), (_, ref_positions, ref_scores) in zip(got, ref_records):
        assert positions == ref_positions.tolist(), f"active set differs at layer {layer}"
        np.testing.assert_allclose(scores, ref_scores, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=2e-3 * np.abs(ref_logits).max())
    gen.set_lazy(None)


def test_revival_budget_revives_only_the_most_attended(tiny):
    """"1:0.3/revive:2": the prefill drops 70 % of the tokens after layer 1; a decode step attends to the 30 % that
    have KV everywhere for free, and of the dropped ones computes only the 2 the new token attends to most at
    layer 1 (from layer 2 on); the others stay pruned with their aux-cache state untouched."""
    gen, hp, _ = tiny
    ids = prompt_ids(30, seed=2)
    gen.set_lazy("1:0.3/revive:2")
    assert gen.session.lazy.revival_budget == 2 and str(gen.session.lazy) == "1:0.3/revive:2"
    gen.reset()
    gen.append(ids)
    dropped = [p for p in range(len(ids)) if gen.session.token_frontier(p) == 2]
    assert len(dropped) == 30 - 9
    aux_before = {p: gen.session.aux_hidden(p)[1] for p in dropped}
    pairs_before = gen.stats["total_pairs_computed"]
    gen.session.set_record_importance(True)
    gen.append([5])
    gen.session.set_record_importance(False)
    st_ = gen.stats
    (layer, positions, scores), = gen.session.importance  # ranked once: only layer 2 could exceed the budget
    assert layer == 1 and list(positions) == list(range(31))
    revived = [p for p in dropped if gen.session.token_frontier(p) == hp["n_layer"]]
    by_importance = sorted(dropped, key=lambda p: (-scores[p], p))
    assert revived == sorted(by_importance[:2])
    assert st_["revived_tokens"] == 2 and st_["recomputed_pairs"] == 0
    assert st_["total_pairs_computed"] - pairs_before == hp["n_layer"] + 2 * (hp["n_layer"] - 2)
    for p in dropped:
        if p not in revived:  # still pruned, resumable later from the same state
            assert gen.session.token_frontier(p) == 2
            np.testing.assert_array_equal(gen.session.aux_hidden(p)[1], aux_before[p])
    # budget 0: a decode step computes the new token only
    gen.set_lazy("1:0.3/revive:0")
    before = gen.stats["total_pairs_computed"]
    gen.append([6])
    assert gen.stats["total_pairs_computed"] - before == hp["n_layer"]
    gen.set_lazy(None)


def test_decode_steps_pool_with_their_own_radius(tiny):
    """"1:0.3,pool:3/revive:2,pool:R": the prefill ranks pooled with radius 3; a decode step spends its revival
    budget by its own radius R. Same prefill, same first decode token: the decode ranking with R = 0 is the unpooled
    importance, and max-pooled over radius 3 in NumPy it is exactly the decode ranking without a radius of its own
    (which pools with 3); each step revives the 2 dropped tokens its own ranking puts first."""
    from lazy_reference import max_pool
    gen, hp, _ = tiny
    ids = prompt_ids(30, seed=7)
    runs = {}
    for spec in ("1:0.3,pool:3/revive:2", "1:0.3,pool:3/revive:2,pool:0"):
        gen.set_lazy(spec)
        assert str(gen.session.lazy) == spec
        gen.reset()
        gen.session.set_record_importance(True)
        gen.append(ids)
        prefill = gen.session.importance
        dropped = [p for p in range(len(ids)) if gen.session.token_frontier(p) == 2]
        gen.append([5])
        gen.session.set_record_importance(False)
        (layer, positions, scores), = gen.session.importance
        assert layer == 1 and list(positions) == list(range(31))
        revived = [p for p in dropped if gen.session.token_frontier(p) == hp["n_layer"]]
        assert revived == sorted(sorted(dropped, key=lambda p: (-scores[p], p))[:2])
        runs[spec] = prefill, np.asarray(scores)
    (pooled_prefill, pooled), (own_prefill, own) = runs["1:0.3,pool:3/revive:2"], runs["1:0.3,pool:3/revive:2,pool:0"]
    for (l1, p1, s1), (l2, p2, s2) in zip(pooled_prefill, own_prefill):  # the prefills are the same
        assert l1 == l2 and list(p1) == list(p2) and np.array_equal(s1, s2)
    assert not np.array_equal(pooled, own)
    np.testing.assert_array_equal(max_pool(np.arange(31), own, 3), pooled)
    gen.set_lazy(None)


def test_stages_keep_at_least_the_token_floor(tiny):
    """"floor:N": a stage keeps max(its fraction, N) tokens (all when N reaches the active set), the most important
    ones by the ranking the stage recorded; N at least the prompt keeps every token: the same bits as dense."""
    gen, hp, _ = tiny
    ids = prompt_ids(40, seed=3)
    gen.set_lazy(None)
    gen.reset()
    dense = gen.append(ids)
    for spec, counts in (("1:0.1,2:0.5", [40, 40, 4, 2]), ("1:0.1,2:0.5,floor:12", [40, 40, 12, 12]),
                         ("1:0.1,2:0.5,floor:6", [40, 40, 6, 6]), ("1:0.1,2:0.5,floor:40", [40] * 4)):
        gen.set_lazy(spec + "/off")
        assert gen.session.lazy.min_kept_tokens == (int(spec.split("floor:")[1]) if "floor" in spec else 0)
        gen.reset()
        gen.session.set_record_importance(True)
        logits = gen.append(ids)
        gen.session.set_record_importance(False)
        assert gen.stats["layer_kv_tokens"] == counts, spec
        (layer, positions, scores), _ = gen.session.importance
        assert layer == 1 and list(positions) == list(range(40))
        # the last token first, then by importance (ties to the earlier position)
        top = sorted(range(40), key=lambda p: (p != 39, -scores[p], p))[:counts[2]]
        assert [p for p in range(40) if gen.session.token_frontier(p) > 2] == sorted(top)
        if counts == [40] * 4:
            assert np.array_equal(logits, dense)
    gen.set_lazy(None)


def test_pruned_token_is_revived_from_aux_cache_at_its_layer(tiny):
    """A token dropped after layer 1 in prefill holds h[2] in the aux cache; when a decode step selects it
    again it is computed from layer 2 on (not from layer 0), and its layer-2 KV equals a direct computation
    from the saved hidden state."""
    gen, hp, w = tiny
    ids = prompt_ids(30, seed=2)
    gen.set_lazy([(1, 0.4)])
    gen.reset()
    gen.append(ids)
    dropped = [p for p in range(len(ids)) if gen.session.token_frontier(p) == 2]
    assert len(dropped) == 30 - 12
    saved = {p: gen.session.aux_hidden(p) for p in dropped}
    assert all(layer == 2 and h.shape == (hp["d_model"],) for layer, h in saved.values())
    kv0_before = {p: gen.session.read_kv(0, p) for p in dropped}
    # a decode step whose selection keeps everything: all dropped tokens are selected again
    gen.set_lazy([(1, 1.0)])
    gen.append([5])
    stats = gen.stats
    assert stats["revived_tokens"] == len(dropped)
    assert stats["recomputed_pairs"] == 0
    for p in dropped:
        assert gen.session.token_frontier(p) == hp["n_layer"]
        k0, v0 = gen.session.read_kv(0, p)
        assert np.array_equal(k0, kv0_before[p][0]) and np.array_equal(v0, kv0_before[p][1])  # layer 0 untouched
        k2, v2 = gen.session.read_kv(2, p)
        k_ref, v_ref = layer_kv(hp, w, 2, saved[p][1][None, :].astype(np.float64), [p])
        np.testing.assert_allclose(k2, k_ref[0], rtol=0, atol=2e-3 * max(1.0, np.abs(k_ref).max()))
        np.testing.assert_allclose(v2, v_ref[0], rtol=0, atol=2e-3 * max(1.0, np.abs(v_ref).max()))
        layer, h = gen.session.aux_hidden(p)
        assert layer == hp["n_layer"] and h.size == 0  # fully computed: no aux entry left
    # pairs: prefill 30+30+12+12, decode 4 for the new token + 2 layers for each revived token
    assert stats["total_pairs_computed"] == (30 + 30 + 12 + 12) + 4 + 2 * len(dropped)
    assert stats["total_pairs_computed"] <= stats["total_pairs_dense"]
    gen.set_lazy(None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_at_most_once_over_long_decode(default_model_path, backend):
    gen = lazyllm_edge.Generator(str(default_model_path), n_ctx=1024, lazy="aggressive",
                                 backend=require_backend(backend))
    text = "The committee met on Tuesday to discuss the budget, the schedule and the new building. " * 12
    pieces = list(gen.generate(text, max_tokens=96, temperature=0.7, seed=3))
    st_ = gen.stats
    assert st_["recomputed_pairs"] == 0
    assert st_["total_pairs_computed"] <= st_["total_pairs_dense"]
    assert st_["prefill_fraction_computed"] < 0.7
    assert len(pieces) > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_schedules_never_exceed_dense(tiny, data):
    gen, hp, _ = tiny
    n_layer = hp["n_layer"]
    layers = sorted(data.draw(st.sets(st.integers(0, n_layer - 1), min_size=1, max_size=n_layer)))
    schedule = [(l, data.draw(st.floats(0.05, 1.0))) for l in layers]
    prune_decode = data.draw(st.booleans())
    n_prompt = data.draw(st.integers(2, 60))
    n_decode = data.draw(st.integers(0, 12))
    budget = data.draw(st.one_of(st.none(), st.integers(0, 8)))
    gen.set_lazy(lazyllm_edge.LazyConfig(schedule=tuple(schedule), prune_decode=prune_decode, revival_budget=budget,
                                         query_window=data.draw(st.integers(1, 8)),
                                         pool_radius=data.draw(st.integers(0, 4)),
                                         decode_pool_radius=data.draw(st.one_of(st.none(), st.integers(0, 4)))
                                         if prune_decode else None,
                                         min_kept_tokens=data.draw(st.one_of(st.none(), st.integers(0, 40))),
                                         importance=data.draw(st.sampled_from(["mean", "max"]))))
    gen.reset()
    logits = gen.append(prompt_ids(n_prompt, seed=n_prompt))
    for _ in range(n_decode):
        if data.draw(st.booleans()):  # switch schedules between steps too
            gen.set_lazy([(l, data.draw(st.floats(0.05, 1.0))) for l in layers])
        logits = gen.append([int(np.argmax(logits))])
        assert np.isfinite(logits).all()
    st_ = gen.stats
    assert st_["recomputed_pairs"] == 0
    assert st_["total_pairs_computed"] <= st_["total_pairs_dense"]
    assert st_["layer_kv_tokens"][0] == n_prompt + n_decode  # every token has layer 0
    assert all(a >= b for a, b in zip(st_["layer_kv_tokens"], st_["layer_kv_tokens"][1:]))
    gen.set_lazy(None)


def test_config_validation(tiny):
    gen, hp, _ = tiny
    for bad in ([(5, 0.5)], [(2, 0.5), (1, 0.5)], [(1, 0.0)], [(1, 1.5)], [(-1, 0.5)], "nonsense", "1:0.5,x:2"):
        with pytest.raises(ValueError):
            gen.set_lazy(bad)
    with pytest.raises(ValueError):
        lazyllm_edge.Generator(str(gen.path), n_ctx=64, lazy=[(9, 0.5)])
    with pytest.raises(ValueError):
        lazyllm_edge.LazyConfig.preset("fastest")
    gen.set_lazy("1:0.5,2:0.5")
    assert gen.session.lazy.schedule == [(1, 0.5), (2, 0.5)]
    gen.set_lazy(lazyllm_edge.LazyConfig.preset("balanced"))
    assert len(gen.session.lazy.schedule) >= 1
    gen.set_lazy("off")
    assert gen.session.lazy.schedule == []
    for bad, named in (("1:0.5/revive:-1", "revival budget"), ("1:0.5/revive:x", "revival budget"),
                       ("1:0.5,window:0", "query window"), ("1:0.5,window:65", "query window"),
                       ("1:0.5,importance:median", "importance"), ("1:0.5,pool:-1", "pool radius"),
                       ("1:0.5,pool:65", "pool radius"), ("1:0.5/revive:1,revive:2", "revive"),
                       ("1:0.5/revive:1,pool:-1", "decode pool radius"), ("1:0.5/revive:1,pool:65", "decode pool radius"),
                       ("1:0.5,floor:-1", "token floor"), ("1:0.5,floor:x", "token floor"), ("1:0.5/floor:4", "bad layer")):
        with pytest.raises(ValueError, match=named):
            gen.set_lazy(bad)
    with pytest.raises(ValueError, match="importance"):
        lazyllm_edge.LazyConfig(schedule=((1, 0.5),), importance="median")
    with pytest.raises(ValueError, match="min_kept_tokens"):
        gen.set_lazy(lazyllm_edge.LazyConfig(schedule=((1, 0.5),), min_kept_tokens=-1))
    with pytest.raises(ValueError, match="needs decode pruning"):  # a radius for steps that rank nothing
        gen.set_lazy(lazyllm_edge.LazyConfig(schedule=((1, 0.5),), prune_decode=False, decode_pool_radius=2))
    # "/pool:N" alone: decode steps prune with the prefill's stages, ranked with their own radius
    lazy = lazyllm_edge._core.parse_lazy_spec("1:0.5,pool:3/pool:0", hp["n_layer"])
    assert lazy.prune_decode and lazy.decode_schedule == [] and (lazy.pool_radius, lazy.decode_pool_radius) == (3, 0)
    for spec in ("1:0.5,importance:max,window:16/2:0.25,revive:3", "1:0.5,window:32,pool:7/revive:8", "1:0.5/revive:0",
                 "1:0.5/off", "off/2:0.5", "1:0.5,pool:7/revive:8,pool:0", "1:0.5/2:0.25,pool:2", "1:0.5/pool:1",
                 "1:0.5,importance:max,window:32,pool:7,floor:192/revive:8"):
        assert str(lazyllm_edge._core.parse_lazy_spec(spec, hp["n_layer"])) == spec  # a spec reads back as written


def test_presets_scale_with_depth():
    from lazyllm_edge import _core

    for n_layer in (4, 24, 30, 36):
        for name in ("balanced", "aggressive"):
            preset = _core.lazy_preset(name, n_layer)
            assert _core.parse_lazy_spec(str(preset), n_layer) == preset  # its spec string reads back the same
            sched, prune_decode, decode_sched = triple(preset)
            assert all(0 <= l < n_layer - 1 for l, _ in sched + decode_sched)
            # chosen by the evaluation: decode steps prune only with balanced's own deep, mild stage
            assert prune_decode is (name == "balanced") and bool(decode_sched) is (name == "balanced")
    assert triple(_core.lazy_preset("balanced", 30)) == ([(12, pytest.approx(0.1)), (16, pytest.approx(0.02))], True, [(24, 0.5)])
    assert triple(_core.lazy_preset("off", 30)) == ([], True, [])


def test_decode_schedule_prunes_decode_steps_with_its_own_stages(tiny):
    """A decode schedule ("PREFILL/DECODE") applies to one-token steps only: the prefill prunes as the first
    part says, a decode step as the second, with the same bits as switching schedules between the steps."""
    gen, hp, _ = tiny
    ids = prompt_ids(30, seed=4)
    gen.set_lazy("1:0.4/2:0.5")
    assert triple(gen.session.lazy) == ([(1, pytest.approx(0.4))], True, [(2, 0.5)])
    gen.reset()
    prefill = gen.append(ids)
    assert gen.stats["layer_kv_tokens"] == [30, 30, 12, 12]
    decode = gen.append([5])
    # the decode step's active set is the whole context through layer 2 (every parked token resumes there), then
    # halves; with the prefill stages it would have shrunk after layer 1
    counts = gen.stats["layer_kv_tokens"]
    assert counts[:3] == [31, 31, 31] and counts[3] < 31
    assert gen.stats["recomputed_pairs"] == 0

    gen.set_lazy([(1, 0.4)])
    gen.reset()
    assert np.array_equal(gen.append(ids), prefill)
    gen.set_lazy([(2, 0.5)])
    assert np.array_equal(gen.append([5]), decode)
    assert gen.stats["layer_kv_tokens"] == counts

    # "/off": prefill-only pruning, the same as prune_decode=False
    gen.set_lazy("1:0.4/off")
    assert (gen.session.lazy.prune_decode, gen.session.lazy.decode_schedule) == (False, [])
    gen.reset()
    gen.append(ids)
    off = gen.append([5])
    gen.set_lazy(lazyllm_edge.LazyConfig(schedule=((1, 0.4),), prune_decode=False))
    gen.reset()
    gen.append(ids)
    assert np.array_equal(gen.append([5]), off)
    assert gen.stats["layer_kv_tokens"] == [31, 31, 31, 31]
    gen.set_lazy(None)


def test_decode_schedule_forms_and_validation(tiny):
    gen, hp, _ = tiny
    from lazyllm_edge import LazyConfig, _core
    from lazyllm_edge.lazy import resolve_lazy

    assert triple(resolve_lazy(LazyConfig(schedule=((1, 0.5),), decode_schedule=((0.5, 0.5),)), 4)) == ([(1, 0.5)], True, [(2, 0.5)])
    assert triple(resolve_lazy("1:0.5/balanced", 30))[2] == _core.lazy_preset("balanced", 30).schedule
    assert triple(resolve_lazy("/2:0.5", 4)) == ([], True, [(2, 0.5)])  # dense prefill, pruned decode steps
    assert triple(resolve_lazy("aggressive", 30))[2] == []  # a preset without decode stages of its own
    assert triple(resolve_lazy("balanced/off", 30))[1:] == (False, [])
    for bad in ("1:0.5/9:0.5", "1:0.5/2:0.5/3:0.5", "1:0.5/2:0", "1:0.5/x", "1:0.5/2:0.5,1:0.5"):
        with pytest.raises(ValueError):
            gen.set_lazy(bad)
    with pytest.raises(ValueError):
        gen.set_lazy(LazyConfig(schedule=((1, 0.5),), decode_schedule=((1, 1.5),)))
    with pytest.raises(ValueError, match="decode schedule: prune layer 5 is out of range"):
        _core.parse_lazy_spec("1:0.5/5:0.5", gen.n_layer)  # what a session takes is validated by the core
    gen.set_lazy(None)


def test_relative_depth_resolves_the_same_in_both_forms(tmp_path):
    """A relative depth goes through the core's parser whether written "0.15:0.5" or [(0.15, 0.5)]: on 30 layers
    0.15 is layer 4.5, rounded to 5 in both, so both prune after layer 5."""
    from lazyllm_edge.lazy import resolve_lazy
    from make_tiny import write_tiny_model

    assert resolve_lazy("0.15:0.5", 30) == resolve_lazy([(0.15, 0.5)], 30)
    assert triple(resolve_lazy("0.15:0.5", 30)) == ([(5, 0.5)], True, [])
    write_tiny_model(tmp_path / "deep.gguf", "llama", 30, "F32")
    gen = lazyllm_edge.Generator(str(tmp_path / "deep.gguf"), n_ctx=64, n_threads=1)
    ids = prompt_ids(20, seed=6)
    counts = []
    for lazy in ("0.15:0.5", [(0.15, 0.5)], lazyllm_edge.LazyConfig(schedule=((0.15, 0.5),))):
        gen.set_lazy(lazy)
        gen.reset()
        gen.append(ids)
        counts.append(gen.stats["layer_kv_tokens"])
    assert counts[0] == counts[1] == counts[2]
    assert counts[0][5] == 20 and counts[0][6] == 10  # computed through layer 5, then half


def _old_preset_layers(depths, n_layer):
    """The preset rule before stage_layers existed: each depth's rounded layer (at most n_layer - 2), a stage that is
    not after the one before it dropped."""
    out = []
    for d in depths:
        layer = min(max(int(np.floor(d * n_layer + 0.5)), 0), n_layer - 2)
        if not out or layer > out[-1]:
            out.append(layer)
    return out


def test_relative_stages_go_to_layers_that_rank_every_token():
    """A sliding-window layer ranks only its window (and a linear-attention layer ranks nothing), so a preset's stages
    and relative depths go to the nearest layer that ranks every token (ModelInfo.stage_layers), after the stage
    before them; absolute layers stay where written; without stage_layers nothing changes."""
    from lazyllm_edge import _core

    # gemma3's pattern on 18 layers: global attention at 5, 11 and 17
    gemma = [1 if l % 6 == 5 else 0 for l in range(18)]
    assert str(_core.lazy_preset("balanced", 18, gemma)) == "5:0.1,11:0.02/11:0.5"  # from 7, 10 / 14
    # 2, 7, 12: the third has no layer left before the last, so it is dropped
    assert str(_core.lazy_preset("aggressive", 18, gemma)) == "5:0.4,11:0.5/off"
    assert str(_core.lazy_preset("aggressive", 18)) == "2:0.4,7:0.5,12:0.5/off"
    assert str(_core.parse_lazy_spec("0.3:0.5,0.35:0.3", 18, gemma)) == "5:0.5,11:0.3"
    assert str(_core.parse_lazy_spec("7:0.5,0.9:0.5", 18, gemma)) == "7:0.5,11:0.5"  # absolute layers as written
    assert str(_core.parse_lazy_spec("1:0.5/0.9:0.5", 18, gemma)) == "1:0.5/11:0.5"
    # of two as near, the later: depth 0.5 of 12 layers is layer 6, between 4 and 8
    assert str(_core.parse_lazy_spec("0.5:0.5", 12, [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])) == "8:0.5"
    with pytest.raises(ValueError, match="no layer after 11 can take the stage"):
        _core.parse_lazy_spec("0.3:0.5,0.4:0.3,0.5:0.2", 18, gemma)
    with pytest.raises(ValueError, match="no layer before the last can take the stage '0.5:0.5'"):
        _core.parse_lazy_spec("0.5:0.5", 4, [0, 0, 0, 1])
    with pytest.raises(ValueError, match="stage_layers has 3 entries for a model of 18 layers"):
        _core.parse_lazy_spec("balanced", 18, [1, 1, 1])
    # every layer marked, or none given: the old rule at every depth
    for n_layer in range(2, 80):
        for name, depths in (("balanced", (0.40, 0.53)), ("aggressive", (0.13, 0.40, 0.67))):
            for layers in ([], [1] * n_layer):
                assert [l for l, _ in _core.lazy_preset(name, n_layer, layers).schedule] == _old_preset_layers(depths, n_layer)


def test_presets_on_sliding_window_and_hybrid_models(tmp_path):
    """On a model's own layers: a gemma3 with global attention at 5 and 11 takes the generic balanced preset's stage at
    layer 5 (its ranking sees every token there, so the prefill prunes what it should); a qwen35 hybrid (linear
    attention through layer 3) takes it at layer 4, where before it raised."""
    from make_tiny import write_tiny_model

    write_tiny_model(tmp_path / "gemma3.gguf", "gemma3", 12, "F32")
    gen = lazyllm_edge.Generator(str(tmp_path / "gemma3.gguf"), n_ctx=128, n_threads=1)
    assert gen.info["stage_layers"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    # 0.40 x 12 -> 5; 0.53 x 12 -> 6, no layer that ranks every token left before the last; decode 0.8 x 12 -> 10 -> 5
    assert str(gen.schedule_for("balanced")) == "5:0.1/5:0.5"
    gen.set_lazy("balanced")
    gen.append(prompt_ids(40, seed=3))
    counts = gen.stats["layer_kv_tokens"]
    assert counts[:6] == [40] * 6 and counts[6:] == [4] * 6  # 10 % of 40 after layer 5
    assert gen.stats["recomputed_pairs"] == 0
    # the C++ CLI resolves with the model's stage_layers too: two relative stages cannot both find a layer (before the
    # last) that ranks every token, where on any layer they would be 4 and 5
    import subprocess
    from pathlib import Path

    cli = str(Path(lazyllm_edge.__file__).resolve().parent / "bin" / "lazyllm-edge")
    base = [cli, "-m", str(tmp_path / "gemma3.gguf"), "-p", "hello", "-n", "2", "--temp", "0", "-t", "1", "-c", "64"]
    bad = subprocess.run(base + ["--lazy", "0.35:0.5,0.4:0.5"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no layer after 5 can take the stage" in bad.stderr
    assert subprocess.run(base + ["--lazy", "0.35:0.5"], capture_output=True, text=True, timeout=60).returncode == 0

    write_tiny_model(tmp_path / "hybrid.gguf", "qwen35", 6, "F32", recurrent_layers=[1, 1, 0, 1, 0, 0])
    hybrid = lazyllm_edge.Generator(str(tmp_path / "hybrid.gguf"), n_ctx=128, n_threads=1)
    assert hybrid.info["stage_layers"] == [0, 0, 0, 0, 1, 1]
    assert str(hybrid.schedule_for("aggressive")) == "4:0.4/off"
    hybrid.set_lazy("aggressive")
    hybrid.append(prompt_ids(40, seed=3))
    assert hybrid.stats["layer_kv_tokens"] == [40] * 5 + [16]
    for n_layer_model in (gen, hybrid):
        n_layer_model.set_lazy(None)


def test_lazy_config_class():
    from lazyllm_edge import LazyConfig, _core

    c = LazyConfig(schedule=((1, 0.5), (0.5, 0.25)), prune_decode=False)
    assert c.schedule == ((1, 0.5), (0.5, 0.25)) and c.prune_decode is False
    assert c.preset_name is None and c.decode_schedule == ()
    same = LazyConfig(schedule=[[1, 0.5], (0.5, 0.25)], prune_decode=False)
    assert c == same and hash(c) == hash(same) and c != LazyConfig(schedule=((1, 0.5),))
    assert repr(c) == "LazyConfig(schedule=((1, 0.5), (0.5, 0.25)), prune_decode=False, preset_name=None, decode_schedule=())"
    assert triple(c.resolve(30)) == ([(1, 0.5), (15, 0.25)], False, [])
    assert LazyConfig.preset("aggressive").resolve(30) == _core.lazy_preset("aggressive", 30)
    assert LazyConfig.preset("balanced", prune_decode=False).resolve(30).prune_decode is False
    for bad in (((1.5, 0.5),), ((-0.1, 0.5),), ((1.0, 0.5),)):
        with pytest.raises(ValueError, match="relative depth"):
            LazyConfig(schedule=bad).resolve(30)
    with pytest.raises(ValueError, match="out of range"):
        LazyConfig(schedule=((2**40, 0.5),)).resolve(30)
    with pytest.raises(ValueError, match="not both"):
        LazyConfig(schedule=((1, 0.5),), preset_name="balanced")
    floored = LazyConfig(schedule=((1, 0.5),), min_kept_tokens=64)
    assert floored.min_kept_tokens == 64 and floored != LazyConfig(schedule=((1, 0.5),))
    assert repr(floored).endswith(", min_kept_tokens=64)") and floored.resolve(30).min_kept_tokens == 64
    assert str(floored.resolve(30)) == "1:0.5,floor:64"
