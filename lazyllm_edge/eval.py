"""Long-context evaluation of LazyLLM prune schedules against the dense engine, in one run.

    python -m lazyllm_edge.eval [--tasks TASKS.jsonl] [--model PATH]
                                [--schedules off,balanced,aggressive,8:0.7,...] [--png out.png] [--json out.json]

passkey tasks: the user message goes through the chat template, greedy generation (24 tokens), correct when
the answer appears in the reply (a prompt that does not fit the model's training context is skipped). fidelity tasks: the document is prefilled, then the continuation is fed
token by token (teacher forcing; decode pruning on unless --fidelity-prune-decode says otherwise, with the
schedule's decode stages where it has its own, e.g. balanced or 12:0.1/24:0.5); at every continuation position the
next-token distribution is compared with the dense engine's: mean KL(dense || lazy) and top-1 agreement (a
document longer than the model's training context loses its start).
TTFT is the prefill time of the same prompt for every schedule, measured in this run. "2nd>=2k" is the same
ratio for the time to the second passkey reply token (prompts >= 2k tokens): the first decode step revives what
a prefill-only schedule pruned, so it shows how much of the TTFT gain is deferred rather than saved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from . import Generator
from .lazy import LazyConfig, resolve_lazy


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def load_tasks(path: Path, kinds=None, max_tokens=None):
    tasks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if kinds:
        tasks = [t for t in tasks if t["kind"] in kinds]
    if max_tokens:
        tasks = [t for t in tasks if t["approx_tokens"] <= max_tokens]
    return tasks


def passkey_prompt_ids(gen: Generator, task: dict):
    """A passkey task's user message through the model's chat template, as token ids."""
    from .chat import render_chat

    prompt = render_chat(gen.chat_template, [{"role": "user", "content": task["user"]}])
    return gen.tokenize(prompt, add_special=True, parse_special=True)


def run_passkey(gen: Generator, task: dict, ids, schedule) -> dict:
    """Greedy reply; also the wall time to the second token, which pays for reviving what the prefill pruned."""
    gen.set_lazy(schedule)
    pieces, times = [], []
    t0 = time.perf_counter()
    for p in gen.generate(ids, max_tokens=24, temperature=0):
        pieces.append(p.text)
        times.append(time.perf_counter() - t0)
    reply = "".join(pieces)
    st = gen.stats
    return dict(correct=task["answer"] in reply, reply=reply, ttft_s=st["ttft_s"], prompt_tokens=len(ids),
                second_token_s=times[1] if len(times) > 1 else None,
                fraction_computed=st["prefill_fraction_computed"], layer_kv_tokens=st["layer_kv_tokens"])


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


DEV_SETS = ("longctx-dev.jsonl", "ruler-dev.jsonl")


def dev_set_path(name: str = DEV_SETS[0]) -> Path:
    """A long-context dev set shipped with the package (lazyllm_edge/data/eval/, see its README.md)."""
    return Path(__file__).resolve().parent / "data" / "eval" / name


def main(argv=None) -> int:
    default_tasks = dev_set_path()
    ap = argparse.ArgumentParser(prog="python -m lazyllm_edge.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=Path, default=default_tasks)
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--schedules", default="off,balanced,aggressive",
                    help="comma-separated list; a schedule with stages is written with ';' between stages, e.g. "
                         "8:0.7;15:0.5, and may name the decode steps' own stages after '/', e.g. 12:0.1/20:0.5")
    ap.add_argument("--kinds", default="passkey,fidelity")
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
    args = ap.parse_args(argv)

    tasks = load_tasks(args.tasks, set(args.kinds.split(",")), args.max_tokens)
    gen = Generator(args.model, n_ctx=8192 + 64, n_threads=args.threads)
    # prompts stay inside the model's training context (and the session's)
    limit = min(gen.n_ctx, gen.info.get("n_ctx_train") or gen.n_ctx)
    names = [s.strip() for s in args.schedules.split(",") if s.strip()]
    if "off" not in names:
        names.insert(0, "off")
    schedules, fidelity_schedules = {}, {}
    for name in names:
        sched, decode, decode_sched = resolve_lazy(name.replace(";", ","), gen.n_layer)
        pick = lambda mode: decode if mode == "schedule" else mode == "on"
        schedules[name] = LazyConfig(schedule=tuple(sched), prune_decode=pick(args.prune_decode),
                                     decode_schedule=tuple(decode_sched))
        fidelity_schedules[name] = LazyConfig(schedule=tuple(sched), prune_decode=pick(args.fidelity_prune_decode),
                                              decode_schedule=tuple(decode_sched))
    results = {name: [] for name in names}
    t_start = time.time()
    for task in tasks:
        if task["kind"] == "passkey":
            ids = passkey_prompt_ids(gen, task)
            if len(ids) + 24 > limit:
                print(f"{task['id']}: skipped ({len(ids)} prompt tokens + 24 > context {limit})", file=sys.stderr)
                continue
            for name in names:
                r = run_passkey(gen, task, ids, schedules[name])
                r.update(id=task["id"], kind="passkey")
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
                print(f"{task['id']}: {len(prefix)} prompt tokens, the first {cut} dropped to fit context {limit}",
                      file=sys.stderr)
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
        print(f"[{time.time() - t_start:6.0f}s] {task['id']}: " + ", ".join(
            f"{n}={'ok' if r.get('correct', True) else 'miss'}/{r['ttft_s']:.2f}s" for n in names for r in [results[n][-1]]),
            file=sys.stderr, flush=True)

    # summary table
    dense_ttft = {r["id"]: r["ttft_s"] for r in results["off"]}
    dense_second = {r["id"]: r.get("second_token_s") for r in results["off"]}
    rows = []
    for name in names:
        rs = results[name]
        pk = [r for r in rs if r["kind"] == "passkey"]
        fi = [r for r in rs if r["kind"] == "fidelity"]
        long_ = [r for r in rs if r["prompt_tokens"] >= 2000]
        speedups = [dense_ttft[r["id"]] / r["ttft_s"] for r in rs if r["ttft_s"] > 0]
        speedups_long = [dense_ttft[r["id"]] / r["ttft_s"] for r in long_ if r["ttft_s"] > 0]
        second_long = [dense_second[r["id"]] / r["second_token_s"] for r in long_
                       if r.get("second_token_s") and dense_second.get(r["id"])]
        rows.append(dict(
            schedule=name, stages=[list(s) for s in schedules[name].schedule], prune_decode=schedules[name].prune_decode,
            decode_stages=[list(s) for s in schedules[name].decode_schedule],
            fidelity_prune_decode=fidelity_schedules[name].prune_decode,
            passkey_accuracy=100.0 * sum(r["correct"] for r in pk) / len(pk) if pk else None,
            passkey_accuracy_le_1700=(100.0 * sum(r["correct"] for r in pk if r["prompt_tokens"] <= 1700) /
                                      max(1, sum(1 for r in pk if r["prompt_tokens"] <= 1700))) if pk else None,
            fidelity_kl=statistics.mean(r["kl"] for r in fi) if fi else None,
            fidelity_top1=100.0 * statistics.mean(r["top1"] for r in fi) if fi else None,
            mean_prompt_tokens=statistics.mean(r["prompt_tokens"] for r in rs),
            mean_ttft_s=statistics.mean(r["ttft_s"] for r in rs),
            ttft_speedup=statistics.median(speedups) if speedups else None,
            ttft_speedup_ge_2k=statistics.median(speedups_long) if speedups_long else None,
            second_token_speedup_ge_2k=statistics.median(second_long) if second_long else None,
            percent_prompt_computed=100.0 * statistics.mean(r["fraction_computed"] for r in rs)))
    hdr = (f"{'schedule':22s} {'passkey%':>8s} {'pk<=1.7k%':>9s} {'KL':>7s} {'top1%':>6s} {'tokens':>7s} {'TTFT s':>7s} "
           f"{'speedup':>7s} {'spd>=2k':>7s} {'2nd>=2k':>7s} {'%comp':>6s}")
    print(hdr)
    fmt = lambda v, f: ("-" if v is None else format(v, f))
    for r in rows:
        print(f"{r['schedule']:22s} {fmt(r['passkey_accuracy'], '8.1f')} {fmt(r['passkey_accuracy_le_1700'], '9.1f')} "
              f"{fmt(r['fidelity_kl'], '7.4f')} {fmt(r['fidelity_top1'], '6.1f')} {r['mean_prompt_tokens']:7.0f} "
              f"{r['mean_ttft_s']:7.2f} {fmt(r['ttft_speedup'], '7.2f')} {fmt(r['ttft_speedup_ge_2k'], '7.2f')} "
              f"{fmt(r['second_token_speedup_ge_2k'], '7.2f')} {r['percent_prompt_computed']:6.1f}")
    if args.json:
        args.json.write_text(json.dumps(dict(summary=rows, results=results), indent=1))
    if args.png:
        plot(rows, results, names, gen.n_layer, args.png)
    return 0


def plot(rows, results, names, n_layer, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        x = r["ttft_speedup_ge_2k"] or r["ttft_speedup"] or 1.0
        if r["passkey_accuracy"] is not None:
            a.scatter(x, r["passkey_accuracy"], marker="o", color="C0")
            a.annotate(r["schedule"], (x, r["passkey_accuracy"]), fontsize=8)
        if r["fidelity_top1"] is not None:
            a.scatter(x, r["fidelity_top1"], marker="s", color="C1")
            a.annotate(r["schedule"], (x, r["fidelity_top1"]), fontsize=8)
    a.set_xlabel("TTFT speedup vs dense (median, prompts >= 2k tokens)")
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
