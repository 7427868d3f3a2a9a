#!/usr/bin/env python3
"""llama-bench-style throughput table for lazyllm_edge.

Tests (``--tests``, comma-separated):
  ppN       prefill N prompt tokens from an empty cache            -> prompt tokens / s
  tgN       decode N tokens one at a time after a short prompt     -> generated tokens / s
  tgN@dD    decode N tokens after a D-token context (untimed prefill)
  kvC       decode at a C-token context with the KV cache (one token per append) vs without it
            (reset + append the whole sequence every step); prints both and the ratio

Every figure is wall time around ``Generator.append`` (the logits of the last position included), mean ± sample
standard deviation over ``--reps`` repetitions, after one untimed warm-up.

    python benchmarks/bench.py --threads 2 --reps 5 --json bench.json
    python benchmarks/bench.py --tests pp512,tg64 --reps 1          # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

DEFAULT_TESTS = "pp512,pp2048,tg64,kv1024"


@dataclass
class Test:
    name: str
    kind: str  # pp | tg | kv
    n: int  # prompt tokens (pp), generated tokens (tg), context (kv)
    depth: int = 0
    samples: List[float] = field(default_factory=list)  # tokens / s per repetition
    extra: dict = field(default_factory=dict)


def parse_tests(spec: str) -> List[Test]:
    out = []
    for raw in spec.split(","):
        s = raw.strip()
        if not s:
            continue
        m = re.fullmatch(r"(pp|tg|kv)(\d+)(?:@d(\d+))?", s)
        if not m or int(m.group(2)) < 1 or (m.group(3) and m.group(1) != "tg"):
            raise SystemExit(f"bad test '{s}': expected ppN, tgN, tgN@dD or kvC")
        out.append(Test(s, m.group(1), int(m.group(2)), int(m.group(3) or 0)))
    if not out:
        raise SystemExit("no tests given")
    return out


def run_pp(g, ids, n: int) -> float:
    g.reset()
    t0 = C.now()
    g.append(ids[:n])
    return n / (C.now() - t0)


def run_tg(g, ids, n: int, depth: int) -> float:
    g.reset()
    g.append(ids[:depth])
    t0 = C.now()
    for i in range(n):
        g.append([ids[depth + i]])
    return n / (C.now() - t0)


def run_kv(g, ids, ctx: int, cached_steps: int, recompute_steps: int):
    """(cached t/s, recompute t/s) for decode steps at a ctx-token context."""
    g.reset()
    g.append(ids[:ctx])
    t0 = C.now()
    for i in range(cached_steps):
        g.append([ids[ctx + i]])
    cached = cached_steps / (C.now() - t0)
    total = 0.0
    for i in range(recompute_steps):
        g.reset()
        t0 = C.now()
        g.append(ids[: ctx + i + 1])  # the whole sequence again, to get the logits of the newest token
        total += C.now() - t0
    return cached, recompute_steps / total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", default=None, help="GGUF path (default: the cached SmolLM2-135M-Instruct)")
    ap.add_argument("--threads", "-t", type=int, default=None, help="threads (default: engine default = physical cores)")
    ap.add_argument("--reps", "-r", type=int, default=5, help="repetitions per test (default 5)")
    ap.add_argument("--tests", default=DEFAULT_TESTS, help=f"comma-separated tests (default {DEFAULT_TESTS})")
    ap.add_argument("--tg-prompt", type=int, default=8, help="prompt tokens before tgN without @d (default 8)")
    ap.add_argument("--kv-steps", type=int, default=32, help="cached decode steps per kv repetition (default 32)")
    ap.add_argument("--kv-recompute-steps", type=int, default=4,
                    help="no-cache decode steps (full recomputes) per kv repetition (default 4)")
    ap.add_argument("--lazy", default=None, help="lazy preset/spec for every test (default: dense)")
    ap.add_argument("--numerics", default="fast", help="fast (default) | fp32 | llama.cpp: the Generator's arithmetic")
    ap.add_argument("--text", default=None, help="text (.txt or eval .jsonl) to tokenize for prompts; default: the "
                    "package's long-context dev set")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON ('-' = stdout)")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    from lazyllm_edge import Generator

    tests = parse_tests(args.tests)
    need = 16
    for t in tests:
        if t.kind == "pp":
            need = max(need, t.n)
        elif t.kind == "tg":
            need = max(need, (t.depth or args.tg_prompt) + t.n)
        else:
            need = max(need, t.n + max(args.kv_steps, args.kv_recompute_steps))
    n_ctx = (need + 16 + 255) // 256 * 256
    model = args.model or C.default_model()
    g = Generator(model, n_ctx=n_ctx, n_threads=args.threads, lazy=args.lazy, numerics=args.numerics)
    threads = g.info.get("n_threads", args.threads)
    text = C.load_text(args.text)
    bos = g.model.bos_id if g.model.bos_id >= 0 else None
    ids = C.prompt_ids(lambda s: g.tokenize(s, add_special=False), g.n_vocab, n_ctx, text, bos)
    model_name = os.path.splitext(os.path.basename(model))[0]
    size = C.human_size(os.path.getsize(model))
    print(f"# lazyllm_edge bench: {model_name} ({g.info['architecture']}, {g.n_layer} layers), threads={threads}, "
          f"n_ctx={n_ctx}, reps={args.reps}, lazy={args.lazy or 'off'}, numerics={g.numerics}, "
          f"prompt={'text' if text else 'random ids'}",
          file=sys.stderr)

    if not args.no_warmup:
        run_pp(g, ids, min(64, n_ctx))
        run_tg(g, ids, 8, 8)

    for t in tests:
        for r in range(args.reps):
            if t.kind == "pp":
                t.samples.append(run_pp(g, ids, t.n))
            elif t.kind == "tg":
                t.samples.append(run_tg(g, ids, t.n, t.depth or args.tg_prompt))
            else:
                cached, recompute = run_kv(g, ids, t.n, args.kv_steps, args.kv_recompute_steps)
                t.samples.append(cached)
                t.extra.setdefault("recompute_samples", []).append(recompute)
            print(f"  {t.name} rep {r + 1}/{args.reps}: {t.samples[-1]:.2f} t/s"
                  + (f" (no cache {t.extra['recompute_samples'][-1]:.2f} t/s)" if t.kind == "kv" else ""),
                  file=sys.stderr)

    rows, results = [], []
    for t in tests:
        m, s = C.mean_std(t.samples)
        rec = {"test": t.name, "kind": t.kind, "threads": threads, "samples_ts": t.samples, "avg_ts": m, "stddev_ts": s}
        if t.kind == "pp":
            rec.update(n_prompt=t.n, n_gen=0, depth=0)
            rows.append([model_name, size, threads, t.name, f"{m:.2f} ± {s:.2f}"])
        elif t.kind == "tg":
            rec.update(n_prompt=t.depth or args.tg_prompt, n_gen=t.n, depth=t.depth)
            rows.append([model_name, size, threads, t.name, f"{m:.2f} ± {s:.2f}"])
        else:
            rm, rs = C.mean_std(t.extra["recompute_samples"])
            ratios = [a / b for a, b in zip(t.samples, t.extra["recompute_samples"])]
            rec.update(context=t.n, cached_steps=args.kv_steps, recompute_steps=args.kv_recompute_steps,
                       recompute_samples_ts=t.extra["recompute_samples"], recompute_avg_ts=rm, recompute_stddev_ts=rs,
                       speedup=m / rm, speedup_samples=ratios)
            rows.append([model_name, size, threads, f"tg@d{t.n} (KV cache)", f"{m:.2f} ± {s:.2f}"])
            rows.append([model_name, size, threads, f"tg@d{t.n} (no cache)", f"{rm:.2f} ± {rs:.2f}"])
        results.append(rec)
    C.print_table(["model", "size", "threads", "test", "t/s"], rows)
    for rec in results:
        if rec["kind"] == "kv":
            print(f"\nKV cache at a {rec['context']}-token context: {rec['avg_ts']:.2f} t/s with the cache vs "
                  f"{rec['recompute_avg_ts']:.2f} t/s recomputing the sequence each step -> "
                  f"{rec['speedup']:.1f}x faster with the cache")

    if args.json:
        doc = {"engine": "lazyllm_edge", "model": model, "model_name": model_name, "model_size_bytes": os.path.getsize(model),
               "threads": threads, "n_ctx": n_ctx, "reps": args.reps, "lazy": args.lazy or "off", "numerics": g.numerics,
               "prompt_source": "text" if text else "random", "host": C.host_info(), "results": results}
        s = json.dumps(doc, indent=2)
        if args.json == "-":
            print(s)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(s + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
