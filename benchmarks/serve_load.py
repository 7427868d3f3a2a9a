"""Load test of an OpenAI-compatible server on 127.0.0.1: N concurrent streaming chat clients x M requests each.

Some clients disconnect mid-stream (every 5th request of the first two closes after 4 pieces), and the last client
sends garbage every other request (malformed JSON, wrong types, an unknown model). Every request must come back
answered (200, streamed to [DONE]) or refused with a status; nothing may hang (each request has a timeout, and the
run is bounded). Reports p50/p95 TTFT, tokens/s per client, the status counts and the server's RSS before and after
the load, for lazyllm_edge's server and for llama_cpp.server (llama-cpp-python's, the [bench] extra) on the same
model, one after the other, with the machine's load average (the figures are only comparable on a quiet machine).

    python benchmarks/serve_load.py                    # both servers, 8 clients x 25 requests, 32 tokens each
    python benchmarks/serve_load.py --servers ours --clients 4 --requests 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

QUESTIONS = [
    "Name three rivers in Europe.", "What is the boiling point of water?", "Give me a tip for learning to cook.",
    "Why is the sky blue?", "Write a haiku about autumn.", "What does a compiler do?",
    "Suggest a name for a cat.", "How do plants make food?", "What is the capital of Japan?",
    "Describe a rainy day in one sentence.",
]
GARBAGE = [
    b'{"messages": [{"role": "user", "content": "hi"}',             # malformed JSON
    b'{"messages": "hello", "max_tokens": 4}',                      # wrong type
    b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
    b'{"messages": [{"role": "user", "content": "x"}], "model": "no-such-model"}',
    b"\xff\xfe\x00garbage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of the process and its children (llama_cpp.server runs in one process; so does ours)."""
    total = 0
    for p in [pid] + children(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def children(pid: int) -> List[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def start(kind: str, model: str, args) -> tuple:
    port = free_port()
    if kind == "ours":
        cmd = [sys.executable, "-m", "lazyllm_edge.server", "-m", model, "--port", str(port), "-c", str(args.ctx),
               "--parallel", str(args.parallel), "--queue", str(args.queue), "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--port", str(port), "--host", "127.0.0.1",
               "--n_ctx", str(args.ctx), "--n_threads", str(args.threads), "--verbose", "False",
               # its default (True) ends the running stream whenever a new request comes: queue them instead
               "--interrupt_requests", "False"]
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{kind} server exited: {log.read()[-3000:]}")
        try:
            if httpx.get(base + "/v1/models", timeout=2).status_code == 200:
                return proc, base, log
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{kind} server did not start")


def one_request(client, base: str, model: str, body: Optional[dict], raw: Optional[bytes], disconnect_after: int,
                timeout: float) -> dict:
    """One streaming chat request; its outcome: status, TTFT, pieces, seconds, how it ended."""
    t0 = time.perf_counter()
    out = {"status": None, "ttft_s": None, "pieces": 0, "seconds": None, "end": None}
    try:
        content = raw if raw is not None else json.dumps(body).encode()
        with client.stream("POST", base + "/v1/chat/completions", content=content, timeout=timeout,
                           headers={"Content-Type": "application/json"}) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                r.read()
                out["end"] = "refused"
                out["seconds"] = time.perf_counter() - t0
                return out
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:].strip()
                if data == "[DONE]":
                    out["end"] = "done"
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    out["end"] = "stream error"
                    break
                choices = chunk.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    if out["ttft_s"] is None:
                        out["ttft_s"] = time.perf_counter() - t0
                    out["pieces"] += 1
                    if disconnect_after and out["pieces"] >= disconnect_after:
                        out["end"] = "disconnected"
                        break  # leaving the block closes the connection mid-stream
            else:
                out["end"] = out["end"] or "no [DONE]"
    except Exception as e:  # a timeout or a broken connection: reported, never hidden
        out["end"] = f"failed: {type(e).__name__}"
    out["seconds"] = time.perf_counter() - t0
    return out


def run_load(base: str, model: str, args) -> List[List[dict]]:
    import httpx

    results: List[List[dict]] = [[] for _ in range(args.clients)]

    def client_loop(c: int):
        with httpx.Client() as client:
            for i in range(args.requests):
                raw, disconnect = None, 0
                if c == args.clients - 1 and i % 2 == 1:
                    raw = GARBAGE[(i // 2) % len(GARBAGE)]
                elif c < 2 and i % 5 == 4:
                    disconnect = 4
                body = {"model": model, "stream": True, "max_tokens": args.max_tokens, "temperature": 0.7,
                        "seed": 1000 * c + i,
                        "messages": [{"role": "user", "content": QUESTIONS[(c + i) % len(QUESTIONS)]}]}
                r = one_request(client, base, model, body, raw, disconnect, args.timeout)
                r.update(client=c, request=i, garbage=raw is not None)
                results[c].append(r)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def pct(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summarize(kind: str, results: List[List[dict]], rss_before: float, rss_after: float, wall: float,
              load_before, load_after) -> dict:
    flat = [r for client in results for r in client]
    answered = [r for r in flat if r["end"] == "done"]
    ttfts = [r["ttft_s"] for r in flat if r["ttft_s"] is not None and not r["garbage"]]
    per_client = []
    for c, rs in enumerate(results):
        pieces = sum(r["pieces"] for r in rs)
        busy = sum(r["seconds"] or 0 for r in rs)
        per_client.append({"client": c, "pieces": pieces, "seconds": busy,
                           "tokens_per_s": pieces / busy if busy else 0.0,
                           "statuses": sorted({str(r["status"]) for r in rs})})
    status_counts: Dict[str, int] = {}
    end_counts: Dict[str, int] = {}
    for r in flat:
        status_counts[str(r["status"])] = status_counts.get(str(r["status"]), 0) + 1
        end_counts[r["end"]] = end_counts.get(r["end"], 0) + 1
    return {"server": kind, "requests": len(flat), "answered": len(answered), "status_counts": status_counts,
            "endings": end_counts, "unanswered": sum(1 for r in flat if r["status"] is None),
            "ttft_p50_s": pct(ttfts, 0.5), "ttft_p95_s": pct(ttfts, 0.95),
            "tokens_per_s_per_client_median": statistics.median(c["tokens_per_s"] for c in per_client),
            "tokens_total": sum(r["pieces"] for r in flat), "wall_s": wall,
            "aggregate_tokens_per_s": sum(r["pieces"] for r in flat) / wall,
            "rss_before_mib": rss_before, "rss_after_mib": rss_after, "loadavg_before": load_before,
            "loadavg_after": load_after, "per_client": per_client, "requests_detail": flat}


def bench(kind: str, model: str, args) -> dict:
    import httpx

    proc, base, log = start(kind, model, args)
    try:
        model_id = httpx.get(base + "/v1/models").json()["data"][0]["id"]
        # one warm-up request, then the memory before the load
        with httpx.Client() as client:
            one_request(client, base, model_id, {"model": model_id, "stream": True, "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": "Hi"}]}, None, 0, 120)
        rss_before = rss_mib(proc.pid)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        results = run_load(base, model_id, args)
        wall = time.perf_counter() - t0
        time.sleep(1.0)  # let cancelled generations end before reading the memory and health
        alive = httpx.get(base + "/v1/models", timeout=10).status_code == 200
        summary = summarize(kind, results, rss_before, rss_mib(proc.pid), wall, load_before, os.getloadavg())
        summary["serving_after"] = alive
        summary["command"] = " ".join(proc.args[1:]) if isinstance(proc.args, list) else str(proc.args)
        return summary
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def report(summaries: List[dict], args) -> str:
    lines = [f"serve_load: {args.clients} streaming clients x {args.requests} requests, max_tokens {args.max_tokens}, "
             f"context {args.ctx}; client 0-1 disconnect every 5th request after 4 pieces, client {args.clients - 1} "
             f"sends garbage every other request", f"model {args.model}; {os.cpu_count()} CPUs; "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}", ""]
    for s in summaries:
        lines.append(f"== {s['server']}: {s['command']}")
        lines.append(f"   requests {s['requests']}: answered (streamed to [DONE]) {s['answered']}, statuses "
                     f"{s['status_counts']}, endings {s['endings']}, without a status {s['unanswered']}, "
                     f"serving afterwards: {s['serving_after']}")
        lines.append(f"   TTFT p50 {fmt(s['ttft_p50_s'])} s, p95 {fmt(s['ttft_p95_s'])} s; tokens/s per client (median) "
                     f"{fmt(s['tokens_per_s_per_client_median'], '.1f')}; aggregate {fmt(s['aggregate_tokens_per_s'], '.1f')} "
                     f"tokens/s over {fmt(s['wall_s'], '.1f')} s")
        lines.append("   per client tokens/s: " + ", ".join(f"{c['tokens_per_s']:.1f}" for c in s["per_client"]))
        lines.append(f"   RSS before {s['rss_before_mib']:.0f} MiB, after {s['rss_after_mib']:.0f} MiB; load average "
                     f"before {', '.join(f'{x:.2f}' for x in s['loadavg_before'])}, after "
                     f"{', '.join(f'{x:.2f}' for x in s['loadavg_after'])}")
    lines.append("")
    lines.append("Tokens are counted as streamed content pieces (one per token for both servers, bar multi-byte "
                 "characters); tokens/s per client = its pieces / the seconds its requests took (queueing included).")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="ours,llama_cpp", help="comma-separated: ours, llama_cpp")
    p.add_argument("--model", default=None, help="GGUF file (default: the default model)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=25)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--parallel", type=int, default=2, help="our server's slots")
    p.add_argument("--queue", type=int, default=64, help="our server's queue")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="llama_cpp.server's threads")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request before it counts as failed")
    p.add_argument("--out", default=None, help="results prefix (default benchmarks/results/serve-load-<date>)")
    args = p.parse_args(argv)
    if args.model is None:
        sys.path.insert(0, str(REPO))
        from lazyllm_edge.models import DEFAULT_MODEL, model_path

        args.model = str(model_path(DEFAULT_MODEL))
    summaries = [bench(kind.strip(), args.model, args) for kind in args.servers.split(",") if kind.strip()]
    text = report(summaries, args)
    print(text)
    out = Path(args.out) if args.out else RESULTS / f"serve-load-{time.strftime('%Y%m%d-%H%M')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "summaries": summaries}, indent=1) + "\n")
    print(f"\nwritten: {out.with_suffix('.txt')}, {out.with_suffix('.json')}", file=sys.stderr)
    # the comparison's figures are findings; only this engine's server is held to answering everything
    bad = [s["server"] for s in summaries if s["server"] == "ours" and (s["unanswered"] or not s["serving_after"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
