"""The default model (SmolLM2-135M Q4_1, llama arch) against llama.cpp's own output
(../shared/reference/smollm2-135m-instruct-q4_1): per-position logits agreement, teacher-forced greedy
agreement, and the KV-cache invariant (decode with the cache == recomputing without it). Each runs on
the CPU and, where a GPU is present, on the CUDA backend with the same bars."""

import json

import numpy as np
import pytest

from conftest import DEFAULT_REFERENCE, reference_root


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def reference():
    root = reference_root() / DEFAULT_REFERENCE
    prompts = json.loads((root / "prompts.json").read_text(encoding="utf-8"))
    return prompts, np.load(root / "logits.npz")


PROMPTS, REF = reference()
NAMES = [p["name"] for p in PROMPTS]

# Teacher-forced greedy below 0.95, and why (none with the default exact fp32 prefill). With an int8 prefill in
# this engine's own order and attention (which the numerics no longer offer) the chat prompt dropped to 0.896:
# that attention is not bit-identical to llama.cpp's (which rounds Q and the softmax probabilities to fp16), so
# the two engines' int8 rounding noise was not shared and five near-ties (logit gaps 0.002..0.10) went the other
# way. llama.cpp numerics share it: their logits are llama.cpp's (test_llama_cpp_numerics.py).
GREEDY_KNOWN_GAPS = {}


@pytest.mark.parametrize("name", NAMES)
def test_logits_agree_with_llama_cpp(reference_generator, name):
    default_generator = reference_generator
    ids = REF[f"{name}.ids"].tolist()
    top1_ref, top5_ref, logp5_ref = REF[f"{name}.top1"], REF[f"{name}.top5"], REF[f"{name}.logp_top5"]
    logits = default_generator.logits(ids)
    assert logits.shape == (len(ids), default_generator.n_vocab) and logits.dtype == np.float32
    logp = log_softmax(logits.astype(np.float64))
    top1 = logits.argmax(axis=1)
    agreement = (top1 == top1_ref).mean()
    margin = logp5_ref[:, 0] - logp5_ref[:, 1]
    confident = margin > 0.5
    delta = np.abs(logp[np.arange(len(ids)), top5_ref[:, 0]] - logp5_ref[:, 0])
    print(f"{name}: n={len(ids)} top1={agreement:.4f} median|dlogp|={np.median(delta):.4f}")
    assert agreement >= 0.94
    mismatched = np.flatnonzero(confident & (top1 != top1_ref))
    print(f"{name}: confident positions {confident.sum()}, disagreeing {mismatched.tolist()}")
    # Exact for the short prompts. On the 2.2k-token licence two of 1619 confident positions (2102: margin
    # 1.18 nats, ' Version' vs ','; 1961: 0.61) differ, and an independent fp32 NumPy forward pass
    # (tests/numpy_reference.py on the real file) gives the engine's answer at both (argmax 6966 and 3914,
    # log-probs within 0.01): llama.cpp's own rounding, kept as a known, bounded difference.
    assert len(mismatched) <= (0 if len(ids) < 1024 else 2), "disagrees where llama.cpp's margin > 0.5 nats"
    assert np.median(delta) <= 0.06
    # the last position's full logits too
    last_ref = REF[f"{name}.last_logits"]
    assert np.corrcoef(logits[-1], last_ref)[0, 1] > 0.99


@pytest.mark.parametrize("name", NAMES)
def test_teacher_forced_greedy_agrees(reference_generator, name):
    default_generator = reference_generator
    ids = REF[f"{name}.ids"].tolist()
    greedy = REF[f"{name}.greedy"].tolist()
    logits = default_generator.logits(ids + greedy)
    predicted = logits[len(ids) - 1: len(ids) - 1 + len(greedy)].argmax(axis=1)
    agreement = (predicted == np.array(greedy)).mean()
    print(f"{name}: greedy agreement {agreement:.4f} over {len(greedy)} steps")
    assert agreement >= GREEDY_KNOWN_GAPS.get(name, 0.95)


def test_greedy_generation_reproduces_llama_cpp_start(reference_generator):
    default_generator = reference_generator
    """Free-running greedy decoding follows llama.cpp's continuation until the first near-tie."""
    name = "short_en"
    ids = REF[f"{name}.ids"].tolist()
    greedy = REF[f"{name}.greedy"].tolist()
    out = [p.token for p in default_generator.generate(ids, max_tokens=8, temperature=0)]
    assert out[:4] == greedy[:4]


def test_kv_cache_decode_equals_recompute(default_model_path):
    """Decoding one token at a time with the KV cache gives the logits of recomputing the whole
    sequence from scratch (a second Generator, no cache reuse): |diff| <= 1e-2 on logits of magnitude ~20
    and the same argmax at every step, with fp32 numerics, where decode and prefill multiply alike: in exact fp32,
    whose one-token matmul sums in another order than the batched one (seen: 3.7e-3 to 5.3e-3 over sessions,
    depending on the activation functions' rounding). The int8 numerics are not held to this bound: each layer
    quantizes its activations to int8 again, so a difference between the one-token and the batched arithmetic
    (fast: int8 decode against exact fp32 prefill; llama.cpp: ggml's single-query and batched attention orders)
    can flip an activation's code, and that grows layer by layer (seen with llama.cpp numerics: 0.35 on these
    logits, the argmax unchanged). Their cached decode is checked against llama.cpp's own in
    test_llama_cpp_numerics.py."""
    import lazyllm_edge

    _kv_cache_check(lazyllm_edge, default_model_path, 1e-2, numerics="fp32")


@pytest.mark.cuda
def test_kv_cache_decode_equals_recompute_cuda(default_model_path):
    """The same invariant on the CUDA backend, with fp32 numerics (prefill GEMMs in near-fp32 3xTF32): one-token
    steps take the fp32 matrix-vector kernel, the recompute the tensor-core GEMM, so both sum in different orders
    at near-fp32 accuracy. (With the default fp16 GEMMs the recompute differs by up to 1.6e-2 on these
    logits, seen on an H200: the fp16 rounding of the prefill's inputs, not the cache.)"""
    import lazyllm_edge
    from conftest import require_backend

    require_backend("cuda")
    _kv_cache_check(lazyllm_edge, default_model_path, 1e-2, backend="cuda", numerics="fp32")


def _kv_cache_check(lazyllm_edge, default_model_path, atol, backend="cpu", numerics="fast"):
    incremental = lazyllm_edge.Generator(str(default_model_path), n_ctx=256, backend=backend, numerics=numerics)
    scratch = lazyllm_edge.Generator(str(default_model_path), n_ctx=256, backend=backend, numerics=numerics)
    seq = incremental.tokenize("The history of the printing press begins in")
    logits = incremental.append(seq)
    worst = 0.0
    for step in range(16):
        full = scratch.logits(seq)[-1]
        assert int(np.argmax(full)) == int(np.argmax(logits)), f"argmax differs at step {step}"
        worst = max(worst, float(np.abs(logits - full).max()))
        np.testing.assert_allclose(logits, full, atol=atol, rtol=0)
        nxt = int(np.argmax(logits))
        seq.append(nxt)
        logits = incremental.append([nxt])
    print(f"max |decode - recompute| = {worst:.4g}")
    assert incremental.n_past == len(seq)


# int8 numerics: prefill activations rounded to 8 bits in llama.cpp's own formats (Q8_1 for these Q4_1 weights). The
# integer products are llama.cpp's, but the activations they round differ slightly (attention, op orders), so the
# rounding noise does not cancel: agreement is a little below the exact prefill's (measured: top-1 0.939-0.975,
# median |dlogp| 0.024-0.039, one confident mismatch on the licence, greedy 0.958-1.0). Looser bars guard the mode.
@pytest.fixture(scope="module")
def int8_generator(default_model_path):
    import lazyllm_edge

    return lazyllm_edge.Generator(str(default_model_path), n_ctx=4096, numerics="int8")


@pytest.mark.parametrize("name", NAMES)
def test_int8_numerics_agree_with_llama_cpp(int8_generator, name):
    ids = REF[f"{name}.ids"].tolist()
    greedy = REF[f"{name}.greedy"].tolist()
    top1_ref, top5_ref, logp5_ref = REF[f"{name}.top1"], REF[f"{name}.top5"], REF[f"{name}.logp_top5"]
    logits = int8_generator.logits(ids + greedy)
    logp = log_softmax(logits[:len(ids)].astype(np.float64))
    top1 = logits[:len(ids)].argmax(axis=1)
    confident = logp5_ref[:, 0] - logp5_ref[:, 1] > 0.5
    delta = np.abs(logp[np.arange(len(ids)), top5_ref[:, 0]] - logp5_ref[:, 0])
    predicted = logits[len(ids) - 1: len(ids) - 1 + len(greedy)].argmax(axis=1)
    print(f"{name}: top1={(top1 == top1_ref).mean():.4f} median|dlogp|={np.median(delta):.4f} "
          f"confident mismatches {np.flatnonzero(confident & (top1 != top1_ref)).tolist()} "
          f"greedy {(predicted == np.array(greedy)).mean():.4f}")
    assert (top1 == top1_ref).mean() >= 0.93
    assert np.count_nonzero(confident & (top1 != top1_ref)) <= (0 if len(ids) < 1024 else 2)
    assert np.median(delta) <= 0.06
    assert (predicted == np.array(greedy)).mean() >= 0.95
