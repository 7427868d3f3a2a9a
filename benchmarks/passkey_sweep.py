"""Passkey accuracy, TTFT and computed fraction for several prune schedules on the longer dev tasks only (the
short ones pass with every schedule), pruning the prefill only unless a spec says otherwise. Cheaper than the full
`python -m lazyllm_edge.eval` when only the passkey columns matter; the first schedule is the TTFT baseline.
A spec with '/' (e.g. 12:0.1/20:0.5) also prunes decode steps with the stages after it; a preset name runs
prefill-only too, so write balanced out as 12:0.1;16:0.02/24:0.5 to include its decode stages.

    python benchmarks/passkey_sweep.py --min-tokens 1536 "off|balanced|10:0.4;17:0.6;21:0.5"

The dev set has 15 tasks of >= 1.5k tokens, so one task is 6.7 points and two schedules rarely differ by more
than noise. `--variants N` adds N tasks per dev task with the needle moved to a random place in the same filler
and a new random number (seeded), and the summary gives each schedule's paired difference to the first
schedule (tasks it lost and gained) with a 95 % interval.
"""
import argparse
import math
import random
import re
from pathlib import Path

import lazyllm_edge
from lazyllm_edge.eval import dev_set_path, load_tasks, passkey_prompt_ids, run_passkey, with_prune_decode
from lazyllm_edge.lazy import resolve_lazy


NEEDLE = re.compile(r"One of the special magic numbers is (\d+)\. ")


def needle_variants(task: dict, n: int, rng: random.Random):
    """n copies of a passkey task with the needle at a random character offset of the same filler (as the dev
    tasks place it, mid-word included) and a new 5-digit number; the question at the end stays."""
    user = task["user"]
    found = NEEDLE.search(user)
    question = user.rfind("\n\nWhat is the special magic number")
    if not found or question < 0:
        return []
    head = user.index("\n\n") + 2  # after the instruction line
    filler = user[head:found.start()] + user[found.end():question]
    out = []
    for k in range(n):
        number = str(rng.randrange(10000, 100000))
        at = rng.randrange(len(filler))
        text = user[:head] + filler[:at] + f"One of the special magic numbers is {number}. " + filler[at:] + user[question:]
        out.append(dict(task, id=f"{task['id']}-v{k + 1}", user=text, answer=number, depth=round(at / len(filler), 2)))
    return out


def paired_difference(base, other):
    """(lost, gained, difference in points, 95 % half-width) of `other` against `base` on the same tasks."""
    n = len(base)
    lost = sum(b["correct"] and not o["correct"] for b, o in zip(base, other))
    gained = sum(o["correct"] and not b["correct"] for b, o in zip(base, other))
    d = (gained - lost) / n
    var = ((gained + lost) / n - d * d) / n  # variance of the mean of per-task differences in {-1, 0, 1}
    return lost, gained, 100 * d, 100 * 1.96 * math.sqrt(max(var, 0.0))


def add_sweep_arguments(ap: argparse.ArgumentParser):
    """The model, task and schedule options this script shares with passkey_logprob.py."""
    ap.add_argument("schedules", help="'|'-separated: off, a preset, or layer:keep;layer:keep...")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tasks", default=None, help="jsonl (default: the package's longctx-dev.jsonl)")
    ap.add_argument("--min-tokens", type=int, default=1536)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", type=int, default=0, help="extra tasks per dev task with the needle moved")
    ap.add_argument("--seed", type=int, default=0)


def sweep_setup(args):
    """(generator, passkey tasks with their seeded needle variants, schedule names, {name: LazyConfig})."""
    gen = lazyllm_edge.Generator(args.model, n_ctx=4096, n_threads=args.threads)
    path = Path(args.tasks) if args.tasks else dev_set_path()
    tasks = [t for t in load_tasks(path, kinds=("passkey",)) if t["approx_tokens"] >= args.min_tokens]
    rng = random.Random(args.seed)
    tasks = [v for t in tasks for v in [t] + needle_variants(t, args.variants, rng)]
    if not tasks:
        raise SystemExit(f"no passkey tasks of >= {args.min_tokens} tokens in {path}")
    names = args.schedules.split("|")
    configs = {}
    for n in names:
        schedule = resolve_lazy(n.replace(";", ","), gen.n_layer, gen.info["stage_layers"])
        # prefill only unless the spec names the decode steps' stages after '/'
        configs[n] = with_prune_decode(schedule, "schedule" if "/" in n else "off", gen.n_layer)
    return gen, tasks, names, configs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sweep_arguments(ap)
    gen, tasks, names, configs = sweep_setup(ap.parse_args())
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
        lost, gained, diff, half = paired_difference(base, rs)
        print(f"{n:28s} passkey {100 * acc:5.1f}% ({len(rs)} tasks)  vs first: -{lost} +{gained} = {diff:+5.1f} "
              f"+- {half:4.1f} points  TTFT speedup (summed) {speedup:4.2f}  computed {100 * computed:5.1f}%")


if __name__ == "__main__":
    main()
