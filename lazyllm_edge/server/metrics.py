"""Prometheus text exposition of the server's counters (hand-written: the format is a few lines per metric)."""

import threading
from collections import Counter
from typing import Dict, Tuple

TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PREFIX = "lazyllm_edge_"


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (endpoint, status code) -> count
        self.finished: Counter = Counter()  # finish reason -> generations
        self.prompt_tokens = 0
        self.prompt_tokens_reused = 0
        self.prompt_tokens_computed = 0
        self.completion_tokens = 0
        self.pairs_computed = 0  # (token, layer) pairs of the prompts computed, and what dense would have computed
        self.pairs_dense = 0
        self.ttft_counts = [0] * len(TTFT_BUCKETS_S)
        self.ttft_sum = 0.0
        self.ttft_count = 0

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def generation(self, prompt_tokens: int, reused: int, completion_tokens: int, stats: dict,
                   finish_reason: str) -> None:
        with self._lock:
            self.finished[finish_reason] += 1
            self.prompt_tokens += prompt_tokens
            self.prompt_tokens_reused += reused
            self.prompt_tokens_computed += prompt_tokens - reused
            self.completion_tokens += completion_tokens
            self.pairs_computed += int(stats.get("prefill_pairs_computed", 0))
            self.pairs_dense += int(stats.get("prefill_pairs_dense", 0))

    def first_token(self, seconds: float) -> None:
        with self._lock:
            for i, bound in enumerate(TTFT_BUCKETS_S):
                if seconds <= bound:
                    self.ttft_counts[i] += 1
            self.ttft_sum += seconds
            self.ttft_count += 1

    def render(self, gauges: Dict[str, Tuple[str, float]]) -> str:
        """The exposition text; `gauges`: name -> (help, value) read at the time of the scrape (slots, queue)."""
        out = []

        def metric(name, kind, help_text, samples):
            out.append(f"# HELP {PREFIX}{name} {help_text}")
            out.append(f"# TYPE {PREFIX}{name} {kind}")
            for suffix, labels, value in samples:
                out.append(f"{PREFIX}{name}{suffix}{labels} {value}")

        with self._lock:
            metric("requests_total", "counter", "HTTP requests answered, by endpoint and status code.",
                   [("", f'{{endpoint="{e}",code="{c}"}}', n) for (e, c), n in sorted(self.requests.items())])
            metric("generations_total", "counter", "Generations ended, by finish reason (cancelled: the client left).",
                   [("", f'{{finish_reason="{r}"}}', n) for r, n in sorted(self.finished.items())])
            metric("prompt_tokens_total", "counter", "Prompt tokens of the generations.", [("", "", self.prompt_tokens)])
            metric("prompt_tokens_reused_total", "counter", "Prompt tokens kept from a slot's cache (not computed).",
                   [("", "", self.prompt_tokens_reused)])
            metric("prompt_tokens_computed_total", "counter", "Prompt tokens computed (not in a slot's cache).",
                   [("", "", self.prompt_tokens_computed)])
            metric("completion_tokens_total", "counter", "Tokens generated.", [("", "", self.completion_tokens)])
            computed = self.pairs_computed / self.pairs_dense if self.pairs_dense else 1.0
            metric("prompt_fraction_computed", "gauge",
                   "Of the (token, layer) pairs of the computed prompt tokens, the fraction computed (LazyLLM prunes "
                   "the rest; 1 without it), over all requests.", [("", "", f"{computed:.6g}")])
            buckets = [("_bucket", f'{{le="{b}"}}', n) for b, n in zip(TTFT_BUCKETS_S, self.ttft_counts)]
            buckets.append(("_bucket", '{le="+Inf"}', self.ttft_count))
            metric("time_to_first_token_seconds", "histogram", "Time from the request to its first token.",
                   buckets + [("_sum", "", f"{self.ttft_sum:.6g}"), ("_count", "", self.ttft_count)])
        for name, (help_text, value) in gauges.items():
            metric(name, "gauge", help_text, [("", "", value)])
        return "\n".join(out) + "\n"
