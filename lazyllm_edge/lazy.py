"""LazyLLM configuration: a prune schedule of (layer, keep_fraction) stages plus decode pruning.

``LazyConfig`` (what a user writes: a preset or stages, relative depths allowed) and ``LazySchedule`` (the
resolved form a session takes: absolute layers, decode stages, revival budget, importance signal, query window;
``str()`` gives its spec) are native classes (bindings/lazy.cpp): the C++ core resolves and validates every form."""

from __future__ import annotations

from typing import Sequence, Tuple, Union

from . import _core
from ._core import LazyConfig, LazySchedule

PRESETS = ("off", "balanced", "aggressive")

LazyLike = Union[None, str, LazyConfig, LazySchedule, Sequence[Tuple[Union[int, float], float]]]


def resolve_lazy(lazy: LazyLike, n_layer: int, stage_layers: Sequence[int] = ()) -> LazySchedule:
    """Turns any accepted form into the LazySchedule a session takes (absolute layers, validated by the core). A
    string is a preset name or "layer:keep,...", optionally with "/DECODE" (the decode steps' stages and revival
    budget, or "off"); a list holds (layer, keep) stages, a float layer being a relative depth as in the string.
    stage_layers (the model's info["stage_layers"]; empty: any layer) marks the layers where a stage ranks every
    token: a preset's and relative stages go to the nearest of them (a sliding-window layer ranks only its window)."""
    stage_layers = list(stage_layers)
    if lazy is None or lazy is False:
        return _core.parse_lazy_spec("off", n_layer)
    if isinstance(lazy, str):
        return _core.parse_lazy_spec(lazy, n_layer, stage_layers)
    if isinstance(lazy, LazyConfig):
        return lazy.resolve(n_layer, stage_layers)
    if isinstance(lazy, LazySchedule):
        return lazy
    if isinstance(lazy, (list, tuple)):
        return LazyConfig(schedule=lazy).resolve(n_layer, stage_layers)
    raise ValueError(f"lazy must be a preset name, a schedule string, a LazyConfig or a list of stages, not {type(lazy).__name__}")
