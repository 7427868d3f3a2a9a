"""Long-context evaluation of LazyLLM prune schedules against the dense engine, in one run.

    python -m lazyllm_edge.eval [--model NAME_OR_PATH ...] [--tasks TASKS.jsonl ...]
                                [--schedules off,balanced,aggressive,12:0.1/revive:4,...] [--png out.png] [--json out.json]

Tasks: by default both dev sets shipped with the package (longctx-dev.jsonl: passkey and fidelity; ruler-dev.jsonl:
RULER-style single needle, four keys ask one, one key with two values). A model is a registry name
(``python -m lazyllm_edge.models list``) or a GGUF path; each gets its own table, dense ("off") always alongside.

passkey tasks: the user message goes through the chat template, greedy generation (24 tokens, 32 for
multivalue), correct when every expected value appears in the reply (a prompt that does not fit the model's
training context is skipped). fidelity tasks: the document is prefilled, then the continuation is fed token by
token (teacher forcing; decode pruning on unless --fidelity-prune-decode says otherwise); at every continuation
position the next-token distribution is compared with the dense engine's: mean KL(dense || lazy) and top-1
agreement (a document longer than the model's training context loses its start).

Speed columns are medians over tasks of dense time / schedule time for the same prompt, measured in this run:
TTFT (the prefill), and the time to a whole 16-token answer (prefill through the 16th reply token, or the last
one of a shorter reply), the time a user waits for an answer: work a schedule defers from the prefill to the
decode steps shows there and not in the TTFT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from . import Generator
from .lazy import LazyConfig

DEV_SETS = ("longctx-dev.jsonl", "ruler-dev.jsonl")
ANSWER_TOKENS = 16  # the whole-answer time is measured to this many reply tokens


def dev_set_path(name: str = DEV_SETS[0]) -> Path:
    """A long-context dev set shipped with the package (lazyllm_edge/data/eval/, see its README.md)."""
    return Path(__file__).resolve().parent / "data" / "eval" / name


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def load_tasks(path: Path, kinds=None, max_tokens=None):
    tasks = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if kinds:
        tasks = [t for t in tasks if t["kind"] in kinds]
    if max_tokens:
        tasks = [t for t in tasks if t["approx_tokens"] <= max_tokens]
    return tasks


def passkey_prompt_ids(gen: Generator, task: dict):
    """A passkey task's user message through the model's chat template, as token ids."""
    return gen.chat_ids([{"role": "user", "content": task["user"]}])


def expected_answers(task: dict):
    return task.get("answers") or [task["answer"]]


def reply_tokens(task: dict) -> int:
    return 32 if task.get("sub") == "multivalue" else 24


def run_passkey(gen: Generator, task: dict, ids, schedule) -> dict:
    """Greedy reply, timed token by token (the prefill is the first token's time)."""
    gen.set_lazy(schedule)
    gen.reset()  # each schedule's TTFT is a whole prefill (no prefix reuse across runs)
    pieces, times = [], []
    t0 = time.perf_counter()
    for p in gen.generate(ids, max_tokens=reply_tokens(task), temperature=0):
        pieces.append(p.text)
        times.append(time.perf_counter() - t0)
    reply = "".join(pieces)
    st = gen.stats
    answer_s = times[min(ANSWER_TOKENS, len(times)) - 1] if times else st["ttft_s"]
    return dict(correct=all(a in reply for a in expected_answers(task)), reply=reply, ttft_s=st["ttft_s"],
                answer_s=answer_s, prompt_tokens=len(ids), fraction_computed=st["prefill_fraction_computed"],
                total_fraction_computed=st["total_fraction_computed"], layer_kv_tokens=st["layer_kv_tokens"],
                revived_tokens=st["revived_tokens"])


def teacher_forced_logprobs(gen: Generator, prefix, continuation, schedule):
    """Log-probs (len(continuation), vocab) of each continuation token's prediction, and the prefill stats."""
    gen.set_lazy(schedule)
    gen.reset()
    rows = [gen.append(prefix)]
    prefill = gen.stats
    for t in continuation[:-1]:
        rows.append(gen.append([t]))
    total = gen.stats
    return log_softmax(np.stack(rows)), prefill, total


def with_prune_decode(schedule, mode: str, n_layer: int):
    """The schedule with decode pruning as `mode` says: "schedule" keeps it, "on"/"off" force it."""
    if mode == "schedule":
        return schedule
    return LazyConfig(schedule=schedule.schedule, prune_decode=mode == "on", decode_schedule=schedule.decode_schedule,
                      revival_budget=schedule.revival_budget, importance=schedule.importance,
                      query_window=schedule.query_window, pool_radius=schedule.pool_radius,
                      min_kept_tokens=schedule.min_kept_tokens,
                      decode_pool_radius=schedule.decode_pool_radius if mode == "on" else None).resolve(n_layer)


def model_label(model) -> str:
    return "default model" if model is None else os.path.basename(str(model))


def open_model(model, threads):
    """A registry name or a path (None: the default model); n_ctx covers the 8k tasks."""
    from .models import model_path, registry

    path = model_path(model) if model in registry() else model
    return Generator(None if path is None else str(path), n_ctx=8192 + 64, n_threads=threads)


def evaluate_model(gen: Generator, tasks, names, args, log):
    """Runs every task under every schedule; returns (per-schedule results, the schedules)."""
    limit = min(gen.n_ctx, gen.info.get("n_ctx_train") or gen.n_ctx)  # prompts stay inside the training context
    # what lazy=name gives a user of this model (a preset is the model's calibrated schedule where it has one)
    resolved = {name: gen.schedule_for(name.replace(";", ",")) for name in names}
    schedules = {name: with_prune_decode(resolved[name], args.prune_decode, gen.n_layer) for name in names}
    fidelity_schedules = {name: with_prune_decode(resolved[name], args.fidelity_prune_decode, gen.n_layer)
                          for name in names}
    results = {name: [] for name in names}
    t_start = time.time()
    for task in tasks:
        if task["kind"] == "passkey":
            ids = passkey_prompt_ids(gen, task)
            if len(ids) + reply_tokens(task) > limit:
                log(f"{task['id']}: skipped ({len(ids)} prompt tokens + reply > context {limit})")
                continue
            for name in names:
                r = run_passkey(gen, task, ids, schedules[name])
                r.update(id=task["id"], kind="passkey", sub=task.get("sub", "passkey"))
                results[name].append(r)
        else:
            prefix = gen.tokenize(task["user"], add_special=True)
            full = gen.tokenize(task["user"] + task["continuation"], add_special=True)
            n_prefix = len(prefix)
            while n_prefix > 0 and full[:n_prefix] != prefix[:n_prefix]:
                n_prefix -= 1  # a merge across the boundary: start the continuation where they agree
            continuation = full[n_prefix:][: args.max_continuation + 1]
            prefix = full[:n_prefix]
            if len(prefix) + len(continuation) > limit:
                # too long for the model: drop the start of the document (after BOS), as a sliding reader would
                head = 1 if prefix and prefix[0] == gen.model.bos_id else 0
                cut = len(prefix) + len(continuation) - limit
                log(f"{task['id']}: {len(prefix)} prompt tokens, the first {cut} dropped to fit context {limit}")
                prefix = prefix[:head] + prefix[head + cut:]
            dense_lp = None
            for name in names:
                lp, prefill, total = teacher_forced_logprobs(gen, prefix, continuation, fidelity_schedules[name])
                if dense_lp is None:
                    dense_lp = lp
                kl = float((np.exp(dense_lp) * (dense_lp - lp)).sum(axis=1).mean())
                agree = float((lp.argmax(axis=1) == dense_lp.argmax(axis=1)).mean())
                results[name].append(dict(id=task["id"], kind="fidelity", kl=kl, top1=agree, ttft_s=prefill["ttft_s"],
                                          prompt_tokens=len(prefix), fraction_computed=prefill["prefill_fraction_computed"],
                                          total_fraction_computed=total["total_fraction_computed"],
                                          layer_kv_tokens=prefill["layer_kv_tokens"]))
        log(f"[{time.time() - t_start:6.0f}s] {task['id']}: " + ", ".join(
            f"{n}={'ok' if r.get('correct', True) else 'miss'}/{r['ttft_s']:.2f}s" for n in names for r in [results[n][-1]]))
    return results, schedules


def summarize(results, schedules, names):
    """One row per schedule: accuracy, fidelity and the speed ratios against dense."""
    dense = {r["id"]: r for r in results["off"]}
    ratio = lambda rs, key: [dense[r["id"]][key] / r[key] for r in rs if r.get(key) and dense[r["id"]].get(key)]
    median = lambda xs: statistics.median(xs) if xs else None
    rows = []
    for name in names:
        rs = results[name]
        pk = [r for r in rs if r["kind"] == "passkey"]
        fi = [r for r in rs if r["kind"] == "fidelity"]
        at_least = lambda n: [r for r in rs if r["prompt_tokens"] >= n]
        accuracy = lambda xs: 100.0 * sum(r["correct"] for r in xs) / len(xs) if xs else None
        rows.append(dict(
            schedule=name, spec=str(schedules[name]),
            passkey_accuracy=accuracy(pk), passkey_n=len(pk),
            accuracy_by_kind={k: accuracy([r for r in pk if r["sub"] == k]) for k in sorted({r["sub"] for r in pk})},
            fidelity_kl=statistics.mean(r["kl"] for r in fi) if fi else None,
            fidelity_top1=100.0 * statistics.mean(r["top1"] for r in fi) if fi else None,
            mean_prompt_tokens=statistics.mean(r["prompt_tokens"] for r in rs) if rs else 0,
            ttft_speedup=median(ratio(rs, "ttft_s")),
            ttft_speedup_ge_2k=median(ratio(at_least(2000), "ttft_s")),
            answer_speedup_ge_2k=median(ratio([r for r in at_least(2000) if r["kind"] == "passkey"], "answer_s")),
            answer_speedup_ge_6k=median(ratio([r for r in at_least(6000) if r["kind"] == "passkey"], "answer_s")),
            percent_prompt_computed=100.0 * statistics.mean(r["fraction_computed"] for r in rs) if rs else 0,
            percent_total_computed=100.0 * statistics.mean(r["total_fraction_computed"] for r in rs) if rs else 0))
    return rows


def print_table(title, rows, out=None):
    out = out or sys.stdout
    fmt = lambda v, f: (format("-", ">" + f.split(".")[0]) if v is None else format(v, f))
    print(f"\n## {title}", file=out)
    print(f"{'schedule':30s} {'pass%':>6s} {'n':>3s} {'KL':>7s} {'top1%':>6s} {'tokens':>6s} {'TTFT×':>6s} "
          f"{'T>=2k×':>6s} {'ans>=2k×':>8s} {'ans>=6k×':>8s} {'%pre':>5s} {'%all':>5s}  by kind", file=out)
    for r in rows:
        kinds = " ".join(f"{k}={fmt(v, '.0f')}" for k, v in r["accuracy_by_kind"].items())
        print(f"{r['schedule'][:30]:30s} {fmt(r['passkey_accuracy'], '6.1f')} {r['passkey_n']:3d} "
              f"{fmt(r['fidelity_kl'], '7.4f')} {fmt(r['fidelity_top1'], '6.1f')} {r['mean_prompt_tokens']:6.0f} "
              f"{fmt(r['ttft_speedup'], '6.2f')} {fmt(r['ttft_speedup_ge_2k'], '6.2f')} "
              f"{fmt(r['answer_speedup_ge_2k'], '8.2f')} {fmt(r['answer_speedup_ge_6k'], '8.2f')} "
              f"{r['percent_prompt_computed']:5.1f} {r['percent_total_computed']:5.1f}  {kinds}", file=out)
    for r in rows:
        if r["schedule"] != r["spec"]:
            print(f"  {r['schedule']} = {r['spec']}", file=out)  # a preset: the schedule it stands for on this model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lazyllm_edge.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=Path, nargs="+", default=[dev_set_path(n) for n in DEV_SETS])
    ap.add_argument("--model", action="append", default=None,
                    help="registry name or GGUF path; repeat for several models (default: the default model)")
    ap.add_argument("--schedules", default="off,balanced,aggressive",
                    help="comma-separated list; a schedule with stages is written with ';' between stages, e.g. "
                         "8:0.7;15:0.5, and may name the decode steps' stages and revival budget after '/', e.g. "
                         "12:0.1/revive:4")
    ap.add_argument("--kinds", default="passkey,fidelity")
    ap.add_argument("--subs", default=None, help="passkey sub-kinds to keep (passkey,niah,multikey,multivalue)")
    ap.add_argument("--min-tokens", type=int, default=None, help="skip tasks with approx_tokens below this")
    ap.add_argument("--max-tokens", type=int, default=None, help="skip tasks with approx_tokens above this")
    ap.add_argument("--max-continuation", type=int, default=64, help="continuation tokens scored per fidelity task")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prune-decode", choices=["schedule", "on", "off"], default="schedule",
                    help="decode-step pruning while generating passkey answers: as each schedule says, or forced")
    ap.add_argument("--fidelity-prune-decode", choices=["schedule", "on", "off"], default="on",
                    help="decode-step pruning over the teacher-forced fidelity continuation (default on: every "
                         "continuation token is a pruned decode step, the strictest reading of the schedule)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None, help="plot: TTFT speedup vs accuracy/fidelity, token use per layer")
    ap.add_argument("--quiet", action="store_true", help="no per-task lines on stderr")
    args = ap.parse_args(argv)

    tasks = [t for path in args.tasks for t in load_tasks(path, set(args.kinds.split(",")), args.max_tokens)]
    if args.min_tokens:
        tasks = [t for t in tasks if t["approx_tokens"] >= args.min_tokens]
    if args.subs:
        subs = set(args.subs.split(","))
        tasks = [t for t in tasks if t["kind"] != "passkey" or t.get("sub", "passkey") in subs]
    names = [s.strip() for s in args.schedules.split(",") if s.strip()]
    if "off" not in names:
        names.insert(0, "off")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = {}
    for model in args.model or [None]:
        gen = open_model(model, args.threads)
        results, schedules = evaluate_model(gen, tasks, names, args, log)
        rows = summarize(results, schedules, names)
        title = f"{model_label(model)} ({gen.info['architecture']}, {gen.n_layer} layers, {len(tasks)} tasks)"
        print_table(title, rows)
        report[model_label(model)] = dict(summary=rows, results=results)
        if args.png:
            png = args.png if len(args.model or [None]) == 1 else args.png.with_name(
                f"{args.png.stem}-{model_label(model)}{args.png.suffix}")
            plot(rows, results, names, gen.n_layer, png)
        del gen
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def plot(rows, results, names, n_layer, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        x = r["answer_speedup_ge_2k"] or r["ttft_speedup_ge_2k"] or r["ttft_speedup"] or 1.0
        if r["passkey_accuracy"] is not None:
            a.scatter(x, r["passkey_accuracy"], marker="o", color="C0")
            a.annotate(r["schedule"], (x, r["passkey_accuracy"]), fontsize=8)
        if r["fidelity_top1"] is not None:
            a.scatter(x, r["fidelity_top1"], marker="s", color="C1")
            a.annotate(r["schedule"], (x, r["fidelity_top1"]), fontsize=8)
    a.set_xlabel("whole-answer speedup vs dense (median, prompts >= 2k tokens)")
    a.set_ylabel("passkey accuracy % (o) / fidelity top-1 % (s)")
    a.grid(alpha=0.3)
    longest = max(results["off"], key=lambda r: r["prompt_tokens"])
    for name in names:
        r = next(x for x in results[name] if x["id"] == longest["id"])
        b.plot(range(n_layer), [100.0 * c / r["prompt_tokens"] for c in r["layer_kv_tokens"]], label=name)
    b.set_xlabel("layer")
    b.set_ylabel("% of prompt tokens computed")
    b.set_title(f"token use per layer ({longest['id']}, {longest['prompt_tokens']} tokens)")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
