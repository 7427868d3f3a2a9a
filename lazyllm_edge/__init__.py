"""lazyllm_edge: small, fast LLM inference for edge machines, with LazyLLM dynamic token pruning.

    import lazyllm_edge
    gen = lazyllm_edge.Generator()            # the default model (fetch it first)
    for piece in gen.generate("The capital of France is", max_tokens=32):
        print(piece.text, end="", flush=True)
"""

from ._core import ContextFullError, ModelLoadError, UnsupportedError
from .generator import Generator, Piece
from .lazy import LazyConfig, PRESETS

__all__ = ["Generator", "Piece", "LazyConfig", "PRESETS", "ModelLoadError", "ContextFullError", "UnsupportedError"]
__version__ = "0.1.0"
