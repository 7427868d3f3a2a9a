"""Prefix reuse (generate/chat keep the cached prefix of a new prompt) and Session.truncate / reuse_prefix, on the
default model: reuse gives the logits of a whole prefill (dense) and the state of appending the same tokens step by
step (LazyLLM); an edit in the middle truncates there; settings that differ reuse nothing."""

import numpy as np
import pytest

import lazyllm_edge

TEXT = ("The lighthouse keeper climbed the spiral stairs every evening to light the lamp. Ships passing the rocky "
        "coast relied on its beam, and for forty years it had never failed. One stormy night the keeper noticed")


@pytest.fixture(scope="module")
def path(default_model_path):
    return str(default_model_path)


def frontier(gen):
    return [gen.session.token_frontier(p) for p in range(gen.n_past)]


def test_reuse_equals_whole_prefill_dense(path):
    """A second prompt that extends the first (prompt + reply + a follow-up) computes only the new tokens, and its
    logits equal a from-scratch prefill of the whole sequence within the KV-cache test's bound (fp32 numerics, as
    test_kv_cache_decode_equals_recompute), with the same argmax."""
    gen = lazyllm_edge.Generator(path, n_ctx=512, numerics="fp32")
    scratch = lazyllm_edge.Generator(path, n_ctx=512, numerics="fp32")
    first = gen.tokenize(TEXT)
    reply = [p.token for p in gen.generate(first, max_tokens=6, temperature=0)]
    assert gen.stats["reused_tokens"] == 0
    cached = gen.session.tokens
    assert cached[:len(first)] == first and len(cached) >= len(first) + len(reply) - 1
    follow = cached + gen.tokenize(" What happened next?", add_special=False)
    kept = gen.session.reuse_prefix(follow)
    assert kept == len(cached)
    logits = gen.append(follow[kept:])
    assert gen.stats["reused_tokens"] == len(cached) and gen.stats["prompt_tokens"] == len(follow) - len(cached)
    full = scratch.logits(follow)[-1]
    assert int(np.argmax(logits)) == int(np.argmax(full))
    np.testing.assert_allclose(logits, full, atol=1e-2, rtol=0)
    assert gen.stats["recomputed_pairs"] == 0


def test_generate_reuses_and_reports(path):
    """generate() with the default cache_prompt: the second call prefills only what follows the cached prefix; the
    whole prompt cached recomputes just its last token (the invariant counter stays 0); cache_prompt=False starts
    over every time."""
    gen = lazyllm_edge.Generator(path, n_ctx=512)
    ids = gen.tokenize(TEXT)
    list(gen.generate(ids, max_tokens=0))
    assert gen.n_past == len(ids) and gen.stats["reused_tokens"] == 0
    longer = ids + gen.tokenize(" a light", add_special=False)
    list(gen.generate(longer, max_tokens=0))
    assert gen.stats["reused_tokens"] == len(ids) and gen.stats["prompt_tokens"] == len(longer) - len(ids)
    list(gen.generate(longer, max_tokens=0))  # the same prompt again: its last token is computed once more
    assert gen.stats["reused_tokens"] == len(longer) - 1 and gen.stats["prompt_tokens"] == 1
    assert gen.stats["ttft_s"] > 0
    list(gen.generate(ids[:20], max_tokens=0))  # a prefix of the cache: truncated to it
    assert gen.n_past == 20 and gen.stats["reused_tokens"] == 19
    assert gen.stats["recomputed_pairs"] == 0
    fresh = lazyllm_edge.Generator(path, n_ctx=512, cache_prompt=False)
    for _ in range(2):
        list(fresh.generate(ids, max_tokens=0))
        assert fresh.stats["reused_tokens"] == 0 and fresh.stats["prompt_tokens"] == len(ids)


def test_edit_in_the_middle_truncates_there(path):
    gen = lazyllm_edge.Generator(path, n_ctx=512, numerics="fp32")
    scratch = lazyllm_edge.Generator(path, n_ctx=512, numerics="fp32")
    ids = gen.tokenize(TEXT)
    list(gen.generate(ids, max_tokens=4, temperature=0))
    edited = list(ids)
    k = len(ids) // 2
    edited[k] = gen.tokenize(" storm", add_special=False)[0]
    assert edited[k] != ids[k]
    assert gen.session.reuse_prefix(edited) == k
    assert gen.n_past == k and frontier(gen) == [gen.n_layer] * k
    logits = gen.append(edited[k:])
    full = scratch.logits(edited)[-1]
    assert int(np.argmax(logits)) == int(np.argmax(full))
    np.testing.assert_allclose(logits, full, atol=1e-2, rtol=0)
    list(gen.generate(ids, max_tokens=0))  # and back: the edit is cut off again
    assert gen.stats["reused_tokens"] == k


def test_reuse_with_lazyllm_equals_step_by_step(path):
    """With pruning, reuse keeps what the prefix pruned (parked in the aux cache) and later steps revive it: a session
    that was fed prompt, reply tokens one by one and another question, then reuses prompt + reply for a new question,
    ends bit for bit where a session fed prompt, reply and the new question step by step does."""
    lazy = "12:0.1,16:0.05/24:0.5"
    a = lazyllm_edge.Generator(path, n_ctx=512, lazy=lazy)
    b = lazyllm_edge.Generator(path, n_ctx=512, lazy=lazy)
    prompt = a.tokenize(TEXT)
    reply = a.tokenize(" a strange light", add_special=False)
    other = a.tokenize(" Where was the ship going?", add_special=False)
    question = a.tokenize(" Who was on the boat?", add_special=False)
    for g, tail in ((a, other), (b, question)):
        g.reset()
        g.append(prompt)
        for t in reply:
            g.append([t])
        if g is a:
            g.append(tail)
    pruned = [p for p, f in enumerate(frontier(b)) if f < b.n_layer]
    assert pruned, "the schedule prunes part of the prompt"
    kept = a.session.reuse_prefix(prompt + reply + question)
    assert kept == len(prompt) + len(reply)
    assert frontier(a) == frontier(b)
    for p in pruned[:8]:  # the pruned state is the same: the aux rows hold the same hidden states
        layer_a, h_a = a.session.aux_hidden(p)
        layer_b, h_b = b.session.aux_hidden(p)
        assert layer_a == layer_b and np.array_equal(h_a, h_b)
    la = a.append(question)
    lb = b.append(question)
    assert np.array_equal(la, lb)
    assert frontier(a) == frontier(b)
    # a decode step (dense up to layer 24) revives what the reused prefix pruned, as in the step-by-step session
    revived_before, before = a.stats["revived_tokens"], frontier(a)
    nxt = int(np.argmax(la))
    assert np.array_equal(a.append([nxt]), b.append([nxt]))
    assert a.stats["revived_tokens"] > revived_before
    assert frontier(a) == frontier(b) and any(frontier(a)[p] > before[p] for p in pruned)
    assert a.stats["recomputed_pairs"] == 0 and b.stats["recomputed_pairs"] == 0


def test_other_settings_reuse_nothing(path):
    """Tokens computed with another schedule or numerics are not reused: a call with other settings computes its
    prompt entirely in its own (the eval's dense-vs-lazy comparisons rely on it)."""
    gen = lazyllm_edge.Generator(path, n_ctx=512)
    ids = gen.tokenize(TEXT)
    list(gen.generate(ids, max_tokens=0, lazy="12:0.1"))
    list(gen.generate(ids, max_tokens=0, lazy="12:0.1"))
    assert gen.stats["reused_tokens"] == len(ids) - 1
    list(gen.generate(ids, max_tokens=0))  # dense now
    assert gen.stats["reused_tokens"] == 0 and gen.stats["prompt_tokens"] == len(ids)
    gen.set_numerics("fp32")
    list(gen.generate(ids, max_tokens=0))
    assert gen.stats["reused_tokens"] == 0


def test_truncate_and_bad_prompts_leave_the_session(path):
    gen = lazyllm_edge.Generator(path, n_ctx=128)
    ids = gen.tokenize(TEXT)
    gen.append(ids)
    with pytest.raises(ValueError):
        gen.session.truncate(len(ids) + 1)
    with pytest.raises(ValueError):
        gen.session.reuse_prefix(ids[:5] + [gen.n_vocab])  # a bad id: refused before anything is truncated
    with pytest.raises(lazyllm_edge.ContextFullError):
        gen.session.reuse_prefix(ids * 4)
    assert gen.session.tokens == ids
    gen.session.truncate(10)
    assert gen.session.tokens == ids[:10] and gen.stats["layer_kv_tokens"] == [10] * gen.n_layer
    gen.append(ids[10:])
    assert gen.n_past == len(ids) and gen.stats["recomputed_pairs"] == 0
