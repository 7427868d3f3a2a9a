"""Shared helpers for the benchmark scripts: prompt token ids, statistics, host info, tables."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
# Run from a checkout with the dev build (python benchmarks/xxx.py): use the checkout's package when it has its
# extension built there; otherwise the installed lazyllm_edge.
if any((REPO / "lazyllm_edge").glob("_core*")) and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lazyllm_edge.eval import dev_set_path  # noqa: E402  (after the path rule above)

DEFAULT_MODEL_FILE = Path.home() / ".cache" / "lazyllm_edge" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model() -> str:
    env = os.environ.get("LAZYLLM_EDGE_MODEL")
    if env:
        return env
    try:
        from lazyllm_edge.models import DEFAULT_MODEL, model_path

        p = model_path(DEFAULT_MODEL)
        if os.path.isfile(p):
            return os.fspath(p)
    except Exception:
        pass
    return os.fspath(DEFAULT_MODEL_FILE)


def load_text(path: Optional[str]) -> Optional[str]:
    """Real text for prompts: a .jsonl of eval tasks (their user/continuation fields, deduplicated) or a
    plain text file. With no path, the package's long-context dev set."""
    p = Path(path) if path else dev_set_path()
    if p is None or not p.is_file():
        if path:
            raise FileNotFoundError(path)
        return None
    if p.suffix == ".jsonl":
        seen, parts = set(), []
        for line in p.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            for key in ("user", "continuation"):
                s = d.get(key)
                if s and s not in seen:
                    seen.add(s)
                    parts.append(s)
        return "\n\n".join(parts)
    return p.read_text(encoding="utf-8", errors="replace")


def prompt_ids(tokenize, n_vocab: int, n: int, text: Optional[str], bos: Optional[int] = None,
               seed: int = 1234) -> List[int]:
    """n token ids: `text` tokenized (repeated until long enough), else seeded random ids like llama-bench.
    The first id is BOS when the model has one."""
    ids: List[int] = []
    if text:
        body = tokenize(text)
        if bos is not None and body and body[0] == bos:
            body = body[1:]
        if body:
            ids = [bos] if bos is not None and bos >= 0 else []
            while len(ids) < n:
                ids.extend(body)
    if not ids:
        rng = random.Random(seed)
        ids = [bos] if bos is not None and bos >= 0 else []
        while len(ids) < n:
            ids.append(rng.randrange(100, n_vocab - 100))
    return ids[:n]


def decode_weight_bytes(model: str) -> Optional[int]:
    """Bytes of weights one decode step reads: every tensor of the GGUF except the token embedding, which is read
    one row per token, unless the model ties its output projection to it (no output.weight): then it is read
    whole. None without the gguf package."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(model).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors.get("token_embd.weight", 0)
    return total


def mean_std(xs: Sequence[float]):
    if not xs:
        return float("nan"), float("nan")
    m = statistics.fmean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return m, s


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def now() -> float:
    return time.perf_counter()


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def host_info() -> Dict:
    return {
        "cpu": cpu_model(),
        "n_cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def peak_rss_bytes() -> Dict[str, int]:
    """Peak resident set of this process: ru_maxrss and /proc/self/status VmHWM (bytes)."""
    import resource

    out = {"ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        for line in open("/proc/self/status", encoding="utf-8"):
            if line.startswith(("VmHWM:", "VmRSS:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], file=None) -> None:
    """Markdown table, right-aligned like llama-bench's."""
    file = file or sys.stdout
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).rjust(w) for h, w in zip(headers, widths)) + " |", file=file)
    print("| " + " | ".join("-" * (w - 1) + ":" for w in widths) + " |", file=file)
    for r in rows:
        print("| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths)) + " |", file=file)
    file.flush()


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)
