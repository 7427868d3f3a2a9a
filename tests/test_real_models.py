"""gemma3 and qwen2 real models against llama.cpp's reference outputs (shared/reference/<model>/), plus
LazyLLM and chat on each. Slow; skipped when the GGUF is not cached (CI fetches them).

Agreement measures, per reference prompt P (ids = P.ids, g = P.greedy):
- top-1: the engine's argmax at each prompt position equals llama.cpp's (P.top1);
- confident top-1: the same where llama.cpp's top-1 margin logp_top5[:,0]-logp_top5[:,1] > 0.5 nats;
- median |Δ log p(top-1)|: engine log-softmax at llama.cpp's top-1 token vs llama.cpp's;
- teacher-forced greedy: feed ids + g[:-1]; the engine's argmax at the positions predicting each g[i].
"""
import json

import numpy as np
import pytest

from conftest import cached_model, reference_root

pytestmark = pytest.mark.slow

MODELS = {"gemma3-270m": "gemma-3-270m-q4_k_m", "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct"}
TOP1, CONFIDENT_TOP1, MEDIAN_DLOGP, GREEDY = 0.94, 1.0, 0.06, 0.95

# Where this engine (fast numerics, the default) misses the bars above against llama.cpp, the looser bound that guards
# against regressions, and why. With llama.cpp numerics the logits are llama.cpp's own, bit for bit
# (test_llama_cpp_numerics.py). The engine equals the exact fp32 NumPy reference (tests/numpy_reference.py) to
# ~6e-3 in the logits on these models; llama.cpp rounds activations to 8 bits (Q8_0 / Q8_K) inside its
# quantized dot products and Q/softmax to fp16 in attention. gemma-3-270m amplifies that noise (norm
# weights up to ~300, 640-wide residual), and the greedy misses are near-ties (logit gaps < 0.11).
KNOWN_GAPS = {
    ("gemma3-270m", "short_en", "median_dlogp"): 0.07,
    ("gemma3-270m", "seed_zh", "median_dlogp"): 0.07,
    ("gemma3-270m", "chat", "top1"): 0.93,
    # 1 of ~2000 confident positions; agreement past the 512-token window (top-1 0.964) matches the
    # short prompts', so the sliding window itself is right.
    ("gemma3-270m", "license_long", "confident_top1"): 0.998,
    ("qwen2.5-coder-0.5b", "code", "greedy"): 0.93,
    ("qwen2.5-coder-0.5b", "license_long", "greedy"): 0.89,
}


def _bound(model, prompt, metric, default):
    return KNOWN_GAPS.get((model, prompt, metric), default)


@pytest.fixture(scope="module", params=sorted(MODELS))
def real(request):
    import lazyllm_edge

    name = request.param
    ref = reference_root() / MODELS[name]
    path = cached_model(MODELS[name])
    gen = lazyllm_edge.Generator(str(path), n_ctx=4096)
    return name, gen, ref


def _prompt_names(ref):
    return [p["name"] for p in json.loads((ref / "prompts.json").read_text(encoding="utf-8"))]


def _agreement(name, gen, ref):
    """Per prompt: the four measures above, and the report lines."""
    z = np.load(ref / "logits.npz")
    results, report = {}, []
    for p in _prompt_names(ref):
        ids, greedy = z[f"{p}.ids"], z[f"{p}.greedy"]
        ref_top1, ref_lp = z[f"{p}.top1"], z[f"{p}.logp_top5"]
        n = len(ids)
        feed = np.concatenate([ids, greedy[:-1]]).astype(np.int64).tolist()
        gen.reset()
        argmax, lp_top1 = [], []
        for c0 in range(0, len(feed), 256):  # chunks: (256, n_vocab) logits at a time
            logits = gen.session.append_all_logits(feed[c0:c0 + 256])
            mx = logits.max(axis=1, keepdims=True)
            lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
            rows = np.arange(c0, c0 + len(logits))
            want = np.where(rows < n, ref_top1[np.minimum(rows, n - 1)], 0)
            lp_top1.append(logits[np.arange(len(logits)), want] - lse)
            argmax.append(logits.argmax(axis=1))
        gen.reset()
        argmax, lp_top1 = np.concatenate(argmax), np.concatenate(lp_top1)[:n]
        confident = ref_lp[:, 0] - ref_lp[:, 1] > 0.5
        results[p] = {
            "top1": float((argmax[:n] == ref_top1).mean()),
            "confident_top1": float((argmax[:n][confident] == ref_top1[confident]).mean()) if confident.any() else 1.0,
            "median_dlogp": float(np.median(np.abs(lp_top1 - ref_lp[:, 0]))),
            "greedy": float((argmax[n - 1:n - 1 + len(greedy)] == greedy).mean()),
        }
        report.append(f"{name}/{p} (n={n}): " + ", ".join(f"{k} {v:.3f}" for k, v in results[p].items()))
    return results, report


def _failures(name, results, bound):
    """The measures outside bound(prompt, metric)."""
    failures = []
    for p, got in results.items():
        for metric, higher_is_better in [("top1", True), ("confident_top1", True), ("median_dlogp", False),
                                         ("greedy", True)]:
            limit = bound(p, metric)
            ok = got[metric] >= limit if higher_is_better else got[metric] <= limit
            if not ok:
                failures.append(f"{name}/{p}: {metric} {got[metric]:.3f} (bound {limit})")
    return failures


def test_agreement_with_llama_cpp(real):
    name, gen, ref = real
    results, report = _agreement(name, gen, ref)
    defaults = {"top1": TOP1, "confident_top1": CONFIDENT_TOP1, "median_dlogp": MEDIAN_DLOGP, "greedy": GREEDY}
    failures = _failures(name, results, lambda p, metric: _bound(name, p, metric, defaults[metric]))
    print("\n".join(report))
    assert not failures, "\n".join(failures + report)


# int8 numerics (8-bit prefill activations in llama.cpp's own formats, Q8_K for these files' K-quants and Q8_0 for
# their Q5_0/Q8_0 matrices): the integer products are llama.cpp's, but the activations they round differ slightly,
# so the noise does not cancel and agreement is a little below the exact prefill's. Measured on gemma3-270m: top-1
# 0.935-1.0, one confident mismatch on seed_zh (0.987) and code (0.998), median |dlogp| up to 0.073, greedy
# >= 0.958; qwen2.5-coder-0.5b within the default bars above. Looser bars guard the mode.
INT8_BARS = {"top1": 0.92, "confident_top1": 0.98, "median_dlogp": 0.08, "greedy": 0.89}


def test_int8_numerics_agreement_with_llama_cpp(real):
    name, gen, ref = real
    gen.set_numerics("int8")
    try:
        results, report = _agreement(name, gen, ref)
    finally:
        gen.set_numerics("fast")
    failures = _failures(name, results, lambda p, metric: INT8_BARS[metric])
    print("\n".join(report))
    assert not failures, "\n".join(failures + report)


LAZY_PROMPT = "code"  # ~670 tokens: longer than gemma3's 512-token window


def test_lazy_schedule(real):
    name, gen, ref = real
    z = np.load(ref / "logits.npz")
    ids = z[f"{LAZY_PROMPT}.ids"].tolist()
    gen.set_lazy(None)
    gen.reset()
    dense = gen.append(ids).copy()
    dense_pairs = gen.stats["prefill_pairs_computed"]
    n_layer = gen.n_layer
    # all keep fractions 1.0: exactly dense
    gen.set_lazy([(n_layer // 4, 1.0), (n_layer // 2, 1.0)])
    gen.reset()
    np.testing.assert_array_equal(gen.append(ids), dense)
    assert gen.stats["prefill_pairs_computed"] == dense_pairs
    # pruning: fewer (token, layer) pairs, each computed at most once, and a short generation still works
    gen.set_lazy("balanced")
    gen.reset()
    pruned = gen.append(ids)
    st = gen.stats
    assert st["prefill_pairs_computed"] < st["prefill_pairs_dense"] == dense_pairs
    assert st["recomputed_pairs"] == 0
    assert np.isfinite(pruned).all()
    text = "".join(p.text for p in gen.generate(ids, max_tokens=8, temperature=0))
    assert gen.stats["recomputed_pairs"] == 0 and text
    gen.set_lazy(None)
    gen.reset()


def test_chat_template(real):
    name, gen, _ = real
    messages = [{"role": "user", "content": "What is 2+2?"}]
    ids = gen.chat_ids(messages)
    if name == "gemma3-270m":
        bos = gen.model.bos_id
        turns = gen.tokenize("<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
                             add_special=False, parse_special=True)
        assert ids == [bos] + turns  # BOS once, then Gemma's turns
    else:
        text = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
        assert ids == gen.tokenize(text, add_special=False, parse_special=True)  # ChatML, default system turn
    reply = "".join(p.text for p in gen.chat(messages, max_tokens=16, temperature=0))
    assert reply.strip(), f"{name}: empty chat reply"
