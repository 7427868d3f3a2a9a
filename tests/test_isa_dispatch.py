"""Run-time ISA dispatch: LAZYLLM_EDGE_ISA lowers the level the kernels use (read once at startup, in each process),
and a model computes the same prefill logits at every level the CPU runs (the packed int8 GEMM's levels agree bit
for bit; the scalar level has no int8 kernels and multiplies in fp32, within int8 rounding of the others). The
kernel-level comparisons per level are in test_kernels.py (test_matmul_packed, test_quantize_packed)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_testing_module, package_home

LEVELS = ("scalar", "avx2", "avxvnni", "avx512vnni")
TESTING = load_testing_module()
DETECTED = TESTING.kernels.detected_isa()
SUPPORTED = tuple(TESTING.kernels.supported_isas())  # (an AVX-512 CPU may lack AVX-VNNI: Ice Lake, Zen 4)
PROMPT = list(range(5, 45))  # 40 tokens: a prefill
# a fresh process's own copy of the test hooks (as `_testing`), whose kernels read the environment at load
IMPORT_TESTING = (
    "import importlib.util\n"
    f"spec = importlib.util.spec_from_file_location('lazyllm_edge._testing', {TESTING.__file__!r})\n"
    "_testing = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(_testing)\n"
)


@pytest.fixture(scope="module")
def tiny_q4_1(tmp_path_factory):
    from make_tiny import write_tiny_model

    path = tmp_path_factory.mktemp("isa") / "tiny-llama-q4_1.gguf"
    write_tiny_model(path, "llama", 4, "Q4_1")
    return str(path)


def run_at_level(level, model, out):
    """In a fresh process with LAZYLLM_EDGE_ISA=level: the level the kernels report, and the prompt's logits."""
    code = (
        "import json, numpy as np, lazyllm_edge\n" + IMPORT_TESTING +
        f"g = lazyllm_edge.Generator({model!r}, n_ctx=128)\n"
        f"np.save({str(out)!r}, g.logits({PROMPT!r}))\n"
        "print(json.dumps(_testing.kernels.detected_isa()))\n"
    )
    env = dict(os.environ, LAZYLLM_EDGE_ISA=level)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                       cwd=package_home())  # (the lazyllm_edge under test: the checkout's or the installed one)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), np.load(out)


def test_env_lowers_the_level_and_levels_agree(tiny_q4_1, tmp_path):
    logits = {}
    for level in SUPPORTED:
        got, logits[level] = run_at_level(level, tiny_q4_1, tmp_path / f"{level}.npy")
        assert got == level
    for level in SUPPORTED[2:]:  # the VNNI levels against AVX2: the same integer sums and fp32 operations
        assert np.array_equal(logits[level].view(np.uint32), logits["avx2"].view(np.uint32)), level
    if "avx2" in logits:  # fp32 products (scalar) against 15-bit int8 activations: close, the same greedy tokens
        a, b = logits["scalar"], logits["avx2"]
        assert np.abs(a - b).max() <= 0.01 * np.abs(a).max()
        assert np.array_equal(a.argmax(axis=1), b.argmax(axis=1))


def test_env_never_raises_the_level_and_ignores_unknown_values(tiny_q4_1, tmp_path):
    got, _ = run_at_level("nonsense", tiny_q4_1, tmp_path / "x.npy")
    assert got == DETECTED
    if DETECTED != "avx512vnni":
        got, _ = run_at_level("avx512vnni", tiny_q4_1, tmp_path / "y.npy")
        assert got == DETECTED


def test_a_level_the_cpu_lacks_gives_the_best_one_below_it(tiny_q4_1, tmp_path):
    """LAZYLLM_EDGE_ISA=avxvnni on an AVX-512 CPU without AVX-VNNI (Zen 4, Ice Lake) runs at avx2: a VEX vpdpbusd
    would raise SIGILL there. The testing module's set_active_isa lowers the same way."""
    assert SUPPORTED[0] == "scalar" and DETECTED == SUPPORTED[-1]
    assert all(level in LEVELS for level in SUPPORTED)
    missing = [level for level in LEVELS[:LEVELS.index(DETECTED)] if level not in SUPPORTED]
    if not missing:
        pytest.skip(f"this CPU runs every level up to {DETECTED}")
    for level in missing:
        below = [s for s in SUPPORTED if LEVELS.index(s) < LEVELS.index(level)][-1]
        got, _ = run_at_level(level, tiny_q4_1, tmp_path / f"{level}.npy")
        assert got == below
        kernels = TESTING.kernels
        saved = kernels.active_isa()
        try:
            kernels.set_active_isa(level)
            assert kernels.active_isa() == below
        finally:
            kernels.set_active_isa(saved)


@pytest.mark.parametrize("setting", [None, "l1", "l2", "bogus"])
def test_weight_prefetch_level(setting):
    """The decode kernels prefetch their weights into L2 on AMD CPUs (cpuid vendor), into L1 elsewhere;
    LAZYLLM_EDGE_WEIGHT_PREFETCH=l1|l2 overrides it, any other value is ignored. Read once, in each process."""
    vendor = next((line.split(":")[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("vendor_id")), "") if Path("/proc/cpuinfo").exists() else ""
    code = IMPORT_TESTING + "print(_testing.kernels.weight_prefetch_to_l2())\n"
    env = {k: v for k, v in os.environ.items() if k != "LAZYLLM_EDGE_WEIGHT_PREFETCH"}
    if setting is not None:
        env["LAZYLLM_EDGE_WEIGHT_PREFETCH"] = setting
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       cwd=package_home())
    assert r.returncode == 0, r.stderr
    want = {"l1": False, "l2": True}.get(setting, vendor == "AuthenticAMD")
    assert r.stdout.strip().splitlines()[-1] == str(want)
