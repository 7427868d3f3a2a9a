"""Chat prompts: renders the GGUF's tokenizer.chat_template (a Hugging Face Jinja template) in a sandbox."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import List


@lru_cache(maxsize=8)
def _compile(template: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise ValueError(f"chat template error: {message}")

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda x, indent=None, **kw: __import__("json").dumps(x, indent=indent, ensure_ascii=False)
    return env.from_string(template)


def render_chat(template: str, messages: List[dict], bos_token: str = "", eos_token: str = "",
                add_generation_prompt: bool = True, **extra) -> str:
    if not template:
        raise ValueError("this model has no chat template (tokenizer.chat_template)")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError("each message must be a dict with 'role' and 'content'")
    return _compile(template).render(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                     add_generation_prompt=add_generation_prompt, **extra)
