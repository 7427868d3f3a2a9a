"""Chat prompts: renders the GGUF's tokenizer.chat_template (a Hugging Face Jinja template) in a sandbox, bounded in
time and output size (a template comes with the file, so it may be hostile), and keeps special-token text inside
messages from becoming special tokens (render_chat_segments)."""

from __future__ import annotations

import json
import operator
import re
import sys
import threading
import time
from datetime import datetime
from functools import lru_cache
from typing import Iterable, List, Sequence, Tuple

# Rendering limits. A real template renders in milliseconds and its output is the prompt, which a context holds;
# beyond these it is looping or inflating.
MAX_RENDER_SECONDS = 5.0
MAX_OUTPUT_CHARS = 1 << 23  # 8 Mi characters: ~2M tokens, more than any context

# Around special-token text found inside a message while the template renders (Unicode noncharacters, removed from
# the messages first, so only these markers carry them).
_OPEN, _CLOSE = "\ufdd0", "\ufdd1"


_rendering = threading.local()  # .limits: the render in progress on this thread


class TemplateLimitError(ValueError):
    """The chat template exceeded a rendering limit (time or output size)."""


class _Limits:
    def __init__(self, max_seconds: float, max_chars: int):
        self.max_seconds = max_seconds
        self.max_chars = max_chars
        self.deadline = time.monotonic() + max_seconds

    def check_time(self):
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the chat template did not finish rendering within its time limit "
                                     f"({self.max_seconds:g} s): a loop that does not end, or one far too long")

    def check_size(self, n: int):
        if n > self.max_chars:
            raise TemplateLimitError(f"the chat template's output exceeds its limit of {self.max_chars} characters")


@lru_cache(maxsize=8)
def _compile(template: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        # the operators that make a large value from small ones are checked before they run
        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context, op, left, right):
            limits = getattr(_rendering, "limits", None)
            if limits is not None:
                if op == "*":
                    for seq, times in ((left, right), (right, left)):
                        if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                            limits.check_size(len(seq) * times)
                elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
                    limits.check_size(max(left.bit_length(), 1) * right // 8)
            return super().call_binop(context, op, left, right)

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise ValueError(f"chat template error: {message}")

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, indent=indent, ensure_ascii=False)
    return env, env.from_string(template)


def _render(template: str, max_seconds: float, max_chars: int, **context) -> str:
    """Renders with the limits: the time checked at every line the template's code runs (a trace on its frames only,
    so loops without output or calls are caught too), the output size at every piece and before * and **."""
    env, compiled = _compile(template)
    limits = _Limits(max_seconds, max_chars)
    code_name = compiled.root_render_func.__code__.co_filename  # "<template>": the compiled template's frames

    def trace_line(frame, event, arg):
        limits.check_time()
        return trace_line

    def trace_call(frame, event, arg):
        return trace_line if frame.f_code.co_filename == code_name else None

    previous = sys.gettrace()
    _rendering.limits = limits
    sys.settrace(trace_call)
    try:
        pieces, size = [], 0
        for piece in compiled.generate(**context):
            size += len(piece)
            limits.check_size(size)
            pieces.append(piece)
        return "".join(pieces)
    finally:
        sys.settrace(previous)
        _rendering.limits = None


def check_messages(messages) -> List[dict]:
    """The messages as a list of dicts with str 'role' and 'content'; ValueError naming what is wrong."""
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Iterable):
        raise ValueError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {type(messages).__name__}")
    messages = list(messages)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"each message must be a dict with 'role' and 'content' (message {i} is not)")
        for key in ("role", "content"):
            if not isinstance(m[key], str):
                raise ValueError(f"message {i}'s {key} must be a str, got {type(m[key]).__name__}")
    return messages


def render_chat(template: str, messages: List[dict], bos_token: str = "", eos_token: str = "",
                add_generation_prompt: bool = True, max_seconds: float = MAX_RENDER_SECONDS,
                max_chars: int = MAX_OUTPUT_CHARS, **extra) -> str:
    """The rendered prompt. ValueError for a missing template or bad messages, TemplateLimitError (a ValueError)
    when rendering exceeds max_seconds or max_chars."""
    if not template:
        raise ValueError("this model has no chat template (tokenizer.chat_template)")
    messages = check_messages(messages)
    return _render(template, max_seconds, max_chars, messages=messages, bos_token=bos_token, eos_token=eos_token,
                   add_generation_prompt=add_generation_prompt, **extra)


def render_chat_segments(template: str, messages: List[dict], special_texts: Sequence[str], **kwargs
                         ) -> List[Tuple[str, bool]]:
    """The rendered prompt as (text, literal) segments: `literal` segments are special-token text that stood inside a
    message (to be tokenized as text), the others are the template's (special tokens parsed). `special_texts` are the
    special-token strings the messages contain; with none, one segment: the whole prompt as render_chat gives it."""
    if not special_texts:
        return [(render_chat(template, messages, **kwargs), False)]
    pattern = re.compile("|".join(map(re.escape, sorted(special_texts, key=len, reverse=True))))

    def marked(content: str) -> str:
        content = content.replace(_OPEN, "").replace(_CLOSE, "")
        return pattern.sub(lambda m: _OPEN + m.group(0) + _CLOSE, content)

    wrapped = [dict(m, content=marked(m["content"])) for m in messages]
    text = render_chat(template, wrapped, **kwargs)
    # a marked occurrence that the template left whole is literal; stray markers (a template that cut one) go
    segments: List[Tuple[str, bool]] = []
    literal = re.compile(re.escape(_OPEN) + "(" + pattern.pattern + ")" + re.escape(_CLOSE))
    at = 0
    for m in literal.finditer(text):
        segments.append((text[at:m.start()], False))
        segments.append((m.group(1), True))
        at = m.end()
    segments.append((text[at:], False))
    strip = operator.methodcaller("translate", {ord(_OPEN): None, ord(_CLOSE): None})
    return [(strip(s), lit) for s, lit in segments if s]
