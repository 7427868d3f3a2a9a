"""Smoke tests of the benchmark harnesses on the tiny generated model (seconds)."""

import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_bench_tiny(tiny_model, tmp_path, capsys):
    import bench

    path, _, _ = tiny_model
    out = tmp_path / "bench.json"
    rc = bench.main(["--model", str(path), "--threads", "1", "--reps", "2", "--tests", "pp32,tg4,tg2@d16,kv48",
                     "--kv-steps", "4", "--kv-recompute-steps", "2", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "pp32" in table and "tg2@d16" in table and "no cache" in table and "faster with the cache" in table
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["reps"] == 2
    by = {r["test"]: r for r in doc["results"]}
    assert set(by) == {"pp32", "tg4", "tg2@d16", "kv48"}
    for r in doc["results"]:
        assert len(r["samples_ts"]) == 2 and r["avg_ts"] > 0
    kv = by["kv48"]
    assert kv["recompute_avg_ts"] > 0 and kv["speedup"] == pytest.approx(kv["avg_ts"] / kv["recompute_avg_ts"])


def test_bench_bad_test_name():
    import bench

    with pytest.raises(SystemExit):
        bench.parse_tests("pp12,xx3")
    assert [t.name for t in bench.parse_tests("pp512, tg64,tg32@d4096,kv1024")] == ["pp512", "tg64", "tg32@d4096", "kv1024"]


def test_vs_llamacpp_parse():
    import vs_llamacpp

    names = [(t.kind, t.n, t.depth) for t in vs_llamacpp.parse_tests(vs_llamacpp.FULL_TESTS)]
    assert names == [("pp", 512, 0), ("pp", 2048, 0), ("pp", 4096, 0), ("tg", 64, 0), ("tg", 32, 4096),
                     ("ttft", 4096, 0), ("rss", 8192, 0)]
    with pytest.raises(SystemExit):
        vs_llamacpp.parse_tests("ttft64@d3")


def test_vs_llamacpp_tiny(tiny_model, tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    import vs_llamacpp

    path, _, _ = tiny_model
    out = tmp_path / "vs.json"
    rc = vs_llamacpp.main(["--model", str(path), "--threads", "1", "--reps", "2", "--tests", "pp32,tg4@d16,ttft32,rss256",
                           "--rss-prefill", "16", "--cooldown", "0", "--lazy", "1:0.5", "--json", str(out)])
    assert rc == 0
    assert "ttft32 (lazy=1:0.5)" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["top1_agree"] is True
    by = {r["test"]: r for r in doc["results"]}
    assert set(by) == {"pp32", "tg4@d16", "ttft32 (dense)", "ttft32 (lazy=1:0.5)", "rss256"}
    assert len(by["pp32"]["ours_samples"]) == 2 and len(by["pp32"]["theirs_samples"]) == 2
    assert by["rss256"]["ours"] > 0 and by["rss256"]["theirs"] > 0
    assert "AVX2" in doc["llama_cpp"].get("system_info", "AVX2") and doc["llama_cpp"]["lazyllm_edge_isa"]
    assert os.path.isfile(os.path.join(doc["llama_cpp"]["lazyllm_edge_path"], "__init__.py"))  # which package ran


def test_multiturn_tiny(tiny_model, tmp_path, capsys):
    """benchmarks/multiturn.py end to end on the tiny model (llama.cpp too when llama-cpp-python is installed)."""
    import importlib.util

    import multiturn

    path, _, _ = tiny_model
    out = tmp_path / "multiturn.json"
    argv = ["--model", str(path), "--threads", "1", "--doc-tokens", "96", "--questions", "2", "--reply-tokens", "3",
            "--lazy", "1:0.5", "--json", str(out), "--text", str(tmp_path / "multiturn.txt")]
    if importlib.util.find_spec("llama_cpp") is None:
        argv.append("--no-llama-cpp")
    assert multiturn.main(argv) == 0
    assert "ours faster by" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["ours"]) == 3 and doc["ours"][0]["reused_tokens"] == 0
    assert all(t["reused_tokens"] > 0 for t in doc["ours"][1:])  # the follow-ups reuse the conversation
    assert doc["saved"]["loaded_tokens"] > 96 and doc["saved"]["first_reply_reused"] > 0
    if doc["theirs"] is not None:
        assert len(doc["theirs"]) == 3


def test_numerics_ab_tiny(tmp_path, capsys):
    from make_tiny import write_tiny_model
    import numerics_ab

    path = tmp_path / "tiny-q4_1.gguf"  # quantized weights: fast prefill takes the packed int8 GEMM
    write_tiny_model(path, "llama", 2, "Q4_1")
    out = tmp_path / "ab.json"
    rc = numerics_ab.main(["--model", str(path), "--threads", "1", "--reps", "2", "--tests", "pp24,tg3",
                           "--json", str(out)])
    assert rc == 0
    assert "ratio = fast / fp32" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert [r["test"] for r in doc["results"]] == ["pp24", "tg3"]
    assert all(len(r["fast"]) == 2 and len(r["fp32"]) == 2 and r["ratio"] > 0 for r in doc["results"])


def test_heldout_tasks(tmp_path, monkeypatch):
    """Held-out tasks: the dev sets' format, each answer hidden once, text the dev sets do not contain, seeded."""
    import heldout_tasks

    out = tmp_path / "heldout.jsonl"
    monkeypatch.setattr(sys, "argv", ["heldout_tasks.py", "--out", str(out), "--tokens", "1000", "--per-kind", "2"])
    heldout_tasks.main()
    tasks = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t.get("sub", "passkey") for t in tasks] == ["passkey"] * 2 + ["niah"] * 2 + ["multikey"] * 2 + ["multivalue"] * 2
    dev = heldout_tasks.dev_text()
    for t in tasks:
        assert t["kind"] == "passkey" and t["answer"] == t["answers"][0] and len(t["answers"]) == (2 if t.get("sub") == "multivalue" else 1)
        assert all(t["user"].count(a) == 1 for a in t["answers"])
        assert t["user"].startswith(heldout_tasks.INSTRUCTION) and 4000 < len(t["user"]) < 4700  # filler + instruction, needles, question
        # the filler (without the needles and the question, which are the dev sets' own sentences) is not theirs
        body = "\n".join(line for line in t["user"][len(heldout_tasks.INSTRUCTION):t["user"].rindex("\n\n")].split("\n")
                         if "special magic number" not in line)
        assert not any(body[i:i + 60] in dev for i in range(0, len(body) - 60, 50))
        if t.get("sub") == "multikey":  # the key asked for and three distractors
            assert t["user"].count("One of the special magic numbers for") == 4
    monkeypatch.setattr(sys, "argv", ["heldout_tasks.py", "--out", str(tmp_path / "again.jsonl"), "--tokens", "1000", "--per-kind", "2"])
    heldout_tasks.main()
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()  # seeded
    # with fidelity tasks after them (a document and the text that follows it), the same retrieval tasks
    monkeypatch.setattr(sys, "argv", ["heldout_tasks.py", "--out", str(tmp_path / "fid.jsonl"), "--tokens", "1000",
                                      "--per-kind", "2", "--fidelity", "2"])
    heldout_tasks.main()
    with_fidelity = [json.loads(line) for line in (tmp_path / "fid.jsonl").read_text().splitlines()]
    assert with_fidelity[:8] == tasks and [t["kind"] for t in with_fidelity[8:]] == ["fidelity"] * 2
    for t in with_fidelity[8:]:
        assert 3900 < len(t["user"]) <= 4000 and 200 < len(t["continuation"]) < 400 and "special magic" not in t["user"]
