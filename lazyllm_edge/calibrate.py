"""Per-model LazyLLM calibration: finds from which layer a model's attention locates what a question needs, and
chooses the model's own `balanced` and `aggressive` schedules.

    python -m lazyllm_edge.calibrate [-m MODEL] [--probes 8] [--tokens 1800]
    lazyllm-edge calibrate -m MODEL

Probe tasks are built from text shipped with the package (the documents of the dev sets' fidelity tasks): a
five-digit number hidden at a spread of depths, and a question about it (for a model that answers fewer than half of
them, with the reply's start given, as RULER does). On each probe a dense prefill ranks the
tokens at every layer (the calibrated schedules' own importance signal, SIGNAL: the question's queries, the most
attentive head, pooled over neighbouring positions) and records how far down the number's worst digit ranks. A cut at layer L keeping a fraction k can only keep the number where that rank stays below k, so the
candidates are the earliest layers where it does on most probes (for `aggressive` also after a mild first cut at an
earlier layer that ranks the number near the top, with a token floor); each candidate (with a revival budget, so the
answer is cheap too) is then checked by answering the probes, and the first that answers as many as dense does
(less one) wins. Then the decode steps' ranking: each winner is tried with decode steps pooling nothing (spec
"/revive:8,pool:0": a step's revival budget goes to the tokens its query attends, not to their neighbours) on a
teacher-forced continuation of shipped documents, and takes it where that agrees with dense on FIDELITY_MARGIN more
of the continuation's next tokens and still answers the probes. The result is stored in the model cache under the
file's sha256; ``lazy="balanced"`` and ``lazy="aggressive"`` then use it (the registry's models ship theirs in
models/registry.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

REVIVAL_BUDGET = 8     # decode steps revive at most this many pruned tokens per layer
# How the calibrated schedules rank tokens. The last 32 queries hold the question (its words, not only the
# template's last token); the most attentive head; a token takes the most its neighbours within 7 positions get,
# so the answer after the words the question matches stays (SmolLM2 locates a needle from about half its depth
# this way, against about 70 % with the last token's attention averaged over heads).
SIGNAL = dict(importance="max", query_window=32, pool_radius=7)
SIGNAL_SPEC = "importance:max,window:32,pool:7"
# the keep fractions of each stage tried per preset (a candidate's layers come from the probes' ranks); "early":
# first a mild cut before the usual start, see candidates()
KEEPS = {"balanced": ((0.5, 0.3), (0.3,), (0.2,)),
         "aggressive": (("early", 0.3, 0.2), (0.4, 0.2), (0.3, 0.1), (0.2, 0.1), (0.1,))}
# An early cut keeps EARLY_KEEP at the first layer below a quarter of the depth where the number's worst digit ranks
# in the top EARLY_RANK: a schedule whose first cut is at a quarter of the depth computes every token through it,
# which bounds its TTFT gain near 3x (Qwen: layer 3 ranks it in the top 9 %, `3:0.7,7:0.3,9:0.2` 3.3x at 4k with
# dense's answers). Such a schedule keeps only a few % at its last stage, too few for a short prompt's fixed part
# (template, system prompt, question) and the text it asks about, hence its floor of FLOOR tokens per stage.
EARLY_KEEP, EARLY_RANK, FLOOR = 0.7, 0.1, 192
RANK_QUANTILE = 75     # a cut must keep the number's worst digit on this share of the probes
# Decode steps without pooling must agree with dense on this much more of the fidelity probes' next tokens (2 points:
# 3 of 2 x 64 tokens, more than a near-tie or two). Measured: gemma3 +4.6 points (dense's answers kept), SmolLM2
# -1.5 and Qwen +1.5 (both losing answers), so the choice is per model.
FIDELITY_MARGIN = 0.02
FIDELITY_DOCS, FIDELITY_TOKENS = 2, 64  # documents, continuation tokens scored per document
NEEDLE = "The special magic number is {n}."
QUESTION = "What is the special magic number mentioned in the text above? Answer with the number."
# A model that answers fewer than half of the probes as asked (Gemma 3 270M repeats the text instead: 0 of 8) is
# probed with the reply's start given, as RULER does (8 of 8): the check is then whether the cut keeps the number.
ANSWER_PREFIX = "The special magic number is"


def calibration_dir() -> Path:
    from .models import cache_dir

    return cache_dir() / "calibration"


def model_sha256(path) -> str:
    """The file's sha256, remembered per (path, size, mtime) so a large file is hashed once."""
    from .models import sha256_of

    path = Path(path).resolve()
    st = path.stat()
    index_path = calibration_dir() / "sha256-index.json"
    key = f"{path}|{st.st_size}|{int(st.st_mtime)}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        index[key] = sha256_of(path)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1))
        tmp.replace(index_path)
    return index[key]


def calibrated_spec(path, preset: str):
    """(calibrated, spec): whether the model has a calibration (the registry's, by sha256, or an earlier run of
    this module), and its spec for the preset (None: the calibration kept the generic preset)."""
    from .models import registry

    sha = model_sha256(path)
    for entry in registry().values():
        if entry.get("sha256") == sha and "schedules" in entry:
            return True, entry["schedules"].get(preset)
    try:
        return True, json.loads((calibration_dir() / f"{sha}.json").read_text())["schedules"].get(preset)
    except (OSError, ValueError, KeyError):
        return False, None


def probe_texts():
    """Real text shipped with the package: the dev sets' fidelity documents."""
    from .eval import dev_set_path, load_tasks

    return [t["user"] for t in load_tasks(dev_set_path(), kinds=("fidelity",))]


def make_probes(gen, n: int, n_tokens: int, seed: int = 0, answer_prefix: str = ""):
    """(prompt ids, answer) pairs: a number at depth (i + 0.5) / n of about n_tokens tokens of shipped text; with
    answer_prefix, the prompt ends with the start of the reply."""
    rng = random.Random(seed)
    texts = probe_texts()
    probes = []
    for i in range(n):
        words = texts[i % len(texts)].split()
        filler = " ".join(words[: max(50, int(n_tokens * 0.7))])  # ~1.4 tokens per word of English prose
        ids = gen.tokenize(filler, add_special=False)[:n_tokens]
        filler = gen.detokenize(ids)
        cut = filler.rfind(" ", 0, int(len(filler) * (i + 0.5) / n)) + 1
        answer = str(rng.randrange(10000, 100000))
        user = filler[:cut] + NEEDLE.format(n=answer) + " " + filler[cut:] + "\n\n" + QUESTION
        reply = gen.tokenize(answer_prefix, add_special=False) if answer_prefix else []
        probes.append((gen.chat_ids([{"role": "user", "content": user}]) + reply, answer))
    return probes


def fidelity_probes(gen, n_tokens: int):
    """(prefix ids, continuation ids) pairs: the first ~n_tokens tokens of shipped documents and their next
    FIDELITY_TOKENS tokens (the longest documents first; a shorter one gives a shorter prefix)."""
    docs = sorted(probe_texts(), key=len, reverse=True)[:FIDELITY_DOCS]
    out = []
    for text in docs:
        ids = gen.tokenize(" ".join(text.split()[: int(n_tokens * 0.8) + 2 * FIDELITY_TOKENS]), add_special=True)
        n = min(n_tokens, len(ids) - FIDELITY_TOKENS)
        if n > FIDELITY_TOKENS:
            out.append((ids[:n], ids[n:n + FIDELITY_TOKENS]))
    return out


def fidelity(gen, probes, spec, dense_top1=None):
    """Teacher-forced next-token predictions over the probes' continuations under `spec` (decode steps prune as it
    says), and their agreement with dense_top1 (1.0 without it)."""
    from .eval import teacher_forced_logprobs

    top1 = []
    for i, (prefix, continuation) in enumerate(probes):
        progress(i, len(probes), f"continuing ({spec})")
        lp, _, _ = teacher_forced_logprobs(gen, prefix, continuation, spec)
        top1.append(lp.argmax(axis=1))
    progress(len(probes), len(probes), f"continuing ({spec})")
    gen.set_lazy(None)
    top1 = np.concatenate(top1) if top1 else np.zeros(0, dtype=np.int64)
    agree = float((top1 == dense_top1).mean()) if dense_top1 is not None and len(top1) else 1.0
    return top1, agree


def needle_positions(gen, ids, answer):
    """Indices of the tokens that spell the answer (it occurs once, in the hidden sentence)."""
    pieces = [gen.detokenize([i]) for i in ids]
    start = "".join(pieces).find(answer)
    ends = np.cumsum([len(p) for p in pieces])
    begins = ends - np.array([len(p) for p in pieces])
    return [i for i in range(len(ids)) if begins[i] < start + len(answer) and ends[i] > start]


def needle_ranks(gen, probes, signal=None):
    """(probes, layers) rank fraction of the number's worst digit at each layer (0 = most important; 1 where the
    layer does not rank it: the last layer, and sliding-window layers whose window leaves the number out), ranked
    by `signal` (LazyConfig's importance, query_window, pool_radius; default SIGNAL)."""
    from .lazy import LazyConfig

    n_layer = gen.n_layer
    gen.set_lazy(LazyConfig(schedule=tuple((l, 0.9999) for l in range(n_layer - 1)), prune_decode=False,
                            **(SIGNAL if signal is None else signal)))
    out = np.ones((len(probes), n_layer))
    for p, (ids, answer) in enumerate(probes):
        progress(p, len(probes), "ranking")
        needle = needle_positions(gen, ids, answer)
        gen.session.set_record_importance(True)
        gen.reset()
        gen.append(ids)
        gen.session.set_record_importance(False)
        for layer, positions, scores in gen.session.importance:
            scores = np.asarray(scores)
            rank = np.empty(len(scores), dtype=np.int64)
            rank[np.argsort(-scores, kind="stable")] = np.arange(len(scores))
            where = {int(q): i for i, q in enumerate(positions)}
            if all(t in where for t in needle):  # (a sliding-window layer ranks only its window: no cut there)
                out[p, layer] = max(rank[where[t]] for t in needle) / len(scores)
    progress(len(probes), len(probes), "ranking")
    gen.set_lazy(None)
    return out


def progress(i: int, n: int, what: str) -> None:
    """A one-line progress bar on stderr."""
    done = 24 * i // max(n, 1)
    sys.stderr.write(f"\r  [{'#' * done}{'.' * (24 - done)}] {i}/{n} {what}" + ("\n" if i == n else ""))
    sys.stderr.flush()


def answers(gen, probes, spec) -> int:
    gen.set_lazy(spec)
    ok = 0
    for i, (ids, answer) in enumerate(probes):
        progress(i, len(probes), f"answering ({spec})")
        gen.reset()  # each probe from an empty cache: an answer never depends on the probe before it
        ok += answer in "".join(p.text for p in gen.generate(ids, max_tokens=24, temperature=0))
    progress(len(probes), len(probes), f"answering ({spec})")
    gen.set_lazy(None)
    return ok


def candidates(ranks, n_layer, keep_sets):
    """(spec, fraction of prefill pairs computed), cheapest first. Each stage of a candidate sits at the earliest
    layer (from 25 % of depth, after the stage before) where the number's worst digit ranks inside what the stages
    so far keep, on RANK_QUANTILE % of the probes. A keep set starting with "early" first cuts to EARLY_KEEP at the
    earliest layer before that where the digit ranks in the top EARLY_RANK (no candidate without one), with a floor."""
    bound = np.percentile(ranks, RANK_QUANTILE, axis=0)
    start = max(1, n_layer // 4) - 1
    out = []
    for keeps in keep_sets:
        stages, kept, layer = [], 1.0, start
        early = keeps[:1] == ("early",)
        if early:
            keeps = keeps[1:]
            first = next((l for l in range(1, start + 1) if bound[l] < EARLY_RANK), None)
            if first is None:
                continue
            stages, kept, layer = [(first, EARLY_KEEP)], EARLY_KEEP, max(start, first)
        for keep in keeps:
            layer = next((l for l in range(layer + 1, n_layer - 1) if bound[l] < kept * keep), None)
            if layer is None:
                break
            stages.append((layer, keep))
            kept *= keep
        if len(stages) < len(keeps) + early:
            continue
        # pairs computed: every token through the first cut, then what each stage keeps through the next
        cost, kept = stages[0][0] + 1, 1.0
        for i, (layer, keep) in enumerate(stages):
            kept *= keep
            nxt = stages[i + 1][0] if i + 1 < len(stages) else n_layer - 1
            cost += kept * (nxt - layer)
        spec = (",".join(f"{l}:{k:g}" for l, k in stages) + f",{SIGNAL_SPEC}" + (f",floor:{FLOOR}" if early else "") +
                f"/revive:{REVIVAL_BUDGET}")
        out.append((spec, cost / n_layer))
    return sorted(out, key=lambda c: c[1])


def calibrate(model=None, n_probes=8, n_tokens=1800, threads=None, log=print):
    """Calibrates a model; returns the stored record."""
    from . import Generator
    from .models import model_path, registry

    path = model_path(model) if model in registry() or model is None else Path(model)
    gen = Generator(str(path), n_ctx=n_tokens + 512, n_threads=threads)
    n_tokens = min(n_tokens, (gen.info.get("n_ctx_train") or n_tokens) - 256)
    t0 = time.time()
    probes, answer_prefix = make_probes(gen, n_probes, n_tokens), ""
    log(f"[{time.time() - t0:5.0f}s] {len(probes)} probes of ~{n_tokens} tokens")
    dense = answers(gen, probes, "off")
    log(f"[{time.time() - t0:5.0f}s] dense answers {dense}/{len(probes)}")
    if 2 * dense < len(probes):
        prefixed = make_probes(gen, n_probes, n_tokens, answer_prefix=ANSWER_PREFIX)
        dense_prefixed = answers(gen, prefixed, "off")
        log(f"[{time.time() - t0:5.0f}s] with the reply started ('{ANSWER_PREFIX}'): dense answers {dense_prefixed}/{len(probes)}")
        if dense_prefixed > dense:
            probes, dense, answer_prefix = prefixed, dense_prefixed, ANSWER_PREFIX
    log(f"[{time.time() - t0:5.0f}s] ranking the number's digits per layer")
    ranks = needle_ranks(gen, probes)
    bound = np.percentile(ranks, RANK_QUANTILE, axis=0)
    log("  worst-digit rank fraction (75th pct) by layer: " + " ".join(f"{v:.2f}" for v in bound))
    chosen, checks = {}, []
    # (a model that answers no probe dense gives nothing to check a schedule against: the generic presets stay)
    for preset, keep_sets in (KEEPS.items() if dense > 0 else ()):
        for spec, cost in candidates(ranks, gen.n_layer, keep_sets):
            if spec in [c["spec"] for c in checks]:
                ok = next(c["answers"] for c in checks if c["spec"] == spec)
            else:
                ok = answers(gen, probes, spec)
                checks.append(dict(spec=spec, answers=ok, prefill_computed=round(cost, 3)))
            log(f"[{time.time() - t0:5.0f}s] {preset}: {spec} (prefill {100 * cost:.0f} %) answers {ok}/{len(probes)}")
            if ok >= dense - 1:
                chosen[preset] = spec
                break
    # decode steps' own ranking: without pooling where that follows dense's continuation better and still answers
    fidelity_checks = []
    docs = fidelity_probes(gen, n_tokens) if chosen else []
    if docs:
        dense_top1, _ = fidelity(gen, docs, "off")
        for preset, spec in list(chosen.items()):
            unpooled = spec + ",pool:0"
            _, pooled_agree = fidelity(gen, docs, spec, dense_top1)
            _, unpooled_agree = fidelity(gen, docs, unpooled, dense_top1)
            taken = unpooled_agree >= pooled_agree + FIDELITY_MARGIN
            ok = answers(gen, probes, unpooled) if taken else None
            taken = taken and ok >= dense - 1
            fidelity_checks.append(dict(preset=preset, spec=spec, top1=round(pooled_agree, 4), unpooled_top1=round(unpooled_agree, 4),
                                        unpooled_answers=ok, decode_pool=0 if taken else None))
            log(f"[{time.time() - t0:5.0f}s] {preset}: continuation top-1 with dense {100 * pooled_agree:.1f} %, decode steps "
                f"unpooled {100 * unpooled_agree:.1f} %" + (f" (answers {ok}/{len(probes)})" if ok is not None else "") +
                (": taken" if taken else ""))
            if taken:
                chosen[preset] = unpooled
    record = dict(model=os.path.basename(str(path)), sha256=model_sha256(path), n_layer=gen.n_layer, probes=len(probes),
                  probe_tokens=n_tokens, answer_prefix=answer_prefix or None, dense_answers=dense, schedules=chosen, checks=checks, fidelity_checks=fidelity_checks,
                  worst_digit_rank_p75=[round(float(v), 3) for v in bound], date=time.strftime("%Y-%m-%d"))
    out = calibration_dir() / f"{record['sha256']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(out)
    log(f"stored {out}: " + (", ".join(f"{k} = {v}" for k, v in chosen.items()) or
                             "no schedule answered as dense does (or dense answered none); the generic presets stay"))
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lazyllm_edge.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=None, help="registry name or GGUF path (default: the default model)")
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1800, help="probe length in tokens")
    ap.add_argument("-t", "--threads", type=int, default=None)
    args = ap.parse_args(argv)
    calibrate(args.model, args.probes, args.tokens, args.threads, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
