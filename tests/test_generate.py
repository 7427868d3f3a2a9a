"""The C++ generation loop (cpp/runtime/generate.cpp) through Python: stop strings across tokens, max_tokens,
cancel, a full context, UTF-8 pieces, a superseded generation and the per-call lazy schedule."""

import threading

import pytest

import lazyllm_edge
from lazyllm_edge import _core

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return lazyllm_edge.Generator(str(tiny_model[0]), n_ctx=64, n_threads=1)


def pieces(gen, prompt=PROMPT, **kw):
    kw.setdefault("max_tokens", 16)
    kw.setdefault("temperature", 0)
    return [p.text for p in gen.generate(prompt, **kw)]


def test_stop_string_across_tokens(default_generator):
    full = pieces(default_generator)
    text = "".join(full)
    # the end of one piece and the start of the next: the stop string begins inside a token and spans two
    k = next(i for i in range(1, len(full) - 1) if len(full[i]) >= 2 and full[i + 1])
    stop = full[k][1:] + full[k + 1][:1]
    cut = pieces(default_generator, stop=stop)
    assert "".join(cut) == text[: text.index(stop)]
    assert default_generator.finish_reason == "stop"
    # several stop strings: the earliest found wins
    cut = pieces(default_generator, stop=["never in this text", full[k + 1], stop])
    assert "".join(cut) == text[: min(text.index(stop), text.index(full[k + 1]))]


def test_held_text_is_released(default_generator):
    full = pieces(default_generator)
    text = "".join(full)
    # text that begins a stop string is held until the next token decides, then emitted unchanged
    started = pieces(default_generator, stop=full[2] + "\u2603 never")
    assert "".join(started) == text and default_generator.finish_reason == "length"
    assert len(started) < len(full)  # the held piece came out together with the next one
    # held up to the end: the end of the stream releases it
    assert "".join(pieces(default_generator, stop=full[-1] + "\u2603")) == text


def test_max_tokens_feeds_every_token_shown(default_generator):
    ids = default_generator.tokenize(PROMPT)
    got = list(default_generator.generate(ids, max_tokens=5, temperature=0))
    assert len(got) == 5 and default_generator.finish_reason == "length"
    assert default_generator.n_past == len(ids) + 5
    assert default_generator.session.tokens[len(ids):] == [p.token for p in got]


def test_cancel_between_tokens(tiny):
    stream = tiny.generate([1, 2, 3], max_tokens=None, temperature=1.0, min_p=0.0, seed=1)
    first = next(stream)
    stream.cancel()
    assert list(stream) == []
    assert stream.finish_reason == tiny.finish_reason == "cancelled"
    assert tiny.n_past == 4 and tiny.session.tokens[-1] == first.token  # the token shown was fed
    context = tiny.session.tokens
    before = tiny.generate([1, 2, 3], max_tokens=None)
    tiny.cancel()  # before the first step: the prompt is not even fed, nor the cached context truncated to it
    assert list(before) == [] and tiny.finish_reason == "cancelled" and tiny.session.tokens == context


def test_cancel_from_another_thread(tiny):
    stream = tiny.generate([1, 2, 3], max_tokens=None, temperature=1.0, min_p=0.0, seed=2)
    started, cancelled, got = threading.Event(), threading.Event(), []

    def consume():
        for piece in stream:
            got.append(piece)
            started.set()
            cancelled.wait()

    worker = threading.Thread(target=consume)
    worker.start()
    started.wait()
    stream.cancel()
    cancelled.set()
    worker.join()
    assert len(got) == 1 and stream.finish_reason == "cancelled"


def test_full_context(tiny_model):
    gen = lazyllm_edge.Generator(str(tiny_model[0]), n_ctx=16, n_threads=1)
    sampling = _core.SamplingParams(temperature=5.0, top_k=0, top_p=1.0, min_p=0.0, seed=4)
    native = _core.Generation(gen.session, [1, 2, 3, 4], sampling, ignore_eos=True)
    list(native)
    # 12 tokens fit after the prompt; the 13th is shown but finds no room
    assert native.finish_reason == "length" and native.n_generated == 13 and gen.n_past == 16
    gen.reset()
    exact = _core.Generation(gen.session, list(range(1, 17)), sampling, ignore_eos=True)
    list(exact)
    assert exact.finish_reason == "length" and exact.n_generated == 1 and gen.n_past == 16


def test_pieces_are_whole_utf8_characters(tiny):
    # the tiny model's tokens are single bytes: at a high temperature multi-byte characters span tokens
    got = list(tiny.generate([1, 2, 3], max_tokens=48, temperature=3.0, top_k=0, top_p=1.0, min_p=0.0, seed=5))
    tokens = tiny.session.tokens[3:]
    text = tiny.model.detokenize_bytes(tokens, False).decode("utf-8", errors="replace")
    assert "".join(p.text for p in got) == text
    assert len(got) < len(tokens)  # some tokens completed no character: their text came with a later one
    assert all(p.text for p in got)
    # invalid bytes become replacement characters, which a stop string finds like any other text
    cut = tiny.generate([1, 2, 3], max_tokens=48, temperature=3.0, top_k=0, top_p=1.0, min_p=0.0, seed=5, stop="\ufffd")
    assert "".join(p.text for p in cut) == text[: text.index("\ufffd")]


def test_another_call_supersedes_a_generation(tiny):
    stream = tiny.generate([1, 2, 3], max_tokens=10, temperature=0)
    next(stream)
    tiny.append([5])
    with pytest.raises(RuntimeError, match="superseded"):
        next(stream)
    assert list(stream) == [] and stream.finish_reason is None


def test_lazy_for_one_generation(tiny):
    tiny.set_lazy(None)
    stream = tiny.generate([1, 2, 3, 4, 5, 6], max_tokens=3, temperature=0, lazy="1:0.5")
    next(stream)
    assert tiny.session.lazy.schedule == [(1, 0.5)]
    list(stream)
    assert tiny.session.lazy.schedule == []  # restored when it ended
    # a superseded generation leaves the schedule to the one that took over
    old = tiny.generate([1, 2, 3, 4, 5, 6], max_tokens=3, temperature=0, lazy="1:0.5")
    next(old)
    new = tiny.generate([1, 2, 3], max_tokens=3, temperature=0, lazy="2:0.5")
    next(new)
    assert tiny.session.lazy.schedule == [(2, 0.5)]
    with pytest.raises(RuntimeError):
        list(old)
    del old
    assert tiny.session.lazy.schedule == [(2, 0.5)]
    list(new)
    assert tiny.session.lazy.schedule == []
    # a generation that fails (a prompt longer than the context) gives the schedule back at once
    failed = tiny.generate(list(range(1, 100)), lazy="1:0.5")
    with pytest.raises(ValueError, match="n_ctx"):
        next(failed)
    assert tiny.session.lazy.schedule == []


def test_bad_values_name_the_argument(tiny):
    for kwargs, message in [(dict(top_p=2.0), "top_p must be in (0, 1], got 2.0"),
                            (dict(temperature=-1), "temperature must be >= 0 (0: greedy), got -1.0"),
                            (dict(min_p=1.5), "min_p must be in [0, 1], got 1.5"),
                            (dict(repeat_penalty=0), "repeat_penalty must be > 0 (1: off), got 0.0"),
                            (dict(repeat_last_n=-2), "repeat_last_n must be >= 0, got -2"),
                            (dict(max_tokens=-1), "max_tokens must be >= 0 (None: no limit), got -1"),
                            (dict(seed=-3), "seed must be an integer in [0, 2**64) or None, got -3"),
                            (dict(stop=[1, 2]), "stop must be a string or a list of strings, got [1, 2]"),
                            (dict(lazy="sideways"), "unknown lazy preset 'sideways'")]:
        with pytest.raises(ValueError) as e:
            tiny.generate("hello", **kwargs)
        assert str(e.value).startswith(message), (kwargs, str(e.value))
