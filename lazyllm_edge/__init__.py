"""lazyllm_edge: small, fast LLM inference for edge machines, with LazyLLM dynamic token pruning.

    import lazyllm_edge
    gen = lazyllm_edge.Generator()            # the default model (fetch it first)
    for piece in gen.generate("The capital of France is", max_tokens=32):
        print(piece.text, end="", flush=True)
"""

import importlib

__all__ = ["Generator", "Piece", "Stream", "LazyConfig", "PRESETS", "NUMERICS", "ModelLoadError", "ContextFullError",
           "UnsupportedError", "StateFileError", "cuda_available", "__version__"]

# Names (the version too: pyproject.toml -> CMake -> _core) are resolved on first use, so `python -m lazyllm_edge.models fetch` works before (or without) the
# native extension, e.g. from a source checkout.
_HOME = {"__version__": "_core", "Generator": "generator", "Piece": "generator", "Stream": "generator", "LazyConfig": "lazy", "PRESETS": "lazy",
         "NUMERICS": "generator", "ModelLoadError": "_core", "ContextFullError": "_core", "UnsupportedError": "_core",
         "StateFileError": "_core", "cuda_available": "generator"}


def __getattr__(name):
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lazyllm_edge' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + __all__)
