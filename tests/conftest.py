"""Shared fixtures: paths of the reference data and cached models, tiny generated models, the test hooks' module."""

import functools
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))  # make_tiny


def package_home() -> Path:
    """The folder holding the lazyllm_edge under test (the checkout for a developer build, site-packages for an
    installed one): a fresh interpreter run from there imports the same package (its working directory comes first
    on sys.path)."""
    import lazyllm_edge

    return Path(lazyllm_edge.__file__).resolve().parents[1]


def reference_root() -> Path:
    """llama.cpp's reference outputs, kept in the repository (tests/data/reference/README.md says how they were made)."""
    return REPO / "tests" / "data" / "reference"


def registry_name(reference_name: str) -> str:
    """The model registry's name for a reference folder (matched by the file's sha256)."""
    from lazyllm_edge.models import registry

    sha = json.loads((reference_root() / reference_name / "model.json").read_text())["sha256"]
    return next(name for name, entry in registry().items() if entry["sha256"] == sha)


def cached_model(reference_name: str) -> Path:
    """Path of a reference model's GGUF in the model cache; skips, naming the fetch command, when it is not
    fetched (in CI, where every registry model is fetched, a missing file fails instead)."""
    from lazyllm_edge.models import model_path

    name = registry_name(reference_name)
    path = model_path(name)
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"model {name} missing in CI: {path}")
        pytest.skip(f"model {name} is not fetched: python -m lazyllm_edge.models fetch {name}")
    return path


DEFAULT_REFERENCE = "smollm2-135m-instruct-q4_1"


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    return cached_model(DEFAULT_REFERENCE)


@pytest.fixture(scope="session")
def default_generator(default_model_path):
    import lazyllm_edge

    return lazyllm_edge.Generator(str(default_model_path), n_ctx=4096)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 4-layer random llama model with F32 weights, and its fp32 weights/hparams for NumPy references."""
    from make_tiny import write_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf"
    hp, weights = write_tiny_model(path, "llama", 4, "F32")
    return path, hp, weights


# ---- backends: tests parametrized with BACKENDS run on the CPU everywhere and on CUDA where a GPU is ----

def cuda_available() -> bool:
    from lazyllm_edge import _core

    return _core.cuda_devices()[0] > 0


BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def require_backend(backend: str) -> str:
    if backend == "cuda" and not cuda_available():
        pytest.skip("no CUDA device (or a build without the CUDA backend)")
    return backend


@pytest.fixture(scope="session")
def cuda_generator(default_model_path):
    import lazyllm_edge

    require_backend("cuda")
    return lazyllm_edge.Generator(str(default_model_path), n_ctx=4096, backend="cuda")


@pytest.fixture(scope="session", params=BACKENDS)
def reference_generator(request):
    """The default model's Generator (n_ctx 4096) on each backend."""
    return request.getfixturevalue("default_generator" if request.param == "cpu" else "cuda_generator")


# ---- the test hooks' module, lazyllm_edge._testing: kernel-level entry points, built with the tests, never installed ----

TESTING_BUILD = REPO / "build" / "testing"


def _build_testing() -> Path:
    """Builds _testing (and the static core it links) for this Python with CMake in build/testing/ and returns its
    path. The first build takes minutes (ccache helps); later ones find it up to date in seconds."""
    if shutil.which("cmake") is None:
        raise RuntimeError("building lazyllm_edge._testing (the kernel tests' hooks) needs cmake on PATH")
    commands = []
    if not (TESTING_BUILD / "CMakeCache.txt").is_file():
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        commands.append(["cmake", "-S", str(REPO), "-B", str(TESTING_BUILD), *generator, "-DCMAKE_BUILD_TYPE=Release",
                         "-DLAZYLLM_EDGE_TESTING=ON", "-DLAZYLLM_EDGE_CUDA=OFF", f"-DPython_EXECUTABLE={sys.executable}"])
    # CMAKE_BUILD_PARALLEL_LEVEL, when set, chooses the jobs
    jobs = [] if "CMAKE_BUILD_PARALLEL_LEVEL" in os.environ else ["--parallel", str(os.cpu_count() or 2)]
    commands.append(["cmake", "--build", str(TESTING_BUILD), "--target", "_testing", *jobs])
    for command in commands:
        r = subprocess.run(command, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"building lazyllm_edge._testing failed: {' '.join(command)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    built = sorted(TESTING_BUILD.glob("_testing*.so"))
    if not built:
        raise RuntimeError(f"the build left no _testing*.so in {TESTING_BUILD}")
    return built[0]


@functools.lru_cache(maxsize=None)
def load_testing_module():
    """lazyllm_edge._testing for the lazyllm_edge under test: the developer build's (next to its _core, with
    -DLAZYLLM_EDGE_TESTING=ON), else built into build/testing/ on first use and loaded from there."""
    from lazyllm_edge import _core

    try:
        module = importlib.import_module("lazyllm_edge._testing")
    except ImportError:
        spec = importlib.util.spec_from_file_location("lazyllm_edge._testing", _build_testing())
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["lazyllm_edge._testing"] = module
    if module.__version__ != _core.__version__:
        raise RuntimeError(f"lazyllm_edge._testing {module.__version__} ({module.__file__}) does not match _core "
                           f"{_core.__version__} ({_core.__file__})")
    return module


@pytest.fixture(scope="session")
def testing():
    """The test hooks' module (load_testing_module()), built the first time a test asks for it."""
    return load_testing_module()


# ---- the HTTP server (tests/test_server*.py) ----
def require_server_deps(*extra: str) -> None:
    """Skips, naming the install, without the server extra (and the `extra` modules); in CI they must be there."""
    missing = [m for m in ("starlette", "uvicorn", "sse_starlette", *extra) if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing in CI: {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}: pip install '.[test]'")


def start_server(model_path: Path, *args: str):
    """`python -m lazyllm_edge.server` on a free 127.0.0.1 port, started from the package under test; returns
    (process, base URL) once /health answers. Stop it with stop_server."""
    import socket
    import tempfile
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile(mode="w+")  # (a file, not a pipe: a server that writes much never blocks on it)
    proc = subprocess.Popen([sys.executable, "-m", "lazyllm_edge.server", "-m", str(model_path), "--port", str(port),
                             "--log-level", "warning", *args], cwd=package_home(),
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}: {stop_server(proc)[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    pytest.fail("the server did not answer /health within 120 s")


def stop_server(proc) -> str:
    """Ends the server; its output."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.seek(0)
    return proc.log.read()
