"""llama.cpp's own tokenizer suite (its models/ggml-vocab-*.gguf with the .inp/.out files of tests/test-tokenizer-0,
fetched into the cache by models/fetch_vocab_suite.py, or found at $LAZYLLM_EDGE_VOCAB_SUITE): every LLM
vocabulary gives llama.cpp's ids exactly (add_special off, parse_special off, as that test runs), detokenizes as
llama.cpp's llama_detokenize does (tests/data/vocab_suite/detokenize.json), and streams whole UTF-8 characters.
The BERT-style embedding vocabularies are refused with an error naming their tokenizer model.

Without the suite the tests skip, except under CI, where .ci/run fetches it and its absence is a failure."""
import hashlib
import json
import os
from pathlib import Path

import pytest

from vocab_suite import read_cases, suite_files, suite_root

DETOKENIZED = json.loads((Path(__file__).parent / "data" / "vocab_suite" / "detokenize.json").read_text(encoding="utf-8"))
# the LLM vocabularies of llama-cpp-python 0.3.36's suite that carry test cases; the suite must hold them all
WITH_CASES = ["command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2", "llama-bpe", "llama-spm",
              "mpt", "phi-3", "qwen2", "qwen35", "refact", "starcoder"]
WITHOUT_CASES = ["aquila", "baichuan", "gpt-neox"]  # LLM vocabularies without .inp/.out: they must load
EMBEDDING = {"bert-bge": "bert", "nomic-bert-moe": "t5"}  # refused, naming the tokenizer model


@pytest.fixture(scope="module")
def suite():
    files = suite_files()
    if not files:
        where = suite_root()
        if os.environ.get("CI"):
            pytest.fail(f"llama.cpp's tokenizer suite is missing in CI: {where}")
        pytest.skip(f"llama.cpp's tokenizer suite is not fetched ({where}): python models/fetch_vocab_suite.py")
    return files


def _tokenizer(testing, path):
    return testing.VocabTokenizer(str(path))


def test_suite_is_complete(suite):
    missing = [n for n in WITH_CASES + WITHOUT_CASES + list(EMBEDDING) if n not in suite]
    assert not missing, f"the suite folder lacks {missing}"
    for name in WITH_CASES:
        assert suite[name].with_name(suite[name].name + ".inp").is_file(), name


@pytest.mark.parametrize("name", WITH_CASES)
def test_ids_match_llama_cpp(suite, testing, name):
    tok = _tokenizer(testing, suite[name])
    cases = read_cases(suite[name])
    assert len(cases) >= 40
    bad = [(text[:40], got[:8], ids[:8]) for text, ids in cases if (got := tok.encode(text, False, False)) != ids]
    assert not bad, f"{name}: {len(bad)}/{len(cases)} differ from llama.cpp, first: {bad[0]}"


@pytest.mark.parametrize("name", WITH_CASES)
def test_detokenize_matches_llama_cpp(suite, testing, name):
    path = suite[name]
    reference = DETOKENIZED[name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reference["sha256"], f"{path} is not the file the reference was made from"
    tok = _tokenizer(testing, path)
    cases = read_cases(path)
    assert len(reference["detokenized"]) == len(cases)
    for (text, ids), want in zip(cases, reference["detokenized"]):
        assert tok.decode(ids).decode("utf-8") == want, f"{name}: {text[:40]!r}"


@pytest.mark.parametrize("name", WITH_CASES)
def test_parsed_special_tokens_match_llama_cpp(suite, testing, name):
    """Chat-formatted texts with special tokens parsed: llama.cpp's ids (Phi-3's special tokens strip the
    whitespace after them)."""
    tok = _tokenizer(testing, suite[name])
    for text, ids in DETOKENIZED[name]["special"]:
        assert tok.encode(text, False, True) == ids, f"{name}: {text!r}"


def test_sentencepiece_round_trip(suite, testing):
    """llama-spm and phi-3 prefix the text with a space when encoding; detokenize takes it off again, so every
    case comes back as it went in (as with llama.cpp)."""
    for name in ("llama-spm", "phi-3"):
        tok = _tokenizer(testing, suite[name])
        for text, ids in read_cases(suite[name]):
            assert tok.decode(ids).decode("utf-8") == text, (name, text[:40])


@pytest.mark.parametrize("name", WITH_CASES)
def test_streaming_never_splits_a_character(suite, testing, name):
    tok = _tokenizer(testing, suite[name])
    for text, ids in read_cases(suite[name]):
        pieces = tok.stream(ids, True)
        for piece in pieces:
            piece.decode("utf-8")  # every piece is whole characters (strict: raises otherwise)
        assert b"".join(pieces) == b"".join(tok.piece(i) for i in ids), f"{name}: {text[:40]!r}"
        assert len([p for p in pieces if p]) >= min(1, len(ids))


@pytest.mark.parametrize("name", WITHOUT_CASES)
def test_vocabularies_without_cases_load(suite, testing, name):
    tok = _tokenizer(testing, suite[name])
    assert tok.n_vocab > 1000
    ids = tok.encode("Hello world", False, False)
    assert ids and tok.decode(ids).decode("utf-8").strip() == "Hello world"


@pytest.mark.parametrize("name", sorted(EMBEDDING))
def test_embedding_vocabularies_are_refused_by_name(suite, testing, name):
    with pytest.raises(RuntimeError, match=f"unsupported tokenizer model: '{EMBEDDING[name]}'"):
        _tokenizer(testing, suite[name])
