"""python -m lazyllm_edge.eval end to end on the tiny model: task kinds, the per-model table, the JSON report."""
import json

from lazyllm_edge import eval as lazy_eval


def _task_file(tmp_path):
    words = " ".join(f"w{i}" for i in range(40))
    tasks = [
        dict(kind="passkey", id="pk", user=f"{words} The pass key is 123. {words} What is the pass key?", answer="123",
             approx_tokens=300, depth=0.5),
        dict(kind="passkey", sub="multivalue", id="mv", user=f"{words} key: 7. {words} key: 9. Which values?",
             answer="7", answers=["7", "9"], approx_tokens=300, depth=0.5),
        dict(kind="fidelity", id="fi", user=words, continuation=" w1 w2 w3 w4", approx_tokens=150),
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in tasks))
    return path


def test_eval_runs_every_kind_and_reports_answer_time(tiny_model, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = lazy_eval.main(["--model", str(tiny_model[0]), "--tasks", str(_task_file(tmp_path)), "--schedules",
                         "off,1:0.5/revive:1", "--max-continuation", "3", "--json", str(out), "--quiet"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "tiny-llama.gguf" in table and "ans>=2k×" in table and "1:0.5/revive:1" in table
    report = json.loads(out.read_text())["tiny-llama.gguf"]
    rows = {r["schedule"]: r for r in report["summary"]}
    assert rows["1:0.5/revive:1"]["spec"] == "1:0.5/revive:1" and rows["off"]["spec"] == "off"
    assert rows["off"]["passkey_n"] == 2 and set(rows["off"]["accuracy_by_kind"]) == {"passkey", "multivalue"}
    assert rows["off"]["ttft_speedup"] == 1.0 and rows["off"]["fidelity_top1"] == 100.0
    results = report["results"]["1:0.5/revive:1"]
    mv = next(r for r in results if r["id"] == "mv")
    assert mv["correct"] == all(a in mv["reply"] for a in ("7", "9"))  # every value must appear
    assert all(r["answer_s"] >= r["ttft_s"] for r in results if r["kind"] == "passkey")
    assert next(r for r in results if r["id"] == "fi")["fraction_computed"] < 1.0


def test_forced_decode_pruning_keeps_the_rest_of_the_schedule():
    """--prune-decode / --fidelity-prune-decode on|off change only prune_decode: the signal (importance, query window,
    pooling), the stages' token floor, the stages and the revival budget stay the schedule's; decode steps' own pooling radius too while they
    prune (off: none, as nothing ranks in them)."""
    from lazyllm_edge.lazy import resolve_lazy

    spec = "7:0.5,14:0.3,importance:max,window:32,pool:7,floor:64/20:0.5,revive:8,pool:0"
    schedule = resolve_lazy(spec, 30)
    fields = ("schedule", "decode_schedule", "revival_budget", "importance", "query_window", "pool_radius",
              "min_kept_tokens")
    for mode in ("on", "off"):
        forced = lazy_eval.with_prune_decode(schedule, mode, 30)
        assert forced.prune_decode == (mode == "on")
        assert {f: getattr(forced, f) for f in fields} == {f: getattr(schedule, f) for f in fields}
        assert forced.decode_pool_radius == (0 if mode == "on" else -1)
    assert schedule.pool_radius == 7 and schedule.decode_pool_radius == 0 and schedule.min_kept_tokens == 64
    assert lazy_eval.with_prune_decode(schedule, "schedule", 30) is schedule


def test_dev_sets_are_the_default(monkeypatch):
    seen = {}
    monkeypatch.setattr(lazy_eval, "open_model", lambda model, threads: (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setattr(lazy_eval, "load_tasks", lambda path, kinds, max_tokens: seen.setdefault(path.name, []))
    try:
        lazy_eval.main([])
    except SystemExit:
        pass
    assert sorted(seen) == sorted(lazy_eval.DEV_SETS)


def test_a_preset_is_the_schedule_a_user_gets(tiny_model, tmp_path, capsys, monkeypatch):
    # a model calibrated with its own "balanced": the eval measures that schedule, as Generator(lazy="balanced") runs
    from lazyllm_edge import calibrate

    monkeypatch.setattr(calibrate, "calibrated_spec", lambda path, name: (True, "1:0.5/revive:2"))
    out = tmp_path / "report.json"
    assert lazy_eval.main(["--model", str(tiny_model[0]), "--tasks", str(_task_file(tmp_path)), "--schedules",
                           "balanced", "--kinds", "passkey", "--json", str(out), "--quiet"]) == 0
    assert "balanced = 1:0.5/revive:2" in capsys.readouterr().out
    rows = {r["schedule"]: r for r in json.loads(out.read_text())["tiny-llama.gguf"]["summary"]}
    assert rows["balanced"]["spec"] == "1:0.5/revive:2"
