"""What a plain clone and an installed wheel carry: one version everywhere, the dev sets as package data, the
reference outputs in the repository, each registry model with its reference folder."""
import importlib.metadata
import json
import re
import subprocess
from pathlib import Path

import pytest

import lazyllm_edge
from conftest import REPO, reference_root, registry_name
from lazyllm_edge.cli import binary_path
from lazyllm_edge.eval import DEV_SETS, dev_set_path, load_tasks


def test_one_version_everywhere():
    declared = re.search(r'^version = "([0-9.]+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert lazyllm_edge.__version__ == declared
    assert importlib.metadata.version("lazyllm_edge") == declared
    r = subprocess.run([str(binary_path()), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == f"lazyllm-edge {declared}", (r.stdout, r.stderr)


def test_dev_sets_are_package_data():
    kinds = {}
    for name in DEV_SETS:
        path = dev_set_path(name)
        assert path.is_file(), path
        assert path.parents[2] == Path(lazyllm_edge.__file__).resolve().parent  # inside the installed package
        for task in load_tasks(path):
            kinds.setdefault(name, set()).add(task["kind"])
            assert task["user"] and task["approx_tokens"] > 0
    assert kinds == {"longctx-dev.jsonl": {"passkey", "fidelity"}, "ruler-dev.jsonl": {"passkey"}}


def test_reference_outputs_for_every_registry_model():
    from lazyllm_edge.models import registry

    folders = sorted(p.name for p in reference_root().iterdir() if p.is_dir())
    assert sorted(registry_name(f) for f in folders) == sorted(registry())
    for f in folders:
        for part in ("model.json", "prompts.json", "tokenizer.json", "logits.npz"):
            assert (reference_root() / f / part).is_file(), (f, part)
        assert json.loads((reference_root() / f / "prompts.json").read_text())


def test_test_hooks_are_not_installed():
    """The kernel-level test hooks (lazyllm_edge._testing) are built with the tests, never installed: an installed
    package has no such module (the developer build puts one next to its _core in the source tree)."""
    package = Path(lazyllm_edge.__file__).resolve().parent
    if package == REPO / "lazyllm_edge":
        pytest.skip("the source tree's package (developer build), not an installed one")
    assert not list(package.glob("_testing*")), list(package.glob("_testing*"))
