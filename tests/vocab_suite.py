"""llama.cpp's tokenizer suite (models/ggml-vocab-*.gguf with .inp/.out, fetched by models/fetch_vocab_suite.py):
where it is, and its cases read as llama.cpp's tests/test-tokenizer-0.cpp reads them."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from fetch_vocab_suite import suite_dir  # noqa: E402

SEPARATOR = "\n__ggml_vocab_test__\n"


def suite_root() -> Path:
    """$LAZYLLM_EDGE_VOCAB_SUITE, else the cache's llama.cpp-vocab/ folder."""
    env = os.environ.get("LAZYLLM_EDGE_VOCAB_SUITE")
    return Path(env) if env else suite_dir()


def suite_files(root: Path = None) -> dict:
    """{name: path} of every ggml-vocab-NAME.gguf in the folder."""
    root = root or suite_root()
    return {p.name[len("ggml-vocab-"):-len(".gguf")]: p for p in sorted(root.glob("ggml-vocab-*.gguf"))}


def read_cases(path: Path) -> list:
    """[(text, ids)] from PATH.inp / PATH.out: inputs separated by SEPARATOR (a trailing one ends the list), one
    line of space-separated ids per input."""
    raw = path.with_name(path.name + ".inp").read_bytes().decode("utf-8")
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEPARATOR, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(SEPARATOR)
    lines = path.with_name(path.name + ".out").read_bytes().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # getline: no line after the final newline
    if len(lines) != len(texts):
        raise ValueError(f"{path}: {len(texts)} inputs but {len(lines)} output lines")
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]
