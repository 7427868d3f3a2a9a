"""Validation of the OpenAI request bodies: each field checked by name (its type and range), the fields this engine
cannot honour refused clearly, the rest turned into a CompletionRequest. Every failure is a 400 naming the field."""

import math
from dataclasses import dataclass, field
from typing import List, Optional, Union

from .errors import bad_field

MAX_STOP = 4  # as the OpenAI API allows
ROLES = ("system", "user", "assistant")  # "developer" (OpenAI's newer name for system) is read as system


@dataclass
class CompletionRequest:
    """A validated /v1/completions or /v1/chat/completions request."""

    chat: bool
    model: Optional[str]
    prompt: Union[str, List[int], None] = None  # completions: text or token ids
    messages: Optional[List[dict]] = None         # chat: [{"role", "content": str}]
    stream: bool = False
    include_usage: bool = False
    lazy: Optional[str] = None
    sampling: dict = field(default_factory=dict)  # Generator.generate keywords


def _present(body: dict, name: str) -> bool:
    return body.get(name) is not None


def _number(body: dict, name: str, lo: float, hi: float, lo_open: bool = False) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_field(name, f"must be a number, got {value!r}"[:200], "invalid_type")
    if not (lo < value if lo_open else lo <= value) or value > hi:
        raise bad_field(name, f"must be in {'(' if lo_open else '['}{lo}, {hi}], got {value!r}")
    return float(value)


def _integer(body: dict, name: str, lo: int, hi: int) -> Optional[int]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_field(name, f"must be an integer, got {value!r}"[:200], "invalid_type")
    if not lo <= value <= hi:
        raise bad_field(name, f"must be in [{lo}, {hi}], got {value}")
    return value


def _boolean(body: dict, name: str, where: str = "") -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_field(where + name, f"must be true or false, got {value!r}"[:200], "invalid_type")
    return value


def _stop(body: dict) -> Optional[List[str]]:
    value = body.get("stop")
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_field("stop", "must be a string or a list of strings", "invalid_type")
    if len(stops) > MAX_STOP:
        raise bad_field("stop", f"at most {MAX_STOP} stop sequences, got {len(stops)}")
    if any(s == "" for s in stops):
        raise bad_field("stop", "a stop sequence must not be empty")
    return stops or None


def _refuse_unsupported(body: dict, chat: bool) -> None:
    """The OpenAI fields this engine has no equivalent for: a 400 when set to anything but their no-op value."""
    for name in ("frequency_penalty", "presence_penalty"):
        if _number(body, name, -2.0, 2.0):
            raise bad_field(name, "is not supported by this engine's sampler (only 0); use repeat_penalty "
                                  "(> 1 penalizes the last 64 tokens) instead", "unsupported_value")
    n = _integer(body, "n", 1, 128)
    if n not in (None, 1):
        raise bad_field("n", f"only one choice per request is supported (n=1), got {n}", "unsupported_value")
    best_of = _integer(body, "best_of", 1, 128)
    if best_of not in (None, 1):
        raise bad_field("best_of", f"is not supported (only 1), got {best_of}", "unsupported_value")
    logprobs = body.get("logprobs")
    if logprobs not in (None, False) and not (not chat and logprobs == 0 and not isinstance(logprobs, bool)):
        raise bad_field("logprobs", "log probabilities are not supported", "unsupported_value")
    if body.get("top_logprobs") is not None:
        raise bad_field("top_logprobs", "log probabilities are not supported", "unsupported_value")
    if _boolean(body, "echo"):
        raise bad_field("echo", "is not supported", "unsupported_value")
    if body.get("suffix") not in (None, ""):
        raise bad_field("suffix", "insertion (suffix) is not supported", "unsupported_value")
    if body.get("logit_bias") not in (None, {}):
        raise bad_field("logit_bias", "is not supported", "unsupported_value")
    for name in ("tools", "functions"):
        if body.get(name) not in (None, []):
            raise bad_field(name, "tool and function calling are not supported", "unsupported_value")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad_field("response_format", "only {'type': 'text'} is supported", "unsupported_value")


def _message_content(i: int, content) -> str:
    """A message's content: a str, or OpenAI's list of parts of which only text parts are read."""
    where = f"messages[{i}].content"
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_field(f"{where}[{j}]", "only text parts {'type': 'text', 'text': str} are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_field(where, "must be a string or a list of text parts", "invalid_type")


def _messages(body: dict) -> List[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_field("messages", "must be a non-empty list of {'role', 'content'} objects",
                        "invalid_type" if messages is not None else "missing")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad_field(f"messages[{i}]", "must be an object with 'role' and 'content'", "invalid_type")
        role = m.get("role")
        role = "system" if role == "developer" else role
        if role not in ROLES:
            raise bad_field(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, got {role!r}"[:200])
        out.append({"role": role, "content": _message_content(i, m.get("content"))})
    return out


def _prompt(body: dict) -> Union[str, List[int]]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        raise bad_field("prompt", "a batch of several prompts is not supported; send one per request", "unsupported_value")
    raise bad_field("prompt", "must be a string or a non-empty list of token ids",
                    "invalid_type" if prompt is not None else "missing")


def parse_request(body, chat: bool) -> CompletionRequest:
    """The request for /v1/chat/completions (chat) or /v1/completions; APIError 400 naming the first bad field."""
    if not isinstance(body, dict):
        raise bad_field("body", f"the request body must be a JSON object, got {type(body).__name__}", "invalid_type")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_field("model", "must be a string", "invalid_type")
    _refuse_unsupported(body, chat)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad_field("stream_options", "must be an object", "invalid_type")
    lazy = body.get("lazy")
    if lazy is not None and not isinstance(lazy, str):
        raise bad_field("lazy", "must be a preset (off, balanced, aggressive) or a spec such as '12:0.1/24:0.5'",
                        "invalid_type")
    max_tokens = _integer(body, "max_tokens", 1, 2**31 - 1)
    if chat and _present(body, "max_completion_tokens"):
        max_tokens = _integer(body, "max_completion_tokens", 1, 2**31 - 1)
    seed = _integer(body, "seed", -2**63, 2**64 - 1)
    sampling = {
        "max_tokens": max_tokens,
        "temperature": _number(body, "temperature", 0.0, 2.0),
        "top_p": _number(body, "top_p", 0.0, 1.0, lo_open=True),
        "top_k": _integer(body, "top_k", 0, 2**31 - 1),
        "min_p": _number(body, "min_p", 0.0, 1.0),
        "repeat_penalty": _number(body, "repeat_penalty", 0.0, 10.0, lo_open=True),
        "seed": None if seed is None or seed == -1 else seed % 2**64,  # -1: a random seed, as llama.cpp reads it
        "stop": _stop(body),
    }
    if _boolean(body, "ignore_eos"):  # llama-server's field: fixed-length answers for load tests
        sampling["ignore_eos"] = True
    request = CompletionRequest(chat=chat, model=model, stream=_boolean(body, "stream"),
                                include_usage=bool(stream_options and _boolean(stream_options, "include_usage", "stream_options.")),
                                lazy=lazy, sampling={k: v for k, v in sampling.items() if v is not None})
    if chat:
        request.messages = _messages(body)
    else:
        request.prompt = _prompt(body)
    return request
