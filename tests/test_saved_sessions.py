"""Saved sessions: Generator.save_state / load_state. Save -> load -> continue is bit for bit continuing without
saving (dense, and with LazyLLM's pruned tokens in the aux cache); only the used part of the caches is written; every
bad file (another model, another shape, truncated, corrupted, too long for n_ctx, not a session) raises
StateFileError and leaves the session as it was."""

import os

import numpy as np
import pytest

import lazyllm_edge

TEXT = ("A small museum in the mountains keeps a clock that has run without stopping since 1887. Visitors ask how "
        "it is wound; the curator smiles and says that the secret is")
LAZY = "12:0.1,16:0.05/24:0.5"


@pytest.fixture(scope="module")
def path(default_model_path):
    return str(default_model_path)


def frontier(gen):
    return [gen.session.token_frontier(p) for p in range(gen.n_past)]


def kv_bytes(gen):
    info = gen.info
    return 2 * 2 * info["n_head_kv"] * info["head_dim"]  # K and V rows of one (token, layer), fp16


@pytest.mark.parametrize("lazy", [None, LAZY])
def test_save_load_continue_is_bit_identical(path, tmp_path, lazy):
    saved = lazyllm_edge.Generator(path, n_ctx=512, lazy=lazy)
    ids = saved.tokenize(TEXT)
    reply = [p.token for p in saved.generate(ids, max_tokens=5, temperature=0)]
    assert reply
    file = tmp_path / "s.bin"
    saved.save_state(file)
    assert not os.path.exists(str(file) + ".tmp")
    # only the used part: each token's KV layers (+ the aux rows of pruned tokens), nothing for the empty context
    layers = sum(frontier(saved))
    n_pruned = sum(f < saved.n_layer for f in frontier(saved))
    expected = 80 + 8 + 8 * saved.n_past + layers * kv_bytes(saved) + n_pruned * 4 * saved.info["d_model"]
    assert os.path.getsize(file) == expected
    if lazy:
        assert n_pruned > 0 and layers < saved.n_past * saved.n_layer

    loaded = lazyllm_edge.Generator(path, n_ctx=512, lazy=lazy)
    loaded.load_state(file)
    assert loaded.session.tokens == saved.session.tokens and frontier(loaded) == frontier(saved)
    assert loaded.stats["layer_kv_tokens"] == saved.stats["layer_kv_tokens"]
    base = saved.session.tokens
    follow = base + saved.tokenize(" to listen", add_special=False)
    outs = []
    for g in (saved, loaded):
        kept = g.session.reuse_prefix(follow)
        assert kept == len(base)
        logits = [g.append(follow[kept:])]
        for _ in range(3):
            logits.append(g.append([int(np.argmax(logits[-1]))]))
        outs.append((np.stack(logits), frontier(g)))
    assert np.array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]
    # and through generate(): the loaded session reuses the loaded prefix
    again = lazyllm_edge.Generator(path, n_ctx=512, lazy=lazy)
    again.load_state(file)
    text = "".join(p.text for p in again.generate(follow, max_tokens=6, temperature=0))
    assert again.stats["reused_tokens"] == len(base) and again.stats["prompt_tokens"] == len(follow) - len(base)
    assert text


def test_save_replaces_the_file_atomically(path, tmp_path):
    gen = lazyllm_edge.Generator(path, n_ctx=256)
    gen.append(gen.tokenize(TEXT))
    file = tmp_path / "s.bin"
    file.write_bytes(b"an older file")
    gen.save_state(file)
    assert file.read_bytes()[:8] == b"LZEDGESS" and sorted(os.listdir(tmp_path)) == ["s.bin"]
    with pytest.raises(lazyllm_edge.StateFileError, match="cannot create"):
        gen.save_state(tmp_path / "missing-dir" / "s.bin")
    gen.reset()
    gen.save_state(file)  # an empty session saves and loads too
    other = lazyllm_edge.Generator(path, n_ctx=256)
    other.append([1, 2, 3])
    other.load_state(file)
    assert other.n_past == 0


def corrupt(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x5A
    return bytes(b)


def test_bad_files_leave_the_session_as_it_was(path, tmp_path, tiny_model):
    gen = lazyllm_edge.Generator(path, n_ctx=256, lazy=LAZY)
    ids = gen.tokenize(TEXT)
    gen.append(ids)
    good = tmp_path / "good.bin"
    gen.save_state(good)
    data = good.read_bytes()
    gen.append(gen.tokenize(" and", add_special=False))  # the session moves on from what was saved
    tokens, front = gen.session.tokens, frontier(gen)

    big = lazyllm_edge.Generator(path, n_ctx=512, lazy=LAZY)
    big.append((ids * 10)[:300])  # more tokens than gen's n_ctx 256
    long_file = tmp_path / "long.bin"
    big.save_state(long_file)
    tiny = lazyllm_edge.Generator(str(tiny_model[0]), n_ctx=256)
    tiny.append([1, 2, 3])
    tiny_file = tmp_path / "tiny.bin"
    tiny.save_state(tiny_file)

    cases = {
        "missing": (tmp_path / "nothing.bin", "cannot open"),
        "another model": (tiny_file, "another model"),
        "too long for n_ctx": (long_file, "n_ctx"),
        "empty": (b"", "truncated"),
        "not a session": (b"GGUF" + bytes(200), "not a lazyllm_edge saved session"),
        "truncated": (data[: len(data) // 2], "truncated"),
        "truncated header": (data[:50], "truncated"),
        "trailing bytes": (data + b"\0" * 16, "more than its header says"),
        "version": (data[:8] + (99).to_bytes(4, "little") + data[12:], "version 99"),
        "corrupted digest": (corrupt(data, 20), "another model"),
        "corrupted shape": (corrupt(data, 44), "shape"),
        "corrupted RoPE factors": (corrupt(data, 64), "RoPE factors"),
        "corrupted token": (corrupt(data, 80 + 3), "out of range"),
        "corrupted frontier": (corrupt(data, 80 + 4 * len(ids) + 1), "layers"),
        "corrupted KV row": (corrupt(data, len(data) // 2), "corrupted"),
        "corrupted checksum": (corrupt(data, len(data) - 1), "corrupted"),
    }
    for name, (content, message) in cases.items():
        if isinstance(content, bytes):
            file = tmp_path / f"bad-{name.replace(' ', '-')}.bin"
            file.write_bytes(content)
        else:
            file = content
        with pytest.raises(lazyllm_edge.StateFileError, match=message):
            gen.load_state(file)
        assert gen.session.tokens == tokens and frontier(gen) == front, name

    # the caches are untouched too: the session continues exactly as a copy that never saw the bad files
    copy = lazyllm_edge.Generator(path, n_ctx=256, lazy=LAZY)
    copy.load_state(good)
    copy.append(gen.tokenize(" and", add_special=False))
    nxt = gen.tokenize(" then", add_special=False)
    assert np.array_equal(gen.append(nxt), copy.append(nxt))


def test_rope_factors_of_the_session_must_match(tmp_path):
    """phi3 rotates keys with LongRoPE factors chosen by the session's n_ctx (long ones past the original context):
    a cache saved under one choice does not load under the other; with the same choice it continues bit for bit."""
    from make_tiny import write_tiny_model

    model = tmp_path / "tiny-phi3.gguf"
    write_tiny_model(model, "phi3", 2, "F32")  # original context 64
    long_ctx = lazyllm_edge.Generator(str(model), n_ctx=128, n_threads=1)
    long_ctx.append(list(range(5, 25)))
    file = tmp_path / "phi3.bin"
    long_ctx.save_state(file)
    short_ctx = lazyllm_edge.Generator(str(model), n_ctx=64, n_threads=1)
    with pytest.raises(lazyllm_edge.StateFileError, match="RoPE factors"):
        short_ctx.load_state(file)
    assert short_ctx.n_past == 0
    same = lazyllm_edge.Generator(str(model), n_ctx=256, n_threads=1)
    same.load_state(file)
    assert np.array_equal(same.append([30]), long_ctx.append([30]))
