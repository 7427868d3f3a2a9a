"""Numerics as a value of each Generator (Session), not of the process: "fast" (int8 prefill with 15-bit
activations in the packed GEMM, int8 decode),
"fp32" (no int8) and "llama.cpp" (llama.cpp's arithmetic), on a tiny Q4_1 model (quantized weights, so the int8
path applies), and the CLI's --numerics. The kernels per numerics are tested in test_kernels.py and
test_attention*.py, llama.cpp numerics against llama.cpp's logits in test_llama_cpp_numerics.py."""
import subprocess

import numpy as np
import pytest

import lazyllm_edge
PROMPT = list(range(5, 45))  # 40 tokens: a prefill (the packed int8 GEMM in fast numerics)


@pytest.fixture(scope="module")
def tiny_q4_1(tmp_path_factory):
    from make_tiny import write_tiny_model

    path = tmp_path_factory.mktemp("numerics") / "tiny-llama-q4_1.gguf"
    write_tiny_model(path, "llama", 4, "Q4_1")
    return str(path)


def run(gen, decode_steps=3):
    """The prompt's logits at every position (a prefill: all its matmuls batched), then those of `decode_steps`
    greedy one-token steps after the prompt (single rows: decode), from an empty cache."""
    out = [gen.logits(PROMPT)]
    gen.reset()
    last = gen.append(PROMPT)  # (its last row's output projection is a single row too)
    for _ in range(decode_steps):
        last = gen.append([int(np.argmax(last))])
        out.append(last)
    return out


def same_bits(a, b):
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_each_generator_computes_with_its_own_numerics(tiny_q4_1, testing):
    """Generators of one process, side by side: fast and fp32 prefill close (15-bit int8 activations against exact
    fp32) and decode apart (int8 against fp32), llama.cpp differs from both in prefill; creating or using one changes
    nothing in another."""
    fast = lazyllm_edge.Generator(tiny_q4_1, n_ctx=128)
    assert fast.numerics == "fast"
    before = run(fast)
    fp32 = lazyllm_edge.Generator(tiny_q4_1, n_ctx=128, numerics="fp32")
    llama = lazyllm_edge.Generator(tiny_q4_1, n_ctx=128, numerics="llama.cpp")
    assert (fp32.numerics, llama.numerics) == ("fp32", "llama.cpp")
    int8 = lazyllm_edge.Generator(tiny_q4_1, n_ctx=128, numerics="int8")
    assert int8.numerics == "int8"
    exact, llama_out, int8_out = run(fp32), run(llama), run(int8)
    after = run(fast)
    assert all(same_bits(a, b) for a, b in zip(before, after)), "another Generator's numerics changed this one's"
    if testing.kernels.detected_isa() != "scalar":  # the int8 paths need AVX2
        assert not same_bits(before[0], exact[0]), "fast prefill should multiply in int8 (the packed GEMM)"
        # 15-bit activations: within about 1e-4 of the exact fp32 prefill
        assert np.abs(before[0] - exact[0]).max() <= 1e-3 * np.abs(exact[0]).max()
        assert not same_bits(before[1], exact[1]), "fast decode should multiply in int8"
        assert not same_bits(before[0], llama_out[0]), "llama.cpp prefill should multiply in int8"
        # int8: 8-bit activations (llama.cpp's Q8_1 for these Q4_1 weights), further from exact than fast's 15 bits
        assert np.abs(int8_out[0] - exact[0]).max() > np.abs(before[0] - exact[0]).max()
    else:
        assert same_bits(before[0], exact[0]), "without AVX2 fast prefill is exact fp32"
    # every numerics computes the same model: the same greedy tokens here, logits within int8 rounding
    for other in (exact, llama_out, int8_out):
        for a, b in zip(before, other):
            assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()


def test_set_numerics_takes_effect_at_the_next_append(tiny_q4_1):
    gen = lazyllm_edge.Generator(tiny_q4_1, n_ctx=128)
    fp32 = lazyllm_edge.Generator(tiny_q4_1, n_ctx=128, numerics="fp32")
    want = run(fp32)
    gen.set_numerics("fp32")
    assert gen.numerics == "fp32"
    assert all(same_bits(a, b) for a, b in zip(run(gen), want))
    gen.set_numerics("default")  # the earlier name of "fast"
    assert gen.numerics == "fast"
    gen.set_numerics("int8")
    assert gen.numerics == "int8"
    with pytest.raises(ValueError, match="numerics"):
        gen.set_numerics("int4")
    assert gen.numerics == "int8"
    with pytest.raises(ValueError, match="numerics"):
        lazyllm_edge.Generator(tiny_q4_1, n_ctx=128, numerics="fp64")
    assert lazyllm_edge.NUMERICS == ("fast", "fp32", "llama.cpp", "int8")


def test_no_process_wide_numerics_left():
    """The process-wide switches are gone from the package (numerics belong to a Generator)."""
    for name in ("set_numerics", "numerics"):
        assert not hasattr(lazyllm_edge, name)
    for name in ("kernels", "cuda_set_exact_gemm", "cuda_exact_gemm", "read_gguf"):
        assert not hasattr(lazyllm_edge._core, name), f"_core.{name} is a test hook or a removed switch"


def test_cli_numerics(tiny_q4_1):
    from lazyllm_edge.cli import binary_path

    base = [str(binary_path()), "-m", tiny_q4_1, "-p", "the cat", "-n", "4", "--temp", "0", "-t", "1"]
    outputs = {}
    for mode in ("fast", "fp32", "llama.cpp", "int8", "default"):
        r = subprocess.run(base + ["--numerics", mode], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (mode, r.stderr)
        outputs[mode] = r.stdout
    assert outputs["default"] == outputs["fast"]
    bad = subprocess.run(base + ["--numerics", "int4"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "numerics" in bad.stderr
