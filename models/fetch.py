#!/usr/bin/env python3
"""Fetches registry models into the cache: `python models/fetch.py smollm2-135m` (same as
`python -m lazyllm_edge.models fetch ...`, usable before the package is installed)."""
import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("lazyllm_edge_models", Path(__file__).resolve().parent.parent / "lazyllm_edge" / "models.py")
models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(models)
sys.exit(models.main(["fetch", *sys.argv[1:]]))
