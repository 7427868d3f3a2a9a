"""Hardening of the core through the Python API, on tiny generated models (fast; also run under
ASan/UBSan by tests/run_sanitized.sh): threads, resource limits, context end, model file removal."""
import os
import shutil
import threading

import pytest

import lazyllm_edge

PROMPT = "<|im_start|>user\nhello there<|im_end|>\n"


def _text(gen, prompt=PROMPT, **kw):
    kw.setdefault("max_tokens", 24)
    kw.setdefault("temperature", 0.0)
    return "".join(p.text for p in gen.generate(prompt, **kw))


@pytest.fixture(scope="module")
def tiny_path(tiny_model):
    return str(tiny_model[0])


def test_two_generators_in_two_threads_run_independently(tiny_path):
    gens = [lazyllm_edge.Generator(tiny_path, n_ctx=512, n_threads=1) for _ in range(2)]
    reference = _text(gens[0], max_tokens=200)
    results = [None, None]
    # independent: each holds its generation open after its first piece until the other has one too (a lock
    # shared between them would deadlock here, and the barrier's timeout would fail the test); this used to compare
    # timestamps, which a loaded machine could order either way
    both_started = threading.Barrier(2, timeout=120)

    def work(i):
        out = []
        for piece in gens[i].generate(PROMPT, max_tokens=200, temperature=0.0):
            if not out:
                both_started.wait()
            out.append(piece.text)
        results[i] = "".join(out)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [reference, reference]


def test_one_generator_from_two_threads_is_refused_not_corrupted(tiny_path):
    gen = lazyllm_edge.Generator(tiny_path, n_ctx=512, n_threads=1)
    reference = _text(gen, max_tokens=150)
    outcomes = []
    barrier = threading.Barrier(2)

    def work():
        barrier.wait()
        try:
            outcomes.append(("ok", _text(gen, max_tokens=150)))
        except RuntimeError as e:
            outcomes.append(("error", str(e)))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for kind, value in outcomes:
        if kind == "ok":
            assert value == reference
        else:
            assert "thread" in value or "superseded" in value
    # whatever happened, the Generator still works and gives the same text
    assert _text(gen, max_tokens=150) == reference


def test_native_session_refuses_a_second_thread(tiny_path):
    model = lazyllm_edge._core.Model.load(tiny_path, n_threads=1)
    session = lazyllm_edge._core.Session(model, n_ctx=4096)
    errors, done = [], [0]

    def work():
        for _ in range(300):
            try:
                session.append([5])
                done[0] += 1
            except RuntimeError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("another thread" in e for e in errors)
    assert session.n_past == done[0] == 600 - len(errors)


def test_n_ctx_beyond_memory_fails_at_creation(tiny_path, monkeypatch):
    monkeypatch.setenv("LAZYLLM_EDGE_MEMORY_LIMIT", str(8 << 20))
    with pytest.raises(MemoryError, match="n_ctx"):
        lazyllm_edge.Generator(tiny_path, n_ctx=200_000, n_threads=1)
    monkeypatch.delenv("LAZYLLM_EDGE_MEMORY_LIMIT")
    with pytest.raises(ValueError, match="n_ctx"):
        lazyllm_edge.Generator(tiny_path, n_ctx=1 << 30, n_threads=1)


def test_generation_past_n_ctx_stops_with_length(tiny_path):
    gen = lazyllm_edge.Generator(tiny_path, n_ctx=24, n_threads=1)
    reasons = []
    for seed in range(8):
        pieces = list(gen.generate("hello", max_tokens=1000, temperature=3.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed))
        reasons.append(gen.finish_reason)
        if gen.finish_reason == "length":
            assert gen.n_past == 24
            assert len(pieces) <= 24
    assert "length" in reasons
    assert set(reasons) <= {"length", "stop"}
    with pytest.raises(ValueError):
        list(gen.generate(list(range(30)), max_tokens=4))


def test_model_file_removed_while_mapped(tiny_path, tmp_path):
    copy = tmp_path / "moved.gguf"
    shutil.copy(tiny_path, copy)
    gen = lazyllm_edge.Generator(str(copy), n_ctx=128, n_threads=1)
    before = _text(gen)
    os.rename(copy, tmp_path / "renamed.gguf")
    os.unlink(tmp_path / "renamed.gguf")
    assert _text(gen) == before


def test_model_file_truncated_without_mmap(tiny_path, tmp_path):
    copy = tmp_path / "truncated.gguf"
    shutil.copy(tiny_path, copy)
    gen = lazyllm_edge.Generator(str(copy), n_ctx=128, n_threads=1, use_mmap=False)
    before = _text(gen)
    with open(copy, "r+b") as f:
        f.truncate(100)
    assert _text(gen) == before
    with pytest.raises(lazyllm_edge.ModelLoadError):
        lazyllm_edge.Generator(str(copy), n_ctx=128, n_threads=1)
