"""Where the passkey's digits rank under LazyLLM's importance, layer by layer (a diagnostic for choosing
prune schedules; not a test).

Each passkey task's prompt is run dense (a keep fraction of 0.9999 at every layer, so every layer ranks its
tokens and `Session.importance` records the ranking without dropping any), and for each layer it prints the
rank of the needle's digit tokens among the active tokens as a fraction: 0.00 = most important, 0.99 = least.
`first` is the needle's first digit (the token the first answer step needs most), `worst` the worst-ranked
digit. A stage (layer, keep) keeps a token only if its rank fraction is below `keep`.

    python benchmarks/passkey_needle_rank.py --min-tokens 1536 > benchmarks/results/passkey-needle-rank-smollm2.txt
"""
import argparse
from pathlib import Path

import numpy as np

import lazyllm_edge
from lazyllm_edge import LazyConfig
from lazyllm_edge.calibrate import needle_positions
from lazyllm_edge.eval import dev_set_path, load_tasks, passkey_prompt_ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF path (default: the cached SmolLM2-135M-Instruct)")
    ap.add_argument("--tasks", default=None, help="jsonl (default: the package's longctx-dev.jsonl)")
    ap.add_argument("--min-tokens", type=int, default=1536, help="tasks of at least this approximate length")
    ap.add_argument("--importance", choices=["mean", "max"], default="mean", help="importance signal (over heads)")
    ap.add_argument("--window", type=int, default=1, help="query window: the last N prompt tokens rank (1: the last)")
    ap.add_argument("--pool", type=int, default=0, help="max-pool the importance over +-N neighbouring positions")
    ap.add_argument("--ruler", action="store_true", help="also the RULER-style single-needle tasks of ruler-dev.jsonl")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    gen = lazyllm_edge.Generator(args.model, n_ctx=8192 + 64, n_threads=args.threads)
    n_layer = gen.n_layer
    path = Path(args.tasks) if args.tasks else dev_set_path()
    tasks = [t for t in load_tasks(path, kinds=("passkey",)) if t["approx_tokens"] >= args.min_tokens]
    if args.ruler:
        tasks += [t for t in load_tasks(dev_set_path("ruler-dev.jsonl"), kinds=("passkey",))
                  if t["sub"] == "niah" and t["approx_tokens"] >= args.min_tokens]
    probe = LazyConfig(schedule=tuple((l, 0.9999) for l in range(1, n_layer)), prune_decode=False,
                       importance=args.importance, query_window=args.window)
    first_all, worst_all, layers = [], [], []
    print("# rank fraction of the needle's digits under the last token's importance, by ranked layer")
    for task in tasks:
        ids = passkey_prompt_ids(gen, task)
        needle = needle_positions(gen, ids, task["answer"])
        gen.set_lazy(probe)
        gen.session.set_record_importance(True)
        gen.reset()
        gen.append(ids)
        first, worst = [], []
        layers = [layer for layer, _, _ in gen.session.importance]
        for layer, positions, scores in gen.session.importance:
            scores = np.asarray(scores)
            if args.pool:  # max-pooled over neighbours (SnapKV's pooling): a hit keeps its surroundings
                scores = np.lib.stride_tricks.sliding_window_view(
                    np.pad(scores, args.pool, constant_values=-1.0), 2 * args.pool + 1).max(axis=1)
            order = np.argsort(-scores, kind="stable")
            rank = np.empty(len(scores), dtype=np.int64)
            rank[order] = np.arange(len(scores))
            where = {int(p): i for i, p in enumerate(positions)}
            # (1 where a sliding-window layer ranks only its window and the needle is outside it)
            fr = [rank[where[n]] / len(scores) if n in where else 1.0 for n in needle]
            first.append(fr[0])
            worst.append(max(fr))
        gen.session.set_record_importance(False)
        first_all.append(first)
        worst_all.append(worst)
        print(f"{task['id']} ({len(ids)} tokens, needle {task['answer']})")
        print("  first " + " ".join(f"{v:.2f}" for v in first))
        print("  worst " + " ".join(f"{v:.2f}" for v in worst))
    if first_all:
        print("median over tasks, by layer:")
        print("  layer " + " ".join(f"{l:4d}" for l in layers))
        print("  first " + " ".join(f"{v:4.2f}" for v in np.median(first_all, axis=0)))
        print("  worst " + " ".join(f"{v:4.2f}" for v in np.median(worst_all, axis=0)))
        print("80th percentile over tasks, by layer:")
        print("  worst " + " ".join(f"{v:4.2f}" for v in np.percentile(worst_all, 80, axis=0)))


if __name__ == "__main__":
    main()
