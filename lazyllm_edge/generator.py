"""High-level Python API: Generator (load once, generate/chat/tokenize/logits) and the low-level
session interface (reset / append / n_past / stats) for evaluation harnesses."""

from __future__ import annotations

import numbers
import operator
import os
import sys
import threading
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _core
from .lazy import LazyConfig, LazyLike, LazySchedule, resolve_lazy
from .models import DEFAULT_MODEL, model_path


@dataclass
class Piece:
    """One streamed piece of generated text: whole UTF-8 characters, and the token that completed them."""

    text: str
    token: int


class Stream:
    """The pieces of one generation, an iterator over the native loop (cpp/runtime/generate.cpp); each step runs
    without the GIL. ``cancel()`` (from any thread) ends it before its next token; ``finish_reason`` afterwards."""

    __slots__ = ("_native", "_thread", "_ended")

    def __init__(self, native):
        self._native = native
        self._thread = threading.current_thread()  # the thread that made it (see Generator._refuse_other_threads)
        self._ended = False

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Piece:
        try:
            text, token = next(self._native)
        except BaseException:
            self._ended = True
            raise
        return Piece(text, token)

    def _held_by_another_thread(self) -> bool:
        """Running (not finished, its thread alive) in a thread other than the caller's."""
        return (not self._ended and self._native.finish_reason is None and self._thread is not threading.current_thread()
                and self._thread.is_alive())

    def cancel(self) -> None:
        self._native.cancel()

    @property
    def finish_reason(self) -> Optional[str]:
        """"stop", "length", "cancelled", or None while running (or after an error)."""
        return self._native.finish_reason


# The arithmetic a Generator computes with (``numerics=``):
#  - "fast" (default): CPU prefill by the packed int8 GEMM with 15-bit activations (about exact fp32), decode (up to 4
#    tokens) with int8 activations as llama.cpp does, online-softmax attention; CUDA prefill GEMMs in fp16/bf16 with
#    fp32 accumulation.
#  - "fp32": every matmul in (near-)exact fp32: the CPU without the int8 path, CUDA prefill by a 3xTF32 GEMM. For
#    exactness tests and A/B comparisons.
#  - "llama.cpp": llama.cpp's CPU arithmetic (AVX2, flash attention off, fp16 KV cache): int8 activations in prefill
#    too, ggml's fp32 accumulation orders (vec_dot, tinyBLAS, the repacked Q4_K and tiled Q6_K kernels) and its
#    attention (fp16 q and probabilities, its expf, its summation orders). Logits then equal llama.cpp's bit for bit
#    for the covered weight types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K; not Q5_K) when prompts are evaluated as
#    llama.cpp does (the whole prompt in one call: a call's last n % 4 tokens take ggml's gemv order). A validation
#    mode: prefill 1.1-1.6x slower than "fast", decode 1.5-2.5x slower; CPU only (UnsupportedError on CUDA).
#  - "int8": "fast" with llama.cpp's precision in prefill: 8-bit activations in llama.cpp's own formats (Q8_K for
#    K-quant weights, Q8_0/Q8_1 for the others), one integer product per weight instead of two: prefill 1.3-1.5x
#    faster than "fast" on AVX-512 VNNI CPUs; agreement with llama.cpp's logits a little below an exact prefill's
#    (README "Numerics"). CPU only (UnsupportedError on CUDA).
NUMERICS = ("fast", "fp32", "llama.cpp", "int8")


INT32_MAX = 2**31 - 1


def _integer(name: str, value, lo: int, hi: int) -> int:
    """An integer argument in [lo, hi] (bool is not one; the bounds are what the core's type holds, the core checks
    the meaning); ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _number(name: str, value) -> float:
    """A real-number argument (the core checks its range, NaN included); ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _text(name: str, value) -> str:
    """A str that UTF-8 can encode (no lone surrogates); ValueError naming it otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not valid UTF-8 text: {e.reason} at index {e.start} "
                         f"({value[e.start:e.end]!r}, a lone surrogate)") from None
    return value


def _model_path(path) -> bytes:
    """A model path (str, bytes or os.PathLike) as the OS's bytes; ValueError for other types and embedded NULs."""
    try:
        path = os.fsencode(path)
    except TypeError:
        raise ValueError(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}") from None
    if b"\0" in path:
        raise ValueError(f"model path contains a NUL byte: {path!r}")
    return path


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
    ``numerics``: "fast" (default), "fp32", "llama.cpp" or "int8" (:data:`NUMERICS`), the arithmetic of this Generator only;
    ``set_numerics()`` changes it, ``numerics`` reads it.
    Threads: Generators are independent (the compute runs without the GIL), so one Generator per thread
    runs at full speed; give each ``n_threads`` = cores / number of Generators. One Generator used from two
    threads at once is refused, never corrupted (by the native session's guard): the thread entering while
    another computes gets a RuntimeError, and a generation whose session was used by another call since its
    last token (a later generate()/chat(), reset(), append()) raises RuntimeError ("superseded") at its next step.
    Model files: with ``use_mmap=True`` deleting or renaming the file while loaded is safe; truncating or
    rewriting it in place is not (SIGBUS or changed weights). Use ``use_mmap=False`` for files that may be
    replaced in place. A too large ``n_ctx`` raises MemoryError here, not later.
    ``cache_prompt`` (default True): ``generate``/``chat`` keep the longest common prefix of the cached tokens and
    the new prompt and compute only the rest (a conversation's earlier turns are not prefilled again; the stats'
    ``reused_tokens`` says how many were kept). Tokens computed with another LazyLLM schedule or numerics are not
    reused. False: every call starts from an empty cache. ``save_state(path)`` / ``load_state(path)`` keep a
    session on disk.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]] = None, n_ctx: int = 4096, n_threads: Optional[int] = None,
                 lazy: LazyLike = None, backend: str = "cpu", use_mmap: bool = True, numerics: str = "fast",
                 cache_prompt: bool = True):
        if path is None:
            path = model_path(DEFAULT_MODEL)
            if not os.path.isfile(path):
                raise _core.ModelLoadError(
                    f"the default model is not cached at {path}; fetch it with: python -m lazyllm_edge.models fetch {DEFAULT_MODEL}")
        # (the core reads n_threads 0 as "all physical cores", which this API spells None)
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or
                                      not 1 <= n_threads <= 1024):
            raise ValueError(f"n_threads must be an integer in [1, 1024] or None, got {n_threads!r}")
        n_ctx = _integer("n_ctx", n_ctx, 1, 1 << 24)
        for name, value in (("backend", backend), ("numerics", numerics)):
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a str, got {value!r}")
        os_path = _model_path(path)
        self.path = os.fsdecode(os_path)
        self.model = _core.Model.load(os_path, n_threads=n_threads or 0, backend=backend, use_mmap=bool(use_mmap))
        self.info = self.model.info
        self.n_layer = self.info["n_layer"]
        self.n_vocab = self.info["n_vocab"]
        self._hinted = False
        self._default_lazy = self.schedule_for(lazy)  # a LazySchedule
        self.session = _core.Session(self.model, n_ctx, self._default_lazy, numerics)
        self.n_ctx = n_ctx
        self.cache_prompt = bool(cache_prompt)
        self._stream: Optional[Stream] = None  # the latest generation, for finish_reason and cancel()

    def sharing_model(self, n_ctx: Optional[int] = None) -> "Generator":
        """Another Generator over this one's loaded model (its weights are in memory once) with a session of its own
        (KV cache, prefix reuse), the same default schedule, numerics and ``cache_prompt``; ``n_ctx`` defaults to
        this one's. Each may run in its own thread at the same time (a server's slots)."""
        n_ctx = self.n_ctx if n_ctx is None else _integer("n_ctx", n_ctx, 1, 1 << 24)
        other = object.__new__(Generator)
        other.path, other.model, other.info = self.path, self.model, self.info
        other.n_layer, other.n_vocab = self.n_layer, self.n_vocab
        other._hinted = self._hinted
        other._default_lazy = self._default_lazy
        other.session = _core.Session(self.model, n_ctx, self._default_lazy, self.numerics)
        other.n_ctx = n_ctx
        other.cache_prompt = self.cache_prompt
        other._stream = None
        return other

    # ---- tokenizer ----
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> List[int]:
        return self.model.tokenize(_text("text", text), bool(add_special), bool(parse_special))

    def detokenize(self, ids: Sequence[int], render_special: bool = True) -> str:
        return self.model.detokenize_bytes(self._check_ids(ids), bool(render_special)).decode("utf-8", errors="replace")

    @property
    def chat_template(self) -> str:
        return self.model.chat_template

    # ---- low-level session interface ----
    def reset(self) -> None:
        """Empties the KV cache and aux cache."""
        self._refuse_other_threads()
        self.session.reset()

    def save_state(self, path: Union[str, os.PathLike]) -> None:
        """Writes the session (its tokens and the used part of the KV and aux caches) to `path`, with the model
        file's sha256 (hashed once per model). A temporary file is renamed over `path`, so a crash never leaves a
        half-written one. StateFileError when it cannot be written."""
        self._refuse_other_threads()
        self.session.save_state(os.fspath(path))

    def load_state(self, path: Union[str, os.PathLike]) -> None:
        """Replaces the session with one saved by :meth:`save_state` (for the same model file, with at most n_ctx
        tokens); the next generate()/chat() reuses its prefix. A file of another model or shape, a truncated or
        corrupted one raises StateFileError and leaves the session as it was. The loaded tokens count as computed
        with this Generator's schedule and numerics: use the ones they were saved with to continue identically."""
        self._refuse_other_threads()
        self.session.load_state(os.fspath(path))

    def append(self, ids: Sequence[int]) -> np.ndarray:
        """Feeds tokens after those already cached (prefill for many, decode for one) and returns the last
        position's logits (n_vocab,) float32. Ctrl-C stops a long one between layers (KeyboardInterrupt; nothing
        of it is fed)."""
        ids = self._check_ids(ids)
        self._refuse_other_threads()
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
        self._refuse_other_threads()
        self._default_lazy = self.schedule_for(lazy)
        self.session.set_lazy(self._default_lazy)

    @property
    def numerics(self) -> str:
        """The arithmetic of this Generator: "fast", "fp32", "llama.cpp" or "int8" (see :data:`NUMERICS`)."""
        return self.session.numerics

    def set_numerics(self, numerics: str) -> None:
        """Computes the next appends with `numerics` ("fast", "fp32", "llama.cpp" or "int8"; ValueError otherwise,
        UnsupportedError for "llama.cpp" and "int8" on CUDA). What is already cached stays as computed: reset() or a new
        generate() for results entirely in the new numerics."""
        self.session.set_numerics(numerics)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits (n, n_vocab) float32 for every position of `ids`, computed densely from an empty cache."""
        ids = self._check_ids(ids)
        self._refuse_other_threads()
        self.session.reset()
        try:
            return self.session.append_all_logits(ids)
        finally:
            self.session.reset()

    # ---- generation ----
    def generate(self, prompt_or_ids: Union[str, Sequence[int]], max_tokens: Optional[int] = 256, temperature: float = 0.8,
                 top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                 repeat_last_n: int = 64, seed: Optional[int] = None, stop: Union[None, str, Sequence[str]] = None,
                 lazy: LazyLike = None, add_special: Optional[bool] = None, ignore_eos: bool = False,
                 **unknown) -> Stream:
        """Streams pieces for a prompt (str: tokenized with BOS as the model asks and special tokens parsed)
        or token ids, the whole context: with ``cache_prompt`` the cached tokens it starts with are kept and only the
        rest is computed, else it starts from an empty cache. Options: max_tokens=256 (None: no limit), temperature=0.8, top_k=40,
        top_p=0.95, min_p=0.05, repeat_penalty=1.0, repeat_last_n=64, seed=None, stop=None (str or list: the text
        ends before the first one, which is not emitted), lazy=None (this call only), ignore_eos=False (go on past
        end-of-generation tokens, as llama.cpp's option: benchmarks and load tests). Afterwards ``finish_reason``
        is "stop" (end of generation or a stop string), "length" (max_tokens or the context is full) or
        "cancelled" (``cancel()``). Bad values raise ValueError naming the argument."""
        if unknown:
            raise ValueError(f"unknown keyword argument(s): {', '.join(sorted(unknown))}")
        if max_tokens is not None:
            max_tokens = _integer("max_tokens", max_tokens, -INT32_MAX - 1, INT32_MAX)  # (the core says why < 0 is not)
        sampling = _core.SamplingParams(temperature=_number("temperature", temperature),
                                        top_k=_integer("top_k", top_k, -INT32_MAX - 1, INT32_MAX),
                                        top_p=_number("top_p", top_p), min_p=_number("min_p", min_p),
                                        repeat_penalty=_number("repeat_penalty", repeat_penalty),
                                        repeat_last_n=_integer("repeat_last_n", repeat_last_n, -INT32_MAX - 1, INT32_MAX),
                                        seed=seed)
        if isinstance(prompt_or_ids, str):
            ids = self.model.tokenize(_text("prompt", prompt_or_ids), True if add_special is None else bool(add_special),
                                      True)
        elif isinstance(prompt_or_ids, (bytes, bytearray, memoryview)) or prompt_or_ids is None:
            raise ValueError(f"prompt must be a str or a sequence of token ids, got {type(prompt_or_ids).__name__}"
                             + (" (decode bytes to str first)" if prompt_or_ids is not None else ""))
        else:
            ids = self._check_ids(prompt_or_ids)
        override = None if lazy is None else self.schedule_for(lazy)
        self._refuse_other_threads()
        self._stream = None  # an unfinished earlier generation ends here (before this one touches the session)
        if not self.cache_prompt:
            self.session.reset()
        self.session.set_lazy(self._default_lazy)
        self._stream = Stream(_core.Generation(self.session, ids, sampling, max_tokens=max_tokens, stop=stop,
                                               ignore_eos=bool(ignore_eos), lazy=override,
                                               reuse_prefix=self.cache_prompt))
        return self._stream

    @property
    def finish_reason(self) -> Optional[str]:
        """How the latest generation ended: "stop", "length", "cancelled"; None while it runs."""
        return self._stream.finish_reason if self._stream is not None else None

    def cancel(self) -> None:
        """Ends the latest generation before its next token (finish_reason "cancelled"); from any thread."""
        if self._stream is not None:
            self._stream.cancel()

    def chat(self, messages: Iterable[dict], **kwargs) -> Stream:
        """Renders `messages` ([{"role", "content"}, ...]) with the model's chat template (the GGUF's, or the
        architecture's default when the file has none) and generates the reply."""
        return self.generate(self.chat_ids(messages), **kwargs)

    def chat_ids(self, messages: Iterable[dict]) -> List[int]:
        """Token ids of the rendered chat prompt, assistant turn opened, BOS exactly once where the model uses it.
        The template's own markers are special tokens; text inside the messages never is (a message that contains
        "<|im_end|>" gets that text, not the token), so a message cannot forge turns."""
        from .chat import check_messages, render_chat_segments

        messages = check_messages(messages)
        for m in messages:
            _text("message content", m["content"])
        segments = render_chat_segments(self.chat_template, messages, self._special_texts(messages),
                                        bos_token=self._piece(self.model.bos_id), eos_token=self._piece(self.model.eos_id))
        ids = []
        for i, (text, literal) in enumerate(segments):
            ids += self.model.tokenize(text, i == 0, not literal)
        bos = self.model.bos_id
        if len(ids) >= 2 and ids[0] == bos and ids[1] == bos:  # template wrote BOS and the tokenizer added one
            ids = ids[1:]
        return ids

    def _special_texts(self, messages: List[dict]) -> List[str]:
        """The special-token texts (the control tokens parse_special reads) that the messages contain."""
        found = set()
        for m in messages:
            found.update(self._piece(t) for t in self.model.tokenize(m["content"], False, True) if self.model.is_control(t))
        return sorted(t for t in found if t)

    def _refuse_other_threads(self) -> None:
        """RuntimeError when another thread's generation is running on this Generator: a call from here would end it
        (the native session refuses only calls that overlap a step, not those between two steps)."""
        if self._stream is not None and self._stream._held_by_another_thread():
            raise RuntimeError("this Generator is in use by another thread (its generation has not finished); "
                               "use one Generator per thread")

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self.model.token_to_piece(token, True).decode("utf-8", errors="replace")

    def schedule_for(self, lazy: LazyLike) -> LazySchedule:
        """The schedule ``lazy=`` means on this model: resolve_lazy, with the presets "balanced" and "aggressive" taken
        from this model's calibration when it has one (models/registry.json or ``python -m lazyllm_edge.calibrate``);
        else the generic preset and a one-line hint."""
        name = lazy if isinstance(lazy, str) else None
        if isinstance(lazy, LazyConfig) and lazy.preset_name and lazy == LazyConfig.preset(lazy.preset_name):
            name = lazy.preset_name  # the preset as it is, nothing overridden
        if name in ("balanced", "aggressive"):
            from .calibrate import calibrated_spec

            calibrated, spec = calibrated_spec(self.path, name)
            if spec is not None:
                return resolve_lazy(spec, self.n_layer, self.info["stage_layers"])
            if not calibrated and not self._hinted:
                self._hinted = True
                print(f"lazyllm_edge: {os.path.basename(self.path)} has no calibrated LazyLLM schedule; using the generic "
                      f"'{name}' (calibrate it: python -m lazyllm_edge.calibrate -m {self.path})", file=sys.stderr)
        return resolve_lazy(lazy, self.n_layer, self.info["stage_layers"])

    def _check_ids(self, ids) -> List[int]:
        """Token ids as ints in [0, n_vocab); ValueError naming the first bad one."""
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes, bytearray)) or not isinstance(ids, Iterable):
            raise ValueError(f"token ids must be a sequence of integers, got {type(ids).__name__}")
        ids = list(ids)
        try:
            out = [operator.index(t) for t in ids]
        except TypeError:
            raise ValueError(f"token ids must be integers, got {ids!r}"[:200]) from None
        for t in out:
            if not 0 <= t < self.n_vocab:
                raise ValueError(f"token id {t} is out of range [0, {self.n_vocab})")
        return out
