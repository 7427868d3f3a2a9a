"""Teacher-forced log-probability of each passkey answer under several prune schedules: a graded measure of
how much a schedule hurts retrieval, where passkey accuracy only counts flips. The reply the default model
gives ("The special magic number mentioned in the text is N.") is fed token by token (each a decode step, as
generation runs them) and the answer digits are scored: their summed log-prob, whether every digit is the
argmax, and the weakest digit's margin over the best other token.

    python benchmarks/passkey_logprob.py --tasks-prefix dev-passkey-3000 --variants 3 --seed 7 \\
        "off|12:0.1/24:0.5|12:0.1;16:0.2/24:0.5"

Schedules are written as in passkey_sweep.py ('/' names decode stages; without it, a preset included, the
prefill alone prunes, so write a preset's stages out to include its decode stages: 12:0.1;16:0.2/24:0.5).
"""
import argparse
import random
import time
from pathlib import Path

import numpy as np

import lazyllm_edge
from lazyllm_edge import LazyConfig
from lazyllm_edge.eval import default_tasks_path, load_tasks, log_softmax, passkey_prompt_ids
from lazyllm_edge.lazy import resolve_lazy
from passkey_sweep import needle_variants

REPLY_HEAD = "The special magic number mentioned in the text is"


def score(gen, ids, reply, n_head, config):
    """(summed log-prob of the answer digits, all of them argmax, weakest margin, TTFT in s)."""
    gen.set_lazy(config)
    gen.reset()
    t0 = time.perf_counter()
    rows = [gen.append(ids)]
    ttft = time.perf_counter() - t0
    for token in reply[:-1]:
        rows.append(gen.append([token]))
    lp = log_softmax(np.stack(rows))
    digits = range(n_head, len(reply) - 1)  # the answer, not the closing '.'
    total = float(sum(lp[i, reply[i]] for i in digits))
    argmax_ok = all(int(np.argmax(lp[i])) == reply[i] for i in digits)
    margin = min(float(lp[i, reply[i]] - np.max(np.delete(lp[i], reply[i]))) for i in digits)
    return total, argmax_ok, margin, ttft


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("schedules", help="'|'-separated: off, a preset, or layer:keep;layer:keep[/decode stages]")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tasks", default=None, help="jsonl (default: ../shared/eval/longctx-dev.jsonl)")
    ap.add_argument("--tasks-prefix", default="dev-passkey", help="comma-separated task id prefixes")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", type=int, default=0, help="extra tasks per dev task with the needle moved")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    gen = lazyllm_edge.Generator(args.model, n_ctx=4096, n_threads=args.threads)
    path = Path(args.tasks) if args.tasks else default_tasks_path()
    tasks = load_tasks(path, kinds=("passkey",))
    rng = random.Random(args.seed)  # variants drawn over all tasks, as passkey_sweep.py does, so ids match
    tasks = [v for t in tasks if t["approx_tokens"] >= 1536 for v in [t] + needle_variants(t, args.variants, rng)] + \
        [t for t in tasks if t["approx_tokens"] < 1536]
    tasks = [t for t in tasks if any(t["id"].startswith(p) for p in args.tasks_prefix.split(","))]
    names = args.schedules.split("|")
    configs = {}
    for n in names:
        schedule, prune_decode, decode_schedule = resolve_lazy(n.replace(";", ","), gen.n_layer)
        configs[n] = LazyConfig(schedule=tuple(schedule), prune_decode=prune_decode and "/" in n,
                                decode_schedule=tuple(decode_schedule))
    head = gen.tokenize(REPLY_HEAD, add_special=False)
    results = {n: [] for n in names}
    for task in tasks:
        ids = passkey_prompt_ids(gen, task)
        reply = gen.tokenize(f"{REPLY_HEAD} {task['answer']}.", add_special=False)
        assert reply[:len(head)] == head
        line = [task["id"]]
        for n in names:
            r = score(gen, ids, reply, len(head), configs[n])
            results[n].append(r)
            line.append(f"{n}={r[0]:.2f}/{'ok' if r[1] else 'x'}/{r[2]:+.2f}/{r[3]:.1f}s")
        print(" ".join(line), flush=True)
    for n in names:
        logp = np.array([r[0] for r in results[n]])
        margin = np.array([r[2] for r in results[n]])
        print(f"{n:24s} mean logp {logp.mean():7.2f}  median {np.median(logp):7.2f}  "
              f"argmax ok {sum(r[1] for r in results[n])}/{len(logp)}  mean margin {margin.mean():+.2f}  "
              f"TTFT {sum(r[3] for r in results[n]):.1f}s")


if __name__ == "__main__":
    main()
