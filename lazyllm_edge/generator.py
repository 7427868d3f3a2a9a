"""High-level Python API: Generator (load once, generate/chat/tokenize/logits) and the low-level
session interface (reset / append / n_past / stats) for evaluation harnesses."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _core
from .lazy import LazyLike, resolve_lazy
from .models import DEFAULT_MODEL, model_path

_SAMPLING_DEFAULTS = dict(max_tokens=256, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                          repeat_last_n=64, seed=None, stop=None, lazy=None, add_special=None)


@dataclass
class Piece:
    """One streamed piece of generated text: whole UTF-8 characters, and the token that completed them."""

    text: str
    token: int


def _check_options(kwargs: dict) -> dict:
    unknown = set(kwargs) - set(_SAMPLING_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown keyword argument(s): {', '.join(sorted(unknown))}")
    opts = dict(_SAMPLING_DEFAULTS)
    opts.update(kwargs)
    mt = opts["max_tokens"]
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 0:
        raise ValueError(f"max_tokens must be an integer >= 0, got {mt!r}")
    for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
        if isinstance(opts[name], bool) or not isinstance(opts[name], (int, float)):
            raise ValueError(f"{name} must be a number, got {opts[name]!r}")
    if not 0.0 < opts["top_p"] <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {opts['top_p']}")
    if not 0.0 <= opts["min_p"] <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {opts['min_p']}")
    if opts["temperature"] < 0:
        raise ValueError("temperature must be >= 0")
    if opts["repeat_penalty"] <= 0:
        raise ValueError("repeat_penalty must be > 0")
    if not isinstance(opts["top_k"], int) or isinstance(opts["top_k"], bool):
        raise ValueError("top_k must be an integer")
    if opts["seed"] is not None and (not isinstance(opts["seed"], int) or opts["seed"] < 0):
        raise ValueError("seed must be a non-negative integer or None")
    stop = opts["stop"]
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    stop = [s for s in stop if s]
    if not all(isinstance(s, str) for s in stop):
        raise ValueError("stop must be a string or a list of strings")
    opts["stop"] = stop
    return opts


def cuda_available() -> bool:
    """Whether ``backend="cuda"`` can run here: the build has the CUDA backend and a device is present."""
    return _core.cuda_devices()[0] > 0


class Generator:
    """A loaded model plus one session (KV cache, aux cache).

    ``Generator(path=None, n_ctx=4096, n_threads=None, lazy=None)``: ``path=None`` uses the default model
    (``python -m lazyllm_edge.models fetch smollm2-135m``). ``lazy``: None/"off", "balanced", "aggressive",
    a spec like ``"8:0.7,15:0.5"`` (``"12:0.1/24:0.5"``: decode steps with stages of their own), a list of
    (layer, keep) stages, or a :class:`LazyConfig`.
    ``backend``: "cpu" (default), "cuda" (an NVIDIA GPU; :class:`UnsupportedError` when the build has no CUDA
    backend or no device is present, see :func:`cuda_available`) or "auto" (CUDA when available, else CPU).
    The chosen one is ``info["backend"]``. Both run the same forward pass and LazyLLM semantics.
    Threads: Generators are independent (the compute runs without the GIL), so one Generator per thread
    runs at full speed; give each ``n_threads`` = cores / number of Generators. One Generator used from two
    threads at once is refused, never corrupted: the thread entering while another computes gets a
    RuntimeError, and a generate()/chat() started while another generation of the same Generator is being
    iterated makes that older iterator raise RuntimeError at its next step.
    Model files: with ``use_mmap=True`` deleting or renaming the file while loaded is safe; truncating or
    rewriting it in place is not (SIGBUS or changed weights). Use ``use_mmap=False`` for files that may be
    replaced in place. A too large ``n_ctx`` raises MemoryError here, not later.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]] = None, n_ctx: int = 4096, n_threads: Optional[int] = None,
                 lazy: LazyLike = None, backend: str = "cpu", use_mmap: bool = True):
        if path is None:
            path = model_path(DEFAULT_MODEL)
            if not os.path.isfile(path):
                raise _core.ModelLoadError(
                    f"the default model is not cached at {path}; fetch it with: python -m lazyllm_edge.models fetch {DEFAULT_MODEL}")
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
        self.path = os.fspath(path)
        self.model = _core.Model.load(self.path, n_threads=n_threads or 0, backend=backend, use_mmap=use_mmap)
        self.info = self.model.info
        self.n_layer = self.info["n_layer"]
        self.n_vocab = self.info["n_vocab"]
        self._default_lazy = resolve_lazy(lazy, self.n_layer)  # (schedule, prune_decode, decode_schedule)
        self.session = _core.Session(self.model, n_ctx, *self._default_lazy)
        self.n_ctx = n_ctx
        self.finish_reason: Optional[str] = None
        self._busy = threading.Lock()
        self._generation = 0

    # ---- tokenizer ----
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> List[int]:
        if not isinstance(text, str):
            raise ValueError("tokenize expects a str")
        return self.model.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], render_special: bool = True) -> str:
        return self.model.detokenize_bytes(list(ids), render_special).decode("utf-8", errors="replace")

    @property
    def chat_template(self) -> str:
        return self.model.chat_template

    # ---- low-level session interface ----
    def reset(self) -> None:
        """Empties the KV cache and aux cache."""
        self.session.reset()

    def append(self, ids: Sequence[int]) -> np.ndarray:
        """Feeds tokens after those already cached (prefill for many, decode for one) and returns the last
        position's logits (n_vocab,) float32."""
        ids = self._check_ids(ids)
        with self._exclusive():
            return self.session.append(ids)

    @property
    def n_past(self) -> int:
        return self.session.n_past

    @property
    def stats(self) -> dict:
        """Figures of the last calls: prompt tokens, TTFT, prefill/decode tokens per second, per-layer KV token
        counts, fraction of (token, layer) pairs computed vs dense, revived tokens."""
        return dict(self.session.stats)

    def set_lazy(self, lazy: LazyLike) -> None:
        self._default_lazy = resolve_lazy(lazy, self.n_layer)
        self.session.set_lazy(*self._default_lazy)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits (n, n_vocab) float32 for every position of `ids`, computed densely from an empty cache."""
        ids = self._check_ids(ids)
        with self._exclusive():
            self.session.reset()
            try:
                return self.session.append_all_logits(ids)
            finally:
                self.session.reset()

    # ---- generation ----
    def generate(self, prompt_or_ids: Union[str, Sequence[int]], **kwargs) -> Iterator[Piece]:
        """Streams pieces for a prompt (str: tokenized with BOS as the model asks and special tokens parsed)
        or token ids. Options: max_tokens=256, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
        repeat_penalty=1.0, repeat_last_n=64, seed=None, stop=None (str or list), lazy=None (this call only).
        Afterwards ``finish_reason`` is "stop" (end of generation or a stop string), "length" (max_tokens or
        the context is full)."""
        opts = _check_options(kwargs)
        if isinstance(prompt_or_ids, str):
            add_special = True if opts["add_special"] is None else bool(opts["add_special"])
            ids = self.model.tokenize(prompt_or_ids, add_special, True)
        else:
            ids = self._check_ids(prompt_or_ids)
        if not ids:
            raise ValueError("the prompt is empty")
        if len(ids) > self.n_ctx:
            raise ValueError(f"prompt has {len(ids)} tokens, more than n_ctx={self.n_ctx}")
        lazy = None
        if opts["lazy"] is not None:
            lazy = resolve_lazy(opts["lazy"], self.n_layer)
        sampler = _core.Sampler(self.n_vocab, float(opts["temperature"]), int(opts["top_k"]), float(opts["top_p"]),
                                float(opts["min_p"]), float(opts["repeat_penalty"]), int(opts["repeat_last_n"]), opts["seed"])
        return self._stream(ids, opts, sampler, lazy)

    def chat(self, messages: Iterable[dict], **kwargs) -> Iterator[Piece]:
        """Renders `messages` ([{"role", "content"}, ...]) with the model's chat template (the GGUF's, or the
        architecture's default when the file has none) and generates the reply."""
        return self.generate(self.chat_ids(messages), **kwargs)

    def chat_ids(self, messages: Iterable[dict]) -> List[int]:
        """Token ids of the rendered chat prompt, assistant turn opened, BOS exactly once where the model uses it."""
        from .chat import render_chat

        prompt = render_chat(self.chat_template, list(messages), bos_token=self._piece(self.model.bos_id),
                             eos_token=self._piece(self.model.eos_id))
        ids = self.model.tokenize(prompt, True, True)
        bos = self.model.bos_id
        if len(ids) >= 2 and ids[0] == bos and ids[1] == bos:  # template wrote BOS and the tokenizer added one
            ids = ids[1:]
        return ids

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self.model.token_to_piece(token, True).decode("utf-8", errors="replace")

    def _check_ids(self, ids) -> List[int]:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        ids = list(ids)
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.n_vocab:
                raise ValueError(f"token id {t!r} is out of range [0, {self.n_vocab})")
        return [int(t) for t in ids]

    def _exclusive(self):
        gen = self

        class _Guard:
            def __enter__(self):
                # a non-blocking acquire is atomic, so two threads cannot both get in (the native session
                # refuses a second thread too)
                if not gen._busy.acquire(blocking=False):
                    raise RuntimeError("this Generator is already computing in another thread; use one Generator per thread")

            def __exit__(self, *exc):
                gen._busy.release()
                return False

        return _Guard()

    def _stream(self, ids: List[int], opts: dict, sampler, lazy) -> Iterator[Piece]:
        stops: List[str] = opts["stop"]
        hold = max((len(s) for s in stops), default=1) - 1  # characters that could start a stop string
        detok = _core.StreamingDetokenizer(self.model, False)
        self._generation += 1
        generation = self._generation
        self.finish_reason = None

        def step(new_ids):
            if self._generation != generation:
                raise RuntimeError("this generation was superseded by a later generate()/chat() on the same Generator")
            with self._exclusive():
                return self.session.append_and_sample(new_ids, sampler)

        if lazy is not None:
            self.session.set_lazy(*lazy)
        try:
            with self._exclusive():
                self.session.reset()
            token = step(ids)
            generated = 0
            pending = ""
            while True:
                if generated >= opts["max_tokens"]:
                    self.finish_reason = "length"
                    break
                if self.model.is_end_of_generation(token):
                    self.finish_reason = "stop"
                    break
                generated += 1
                text = detok.push(token)
                if stops:
                    pending += text
                    cut = min((pending.find(s) for s in stops if s in pending), default=-1)
                    if cut >= 0:
                        if cut > 0:
                            yield Piece(pending[:cut], token)
                        self.finish_reason = "stop"
                        return
                    emit = pending[: max(0, len(pending) - hold)]
                    pending = pending[len(emit):]
                    if emit:
                        yield Piece(emit, token)
                elif text:
                    yield Piece(text, token)
                if self.session.n_past >= self.n_ctx:
                    self.finish_reason = "length"
                    break
                token = step([token])
            tail = (pending if stops else "") + detok.flush()
            if tail:
                yield Piece(tail, token)
        finally:
            if lazy is not None and self._generation == generation:
                self.session.set_lazy(*self._default_lazy)
