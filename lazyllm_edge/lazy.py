"""LazyLLM configuration: a prune schedule of (layer, keep_fraction) stages plus decode pruning.

Resolved form, as the session takes it: (schedule, prune_decode, decode_schedule) with absolute layers; an
empty decode_schedule means decode steps use `schedule` (when prune_decode is on). ``LazyConfig`` is the native
class (bindings/lazy.cpp): the C++ core resolves and validates every form, relative depths included."""

from __future__ import annotations

from typing import Sequence, Tuple, Union

from . import _core
from ._core import LazyConfig

PRESETS = ("off", "balanced", "aggressive")

LazyLike = Union[None, str, LazyConfig, Sequence[Tuple[Union[int, float], float]]]


def resolve_lazy(lazy: LazyLike, n_layer: int):
    """Turns any accepted form into ([(layer, keep)], prune_decode, [(layer, keep)] decode stages). A string is
    a preset name or "layer:keep,...", optionally with "/DECODE" (the decode steps' stages, or "off"); a list
    holds (layer, keep) stages, a float layer being a relative depth as in the string form."""
    if lazy is None or lazy is False:
        return [], True, []
    if isinstance(lazy, str):
        return _core.parse_lazy_spec(lazy, n_layer)
    if isinstance(lazy, LazyConfig):
        return lazy.resolve(n_layer)
    if isinstance(lazy, (list, tuple)):
        return LazyConfig(schedule=lazy).resolve(n_layer)
    raise ValueError(f"lazy must be a preset name, a schedule string, a LazyConfig or a list of stages, not {type(lazy).__name__}")
