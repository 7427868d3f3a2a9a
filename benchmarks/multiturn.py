"""A conversation about one long document: the document and a first question, then follow-up questions, each turn
through chat() with the whole conversation, timed to its first reply token (TTFT), against llama-cpp-python's
create_chat_completion on the same model file and threads (which reuses its cached prefix too).

    python benchmarks/multiturn.py --threads 2 --json out.json --text out.txt

Reported: per turn, our TTFT with prefix reuse (cache_prompt, the default) and llama.cpp's; the first turn (a cold
prefill of the whole document) with lazy="balanced" (the model's calibrated schedule where it has one) against
llama.cpp's; and a saved session: after the first turn the session is saved, a new Generator loads it and answers
the second question, against the cold prefill of the first turn (save and load include hashing the model file,
once per model: the file names the model by its sha256). Each engine keeps its own replies in its
conversation (greedy, --reply-tokens at most). The figures are single runs: on a shared machine they are noisy.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import default_model, host_info, load_text, print_table  # noqa: E402

import lazyllm_edge  # noqa: E402  (the checkout's build when it has one: see _common)

QUESTIONS = [
    "Summarize the document above in two sentences.",
    "What is the main topic of the first paragraph?",
    "Name one person or place the document mentions.",
    "Is the tone of the document formal or informal? Why?",
    "Quote one sentence from the document.",
    "What would be a good title for it?",
    "Which detail of the document did you find most surprising?",
]


def document(gen: lazyllm_edge.Generator, n_tokens: int, text_path) -> str:
    """About n_tokens tokens of real text (the package's long-context dev set unless --text-file)."""
    text = load_text(text_path) or "The quick brown fox jumps over the lazy dog. " * 2000
    ids = gen.tokenize(text, add_special=False)
    while len(ids) < n_tokens:
        ids = ids + ids
    return gen.detokenize(ids[:n_tokens])


def first_user_message(doc: str, question: str) -> str:
    return f"Read this document.\n\n{doc}\n\n{question}"


def ours_turn(gen: lazyllm_edge.Generator, messages: List[Dict], reply_tokens: int) -> Dict:
    t0 = time.perf_counter()
    ttft, pieces = None, []
    for p in gen.chat(messages, max_tokens=reply_tokens, temperature=0):
        if ttft is None:
            ttft = time.perf_counter() - t0
        pieces.append(p.text)
    st = gen.stats
    return dict(ttft_s=ttft if ttft is not None else time.perf_counter() - t0, reply="".join(pieces),
                prompt_tokens=st["prompt_tokens"] + st["reused_tokens"], computed_tokens=st["prompt_tokens"],
                reused_tokens=st["reused_tokens"])


def theirs_turn(llm, messages: List[Dict], reply_tokens: int) -> Dict:
    t0 = time.perf_counter()
    ttft, pieces = None, []
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=reply_tokens, temperature=0.0, stream=True):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            if ttft is None:
                ttft = time.perf_counter() - t0
            pieces.append(text)
    return dict(ttft_s=ttft if ttft is not None else time.perf_counter() - t0, reply="".join(pieces))


def conversation(turn, engine, doc: str, questions: List[str], reply_tokens: int, log) -> List[Dict]:
    """Every turn through `turn` with the whole conversation so far; the engine's own replies are kept."""
    messages, out = [], []
    for i, q in enumerate(questions):
        messages.append({"role": "user", "content": first_user_message(doc, q) if i == 0 else q})
        r = turn(engine, messages, reply_tokens)
        messages.append({"role": "assistant", "content": r["reply"]})
        out.append(r)
        log(f"    turn {i + 1}: TTFT {r['ttft_s'] * 1e3:8.1f} ms" +
            (f"  (prompt {r['prompt_tokens']} tokens, {r['reused_tokens']} reused)" if "reused_tokens" in r else ""))
    return out


def saved_session(path: str, args, doc: str, first: Dict) -> Dict:
    """First turn in one Generator, saved; a new Generator loads it and answers the second question."""
    gen = lazyllm_edge.Generator(path, n_ctx=args.n_ctx, n_threads=args.threads)
    messages = [{"role": "user", "content": first_user_message(doc, QUESTIONS[0])}]
    r1 = ours_turn(gen, messages, args.reply_tokens)
    messages += [{"role": "assistant", "content": r1["reply"]}, {"role": "user", "content": QUESTIONS[1]}]
    with tempfile.TemporaryDirectory() as tmp:
        file = os.path.join(tmp, "session.bin")
        t0 = time.perf_counter()
        gen.save_state(file)
        save_s = time.perf_counter() - t0
        size = os.path.getsize(file)
        fresh = lazyllm_edge.Generator(path, n_ctx=args.n_ctx, n_threads=args.threads)
        t0 = time.perf_counter()
        fresh.load_state(file)
        load_s = time.perf_counter() - t0
        loaded = fresh.n_past
        r2 = ours_turn(fresh, messages, args.reply_tokens)
    return dict(cold_ttft_s=first["ttft_s"], save_s=save_s, load_s=load_s, file_bytes=size, loaded_tokens=loaded,
                first_reply_ttft_s=r2["ttft_s"], first_reply_reused=r2["reused_tokens"],
                first_reply_computed=r2["computed_tokens"], ratio_ttft=r2["ttft_s"] / first["ttft_s"],
                ratio_load_and_ttft=(load_s + r2["ttft_s"]) / first["ttft_s"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: the cached default model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--doc-tokens", type=int, default=4096)
    ap.add_argument("--questions", type=int, default=6, help="follow-up questions after the first turn")
    ap.add_argument("--reply-tokens", type=int, default=32, help="greedy reply tokens at most per turn")
    ap.add_argument("--lazy", default="balanced", help="schedule of the first-turn comparison")
    ap.add_argument("--text-file", default=None, help="text of the document (default: the package's dev set)")
    ap.add_argument("--no-llama-cpp", action="store_true", help="our engine only")
    ap.add_argument("--json", default=None)
    ap.add_argument("--text", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    if not 1 <= args.questions <= len(QUESTIONS) - 1:
        ap.error(f"--questions must be in [1, {len(QUESTIONS) - 1}]")
    path = args.model or default_model()
    args.n_ctx = args.doc_tokens + (args.questions + 1) * (args.reply_tokens + 48) + 256
    questions = QUESTIONS[:args.questions + 1]
    lines: List[str] = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    log(f"multiturn: {os.path.basename(path)}, {args.threads} threads, document {args.doc_tokens} tokens, "
        f"{args.questions} follow-ups, replies <= {args.reply_tokens} tokens, n_ctx {args.n_ctx}")
    gen = lazyllm_edge.Generator(path, n_ctx=args.n_ctx, n_threads=args.threads)
    doc = document(gen, args.doc_tokens, args.text_file)
    log("  lazyllm_edge (prefix reuse):")
    ours = conversation(ours_turn, gen, doc, questions, args.reply_tokens, log)
    del gen
    lazy_gen = lazyllm_edge.Generator(path, n_ctx=args.n_ctx, n_threads=args.threads, lazy=args.lazy)
    log(f"  lazyllm_edge first turn, lazy={args.lazy}:")
    lazy_first = conversation(ours_turn, lazy_gen, doc, questions[:1], args.reply_tokens, log)[0]
    del lazy_gen
    log("  lazyllm_edge saved session (first turn saved, loaded into a new Generator, second question):")
    saved = saved_session(path, args, doc, ours[0])
    log(f"    save {saved['save_s'] * 1e3:.1f} ms ({saved['file_bytes'] / 2**20:.1f} MiB, {saved['loaded_tokens']} tokens), "
        f"load {saved['load_s'] * 1e3:.1f} ms, first reply TTFT {saved['first_reply_ttft_s'] * 1e3:.1f} ms "
        f"({saved['first_reply_reused']} reused, {saved['first_reply_computed']} computed)")
    theirs = None
    if not args.no_llama_cpp:
        import llama_cpp

        log("  llama.cpp (llama-cpp-python create_chat_completion):")
        llm = llama_cpp.Llama(model_path=path, n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads,
                              verbose=False)
        theirs = conversation(theirs_turn, llm, doc, questions, args.reply_tokens, log)
        del llm

    log()
    rows = []
    for i, r in enumerate(ours):
        t = theirs[i]["ttft_s"] if theirs else None
        rows.append([str(i + 1), f"{r['prompt_tokens']}", f"{r['reused_tokens']}", f"{r['ttft_s'] * 1e3:.1f}",
                     f"{t * 1e3:.1f}" if t else "-", f"{t / r['ttft_s']:.2f}x" if t else "-"])
    headers = ["turn", "prompt tokens", "reused", "ours TTFT ms", "llama.cpp TTFT ms", "ours faster by"]
    print_table(headers, rows)
    lines.append(" | ".join(headers))
    lines.extend(" | ".join(r) for r in rows)
    summary = dict(first_turn_lazy_ttft_s=lazy_first["ttft_s"], first_turn_dense_ttft_s=ours[0]["ttft_s"])
    follow_ours = sum(r["ttft_s"] for r in ours[1:])
    log(f"follow-up turns: ours {follow_ours * 1e3:.1f} ms in all")
    if theirs:
        follow_theirs = sum(r["ttft_s"] for r in theirs[1:])
        summary.update(follow_up_speedup=follow_theirs / follow_ours, first_turn_lazy_speedup=theirs[0]["ttft_s"] / lazy_first["ttft_s"],
                       first_turn_dense_speedup=theirs[0]["ttft_s"] / ours[0]["ttft_s"])
        log(f"follow-up turns: llama.cpp {follow_theirs * 1e3:.1f} ms in all: ours {summary['follow_up_speedup']:.2f}x faster")
        log(f"first turn: lazy={args.lazy} {lazy_first['ttft_s'] * 1e3:.1f} ms, dense {ours[0]['ttft_s'] * 1e3:.1f} ms, "
            f"llama.cpp {theirs[0]['ttft_s'] * 1e3:.1f} ms: lazy {summary['first_turn_lazy_speedup']:.2f}x, dense "
            f"{summary['first_turn_dense_speedup']:.2f}x faster")
    log(f"saved session: first reply after loading {saved['first_reply_ttft_s'] * 1e3:.1f} ms = "
        f"{100 * saved['ratio_ttft']:.1f} % of the cold prefill ({saved['cold_ttft_s'] * 1e3:.1f} ms); with the load "
        f"{100 * saved['ratio_load_and_ttft']:.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(host=host_info(), model=os.path.basename(path), threads=args.threads,
                                                   doc_tokens=args.doc_tokens, reply_tokens=args.reply_tokens,
                                                   lazy=args.lazy, ours=ours, ours_lazy_first=lazy_first, saved=saved,
                                                   theirs=theirs, summary=summary), indent=1))
    if args.text:
        Path(args.text).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
