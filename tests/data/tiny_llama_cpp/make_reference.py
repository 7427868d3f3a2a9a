#!/usr/bin/env python3
"""Writes ARCH.npz for each architecture: llama.cpp's logits for the tiny random model that
models/make_tiny.py writes (seeded, F32 weights), so the tests compare this engine with llama.cpp without a
llama.cpp build.

    python tests/data/tiny_llama_cpp/make_reference.py [ARCH ...]

Needs llama-cpp-python 0.3.36 (the `[bench]` extra). Each file holds `ids` (int32, the token ids fed from
position 0), `logits` (float32 (n, n_vocab), every position), `content_sha256` (make_tiny.content_sha256 of the
model: tests/test_llama_cpp_tiny.py writes the model again and checks it is the same) and `n_ctx`.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "models"))
from make_tiny import content_sha256, write_tiny_model  # noqa: E402

# architecture -> (layers, the model's token count); the tests read the same table from the .npz files
MODELS = {"phi3": 4, "smollm3": 4, "qwen35": 6}
N_CTX = 128
N_TOKENS = 48


def ids_for(n_vocab, n=N_TOKENS, seed=7):
    return np.random.default_rng(seed).integers(0, n_vocab, n).astype(np.int32)


def reference(arch, n_layer):
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"tiny-{arch}.gguf"
        hp, _ = write_tiny_model(path, arch, n_layer, "F32")
        ids = ids_for(hp["n_vocab"])
        llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=N_CTX, n_threads=2, logits_all=True, verbose=False)
        llm.eval(ids.tolist())
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
        np.savez_compressed(HERE / f"{arch}.npz", ids=ids, logits=logits, content_sha256=np.array(content_sha256(path)),
                            n_ctx=np.int32(N_CTX), n_layer=np.int32(n_layer))
        print(f"{arch}: {logits.shape}, top-1 {logits.argmax(1)[:8]}")


if __name__ == "__main__":
    for arch in sys.argv[1:] or MODELS:
        reference(arch, MODELS[arch])
