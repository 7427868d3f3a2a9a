"""Teacher-forced log-probability of each passkey answer under several prune schedules: a graded measure of
how much a schedule hurts retrieval, where passkey accuracy only counts flips. The reply the default model
gives ("The special magic number mentioned in the text is N.") is fed token by token (each a decode step, as
generation runs them) and the answer digits are scored: their summed log-prob, whether every digit is the
argmax, and the weakest digit's margin over the best other token.

    python benchmarks/passkey_logprob.py --tasks-prefix dev-passkey-3000 --variants 3 --seed 7 \\
        "off|12:0.1/24:0.5|12:0.1;16:0.02/24:0.5"

Tasks, needle variants and schedules are passkey_sweep.py's (the same --min-tokens/--variants/--seed give the
same tasks); schedules are written as there ('/' names decode stages; without it, a preset included, the
prefill alone prunes, so write a preset's stages out to include its decode stages: 12:0.1;16:0.02/24:0.5).
"""
import argparse
import time

import numpy as np

from lazyllm_edge.eval import log_softmax, passkey_prompt_ids
from passkey_sweep import add_sweep_arguments, sweep_setup

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
    add_sweep_arguments(ap)
    ap.add_argument("--tasks-prefix", default="dev-passkey", help="comma-separated task id prefixes")
    args = ap.parse_args()
    gen, tasks, names, configs = sweep_setup(args)
    tasks = [t for t in tasks if any(t["id"].startswith(p) for p in args.tasks_prefix.split(","))]
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
