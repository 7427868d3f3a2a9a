"""Bad input gives a clear error (ModelLoadError / ValueError), never a crash, and the Generator stays usable."""

import struct

import numpy as np
import pytest

import lazyllm_edge
from lazyllm_edge import ModelLoadError


@pytest.fixture(scope="module")
def tiny_bytes(tiny_model):
    return tiny_model[0].read_bytes()


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def header_end(data: bytes) -> int:
    """Offset just past the fixed GGUF header (magic, version, n_tensors, n_kv)."""
    return 4 + 4 + 8 + 8


def expect_load_error(path, *words):
    with pytest.raises(ModelLoadError) as e:
        lazyllm_edge.Generator(path, n_ctx=64)
    msg = str(e.value).lower()
    assert all(w.lower() in msg for w in words), msg


def test_missing_file(tmp_path):
    expect_load_error(str(tmp_path / "nope.gguf"), "cannot open")


def test_wrong_magic(tmp_path, tiny_bytes):
    expect_load_error(write(tmp_path, "m.gguf", b"GGML" + tiny_bytes[4:]), "magic")


def test_not_a_model_at_all(tmp_path):
    expect_load_error(write(tmp_path, "t.gguf", b"hello"), "too small")


def test_bad_version(tmp_path, tiny_bytes):
    expect_load_error(write(tmp_path, "v.gguf", tiny_bytes[:4] + struct.pack("<I", 7) + tiny_bytes[8:]), "version")


@pytest.mark.parametrize("keep", [30, 200, 1000, 5000, 30000])
def test_truncated_file(tmp_path, tiny_bytes, keep):
    expect_load_error(write(tmp_path, "tr.gguf", tiny_bytes[:keep]), "")


def test_truncated_tensor_data(tmp_path, tiny_bytes):
    expect_load_error(write(tmp_path, "td.gguf", tiny_bytes[:-100]), "extends past the end")


def test_absurd_tensor_count(tmp_path, tiny_bytes):
    data = tiny_bytes[:8] + struct.pack("<Q", 1 << 60) + tiny_bytes[16:]
    expect_load_error(write(tmp_path, "c.gguf", data), "tensor count")


def test_absurd_metadata_count(tmp_path, tiny_bytes):
    data = tiny_bytes[:16] + struct.pack("<Q", 1 << 62) + tiny_bytes[24:]
    expect_load_error(write(tmp_path, "k.gguf", data), "metadata count")


def test_absurd_string_length(tmp_path, tiny_bytes):
    # the first metadata key's length field follows the header
    at = header_end(tiny_bytes)
    data = tiny_bytes[:at] + struct.pack("<Q", 1 << 50) + tiny_bytes[at + 8:]
    expect_load_error(write(tmp_path, "s.gguf", data), "string")


def _rewrite_tiny(tmp_path, name, mutate):
    """Writes a tiny model whose metadata/tensors were changed by mutate(writer_kwargs)."""
    import gguf

    from make_tiny import tiny_model_weights, tiny_vocab

    hp, weights = tiny_model_weights()
    tokens, merges, types = tiny_vocab()
    spec = dict(arch="llama", block_count=hp["n_layer"], dims=dict(hp), weights=weights, extra_type=None)
    mutate(spec)
    path = tmp_path / name
    w = gguf.GGUFWriter(str(path), spec["arch"])
    w.add_block_count(spec["block_count"])
    w.add_context_length(512)
    w.add_embedding_length(spec["dims"]["d_model"])
    w.add_feed_forward_length(hp["ffn"])
    w.add_head_count(spec["dims"]["n_head"])
    w.add_head_count_kv(hp["n_head_kv"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for n, a in spec["weights"].items():
        w.add_tensor(n, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = bytearray(path.read_bytes())
    if spec["extra_type"] is not None:  # patch the first tensor's type id in place
        name_bytes = b"token_embd.weight"
        at = data.find(name_bytes) + len(name_bytes)
        n_dims = struct.unpack_from("<I", data, at)[0]
        struct.pack_into("<I", data, at + 4 + 8 * n_dims, spec["extra_type"])
        path.write_bytes(bytes(data))
    return str(path)


def test_unknown_architecture(tmp_path):
    path = _rewrite_tiny(tmp_path, "arch.gguf", lambda s: s.update(arch="mamba"))
    expect_load_error(path, "architecture", "mamba")


def test_unknown_tensor_type(tmp_path):
    path = _rewrite_tiny(tmp_path, "type.gguf", lambda s: s.update(extra_type=77))
    expect_load_error(path, "type", "77")


def test_unsupported_tensor_type(tmp_path):
    path = _rewrite_tiny(tmp_path, "iq.gguf", lambda s: s.update(extra_type=16))  # IQ2_XXS: known, not supported
    expect_load_error(path, "")


def test_absurd_dims(tmp_path):
    path = _rewrite_tiny(tmp_path, "dims.gguf", lambda s: s.update(block_count=1 << 20))
    expect_load_error(path, "block_count")


def test_missing_tensor(tmp_path):
    def drop(spec):
        spec["weights"] = {k: v for k, v in spec["weights"].items() if k != "blk.2.ffn_up.weight"}
    expect_load_error(_rewrite_tiny(tmp_path, "miss.gguf", drop), "blk.2.ffn_up.weight")


def test_wrong_shape(tmp_path):
    def bad_head(spec):
        spec["dims"]["n_head"] = 3  # d_model 64 not divisible: q weight shape no longer matches
    expect_load_error(_rewrite_tiny(tmp_path, "shape.gguf", bad_head), "")


@pytest.fixture(scope="module")
def tiny_gen(tiny_model):
    return lazyllm_edge.Generator(str(tiny_model[0]), n_ctx=64)


@pytest.mark.parametrize("kwargs,named", [(dict(max_tokens=-1), "max_tokens"), (dict(top_p=0.0), "top_p"),
                                          (dict(top_p=1.5), "top_p"), (dict(temperature=-1), "temperature"),
                                          (dict(min_p=2.0), "min_p"), (dict(repeat_penalty=0), "repeat_penalty"),
                                          (dict(bogus=1), "bogus"), (dict(seed=-3), "seed"), (dict(stop=[1, 2]), "stop"),
                                          (dict(lazy="sideways"), "sideways")])
def test_bad_generate_arguments(tiny_gen, kwargs, named):
    with pytest.raises(ValueError, match=named):
        list(tiny_gen.generate("hello", **kwargs))
    pieces = list(tiny_gen.generate("hello", max_tokens=3, seed=1))  # still usable: a whole generation
    assert tiny_gen.finish_reason in ("stop", "length") and len(pieces) <= 3


def test_prompt_longer_than_context(tiny_gen):
    with pytest.raises(ValueError, match="n_ctx"):
        list(tiny_gen.generate("the " * 200, max_tokens=4))
    with pytest.raises(ValueError, match="n_ctx"):
        tiny_gen.logits(list(range(100)))
    tiny_gen.reset()
    tiny_gen.append([1, 2, 3])
    with pytest.raises(ValueError, match="n_ctx"):
        tiny_gen.append(list(range(70)))
    assert tiny_gen.n_past == 3  # the failed append changed nothing
    assert np.isfinite(tiny_gen.append([4])).all()


def test_bad_token_ids(tiny_gen):
    for ids in ([-1], [10**6], ["a"], [1.5]):
        with pytest.raises(ValueError, match="token id"):
            tiny_gen.append(ids)
    with pytest.raises(ValueError, match="at least one token"):
        tiny_gen.append([])


def test_bad_constructor_arguments(tiny_model):
    path = str(tiny_model[0])
    for kwargs, named in ((dict(n_ctx=0), "n_ctx"), (dict(n_ctx=-5), "n_ctx"), (dict(n_threads=0), "n_threads"),
                          (dict(lazy=[(1, 2.0)]), "keep_fraction")):
        with pytest.raises(ValueError, match=named):
            lazyllm_edge.Generator(path, **kwargs)
    with pytest.raises(ValueError, match="backend 'tpu'"):
        lazyllm_edge.Generator(path, backend="tpu")


def test_generator_usable_after_errors(tiny_gen):
    out = [p.token for p in tiny_gen.generate("the cat", max_tokens=5, temperature=0)]
    again = [p.token for p in tiny_gen.generate("the cat", max_tokens=5, temperature=0)]
    assert out == again
