"""Tokenizer tests through the Python API, against llama.cpp's reference tokenization
(tests/data/reference/<model>/tokenizer.json, prompts.json + logits.npz).

A model is skipped only when its GGUF file has not been fetched. The C++ StreamingDetokenizer (multi-byte
characters split across tokens) is checked by tests/cpp/tokenizer_check, which CTest runs on the same cases
(tests/cpp/CMakeLists.txt; in CI under the sanitizers)."""
import json

import numpy as np
import pytest

from conftest import cached_model, reference_root

MODELS = ["smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m-q4_k_m"]
REF = reference_root()
# Whether llama.cpp prepends BOS for add_special=True (tokenizer.ggml.add_bos_token / model defaults).
ADDS_BOS = {"smollm2-135m-instruct-q4_1": False, "qwen2.5-coder-0.5b-instruct": False, "gemma-3-270m-q4_k_m": True}


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    name = request.param
    path = cached_model(name)
    import lazyllm_edge

    gen = lazyllm_edge.Generator(str(path))
    cases = json.loads((REF / name / "tokenizer.json").read_text(encoding="utf-8"))
    return name, gen, cases


def _show(text):
    return repr(text[:60])


def test_tokenize_matches_llama_cpp(model):
    name, gen, cases = model
    bad = []
    for c in cases:
        got = list(gen.tokenize(c["text"], add_special=False, parse_special=False))
        if got != c["ids"]:
            bad.append((_show(c["text"]), got, c["ids"]))
    assert not bad, f"{name}: {len(bad)}/{len(cases)} mismatches, first: {bad[0]}"


def test_tokenize_parse_special_matches_llama_cpp(model):
    name, gen, cases = model
    bad = []
    for c in cases:
        got = list(gen.tokenize(c["text"], add_special=False, parse_special=True))
        if got != c["ids_parse_special"]:
            bad.append((_show(c["text"]), got, c["ids_parse_special"]))
    assert not bad, f"{name}: {len(bad)}/{len(cases)} mismatches, first: {bad[0]}"


def test_detokenize_round_trip(model):
    name, gen, cases = model
    for c in cases:
        assert gen.detokenize(c["ids"]) == c["text"], _show(c["text"])
        assert gen.detokenize(c["ids_parse_special"]) == c["text"], _show(c["text"])
        assert gen.detokenize(gen.tokenize(c["text"], add_special=False, parse_special=False)) == c["text"]


def test_special_tokens_are_parsed_only_on_request(model):
    name, gen, cases = model
    case = next(c for c in cases if c["text"].startswith("<|im_start|>"))
    plain = gen.tokenize(case["text"], add_special=False, parse_special=False)
    special = gen.tokenize(case["text"], add_special=False, parse_special=True)
    if name.startswith("gemma"):
        assert list(plain) == list(special) == case["ids"]  # no <|im_start|> token in Gemma's vocabulary
    else:
        assert len(special) < len(plain)


def test_add_special_bos(model):
    name, gen, cases = model
    plain = list(gen.tokenize("Hello world", add_special=False, parse_special=False))
    with_special = list(gen.tokenize("Hello world", add_special=True, parse_special=False))
    if ADDS_BOS[name]:
        assert with_special[1:] == plain and len(with_special) == len(plain) + 1
    else:
        assert with_special == plain
    assert list(gen.tokenize("", add_special=False)) == []


def test_prompts_match_reference_ids(model):
    """Prompt ids as llama.cpp fed them to the model: BOS where the metadata asks, special tokens parsed."""
    name, gen, _ = model
    prompts = json.loads((REF / name / "prompts.json").read_text(encoding="utf-8"))
    ref = np.load(REF / name / "logits.npz")
    for p in prompts:
        got = list(gen.tokenize(p["text"], add_special=True, parse_special=True))
        assert got == ref[p["name"] + ".ids"].tolist(), p["name"]
