#!/usr/bin/env python3
"""lazyllm_edge vs llama.cpp (through llama-cpp-python) on the same GGUF, the same token ids, the same threads.

Both engines are loaded in this process and measured alternately (A/B, the order flipping every repetition, a
short pause between measurements so that neither engine's spinning worker threads overlap the other's run).
llama.cpp runs with flash attention on and n_batch = n_ubatch = --n-batch. The prompt is tokenized once with
lazyllm_edge's tokenizer (which matches llama.cpp's) and the same ids are fed to both. Every figure is wall time
around the engine call that returns the last position's logits.

Tests (``--tests``, comma-separated; default: all of the list below):
  ppN        prefill N tokens from an empty cache, tokens/s
  tgN        decode N tokens from an empty cache (one token per call), tokens/s
  tgN@dD     decode N tokens after a D-token context (untimed prefill), tokens/s
  ttftN      time to first token for an N-token prompt: dense, and lazyllm_edge with --lazy (default balanced)
             against llama.cpp dense; seconds
  rssC       peak RSS with n_ctx C after loading and prefilling --rss-prefill tokens, each engine in its own
             subprocess (ru_maxrss and VmHWM)

    python benchmarks/vs_llamacpp.py --threads 2 --reps 5 --json vs.json
    python benchmarks/vs_llamacpp.py --quick            # small sizes, 2 repetitions: a check that it all runs
    python benchmarks/vs_llamacpp.py --llamacpp ~/.cache/lazyllm_edge/llamacpp-best   # build_llamacpp.py's build

``--llamacpp DIR`` (or LAZYLLM_EDGE_LLAMACPP=DIR) imports llama_cpp from DIR (a ``pip install --target`` folder,
benchmarks/build_llamacpp.py) instead of site-packages; the output names the build's ISA line either way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

FULL_TESTS = "pp512,pp2048,pp4096,tg64,tg32@d4096,ttft4096,rss8192"
QUICK_TESTS = "pp128,pp512,tg16,tg8@d512,ttft512,rss2048"
OURS, OURS_LAZY, THEIRS = "lazyllm_edge", "lazyllm_edge[lazy]", "llama.cpp"
LLAMACPP_ENV = "LAZYLLM_EDGE_LLAMACPP"  # a folder to import llama_cpp from (inherited by the RSS subprocesses)


def use_llamacpp_from(path: Optional[str]) -> None:
    """Puts `path` (or $LAZYLLM_EDGE_LLAMACPP) first on sys.path, before llama_cpp is imported anywhere."""
    path = path or os.environ.get(LLAMACPP_ENV)
    if not path:
        return
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(os.path.join(path, "llama_cpp")):
        raise SystemExit(f"--llamacpp {path}: no llama_cpp package there (benchmarks/build_llamacpp.py builds one)")
    os.environ[LLAMACPP_ENV] = path
    sys.path.insert(0, path)


# ---------------------------------------------------------------- engines
class Ours:
    def __init__(self, model: str, n_ctx: int, threads: Optional[int], lazy=None, numerics: str = "fast"):
        from lazyllm_edge import Generator

        self.g = Generator(model, n_ctx=n_ctx, n_threads=threads, lazy=lazy, numerics=numerics)
        self.threads = self.g.info.get("n_threads", threads)

    def reset(self):
        self.g.reset()

    def feed(self, ids):
        return self.g.append(ids)


class Theirs:
    def __init__(self, model: str, n_ctx: int, threads: int, n_batch: int):
        import numpy as np
        import llama_cpp
        from llama_cpp import Llama

        self._np, self._lc = np, llama_cpp
        self.llm = Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=n_batch,
                         n_ubatch=n_batch, flash_attn=True, logits_all=False, use_mmap=True, verbose=False)
        self.n_vocab = self.llm.n_vocab()
        self.threads = threads

    def reset(self):
        self.llm.reset()

    def feed(self, ids):
        self.llm.eval(ids)
        # copy the last position's logits out, as lazyllm_edge's append does
        ptr = self._lc.llama_get_logits_ith(self.llm.ctx, -1)
        return self._np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()


def llamacpp_info() -> Dict:
    try:
        import llama_cpp

        return {"llama_cpp_python": llama_cpp.__version__, "path": os.path.dirname(os.path.dirname(llama_cpp.__file__)),
                "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}
    except Exception as e:  # pragma: no cover
        return {"error": repr(e)}


def cpu_vector_flags() -> str:
    """The x86 vector extensions /proc/cpuinfo lists (a VM may list AVX-512 without enabling it; the engines check)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "?"
    wanted = ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_int8")
    return " ".join(w for w in wanted if w in flags) or "none of " + " ".join(wanted)


# ---------------------------------------------------------------- tests
@dataclass
class Test:
    name: str
    kind: str  # pp | tg | ttft | rss
    n: int
    depth: int = 0
    samples: Dict[str, List[float]] = field(default_factory=dict)
    extra: Dict = field(default_factory=dict)


def parse_tests(spec: str) -> List[Test]:
    out = []
    for raw in spec.split(","):
        s = raw.strip()
        if not s:
            continue
        m = re.fullmatch(r"(pp|tg|ttft|rss)(\d+)(?:@d(\d+))?", s)
        if not m or int(m.group(2)) < 1 or (m.group(3) and m.group(1) != "tg"):
            raise SystemExit(f"bad test '{s}': expected ppN, tgN, tgN@dD, ttftN or rssC")
        out.append(Test(s, m.group(1), int(m.group(2)), int(m.group(3) or 0)))
    if not out:
        raise SystemExit("no tests given")
    return out


def time_prefill(engine, ids) -> float:
    engine.reset()
    t0 = C.now()
    engine.feed(ids)
    return C.now() - t0


def time_decode(engine, ids, n: int, depth: int) -> float:
    engine.reset()
    if depth:
        engine.feed(ids[:depth])
    t0 = C.now()
    for i in range(n):
        engine.feed([ids[depth + i]])
    return C.now() - t0


# ---------------------------------------------------------------- peak RSS, one subprocess per engine
def rss_worker(args) -> int:
    with open(args.ids_file, encoding="utf-8") as f:
        ids = json.load(f)
    before = C.peak_rss_bytes()
    if args.rss_worker == "ours":
        eng = Ours(args.model, args.n_ctx, args.threads, lazy=args.lazy_rss, numerics=args.numerics)
    else:
        eng = Theirs(args.model, args.n_ctx, args.threads, args.n_batch)
    loaded = C.peak_rss_bytes()
    eng.reset()
    eng.feed(ids)
    after = C.peak_rss_bytes()
    print(json.dumps({"engine": args.rss_worker, "n_ctx": args.n_ctx, "prefill": len(ids), "before_load": before,
                      "after_load": loaded, "after_prefill": after}))
    return 0


def measure_rss(which: str, model: str, n_ctx: int, threads: int, n_batch: int, ids: List[int]) -> Dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ids, f)
        path = f.name
    try:
        cmd = [sys.executable, os.path.abspath(__file__), "--rss-worker", which, "--ids-file", path, "--model", model,
               "--n-ctx", str(n_ctx), "--threads", str(threads), "--n-batch", str(n_batch)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"RSS worker for {which} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(path)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", default=None, help="GGUF path (default: the cached SmolLM2-135M-Instruct)")
    ap.add_argument("--threads", "-t", type=int, default=None,
                    help="threads for both engines (default: lazyllm_edge's default, physical cores)")
    ap.add_argument("--reps", "-r", type=int, default=None, help="repetitions per test (default 5; 2 with --quick)")
    ap.add_argument("--tests", default=None, help=f"comma-separated tests (default {FULL_TESTS}; with --quick {QUICK_TESTS})")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions, to check the harness")
    ap.add_argument("--lazy", default="balanced", help="lazy preset/spec for the lazy TTFT row (default balanced)")
    ap.add_argument("--numerics", default="fast", choices=["fast", "int8", "fp32", "llama.cpp"],
                    help="lazyllm_edge's arithmetic (default fast; int8: 8-bit prefill activations, llama.cpp's precision)")
    ap.add_argument("--n-batch", type=int, default=512, help="llama.cpp n_batch = n_ubatch (default 512)")
    ap.add_argument("--rss-prefill", type=int, default=None, help="tokens prefilled before reading peak RSS (default 512; 128 with --quick)")
    ap.add_argument("--cooldown", type=float, default=None,
                    help="seconds of idle before each measurement (default 0.1; 2 against a llama.cpp built without "
                    "OpenMP, whose own thread pool spins on after a call and halved our decode beside it)")
    ap.add_argument("--text", default=None, help="text (.txt or eval .jsonl) for the prompt ids; default: the shared "
                    "eval set when present, else seeded random ids")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON ('-' = stdout)")
    ap.add_argument("--llamacpp", default=None, metavar="DIR",
                    help=f"import llama_cpp from DIR (a pip --target folder; default ${LLAMACPP_ENV}, else site-packages)")
    # internal: one engine's peak RSS in a subprocess
    ap.add_argument("--rss-worker", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    ap.add_argument("--ids-file", help=argparse.SUPPRESS)
    ap.add_argument("--n-ctx", type=int, default=8192, help=argparse.SUPPRESS)
    ap.add_argument("--lazy-rss", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    use_llamacpp_from(args.llamacpp)
    if args.rss_worker:
        return rss_worker(args)

    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    if reps < 1:
        ap.error("--reps must be >= 1")
    rss_prefill = args.rss_prefill if args.rss_prefill is not None else (128 if args.quick else 512)
    tests = parse_tests(args.tests or (QUICK_TESTS if args.quick else FULL_TESTS))
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise SystemExit("llama-cpp-python is not installed: pip install -e '.[bench]' (see benchmarks/README.md)")

    model = args.model or C.default_model()
    need = 16
    for t in tests:
        if t.kind in ("pp", "ttft"):
            need = max(need, t.n)
        elif t.kind == "tg":
            need = max(need, t.depth + t.n)
    n_ctx = (need + 16 + 255) // 256 * 256

    # Prompt ids from lazyllm_edge's tokenizer (a model load without a session: little memory, so that the RSS
    # subprocesses, started before any engine is loaded here, do not inherit a large ru_maxrss from this process).
    from lazyllm_edge import _core

    tok_model = _core.Model.load(model, n_threads=args.threads or 0)
    threads = args.threads or tok_model.info.get("n_threads") or os.cpu_count()
    bos = tok_model.bos_id if tok_model.bos_id >= 0 else None
    text = C.load_text(args.text)
    n_vocab = tok_model.info["n_vocab"]
    ids = C.prompt_ids(lambda s: tok_model.tokenize(s, False, False), n_vocab, max(n_ctx, rss_prefill), text, bos)
    del tok_model
    model_name = os.path.splitext(os.path.basename(model))[0]
    info = llamacpp_info()
    print(f"# {model_name}: lazyllm_edge vs llama.cpp (llama-cpp-python {info.get('llama_cpp_python')}, flash_attn on, "
          f"n_batch=n_ubatch={args.n_batch}), threads={threads}, n_ctx={n_ctx}, reps={reps}, "
          f"prompt={'text' if text else 'random ids'}", file=sys.stderr)
    # which instruction sets each side runs: llama.cpp's build line, and this CPU's vector extensions (lazyllm_edge
    # picks its kernels from them at run time, lowered by LAZYLLM_EDGE_ISA)
    info["cpu_flags"] = cpu_vector_flags()
    info["lazyllm_edge_isa"] = os.environ.get("LAZYLLM_EDGE_ISA", "best of cpu_flags")
    # which lazyllm_edge runs: a script's sys.path starts at benchmarks/, so without PYTHONPATH=. it is the installed
    # package (site-packages), not the checkout's in-place build
    import lazyllm_edge
    info["lazyllm_edge_path"] = os.path.dirname(os.path.abspath(lazyllm_edge.__file__))
    if args.cooldown is None:
        args.cooldown = 0.1 if "OPENMP = 1" in info.get("system_info", "OPENMP = 1") else 2.0
    print(f"# llama.cpp build ({info.get('path', '?')}): {info.get('system_info', '?')}; pause {args.cooldown} s "
          "before each measurement", file=sys.stderr)
    print(f"# CPU: {info['cpu_flags']}; lazyllm_edge kernels: {info['lazyllm_edge_isa']}; lazyllm_edge from "
          f"{info['lazyllm_edge_path']}", file=sys.stderr)

    for t in tests:
        if t.kind != "rss":
            continue
        for which, label in (("ours", OURS), ("theirs", THEIRS)):
            r = measure_rss(which, model, t.n, threads, args.n_batch, ids[:rss_prefill])
            t.extra[label] = r
            t.samples[label] = [float(r["after_prefill"].get("VmHWM", r["after_prefill"]["ru_maxrss"]))]
            print(f"  {t.name} {label}: VmHWM {C.human_size(t.samples[label][0])}, "
                  f"ru_maxrss {C.human_size(r['after_prefill']['ru_maxrss'])}", file=sys.stderr)

    speed_tests = [t for t in tests if t.kind != "rss"]
    engines = {}
    if speed_tests:
        ours = Ours(model, n_ctx, threads, numerics=args.numerics)
        engines[OURS] = ours
        engines[THEIRS] = Theirs(model, n_ctx, threads, args.n_batch)
        if any(t.kind == "ttft" for t in tests):
            engines[OURS_LAZY] = Ours(model, n_ctx, threads, lazy=args.lazy, numerics=args.numerics)

    def pause():
        if args.cooldown > 0:
            time.sleep(args.cooldown)

    # warm-up, and a check that both engines see the same ids: the same top-1 token after a short prompt
    agree = None
    if engines:
        warm = ids[: min(64, n_ctx)]
        top1 = {}
        for name, eng in engines.items():
            eng.reset()
            top1[name] = int(eng.feed(warm).argmax())
            time_decode(eng, ids, 4, len(warm))
        agree = top1[OURS] == top1[THEIRS]
        print(f"# warm-up top-1 after {len(warm)} tokens: ours {top1[OURS]}, llama.cpp {top1[THEIRS]}"
              f"{'' if agree else '  (DIFFERENT)'}", file=sys.stderr)

    for t in speed_tests:
        variants = [OURS, THEIRS] + ([OURS_LAZY] if t.kind == "ttft" else [])
        for r in range(reps):
            order = variants if r % 2 == 0 else list(reversed(variants))
            for name in order:
                eng = engines[name]
                pause()
                if t.kind in ("pp", "ttft"):
                    dt = time_prefill(eng, ids[: t.n])
                    val = dt if t.kind == "ttft" else t.n / dt
                else:
                    val = t.n / time_decode(eng, ids, t.n, t.depth)
                t.samples.setdefault(name, []).append(val)
                unit = "s" if t.kind == "ttft" else "t/s"
                print(f"  {t.name} rep {r + 1}/{reps} {name}: {val:.3f} {unit}", file=sys.stderr)

    # ---- report
    # decode: weight bytes per token x tokens/s, against the memory's read bandwidth (benchmarks/cpp/membw.cpp)
    wbytes = C.decode_weight_bytes(model) if any(t.kind == "tg" for t in tests) else None
    rows, results = [], []
    for t in tests:
        if t.kind == "rss":
            o, th = t.samples[OURS][0], t.samples[THEIRS][0]
            rows.append([f"peak RSS n_ctx={t.n}, pp{rss_prefill}", "MiB", f"{o / 2**20:.1f}", f"{th / 2**20:.1f}",
                         f"{o / th:.2f}", "lower"])
            results.append({"test": t.name, "kind": "rss", "unit": "bytes", "n_ctx": t.n, "prefill": rss_prefill,
                            "ours": o, "theirs": th, "ratio": o / th, "detail": t.extra})
            continue
        pairs = [(OURS, "dense")] + ([(OURS_LAZY, f"lazy={args.lazy}")] if t.kind == "ttft" else [])
        for name, label in pairs:
            o, th = C.median(t.samples[name]), C.median(t.samples[THEIRS])
            if t.kind == "ttft":
                test_label, unit, better, fmt = f"ttft{t.n} ({label})", "s", "lower", "{:.3f}"
            else:
                test_label, unit, better, fmt = t.name, "t/s", "higher", "{:.2f}"
            rows.append([test_label, unit, fmt.format(o), fmt.format(th), f"{o / th:.2f}", better])
            res = {"test": test_label, "kind": t.kind, "unit": unit, "n": t.n, "depth": t.depth,
                   "ours_variant": label, "ours_samples": t.samples[name], "theirs_samples": t.samples[THEIRS],
                   "ours_median": o, "theirs_median": th, "ratio": o / th, "better": better}
            if t.kind == "tg" and wbytes:
                res["weight_bytes_per_token"] = wbytes
                res["ours_weight_GBps"], res["theirs_weight_GBps"] = o * wbytes * 1e-9, th * wbytes * 1e-9
                rows.append([f"{t.name} weights read", "GB/s", f"{o * wbytes * 1e-9:.2f}", f"{th * wbytes * 1e-9:.2f}",
                             f"{o / th:.2f}", better])
            results.append(res)
    print(f"\n{model_name}, threads={threads}, medians of {reps} alternating repetitions; "
          f"ratio = lazyllm_edge / llama.cpp; lazyllm_edge numerics={args.numerics}")
    C.print_table(["test", "unit", "lazyllm_edge", "llama.cpp", "ratio", "better"], rows)
    if wbytes:
        print(f"decode reads {wbytes / 1e6:.1f} MB of weights per token (GGUF tensors; a tied embedding counts whole)")
    print(f"llama.cpp build ({info.get('path', '?')}): {info.get('system_info', '?')}\nCPU: {info['cpu_flags']}; "
          f"lazyllm_edge kernels: {info['lazyllm_edge_isa']}; lazyllm_edge from {info['lazyllm_edge_path']}")
    if agree is False:
        print("warning: the two engines' top-1 tokens differ after the warm-up prompt", file=sys.stderr)

    if args.json:
        doc = {"model": model, "model_name": model_name, "threads": threads, "n_ctx": n_ctx, "reps": reps,
               "n_batch": args.n_batch, "lazy": args.lazy, "numerics": args.numerics, "quick": args.quick,
               "prompt_source": "text" if text else "random", "top1_agree": agree, "llama_cpp": info,
               "host": C.host_info(), "results": results}
        s = json.dumps(doc, indent=2)
        if args.json == "-":
            print(s)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(s + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
