"""Shared fixtures: paths of the reference data and cached models, tiny generated models."""

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))  # make_tiny


def reference_root() -> Path:
    for c in (os.environ.get("LAZYLLM_EDGE_REFERENCE"), REPO / "shared" / "reference", REPO.parent / "shared" / "reference"):
        if c and Path(c).is_dir():
            return Path(c)
    pytest.fail("reference data not found (../shared/reference or $LAZYLLM_EDGE_REFERENCE)")


def cached_model(reference_name: str) -> Path:
    """Path of a reference model's GGUF in the model cache; skips (fails in CI for the default model) if absent."""
    from lazyllm_edge.models import cache_dir

    info = json.loads((reference_root() / reference_name / "model.json").read_text())
    path = cache_dir() / info["file"]
    if not path.is_file():
        if os.environ.get("CI") and reference_name == DEFAULT_REFERENCE:
            pytest.fail(f"default model missing in CI: {path}")
        pytest.skip(f"{info['file']} is not cached (python -m lazyllm_edge.models fetch)")
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
