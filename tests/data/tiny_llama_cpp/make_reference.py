#!/usr/bin/env python3
"""Writes NAME.npz for each model of MODELS: llama.cpp's logits for the tiny random model that
models/make_tiny.py writes (seeded; F32 weights, or the type MODELS names), so the tests compare this engine with
llama.cpp without a llama.cpp build.

    python tests/data/tiny_llama_cpp/make_reference.py [NAME ...]

Needs llama-cpp-python 0.3.36 (the `[bench]` extra). Each file holds `ids` (int32, the token ids fed from
position 0), `logits` (float32 (n, n_vocab), every position), `content_sha256` (make_tiny.content_sha256 of the
model: tests/test_llama_cpp_tiny.py writes the model again and checks it is the same), `n_ctx`, `n_layer`, and
`arch`, `weight_type` and `n_expert` (make_tiny's mixture-of-experts option, 0: dense).
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "models"))
from make_tiny import content_sha256, write_tiny_model  # noqa: E402

# name -> (architecture, layers, weight type, experts); the tests read the same from the .npz files
MODELS = {"phi3": ("phi3", 4, "F32", 0), "smollm3": ("smollm3", 4, "F32", 0), "gemma4": ("gemma4", 8, "F32", 0),
          "gemma4_q8_0": ("gemma4", 8, "Q8_0", 0), "gemma4_moe_q8_0": ("gemma4", 8, "Q8_0", 4),
          "qwen35": ("qwen35", 6, "F32", 0)}
N_CTX = 128
N_TOKENS = 48


def ids_for(n_vocab, n=N_TOKENS, seed=7):
    return np.random.default_rng(seed).integers(0, n_vocab, n).astype(np.int32)


def reference(name, arch, n_layer, weight_type, n_expert):
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"tiny-{arch}.gguf"
        hp, _ = write_tiny_model(path, arch, n_layer, weight_type, **({"n_expert": n_expert} if n_expert else {}))
        ids = ids_for(hp["n_vocab"])
        llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=N_CTX, n_threads=2, logits_all=True, verbose=False)
        llm.eval(ids.tolist())
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
        np.savez_compressed(HERE / f"{name}.npz", ids=ids, logits=logits, content_sha256=np.array(content_sha256(path)),
                            n_ctx=np.int32(N_CTX), n_layer=np.int32(n_layer), arch=np.array(arch),
                            weight_type=np.array(weight_type), n_expert=np.int32(n_expert))
        print(f"{name}: {logits.shape}, top-1 {logits.argmax(1)[:8]}")


if __name__ == "__main__":
    for name in sys.argv[1:] or MODELS:
        reference(name, *MODELS[name])
