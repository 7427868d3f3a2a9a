"""Held-out tasks of the dev sets' kinds (passkey, niah, multikey, multivalue, and fidelity: a document and its
continuation; lazyllm_edge/data/eval/README.md) with text the dev sets do not contain: docstrings of Python
standard-library modules whose text appears nowhere in them, new numbers, keys and depths (seeded). They estimate
how the registry's schedules do on unseen tasks, which is what judges them; tuning on these defeats the purpose.

    python benchmarks/heldout_tasks.py --out /tmp/heldout.jsonl --tokens 2000 4000 --per-kind 4 --seed 18
    python -m lazyllm_edge.eval --tasks /tmp/heldout.jsonl --model M --schedules off,balanced,aggressive
"""
import argparse
import importlib
import inspect
import json
import random
import warnings
from pathlib import Path

from lazyllm_edge.eval import DEV_SETS, dev_set_path, load_tasks

MODULES = ["decimal", "fractions", "statistics", "sqlite3", "zipfile", "tarfile", "textwrap", "calendar", "logging",
           "asyncio", "pathlib", "email.message", "http.client", "xml.dom.minidom", "heapq", "bisect", "shutil",
           "tempfile", "configparser", "csv", "datetime", "enum", "functools", "itertools", "operator", "random",
           "string", "struct", "threading", "queue", "uuid", "wave", "zlib", "gzip", "bz2", "lzma", "hashlib",
           "hmac", "secrets", "ipaddress", "socketserver", "smtplib", "ftplib", "imaplib", "plistlib", "pprint",
           "reprlib", "graphlib", "contextlib", "dataclasses", "typing", "abc", "numbers", "cmath", "array"]
KEYS = ["walrus", "condor", "marmot", "ibis", "gazelle", "puffin", "jackal", "tapir", "osprey", "wombat", "bison",
        "coyote", "lemur", "pelican", "raven", "salmon", "toucan", "viper", "yak", "zebra"]
INSTRUCTION = ("Some special magic numbers are hidden within the following text. Make sure to memorize them. "
               "I will quiz you about the numbers afterwards.\n\n")
CHARS_PER_TOKEN = 4  # the dev sets' rough size (approx_tokens); measure the real count


def dev_text():
    """The dev sets' texts (each task's user message and continuation) as one string."""
    tasks = [t for name in DEV_SETS for t in load_tasks(dev_set_path(name))]
    return "\n".join(t["user"] + "\n" + t.get("continuation", "") for t in tasks)


def unseen_docstrings():
    """Docstrings of MODULES' public members (and the modules'), in a fixed order, none of which shares a run of 50
    characters with the dev sets (whose filler is standard-library docstrings too)."""
    dev = dev_text()
    dev_runs = {dev[i:i + 50] for i in range(len(dev) - 50)}
    out, seen = [], set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        with warnings.catch_warnings():  # (reading every public name touches deprecated ones, typing.io)
            warnings.simplefilter("ignore")
            members = [module] + [getattr(module, m) for m in sorted(dir(module)) if not m.startswith("_")]
            docs = [inspect.getdoc(o) if inspect.ismodule(o) or inspect.isclass(o) or callable(o) else None for o in members]
        for doc in docs:
            if not doc or len(doc) < 200 or doc in seen or any(doc[i:i + 50] in dev_runs for i in range(len(doc) - 50)):
                continue
            seen.add(doc)
            out.append(doc)
    return out


def filler(docs, n_chars, rng):
    """About n_chars of docstrings from a random starting point, joined by blank lines."""
    i, text = rng.randrange(len(docs)), []
    while sum(len(t) + 2 for t in text) < n_chars:
        text.append(docs[i % len(docs)])
        i += 1
    return "\n\n".join(text)[:n_chars]


def insert_at(text, needles, depths):
    """text with each needle sentence inserted at its relative depth (at a line start, as the dev sets' are)."""
    spots = []
    for d in depths:
        at = text.rfind("\n", 0, int(len(text) * d)) + 1
        spots.append(at)
    out, last = [], 0
    for at, needle in sorted(zip(spots, needles)):
        out += [text[last:at], needle + "\n"]
        last = at
    return "".join(out + [text[last:]])


def task(kind, n_tokens, docs, rng, index):
    """One task dict in the dev sets' format."""
    body = filler(docs, n_tokens * CHARS_PER_TOKEN, rng)
    number = lambda: str(rng.randrange(100000, 1000000))
    depth = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9])
    if kind == "passkey":
        answer = str(rng.randrange(10000, 100000))
        user = INSTRUCTION + insert_at(body, [f"One of the special magic numbers is {answer}."], [depth]) + \
            "\n\nWhat is the special magic number mentioned in the text? Answer with the number."
        answers = [answer]
    elif kind == "niah":
        key, answer = rng.choice(KEYS), number()
        user = INSTRUCTION + insert_at(body, [f"One of the special magic numbers for {key} is: {answer}."], [depth]) + \
            f"\n\nWhat is the special magic number for {key} mentioned in the text?"
        answers = [answer]
    elif kind == "multikey":
        keys = rng.sample(KEYS, 4)
        numbers = [number() for _ in keys]
        depths = [rng.uniform(0.05, 0.95) for _ in keys]
        depths[0] = depth  # the key asked for sits at the task's depth
        user = INSTRUCTION + insert_at(body, [f"One of the special magic numbers for {k} is: {n}." for k, n in zip(keys, numbers)],
                                       depths) + f"\n\nWhat is the special magic number for {keys[0]} mentioned in the text?"
        answers = [numbers[0]]
    else:  # multivalue
        key, answers = rng.choice(KEYS), [number(), number()]
        user = INSTRUCTION + insert_at(body, [f"One of the special magic numbers for {key} is: {n}." for n in answers],
                                       [depth, rng.uniform(0.05, 0.95)]) + \
            f"\n\nWhat are all the special magic numbers for {key} mentioned in the text? List them."
    out = dict(id=f"heldout-{kind}-{n_tokens}-{index}", kind="passkey", approx_tokens=n_tokens, depth=depth, user=user,
               answer=answers[0], answers=answers)
    if kind != "passkey":
        out["sub"] = kind
    return out


def fidelity_task(n_tokens, docs, rng, index):
    """A document of about n_tokens tokens and the ~80 tokens of text that follow it."""
    text = filler(docs, (n_tokens + 80) * CHARS_PER_TOKEN, rng)
    cut = text.rfind(" ", 0, n_tokens * CHARS_PER_TOKEN) + 1
    return dict(id=f"heldout-fidelity-{n_tokens}-{index}", kind="fidelity", approx_tokens=n_tokens, user=text[:cut],
                continuation=text[cut:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokens", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--per-kind", type=int, default=4)
    ap.add_argument("--fidelity", type=int, default=0, help="fidelity tasks per length (after the retrieval tasks)")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    docs = unseen_docstrings()
    tasks = [task(kind, n, docs, rng, i) for n in args.tokens for kind in ("passkey", "niah", "multikey", "multivalue")
             for i in range(args.per_kind)]
    tasks += [fidelity_task(n, docs, rng, i) for n in args.tokens for i in range(args.fidelity)]  # (drawn last: the
    # retrieval tasks of a seed stay the same with or without them)
    args.out.write_text("".join(json.dumps(t) + "\n" for t in tasks), encoding="utf-8")
    print(f"wrote {len(tasks)} tasks from {len(docs)} unseen docstrings to {args.out}")


if __name__ == "__main__":
    main()
