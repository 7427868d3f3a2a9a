#!/usr/bin/env python3
"""Fetches llama.cpp's tokenizer suite into the cache: the vocabulary-only GGUFs `ggml-vocab-*.gguf` and their
`.inp`/`.out` test files (the input texts and the ids llama.cpp's tests/test-tokenizer-0 expects), taken from
`vendor/llama.cpp/models/` of the llama-cpp-python 0.3.36 source package on PyPI (nothing is built).

    python models/fetch_vocab_suite.py            # -> <cache>/llama.cpp-vocab/ (prints the folder)

The cache is $LAZYLLM_EDGE_CACHE, else $XDG_CACHE_HOME/lazyllm_edge, else ~/.cache/lazyllm_edge; a second run
finds the files there and downloads nothing. tests/test_tokenizer_suite.py reads the folder (or
$LAZYLLM_EDGE_VOCAB_SUITE).
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lazyllm_edge.models import cache_dir  # the model cache's rule, in one place

PACKAGE = "llama-cpp-python==0.3.36"
SDIST = "llama_cpp_python-0.3.36.tar.gz"
MEMBER_DIR = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"
STAMP = ".complete-llama-cpp-python-0.3.36"


def suite_dir() -> Path:
    return cache_dir() / "llama.cpp-vocab"


def fetch() -> Path:
    out = suite_dir()
    if (out / STAMP).is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        # the source package only: --no-build-isolation keeps pip from building anything (scikit-build-core, the
        # package's build backend, must be installed to read its metadata)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", PACKAGE, "-d", tmp], check=True)
        sdist = Path(tmp) / SDIST
        if not sdist.is_file():
            raise SystemExit(f"pip download left no {SDIST} in {tmp}")
        out.mkdir(parents=True, exist_ok=True)
        n = 0
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                name = member.name
                if not (name.startswith(MEMBER_DIR + "ggml-vocab-") and member.isfile()) or "/" in name[len(MEMBER_DIR):]:
                    continue
                data = tar.extractfile(member).read()
                (out / name[len(MEMBER_DIR):]).write_bytes(data)
                n += 1
        if n == 0:
            raise SystemExit(f"{SDIST} holds no {MEMBER_DIR}ggml-vocab-* files")
    (out / STAMP).write_text(f"{n} files from {PACKAGE}\n")
    return out


if __name__ == "__main__":
    print(fetch())
