"""llama.cpp numerics (Generator(..., numerics="llama.cpp")) against llama.cpp's own logits
(shared/reference/<model>/logits.npz, CPU, flash attention off, fp16 KV): the prompt logits of SmolLM2 (Q4_1,
Q8_0), Gemma 3 and Qwen2.5-Coder (Q5_0, Q8_0, Q4_K, Q6_K) are equal bit for bit at every position, and decoding
the greedy continuation token by token predicts every one of its tokens.

Prompts are evaluated as llama.cpp evaluated them: the prompt alone (in calls of a multiple of 4 tokens, so only
its last n % 4 tokens take ggml's gemv order, as in llama.cpp's 512-token ubatches), then the greedy
continuation one token at a time (decode)."""
import json

import numpy as np
import pytest

from conftest import DEFAULT_REFERENCE, cached_model, reference_root

MODELS = {"smollm2-135m": DEFAULT_REFERENCE, "gemma3-270m": "gemma-3-270m-q4_k_m",
          "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct"}


@pytest.fixture(scope="module", params=sorted(MODELS))
def llama_numerics(request):
    import lazyllm_edge

    ref = reference_root() / MODELS[request.param]
    path = cached_model(MODELS[request.param])
    gen = lazyllm_edge.Generator(str(path), n_ctx=4096, numerics="llama.cpp")
    assert gen.numerics == "llama.cpp"
    return request.param, gen, ref


def _log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.slow
def test_logits_equal_llama_cpp(llama_numerics):
    name, gen, ref = llama_numerics
    z = np.load(ref / "logits.npz")
    report, failures = [], []
    for p in [q["name"] for q in json.loads((ref / "prompts.json").read_text(encoding="utf-8"))]:
        ids, greedy = z[f"{p}.ids"].tolist(), z[f"{p}.greedy"].tolist()
        gen.reset()
        top1, dlogp = [], []
        for c0 in range(0, len(ids), 256):  # (256, n_vocab) logits at a time
            logits = gen.session.append_all_logits(ids[c0:c0 + 256])
            rows = np.arange(c0, c0 + len(logits))
            lp = _log_softmax(logits)
            top1.append(logits.argmax(axis=1))
            dlogp.append(np.abs(lp[np.arange(len(rows)), z[f"{p}.top1"][rows]] - z[f"{p}.logp_top5"][rows, 0]))
        last = logits[-1]
        # the continuation, decoded token by token: each step predicts the next greedy token
        steps = [int(np.argmax(last)) == greedy[0]]
        for i in range(len(greedy) - 1):
            steps.append(int(np.argmax(gen.append([greedy[i]]))) == greedy[i + 1])
        top1, dlogp = np.concatenate(top1), np.concatenate(dlogp)
        got = {"top1": float((top1 == z[f"{p}.top1"]).mean()), "max_dlogp": float(dlogp.max()),
               "last_logits_equal": bool(np.array_equal(last, z[f"{p}.last_logits"])), "greedy": float(np.mean(steps))}
        report.append(f"{name}/{p} (n={len(ids)}): " + ", ".join(f"{k} {v}" for k, v in got.items()))
        # identical logits: the same argmax everywhere, log-probs equal up to the log-softmax's own rounding
        ok = got["top1"] == 1.0 and got["max_dlogp"] <= 1e-4 and got["last_logits_equal"]
        if not ok or got["greedy"] < 1.0:
            failures.append(report[-1])
    print("\n".join(report))
    assert not failures, "\n".join(failures)
