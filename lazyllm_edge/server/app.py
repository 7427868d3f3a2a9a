"""The HTTP routes: the OpenAI endpoints (/v1/models, /v1/completions, /v1/chat/completions), /health, /metrics and
the chat page at /. Each request is checked before it takes a slot (400/401/404/503 as the OpenAI API answers them);
its generation then runs on the slot in a worker thread (slots.Run) and streams back as server-sent events."""

import asyncio
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import List, Optional, Sequence

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .errors import APIError, bad_field, error_body
from .metrics import Metrics
from .schemas import CompletionRequest, parse_request
from .slots import Finished, QueueFull, Run, SlotPool

log = logging.getLogger("lazyllm_edge.server")
MAX_BODY_BYTES = 8 << 20
RETRY_AFTER_S = 1


@dataclass
class ServerConfig:
    model_id: str                  # the name /v1/models lists
    model_names: Sequence[str]     # every name a request's "model" may give (the id, the file name...)
    n_ctx: int
    api_key: Optional[str] = None
    lazy: Optional[str] = None     # the server's default schedule (--lazy)


def _request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


async def _json_body(request: Request):
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise APIError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as e:  # (UnicodeDecodeError is a ValueError)
        raise bad_field("body", f"malformed JSON: {e}"[:300], "invalid_json") from None


class Server:
    def __init__(self, pool: SlotPool, config: ServerConfig):
        self.pool, self.config = pool, config
        self.metrics = Metrics()
        self.created = int(time.time())
        self.generator = pool.slots[0].generator  # for tokenizing and resolving schedules (model-only calls)

    # ---- checks shared by the endpoints ----
    def check_key(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise APIError(401, "missing or incorrect API key (send 'Authorization: Bearer KEY')",
                           type="authentication_error", code="invalid_api_key")

    def check_model(self, model: Optional[str]) -> None:
        if model is not None and model not in self.config.model_names:
            raise APIError(404, f"the model '{model}' does not exist; this server serves '{self.config.model_id}'"[:300],
                           param="model", code="model_not_found")

    def prompt_ids(self, req: CompletionRequest) -> List[int]:
        """The prompt's token ids (a worker thread: tokenizing and rendering a template take a while)."""
        gen = self.generator
        try:
            if req.chat:
                ids = gen.chat_ids(req.messages)
            elif isinstance(req.prompt, str):
                ids = gen.tokenize(req.prompt, add_special=True, parse_special=True)
            else:
                bad = next((t for t in req.prompt if not 0 <= t < gen.n_vocab), None)
                if bad is not None:
                    raise bad_field("prompt", f"token id {bad} is out of range [0, {gen.n_vocab})")
                ids = list(req.prompt)
        except ValueError as e:
            raise bad_field("messages" if req.chat else "prompt", str(e)[:300]) from None
        if not ids:
            raise bad_field("prompt", "the prompt has no tokens")
        if len(ids) >= self.config.n_ctx:
            raise APIError(400, f"the prompt has {len(ids)} tokens; the context holds {self.config.n_ctx} (a slot's "
                                f"context, -c), with room for at least one generated token",
                           param="messages" if req.chat else "prompt", code="context_length_exceeded")
        return ids

    def generate_options(self, req: CompletionRequest) -> dict:
        options = dict(req.sampling)
        options.setdefault("max_tokens", None)  # no limit but the context, as llama-server
        lazy = req.lazy if req.lazy is not None else self.config.lazy
        if lazy is not None:
            try:
                self.generator.schedule_for(lazy)
            except ValueError as e:
                raise bad_field("lazy", str(e)[:300]) from None
        options["lazy"] = lazy if lazy is not None else "off"
        return options

    # ---- endpoints ----
    async def index(self, request: Request) -> Response:
        return HTMLResponse(resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8"))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "slots_idle": len(self.pool.slots) - self.pool.busy,
                             "slots_processing": self.pool.busy, "queued": self.pool.waiting})

    async def metrics_text(self, request: Request) -> Response:
        self.check_key(request)
        gauges = {"slots": ("Slots (parallel generations).", len(self.pool.slots)),
                  "slots_busy": ("Slots generating now.", self.pool.busy),
                  "queue_length": ("Requests waiting for a slot.", self.pool.waiting),
                  "queue_capacity": ("Requests the queue holds before answering 503.", self.pool.max_queue)}
        return PlainTextResponse(self.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    def model_card(self) -> dict:
        gen = self.generator
        return {"id": self.config.model_id, "object": "model", "created": self.created, "owned_by": "lazyllm_edge",
                "meta": {"n_ctx": self.config.n_ctx, "n_layer": gen.n_layer, "n_vocab": gen.n_vocab,
                         "architecture": gen.info["architecture"], "slots": len(self.pool.slots),
                         "lazy_presets": ["off", "balanced", "aggressive"], "lazy": self.config.lazy or "off"}}

    async def models(self, request: Request) -> Response:
        self.check_key(request)
        return JSONResponse({"object": "list", "data": [self.model_card()]})

    async def model(self, request: Request) -> Response:
        self.check_key(request)
        self.check_model(request.path_params["model"])
        return JSONResponse(self.model_card())

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def _complete(self, request: Request, chat: bool) -> Response:
        arrived = time.perf_counter()
        self.check_key(request)
        req = parse_request(await _json_body(request), chat)
        self.check_model(req.model)
        ids = await asyncio.to_thread(self.prompt_ids, req)
        options = self.generate_options(req)
        try:
            slot = await self.pool.acquire(ids)
        except QueueFull:
            raise APIError(503, f"all {len(self.pool.slots)} slots are busy and {self.pool.max_queue} requests wait; "
                                f"retry later", type="server_error", code="server_busy",
                           headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        run = Run(self.pool, slot, ids, options, on_finish=self.record).start()
        reply = Reply(self, req, run, ids, arrived)
        if req.stream:
            return EventSourceResponse(reply.events(), sep="\n", headers={"Cache-Control": "no-cache"})
        return JSONResponse(await reply.whole(request))

    def record(self, ids: List[int], done: Finished) -> None:
        self.metrics.generation(len(ids), int(done.stats.get("reused_tokens", 0)), done.completion_tokens, done.stats,
                                done.finish_reason)

    def routes(self) -> List[Route]:
        return [Route("/", self.index), Route("/health", self.health), Route("/metrics", self.metrics_text),
                Route("/v1/models", self.models), Route("/v1/models/{model:path}", self.model),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"])]


class Reply:
    """The answer to one generation request: OpenAI's response or its stream of chunks, with the usage and this
    engine's figures (x_lazyllm: TTFT, tokens/s, per-layer token usage) at the end."""

    def __init__(self, server: Server, req: CompletionRequest, run: Run, ids: List[int], arrived: float):
        self.server, self.req, self.run, self.ids, self.arrived = server, req, run, ids, arrived
        self.id = _request_id("chatcmpl" if req.chat else "cmpl")
        self.created = int(time.time())
        self.first_token_at: Optional[float] = None

    def _base(self, chunk: bool) -> dict:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.req.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.server.config.model_id}

    async def pieces(self):
        """The generated text pieces, then the Finished (an exception from the generation is raised)."""
        while True:
            item = await self.run.items.get()
            if isinstance(item, BaseException):
                raise item
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
                self.server.metrics.first_token(self.first_token_at - self.arrived)
            yield item
            if isinstance(item, Finished):
                return

    def usage(self, done: Finished) -> dict:
        reused = int(done.stats.get("reused_tokens", 0))
        return {"prompt_tokens": len(self.ids), "completion_tokens": done.completion_tokens,
                "total_tokens": len(self.ids) + done.completion_tokens, "prompt_tokens_details": {"cached_tokens": reused}}

    def figures(self, done: Finished) -> dict:
        """llama-server's `timings`, and x_lazyllm: what the chat page shows."""
        st = done.stats
        reused = int(st.get("reused_tokens", 0))
        ttft = (self.first_token_at or time.perf_counter()) - self.arrived
        decode_s = float(st.get("decode_time_s", 0.0))
        decode_n = int(st.get("decode_tokens", 0))
        prompt_s = float(st.get("ttft_s", 0.0))
        return {
            "timings": {"cache_n": reused, "prompt_n": len(self.ids) - reused, "prompt_ms": prompt_s * 1e3,
                        "predicted_n": done.completion_tokens, "predicted_ms": decode_s * 1e3,
                        "predicted_per_second": decode_n / decode_s if decode_s > 0 else None},
            "x_lazyllm": {"slot": self.run.slot.index, "ttft_ms": ttft * 1e3,
                          "tokens_per_second": decode_n / decode_s if decode_s > 0 else None,
                          "lazy": self.run.options.get("lazy"), "reused_tokens": reused,
                          "context_tokens": len(self.ids) + done.completion_tokens,
                          "layer_kv_tokens": list(st.get("layer_kv_tokens", [])),
                          "prompt_layer_kv_tokens": done.prompt_layer_kv_tokens,
                          "prompt_fraction_computed": st.get("prefill_fraction_computed"),
                          "revived_tokens": st.get("revived_tokens")},
        }

    def _choice(self, text: Optional[str], finish_reason: Optional[str], first: bool = False) -> dict:
        if not self.req.chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        delta = {} if text is None else {"content": text}
        if first:
            delta = {"role": "assistant", "content": text or ""}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    async def events(self):
        """Server-sent events: one chunk per piece, a last one with finish_reason (and usage, timings, x_lazyllm),
        then [DONE]. A client that goes away cancels this generator: the generation ends before its next token."""
        try:
            if self.req.chat:
                yield json.dumps({**self._base(True), "choices": [self._choice(None, None, first=True)]})
            async for item in self.pieces():
                if isinstance(item, Finished):
                    last = {**self._base(True), "choices": [self._choice(None, item.finish_reason)],
                            "usage": self.usage(item), **self.figures(item)}
                    yield json.dumps(last)
                    if self.req.include_usage:
                        yield json.dumps({**self._base(True), "choices": [], "usage": self.usage(item)})
                else:
                    yield json.dumps({**self._base(True), "choices": [self._choice(item, None)]})
            yield "[DONE]"
        except Exception as e:  # the status is sent: the error goes into the stream
            log.exception("generation failed")
            yield json.dumps(error_body(f"generation failed: {e}"[:300], "server_error"))
        finally:
            self.run.cancel()  # a no-op after the end

    async def whole(self, request: Request) -> dict:
        """The whole response; a client that disconnects meanwhile cancels the generation."""

        async def watch():
            while not await request.is_disconnected():
                await asyncio.sleep(0.25)
            self.run.cancel()

        watcher = asyncio.create_task(watch())
        texts = []
        try:
            async for item in self.pieces():
                if isinstance(item, Finished):
                    done = item
                else:
                    texts.append(item)
        finally:
            watcher.cancel()
            self.run.cancel()
        text = "".join(texts)
        if self.req.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": done.finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": done.finish_reason}
        return {**self._base(False), "choices": [choice], "usage": self.usage(done), **self.figures(done)}


def create_app(pool: SlotPool, config: ServerConfig) -> Starlette:
    server = Server(pool, config)

    async def api_error(request: Request, exc: APIError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", code=f"http_{exc.status_code}"),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error"), status_code=500)

    app = Starlette(routes=server.routes(), middleware=[Middleware(CountRequests, metrics=server.metrics)],
                    exception_handlers={APIError: api_error, HTTPException: http_error, Exception: internal_error})
    app.state.server = server
    return app


class CountRequests:
    """ASGI middleware counting the responses by endpoint and status (a plain one: it leaves streaming and the
    client's disconnect messages as they are)."""

    KNOWN_PATHS = ("/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions")

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in self.KNOWN_PATHS else "other"

        async def counting_send(message):
            if message["type"] == "http.response.start":
                self.metrics.request(path, message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)
