#!/usr/bin/env python3
"""Prefill / decode speed of two numerics of this engine in one process, alternated (A/B on a noisy machine).

    python benchmarks/numerics_ab.py --model M.gguf --threads 2 --reps 7            # fast against fp32
    python benchmarks/numerics_ab.py --numerics fast,fp32 --tests pp512,tg32 --json ab.json

`fast` prefills with the packed int8 GEMM; `fp32` with the exact fp32 GEMM that `fast` prefill used before it (the
same code), so on one warm model the pair measures the change with everything else equal. Each repetition runs
every test in both numerics, the order flipping every repetition; medians and the ratio first/second.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", default=None)
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--reps", "-r", type=int, default=7)
    ap.add_argument("--numerics", default="fast,fp32", help="two numerics, comma-separated (default fast,fp32)")
    ap.add_argument("--tests", default="pp512,tg32", help="ppN (prefill N tokens), tgN (N one-token appends after 8)")
    ap.add_argument("--text", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import lazyllm_edge

    a, b = args.numerics.split(",")
    model = args.model or C.default_model()
    tests = args.tests.split(",")
    n_max = max(int(t[2:]) + (8 if t.startswith("tg") else 0) for t in tests)
    g = lazyllm_edge.Generator(model, n_ctx=n_max + 16, n_threads=args.threads)
    ids = C.prompt_ids(lambda s: g.tokenize(s, add_special=False), g.n_vocab, n_max, C.load_text(args.text))

    def measure(numerics: str, test: str) -> float:
        g.set_numerics(numerics)
        g.reset()
        n = int(test[2:])
        if test.startswith("pp"):
            t0 = C.now()
            g.append(ids[:n])
            return n / (C.now() - t0)
        last = g.append(ids[:8])
        t0 = C.now()
        for _ in range(n):
            last = g.append([int(last.argmax())])
        return n / (C.now() - t0)

    for t in tests:  # warm-up
        measure(a, t), measure(b, t)
    samples = {(t, x): [] for t in tests for x in (a, b)}
    for r in range(args.reps):
        for t in tests:
            for x in ((a, b) if r % 2 == 0 else (b, a)):
                samples[(t, x)].append(measure(x, t))
    rows, results = [], []
    for t in tests:
        ma, mb = C.median(samples[(t, a)]), C.median(samples[(t, b)])
        rows.append([t, "t/s", f"{ma:.2f}", f"{mb:.2f}", f"{ma / mb:.2f}"])
        results.append({"test": t, a: samples[(t, a)], b: samples[(t, b)], "ratio": ma / mb})
    print(f"{os.path.basename(model)}, threads={args.threads}, medians of {args.reps} alternating repetitions; "
          f"ratio = {a} / {b}; kernels: LAZYLLM_EDGE_ISA={os.environ.get('LAZYLLM_EDGE_ISA', '(best)')}")
    C.print_table(["test", "unit", a, b, "ratio"], rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": model, "threads": args.threads, "reps": args.reps, "host": C.host_info(),
                       "isa": os.environ.get("LAZYLLM_EDGE_ISA", "best"), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
