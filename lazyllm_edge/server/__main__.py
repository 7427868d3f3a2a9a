"""`lazyllm-edge-server` / `python -m lazyllm_edge.server`: the OpenAI-compatible server and its chat page."""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

DEPS_HINT = "the server needs its extra: pip install 'lazyllm_edge[server]'"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lazyllm-edge-server", description=(
        "OpenAI-compatible HTTP server (/v1/models, /v1/completions, /v1/chat/completions, /health, /metrics) with a "
        "chat page at /."))
    p.add_argument("-m", "--model", help="a GGUF file or a registry name (default: the default model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-c", "--ctx-size", type=int, default=4096, help="context of each slot in tokens (default 4096)")
    p.add_argument("-t", "--threads", type=int, default=None,
                   help="compute threads of each slot (default: the CPUs divided among the slots)")
    p.add_argument("--parallel", "-np", type=int, default=2, help="slots: generations run at once (default 2)")
    p.add_argument("--queue", type=int, default=32,
                   help="requests that may wait for a slot; beyond it 503 with Retry-After (default 32)")
    p.add_argument("--lazy", default=None, help="default LazyLLM schedule: off, balanced, aggressive or a spec "
                                                "('12:0.1/24:0.5'); a request's \"lazy\" field overrides it")
    p.add_argument("--api-key", default=os.environ.get("LAZYLLM_EDGE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 and /metrics (default: $LAZYLLM_EDGE_API_KEY)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = p.parse_args(argv)
    limits = (("--port", args.port, 0, 65535), ("-c", args.ctx_size, 8, 1 << 24), ("--parallel", args.parallel, 1, 256),
              ("--queue", args.queue, 0, 1 << 20), ("-t", 1 if args.threads is None else args.threads, 1, 1024))
    for name, value, lo, hi in limits:
        if not lo <= value <= hi:
            p.error(f"{name} must be in [{lo}, {hi}], got {value}")
    return args


def model_file(model: Optional[str]) -> Path:
    """-m as a path, else as a registry name (the cached file)."""
    from ..models import DEFAULT_MODEL, model_path, registry

    if model is None or (model in registry() and not Path(model).exists()):
        return model_path(model or DEFAULT_MODEL)
    return Path(model)


def model_names(path: Path) -> List[str]:
    """The id /v1/models lists (the registry name when the file is a registry model, else the file name without
    .gguf) first, then the other names a request may use for it."""
    from ..models import registry

    names = [name for name, entry in registry().items() if entry.get("file") == path.name]
    return names + [path.stem, path.name, str(path)]


def build_app(args: argparse.Namespace):
    """The Starlette app for the parsed arguments, its model loaded once and shared by the slots."""
    from ..generator import Generator
    from .app import ServerConfig, create_app
    from .slots import SlotPool

    path = model_file(args.model)
    threads = args.threads or max(1, len(os.sched_getaffinity(0)) // args.parallel)
    first = Generator(path, n_ctx=args.ctx_size, n_threads=threads, lazy=args.lazy)
    generators = [first] + [first.sharing_model() for _ in range(args.parallel - 1)]
    names = model_names(path)
    lazy = None if args.lazy in (None, "off") else args.lazy
    config = ServerConfig(model_id=names[0], model_names=names, n_ctx=args.ctx_size, api_key=args.api_key, lazy=lazy)
    return create_app(SlotPool(generators, args.queue), config)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        print(f"lazyllm-edge-server: {DEPS_HINT} ({e.name} is missing)", file=sys.stderr)
        return 1
    args = parse_args(argv)
    from .._core import ModelLoadError

    try:
        app = build_app(args)
    except (ModelLoadError, ValueError, MemoryError) as e:
        print(f"lazyllm-edge-server: {e}", file=sys.stderr)
        return 1
    print(f"lazyllm-edge-server: {app.state.server.config.model_id}, slots: {args.parallel} x {args.ctx_size} tokens, "
          f"http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def main_exit() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
