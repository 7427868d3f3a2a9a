#!/usr/bin/env python3
"""Build llama-cpp-python for this CPU (llama.cpp's best build here) into a folder of its own, for vs_llamacpp.py.

The comparison's anchor should be llama.cpp at its best on the machine: a native build (``-DGGML_NATIVE=ON``,
``-march=native``). Some VMs list AVX-512 (or AVX-VNNI, AMX) in /proc/cpuinfo without the OS enabling its
register state, and a native build then dies with SIGILL. So:

1. a tiny C probe, built per extension and run in a child process, finds which vector extensions this CPU really
   executes (a SIGILL child means no);
2. if every extension that /proc/cpuinfo lists and ggml uses executes, llama-cpp-python is built natively,
   else with ``-DGGML_NATIVE=OFF`` and explicit ``-DGGML_<EXT>=ON`` for exactly the extensions that executed;
3. the built package is checked in a child process (with ``--model``: a 64-token batch, then one token); if
   that child dies by a signal, the native build is replaced by the explicit one, then (where AMX executes and
   clang is installed) by the same flags built with clang, and last by the explicit one without AMX (seen
   2026-12-07: on a CPU that runs AMX, GCC 12's native and explicit builds fault in ggml's ldtilecfg on every
   batch, GCC 12's _tile_loadconfig telling the compiler it reads 8 bytes of the 64; clang's runs, with ggml's AMX
   kernels, 1.6x the AVX-512 build's 1B prefill).

The package goes into ``--target`` (default ``~/.cache/lazyllm_edge/llamacpp-best``) with ``pip install
--target``, so the llama-cpp-python in site-packages (the one the tests use) is left alone; run
``vs_llamacpp.py --llamacpp TARGET`` (or set ``LAZYLLM_EDGE_LLAMACPP=TARGET``) to compare against it. The build
takes 10-40 minutes on 2 cores. A file ``build_info.json`` in the target records the flags, the probe's result and
llama.cpp's system-info line.

    python benchmarks/build_llamacpp.py --model ~/.cache/lazyllm_edge/SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/build_llamacpp.py --probe-only        # which extensions execute, and the CMAKE_ARGS it would use
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

DEFAULT_VERSION = "0.3.36"
DEFAULT_TARGET = os.path.join(os.path.expanduser("~"), ".cache", "lazyllm_edge", "llamacpp-best")
# Always off: GPU back ends and what vs_llamacpp.py does not load (the multimodal library, tools, tests).
COMMON_ARGS = ["-DGGML_CUDA=OFF", "-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF"]

# ggml's CMake switch, the gcc flags for the probe, one instruction of the extension, its /proc/cpuinfo flag.
# The probe's instruction is in inline asm-free intrinsics so that the compiler emits exactly that extension.
EXTENSIONS = [
    ("AVX", "-mavx", "__m256 v = _mm256_set1_ps((float)argc); v = _mm256_add_ps(v, v); return (int)_mm256_cvtss_f32(v) == 99;", "avx"),
    ("AVX2", "-mavx2", "__m256i v = _mm256_set1_epi32(argc); v = _mm256_add_epi32(v, v); return _mm256_extract_epi32(v, 0) == 99;", "avx2"),
    ("FMA", "-mfma", "__m256 v = _mm256_set1_ps((float)argc); v = _mm256_fmadd_ps(v, v, v); return (int)_mm256_cvtss_f32(v) == 99;", "fma"),
    ("F16C", "-mf16c", "__m128 v = _mm_cvtph_ps(_mm_set1_epi16((short)argc)); return (int)_mm_cvtss_f32(v) == 99;", "f16c"),
    ("BMI2", "-mbmi2", "return (int)_pdep_u32((unsigned)argc, 0xF0F0u) == 99;", "bmi2"),
    ("AVX_VNNI", "-mavxvnni", "__m256i v = _mm256_set1_epi32(argc); v = _mm256_dpbusd_avx_epi32(v, v, v); return _mm256_extract_epi32(v, 0) == 99;", "avx_vnni"),
    ("AVX512", "-mavx512f", "__m512 v = _mm512_set1_ps((float)argc); v = _mm512_add_ps(v, v); return (int)_mm512_reduce_add_ps(v) == 99;", "avx512f"),
    ("AVX512_VBMI", "-mavx512f -mavx512vbmi", "__m512i v = _mm512_set1_epi32(argc); v = _mm512_permutexvar_epi8(v, v); return _mm512_reduce_add_epi32(v) == 99;", "avx512vbmi"),
    ("AVX512_VNNI", "-mavx512f -mavx512vnni", "__m512i v = _mm512_set1_epi32(argc); v = _mm512_dpbusd_epi32(v, v, v); return _mm512_reduce_add_epi32(v) == 99;", "avx512_vnni"),
    ("AVX512_BF16", "-mavx512f -mavx512bf16", "__m512 v = _mm512_set1_ps((float)argc); __m256bh h = _mm512_cvtneps_pbh(v); return ((short*)&h)[0] == 99;", "avx512_bf16"),
    # AMX: ask Linux for the tile state (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) as ggml does, then configure a
    # tile and run an int8 tile product. Seen 2026-12-07: a VM listing amx_int8 whose native build faults in
    # ggml's ldtilecfg on every batch (general protection fault, SIGSEGV). The empty asm with a memory clobber
    # keeps the configuration's stores: GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes, so at -O1
    # the rows and column widths were dropped and ldtilecfg raised SIGILL on a CPU that runs AMX (a false "no").
    ("AMX_INT8", "-mamx-tile -mamx-int8", "syscall(SYS_arch_prctl, 0x1023, 18); unsigned char cfg[64] = {0}; "
     "cfg[0] = 1; for (int t = 0; t < 3; ++t) { cfg[16 + 2 * t] = 64; cfg[48 + t] = 16; } "
     "__asm__ volatile(\"\" : : \"r\"(cfg) : \"memory\"); _tile_loadconfig(cfg); "
     "_tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_dpbssd(0, 1, 2); _tile_release(); return argc == 99;", "amx_int8"),
]
# ggml's switches that follow from AMX_INT8
AMX_SWITCHES = ("AMX_TILE", "AMX_INT8")


def cpuinfo_flags() -> set:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return set()


def probe_extensions(cc: str = "cc") -> dict:
    """{ggml switch: True/False}: whether a program using the extension builds and runs here (False if not listed)."""
    listed = cpuinfo_flags()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags, body, flag in EXTENSIONS:
            if flag not in listed:
                out[name] = False
                continue
            src, exe = os.path.join(tmp, f"{name}.c"), os.path.join(tmp, name)
            with open(src, "w", encoding="utf-8") as f:
                f.write("#include <immintrin.h>\n#include <sys/syscall.h>\n#include <unistd.h>\n"
                        "int main(int argc, char** argv) { (void)argv; " + body + " }\n")
            b = subprocess.run([cc, "-O1", *flags.split(), src, "-o", exe], capture_output=True, text=True)
            if b.returncode != 0:  # the compiler does not know it: leave it off
                out[name] = False
                continue
            r = subprocess.run([exe], capture_output=True)
            out[name] = r.returncode >= 0  # a negative code is the signal that killed it (SIGILL)
    return out


def explicit_args(ok: dict, amx: bool = True) -> list:
    """-DGGML_NATIVE=OFF and each extension ON exactly where it executed (AMX only with `amx`)."""
    args = ["-DGGML_NATIVE=OFF"]
    for name, *_ in EXTENSIONS:
        if name == "AMX_INT8":
            on = amx and ok.get(name)
            args += [f"-DGGML_{sw}={'ON' if on else 'OFF'}" for sw in AMX_SWITCHES] + ["-DGGML_AMX_BF16=OFF"]
        else:
            args.append(f"-DGGML_{name}={'ON' if ok.get(name) else 'OFF'}")
    return args


# ggml's AMX kernels built by clang, which runs them where GCC 12's builds fault (docstring, step 3); clang 14 spells
# the macros __AMXINT8__ / __AMXTILE__, which ggml does not test, so they are defined in ggml's spelling.
CLANG_AMX = {"CC": "clang", "CXX": "clang++"}
CLANG_AMX_FLAGS = ["-DCMAKE_C_FLAGS=-D__AMX_INT8__=1 -D__AMX_TILE__=1", "-DCMAKE_CXX_FLAGS=-D__AMX_INT8__=1 -D__AMX_TILE__=1"]


def pip_build(version: str, target: str, cmake_args: list, sdist: str = None, env_extra: dict = None) -> None:
    """pip install --target (into a fresh folder, moved over target at the end so a failed build leaves the old)."""
    tmp_target = target + ".building"
    shutil.rmtree(tmp_target, ignore_errors=True)
    env = dict(os.environ, **(env_extra or {}))
    # (CMake reads CMAKE_ARGS split at spaces outside quotes)
    env["CMAKE_ARGS"] = " ".join(f'"{a}"' if " " in a else a for a in cmake_args)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
           "--target", tmp_target, sdist or f"llama-cpp-python=={version}"]
    print(f"# CMAKE_ARGS={env['CMAKE_ARGS']}\n# {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp_target, target)


# A batch of 64 tokens (the batched matmul kernels: repack, AMX) then one token (the decode kernels).
CHECK = r"""
import sys
sys.path.insert(0, sys.argv[1])
import llama_cpp
from llama_cpp import Llama
print(llama_cpp.llama_print_system_info().decode(errors="replace").strip(), flush=True)
llm = Llama(model_path=sys.argv[2], n_ctx=128, n_threads=2, n_batch=64, n_ubatch=64, verbose=False)
llm.eval([i % llm.n_vocab() for i in range(1, 65)])
llm.eval([1])
print(llama_cpp.__file__)
"""


def check_build(target: str, model: str) -> tuple:
    """(ok, system-info line or the failure): a 64-token batch and a decode step in a child process."""
    r = subprocess.run([sys.executable, "-c", CHECK, target, model], capture_output=True, text=True, timeout=600)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0:
        why = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}: {r.stderr.strip()[-500:]}"
        return False, why
    if not lines or not lines[-1].startswith(target):
        return False, f"imported llama_cpp from elsewhere: {lines[-1] if lines else '?'}"
    return True, lines[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default=DEFAULT_TARGET, help=f"install folder (default {DEFAULT_TARGET})")
    ap.add_argument("--version", default=DEFAULT_VERSION, help=f"llama-cpp-python version (default {DEFAULT_VERSION})")
    ap.add_argument("--sdist", default=None, help="a local llama-cpp-python source archive instead of PyPI")
    ap.add_argument("--model", default=None, help="GGUF for the one-token check (default: the cached SmolLM2-135M)")
    ap.add_argument("--probe-only", action="store_true", help="print which extensions execute and the flags, build nothing")
    ap.add_argument("--explicit", action="store_true", help="skip the native build, use the probe's explicit flags")
    ap.add_argument("--check-only", action="store_true", help="only run the one-token check on an existing target")
    args = ap.parse_args(argv)

    ok = probe_extensions()
    listed = cpuinfo_flags()
    refused = [n for n, _, _, flag in EXTENSIONS if flag in listed and not ok[n]]
    print("# executes: " + " ".join(n for n in ok if ok[n]), file=sys.stderr)
    print("# listed in /proc/cpuinfo but not executed: " + (" ".join(refused) or "none"), file=sys.stderr)
    native = not refused and not args.explicit
    # native; else (or if it fails the check) the probe's flags; and those without AMX, ggml's least portable part
    # (each plan: CMake arguments and compiler variables; with AMX, clang's native build before giving AMX up)
    plans = ([(["-DGGML_NATIVE=ON"], {})] if native else []) + [(explicit_args(ok), {})]
    if ok.get("AMX_INT8"):
        if shutil.which("clang") and shutil.which("clang++"):
            plans.append(((["-DGGML_NATIVE=ON"] if native else explicit_args(ok)) + CLANG_AMX_FLAGS, CLANG_AMX))
        plans.append((explicit_args(ok, amx=False), {}))
    if args.probe_only:
        print(json.dumps({"executes": ok, "refused": refused, "cmake_args": COMMON_ARGS + plans[0][0],
                          "plans": [{"cmake_args": a, "env": e} for a, e in plans]}, indent=2))
        return 0

    model = args.model
    if model is None:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from lazyllm_edge import models

        model = models.model_path("smollm2-135m")
    if args.check_only:
        good, line = check_build(args.target, model)
        print(("ok: " if good else "FAILED: ") + line)
        return 0 if good else 1

    for i, (plan, env_extra) in enumerate(plans):
        cmake_args = COMMON_ARGS + plan
        if env_extra:
            print("# with " + " ".join(f"{k}={v}" for k, v in env_extra.items()), file=sys.stderr)
        pip_build(args.version, args.target, cmake_args, args.sdist, env_extra)
        good, line = check_build(args.target, model)
        print(f"# check: {'ok' if good else 'FAILED'}: {line}", file=sys.stderr)
        if good:
            info = {"llama_cpp_python": args.version, "cmake_args": cmake_args, "env": env_extra,
                    "native": plan[0] == "-DGGML_NATIVE=ON", "executes": ok, "refused": refused, "system_info": line}
            with open(os.path.join(args.target, "build_info.json"), "w", encoding="utf-8") as f:
                json.dump(info, f, indent=2)
            print(f"llama.cpp built into {args.target}: {line}")
            return 0
        if i + 1 < len(plans):
            print("# that build does not run here; next: " + " ".join(plans[i + 1][0]), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
