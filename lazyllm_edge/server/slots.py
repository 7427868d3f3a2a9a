"""Slots: one Generator each (its own KV cache and prefix reuse, the model's weights shared), a bounded queue in
front of them, and the generation of one request in a worker thread that streams pieces to the event loop.

A request takes the free slot whose cached tokens share the longest prefix with its prompt, when that prefix is at
least half the prompt (as llama-server's slot similarity); otherwise, and among equals, the slot used longest ago
(an empty one first), so that a new conversation does not evict another's cache for the few tokens of a chat
template they share. With no slot free it waits in the queue, and a full queue refuses it (QueueFull, answered
503)."""

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from .._core import UnsupportedError


# The CPU kernels compute calls of up to 4 tokens as decode steps (int8 activations) and longer ones as a prefill:
# recomputing at least 5 of a prompt's tokens gives its last token the logits of a fresh prefill, bit for bit, so a
# request with a seed gives the same text whether its prompt was cached in the slot or not.
RECOMPUTED_PROMPT_TOKENS = 5


class QueueFull(Exception):
    """Every slot is busy and the queue holds its maximum."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False)
class Slot:
    index: int
    generator: object                 # a lazyllm_edge.Generator
    busy: bool = False
    cached: List[int] = field(default_factory=list)  # the session's tokens after its last generation
    last_used: float = 0.0


class SlotPool:
    def __init__(self, generators: Sequence, max_queue: int):
        self.slots = [Slot(i, g) for i, g in enumerate(generators)]
        self.max_queue = max_queue
        self.waiting = 0
        self._changed: Optional[asyncio.Condition] = None  # made on the server's event loop

    @property
    def busy(self) -> int:
        return sum(s.busy for s in self.slots)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _free(self) -> List[Slot]:
        return [s for s in self.slots if not s.busy]

    async def acquire(self, ids: Sequence[int]) -> Slot:
        """The free slot with the longest cached prefix of `ids`, waiting in the queue while none is free."""
        changed = self._condition()
        async with changed:
            if not self._free() or self.waiting:
                if self.waiting >= self.max_queue:
                    raise QueueFull()
                self.waiting += 1
                try:
                    await changed.wait_for(self._free)
                finally:
                    self.waiting -= 1
            slot = max(self._free(), key=lambda s: (self._reusable(s, ids), -s.last_used))
            slot.busy = True
            return slot

    @staticmethod
    def _reusable(slot: Slot, ids: Sequence[int]) -> int:
        """The prefix of `ids` the slot would reuse, or 0 where it is less than half of them."""
        shared = common_prefix(slot.cached, ids)
        return shared if 2 * shared >= len(ids) else 0

    def release(self, slot: Slot) -> None:
        """Frees the slot at once (on the event loop), so that a client's next request, sent when this one's answer
        arrives, finds it free; the waiters are woken by a task."""
        slot.busy = False
        slot.last_used = time.monotonic()
        asyncio.ensure_future(self._wake_one())

    async def _wake_one(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify()


@dataclass
class Finished:
    """The end of a generation: why, the tokens generated, and the Generator's stats for it."""

    finish_reason: str
    completion_tokens: int
    stats: dict
    prompt_layer_kv_tokens: List[int]  # the tokens with K/V at each layer at the first token (after the prompt)


class Run:
    """One generation on an acquired slot, in a worker thread (the core computes without the GIL, so slots run in
    parallel). Its items, in order: text pieces (str), then a Finished or an Exception. ``cancel()`` ends it before
    its next token; the slot goes back to the pool when the generation ends, before the last item is delivered."""

    def __init__(self, pool: SlotPool, slot: Slot, ids: List[int], options: dict,
                 on_finish: Optional[Callable[[List[int], Finished], None]] = None):
        self.pool, self.slot, self.ids, self.options = pool, slot, ids, options
        self.on_finish = on_finish  # called in the worker thread, whether or not the client still listens
        self.items: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._stream = None
        self._cancelled = threading.Event()

    def start(self) -> "Run":
        threading.Thread(target=self._work, name=f"slot-{self.slot.index}", daemon=True).start()
        return self

    def cancel(self) -> None:
        self._cancelled.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def _recompute_prompt_tail(self, gen) -> None:
        """Drops the cached tokens beyond the prompt's first len - RECOMPUTED_PROMPT_TOKENS (see there)."""
        keep = max(0, len(self.ids) - RECOMPUTED_PROMPT_TOKENS)
        if common_prefix(self.slot.cached, self.ids) > keep:
            try:
                gen.session.truncate(keep)
            except UnsupportedError:  # a hybrid model's recurrent state cannot be rewound: reuse all of it
                pass

    def _put(self, item) -> None:
        self._loop.call_soon_threadsafe(self.items.put_nowait, item)

    def _work(self) -> None:
        gen = self.slot.generator
        last = None  # the Finished or the exception: delivered after the slot is free
        try:
            self._recompute_prompt_tail(gen)
            stream = gen.generate(self.ids, **self.options)
            self._stream = stream
            if self._cancelled.is_set():  # (cancel() came before the stream existed)
                stream.cancel()
            after_prompt = None
            for piece in stream:
                if after_prompt is None:
                    after_prompt = list(gen.stats["layer_kv_tokens"])
                self._put(piece.text)
            # the context is now the prompt then the generated tokens (an end-of-generation token is not fed)
            generated = max(0, len(gen.session.tokens) - len(self.ids))
            stats = gen.stats
            done = Finished(stream.finish_reason, generated, stats, after_prompt or list(stats["layer_kv_tokens"]))
            if self.on_finish is not None:
                self.on_finish(self.ids, done)
            last = done
        except BaseException as e:  # reported to the request; the slot stays usable
            last = e
        finally:
            self.slot.cached = list(gen.session.tokens)
            self._loop.call_soon_threadsafe(self.pool.release, self.slot)
            self._put(last)
