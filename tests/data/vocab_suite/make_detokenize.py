#!/usr/bin/env python3
"""Writes detokenize.json: llama.cpp's llama_detokenize (remove_special off, unparse_special on, as
test-tokenizer-0's common_detokenize) of the expected ids of every case of llama.cpp's tokenizer suite, and
llama.cpp's ids of a few chat-formatted texts with special tokens parsed (SPECIAL_TEXTS).

    python models/fetch_vocab_suite.py && python tests/data/vocab_suite/make_detokenize.py

Needs llama-cpp-python 0.3.36 (the `[bench]` extra). Each vocabulary's entry carries the sha256 of the file it
was made from; tests/test_tokenizer_suite.py checks it against the file it reads.
"""
import ctypes
import hashlib
import json
import sys
from pathlib import Path

import llama_cpp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/
from vocab_suite import read_cases, suite_files  # noqa: E402


# chat formats of several families; each vocabulary parses the special tokens it has (Phi-3's strip the
# whitespace after them, as llama.cpp decides by the model name)
SPECIAL_TEXTS = [
    "<|user|>\nHello<|end|>\n<|assistant|>\n",
    "<s> Hi</s>  there <unk> x",
    "<|im_start|>user\nHi  <|im_end|>\n<|im_start|>assistant\n",
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<start_of_turn>user\nHi<end_of_turn>\n<bos>",
]


def detokenize(llm, ids):
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    buf = ctypes.create_string_buffer(1 << 20)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, len(buf), False, True)
    if n < 0:
        raise RuntimeError("llama_detokenize: buffer too small")
    return buf.raw[:n].decode("utf-8")


def main():
    out = {}
    for name, path in suite_files().items():
        if not path.with_name(path.name + ".inp").is_file():
            continue
        cases = read_cases(path)
        try:
            llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        except Exception as e:  # llama.cpp itself refuses the vocabulary
            print(f"{name}: llama.cpp cannot load it ({e})")
            continue
        out[name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "detokenized": [detokenize(llm, ids) for _, ids in cases],
                     "special": [[t, llm.tokenize(t.encode(), add_bos=False, special=True)] for t in SPECIAL_TEXTS]}
        print(f"{name}: {len(cases)} cases")
    (HERE / "detokenize.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
