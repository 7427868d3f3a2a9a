"""Per-model calibration (lazyllm_edge.calibrate) on the tiny model: the stored record, the Generator and the CLI
picking the model's own schedule up, and the hint when a model has none."""
import json
import shutil

import numpy as np

import pytest

import lazyllm_edge
from lazyllm_edge import calibrate, cli


@pytest.fixture()
def own_cache(tmp_path, monkeypatch, tiny_model):
    """An empty model cache, and a copy of the tiny model (a calibration is keyed by the file's sha256)."""
    monkeypatch.setenv("LAZYLLM_EDGE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    shutil.copy(tiny_model[0], path)
    return path


def test_calibration_is_stored_and_used(own_cache, capsys, monkeypatch):
    # a random model's attention finds nothing: say its number ranks in the top 5 % from layer 2 on
    measured = calibrate.needle_ranks
    ranks = {}

    def located_from_layer_2(gen, probes, signal=None):
        ranks["measured"] = measured(gen, probes, signal)
        return ranks["measured"] * 0 + [1, 1, 0.05, 0.05]
    monkeypatch.setattr(calibrate, "needle_ranks", located_from_layer_2)
    # and that it answers every probe, dense or pruned (the run still answers them: 3 generations each)
    measured_answers = calibrate.answers
    monkeypatch.setattr(calibrate, "answers", lambda gen, probes, spec: measured_answers(gen, probes, spec) * 0 + len(probes))
    # and that its decode steps follow dense's continuation better unpooled with the balanced schedule only (the
    # continuations are still run and measured)
    signal, budget = calibrate.SIGNAL_SPEC, calibrate.REVIVAL_BUDGET
    measured_fidelity, continued = calibrate.fidelity, []

    def unpooled_better_for_balanced(gen, probes, spec, dense_top1=None):
        top1, agree = measured_fidelity(gen, probes, spec, dense_top1)
        continued.append((spec, len(probes), len(top1), agree))
        if dense_top1 is None:
            return top1, agree
        return top1, 0.97 if spec == f"2:0.2,{signal}/revive:{budget},pool:0" else 0.94
    monkeypatch.setattr(calibrate, "fidelity", unpooled_better_for_balanced)
    record = calibrate.calibrate(str(own_cache), n_probes=3, n_tokens=200, log=lambda m: None)
    assert ranks["measured"].shape == (3, 4) and ((ranks["measured"] >= 0) & (ranks["measured"] <= 1)).all()
    stored = json.loads((calibrate.calibration_dir() / f"{record['sha256']}.json").read_text())
    assert stored == record and record["sha256"] == calibrate.model_sha256(own_cache)
    assert len(record["worst_digit_rank_p75"]) == record["n_layer"] == 4
    assert record["probes"] == 3 and all(0 <= c["answers"] <= 3 for c in record["checks"])
    # the cut falls where the number ranks inside the keep fraction; the cheapest candidate of each preset passes;
    # balanced's decode steps rank unpooled (3 points more agreement; the margin asks 2), aggressive's do not
    assert record["schedules"] == {"balanced": f"2:0.2,{signal}/revive:{budget},pool:0",
                                   "aggressive": f"2:0.1,{signal}/revive:{budget}"}
    # dense, then each winner pooled and unpooled, over the same documents (prefix + FIDELITY_TOKENS each)
    assert [c[0] for c in continued] == ["off", f"2:0.2,{signal}/revive:{budget}", f"2:0.2,{signal}/revive:{budget},pool:0",
                                         f"2:0.1,{signal}/revive:{budget}", f"2:0.1,{signal}/revive:{budget},pool:0"]
    assert all(n == calibrate.FIDELITY_DOCS and n_top1 == n * calibrate.FIDELITY_TOKENS and 0 <= agree <= 1
               for _, n, n_top1, agree in continued)
    assert [(c["preset"], c["decode_pool"], c["unpooled_answers"]) for c in record["fidelity_checks"]] == \
        [("balanced", 0, 3), ("aggressive", None, None)]

    for preset, spec in record["schedules"].items():
        assert f"/revive:{calibrate.REVIVAL_BUDGET}" in spec
        gen = lazyllm_edge.Generator(str(own_cache), n_ctx=256, lazy=preset)
        assert str(gen.session.lazy) == spec  # the model's own schedule, not the generic preset
        gen.set_lazy(lazyllm_edge.LazyConfig.preset(preset))  # the preset as a LazyConfig: the same
        assert str(gen.session.lazy) == spec
        gen.set_lazy(lazyllm_edge.LazyConfig.preset(preset, prune_decode=False))  # overridden: the generic one
        assert gen.session.lazy == lazyllm_edge.LazyConfig.preset(preset, prune_decode=False).resolve(gen.n_layer)
    assert "no calibrated" not in capsys.readouterr().err
    args = ["-m", str(own_cache), "--lazy", "balanced", "-p", "hi"]
    assert cli.with_calibrated_lazy(args) == ["-m", str(own_cache), "--lazy", record["schedules"]["balanced"], "-p", "hi"]


def test_uncalibrated_model_uses_the_generic_preset_with_a_hint(own_cache, capsys):
    gen = lazyllm_edge.Generator(str(own_cache), n_ctx=256, lazy="balanced")
    assert gen.session.lazy == lazyllm_edge._core.lazy_preset("balanced", gen.n_layer)
    gen.set_lazy("aggressive")
    err = capsys.readouterr().err
    assert err.count("no calibrated LazyLLM schedule") == 1 and "python -m lazyllm_edge.calibrate" in err
    assert cli.with_calibrated_lazy(["-m", str(own_cache), "--lazy", "balanced"])[-1] == "balanced"


def test_probes_hide_a_number_in_shipped_text(tiny_model):
    gen = lazyllm_edge.Generator(str(tiny_model[0]), n_ctx=512)
    probes = calibrate.make_probes(gen, 4, 200)
    assert len({answer for _, answer in probes}) == 4
    for ids, answer in probes:
        text = gen.detokenize(ids)
        assert calibrate.NEEDLE.format(n=answer) in text and calibrate.QUESTION in text
        assert calibrate.needle_positions(gen, ids, answer)
    # with the reply's start given: the same prompt, then the prefix's tokens
    prefix = gen.tokenize(calibrate.ANSWER_PREFIX, add_special=False)
    for (ids, answer), (prefixed, same) in zip(probes, calibrate.make_probes(gen, 4, 200, answer_prefix=calibrate.ANSWER_PREFIX)):
        assert same == answer and prefixed == ids + prefix


def test_candidates_follow_the_ranks():
    """Stages sit at the earliest layer where the number ranks inside what is kept so far; cheapest first."""
    ranks = np.array([[0.9, 0.9, 0.9, 0.5, 0.25, 0.15, 0.05, 0.02, 0.01, 0.9]] * 4)  # 10 layers
    got = dict(calibrate.candidates(ranks, 10, [(0.2,), (0.3, 0.1)]))
    one, two = f"5:0.2,{calibrate.SIGNAL_SPEC}/revive:8", f"4:0.3,7:0.1,{calibrate.SIGNAL_SPEC}/revive:8"
    assert set(got) == {one, two}
    assert got[one] == pytest.approx((6 + 0.2 * 4) / 10)
    assert got[two] == pytest.approx((5 + 0.3 * 3 + 0.03 * 2) / 10)
    assert calibrate.candidates(ranks, 10, [(0.001,)]) == []  # never located that well: no candidate
    assert calibrate.candidates(ranks, 10, [("early", 0.2)]) == []  # nothing ranks it in the top 10 % before layer 4


def test_early_cut_candidates():
    """("early", ...): a mild cut to 0.7 at the first layer before a quarter of the depth that ranks the number in
    its top 10 %, the usual stages after it from a quarter of the depth (inside 0.7 x their keep), and a token floor."""
    ranks = np.array([[0.9, 0.5, 0.08, 0.5, 0.3, 0.15, 0.05, 0.02, 0.01, 0.9, 0.9, 0.9, 0.9]] * 4)  # 13 layers
    (spec, cost), = calibrate.candidates(ranks, 13, [("early", 0.3, 0.2)])
    assert spec == f"2:0.7,5:0.3,7:0.2,{calibrate.SIGNAL_SPEC},floor:{calibrate.FLOOR}/revive:8"
    assert cost == pytest.approx((3 + 0.7 * 3 + 0.21 * 2 + 0.042 * 5) / 13)
    # (0.7 x 0.3 = 0.21 > 0.15 at layer 5; 0.042 > 0.02 at layer 7)
    assert calibrate.candidates(ranks, 13, [("early", 0.01)]) == []  # its later stage never located: none


def test_sliding_window_layers_are_no_cut(tmp_path):
    """gemma3: a sliding layer ranks only the last token's window, which leaves the number out; such a layer
    counts as not locating it (rank 1), so no stage is placed there."""
    from make_tiny import write_tiny_model

    path = tmp_path / "tiny-gemma3.gguf"
    hp, _ = write_tiny_model(path, "gemma3", 6, "F32")  # layers 0-4 slide over 8 tokens, layer 5 is global
    gen = lazyllm_edge.Generator(str(path), n_ctx=512)
    probes = calibrate.make_probes(gen, 2, 120)
    ranks = calibrate.needle_ranks(gen, probes)  # (pooling reaches no token the window leaves out)
    assert ranks.shape == (2, 6) and (ranks[:, :5] == 1.0).all() and (ranks[:, 5] == 1.0).all()


def test_a_model_that_answers_nothing_dense_keeps_the_generic_presets(own_cache, monkeypatch):
    monkeypatch.setattr(calibrate, "needle_ranks", lambda gen, probes, signal=None: np.zeros((len(probes), 4)))
    record = calibrate.calibrate(str(own_cache), n_probes=2, n_tokens=200, log=lambda m: None)
    # (asked, then with the reply's start given: neither answered)
    assert record["dense_answers"] == 0 and record["answer_prefix"] is None
    assert record["schedules"] == {} and record["checks"] == []
    assert calibrate.calibrated_spec(own_cache, "balanced") == (True, None)  # calibrated: no hint, generic preset



def test_a_model_that_answers_only_with_the_reply_started_is_probed_so(own_cache, monkeypatch):
    """Fewer than half of the probes answered as asked: the probes get the reply's start (ANSWER_PREFIX), and when
    that answers more, they are what the ranks and every check use."""
    ranked = []

    def ranks(gen, probes, signal=None):
        ranked.append([ids for ids, _ in probes])
        return np.array([[1, 1, 0.05, 0.05]] * len(probes))
    monkeypatch.setattr(calibrate, "needle_ranks", ranks)
    checked = []

    def answers(gen, probes, spec):  # every probe, but only with the reply started
        prefix = gen.tokenize(calibrate.ANSWER_PREFIX, add_special=False)
        prefixed = all(ids[-len(prefix):] == prefix for ids, _ in probes)
        checked.append((spec, prefixed))
        return len(probes) if prefixed else 0
    monkeypatch.setattr(calibrate, "answers", answers)
    record = calibrate.calibrate(str(own_cache), n_probes=2, n_tokens=200, log=lambda m: None)
    assert record["answer_prefix"] == calibrate.ANSWER_PREFIX and record["dense_answers"] == 2
    assert checked[:2] == [("off", False), ("off", True)] and all(p for _, p in checked[1:])
    gen = lazyllm_edge.Generator(str(own_cache), n_ctx=512)
    assert ranked == [[ids for ids, _ in calibrate.make_probes(gen, 2, 200, answer_prefix=calibrate.ANSWER_PREFIX)]]
    assert set(record["schedules"]) == {"balanced", "aggressive"}
