"""Passkey accuracy, TTFT and computed fraction for several prune schedules on the longer dev tasks only (the
short ones pass with every schedule), prefill-only pruning as the presets do. Cheaper than the full
`python -m lazyllm_edge.eval` when only the passkey columns matter; the first schedule is the TTFT baseline.

    python benchmarks/passkey_sweep.py --min-tokens 1536 "off|balanced|10:0.4;17:0.6;21:0.5"
"""
import argparse
from pathlib import Path

import lazyllm_edge
from lazyllm_edge import LazyConfig
from lazyllm_edge.eval import default_tasks_path, load_tasks, passkey_prompt_ids, run_passkey
from lazyllm_edge.lazy import resolve_lazy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("schedules", help="'|'-separated: off, a preset, or layer:keep;layer:keep...")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tasks", default=None, help="jsonl (default: ../shared/eval/longctx-dev.jsonl)")
    ap.add_argument("--min-tokens", type=int, default=1536)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    gen = lazyllm_edge.Generator(args.model, n_ctx=4096, n_threads=args.threads)
    path = Path(args.tasks) if args.tasks else default_tasks_path()
    tasks = [t for t in load_tasks(path, kinds=("passkey",)) if t["approx_tokens"] >= args.min_tokens]
    names = args.schedules.split("|")
    configs = {}
    for n in names:
        schedule, _ = resolve_lazy(n.replace(";", ","), gen.n_layer)
        configs[n] = LazyConfig(schedule=tuple(schedule), prune_decode=False)
    results = {n: [] for n in names}
    for task in tasks:
        ids = passkey_prompt_ids(gen, task)
        line = [task["id"]]
        for n in names:
            r = run_passkey(gen, task, ids, configs[n])
            results[n].append(r)
            line.append(f"{n}={'ok' if r['correct'] else 'miss'}/{r['ttft_s']:.2f}s/{r['fraction_computed']:.2f}")
        print(" ".join(line), flush=True)
    base = results[names[0]]
    for n in names:
        rs = results[n]
        acc = sum(r["correct"] for r in rs) / len(rs)
        speedup = sum(r["ttft_s"] for r in base) / sum(r["ttft_s"] for r in rs)
        computed = sum(r["fraction_computed"] for r in rs) / len(rs)
        print(f"{n:28s} passkey {100 * acc:5.1f}%  TTFT speedup (summed) {speedup:4.2f}  computed {100 * computed:5.1f}%")


if __name__ == "__main__":
    main()
