"""LazyLLM configuration: a prune schedule of (layer, keep_fraction) stages plus decode pruning.

Resolved form, as the session takes it: (schedule, prune_decode, decode_schedule) with absolute layers; an
empty decode_schedule means decode steps use `schedule` (when prune_decode is on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

from . import _core

PRESETS = ("off", "balanced", "aggressive")


@dataclass(frozen=True)
class LazyConfig:
    """A prune schedule.

    ``schedule``: (layer, keep_fraction) stages, layers strictly increasing; after computing ``layer`` the
    ``keep_fraction`` most attended tokens of the active set stay active. A float layer in [0, 1) is a
    relative depth (``0.3`` = 30 % of the model's layers). ``prune_decode``: prune in decode steps too.
    ``decode_schedule``: the stages of decode (one-token) steps when they differ from the prefill's; empty:
    decode steps use ``schedule``.
    """

    schedule: Tuple[Tuple[Union[int, float], float], ...] = field(default_factory=tuple)
    prune_decode: Optional[bool] = None  # None: the preset's choice, True for an explicit schedule
    preset_name: Optional[str] = None  # set by LazyConfig.preset(); the schedule then comes from the model depth
    decode_schedule: Tuple[Tuple[Union[int, float], float], ...] = field(default_factory=tuple)

    @staticmethod
    def preset(name: str, prune_decode: Optional[bool] = None) -> "LazyConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown lazy preset '{name}' (expected one of {', '.join(PRESETS)})")
        return LazyConfig(prune_decode=prune_decode, preset_name=name)

    def resolve(self, n_layer: int):
        """([(layer, keep)], prune_decode, [(layer, keep)] decode stages) for a model with n_layer layers
        (validated: raises ValueError)."""
        if self.preset_name is not None:
            schedule, decode, decode_schedule = _core.lazy_preset(self.preset_name, n_layer)
            if self.decode_schedule:
                decode_schedule = _absolute(self.decode_schedule, n_layer)
        else:
            schedule, decode, decode_schedule = _absolute(self.schedule, n_layer), True, _absolute(self.decode_schedule, n_layer)
        _core.validate_lazy(schedule, n_layer, decode_schedule)
        return schedule, decode if self.prune_decode is None else self.prune_decode, decode_schedule


def _absolute(stages, n_layer: int):
    """Stages with relative depths turned into layers (the C++ core validates the rest)."""
    out = []
    for stage in stages:
        if not isinstance(stage, (tuple, list)) or len(stage) != 2:
            raise ValueError(f"schedule stage {stage!r} is not a (layer, keep_fraction) pair")
        layer, keep = stage
        if isinstance(layer, bool) or not isinstance(layer, (int, float)):
            raise ValueError(f"layer {layer!r} is not a number")
        if isinstance(layer, float):
            if not 0.0 <= layer < 1.0:
                raise ValueError(f"relative depth {layer} must be in [0, 1)")
            layer = min(max(int(round(layer * n_layer)), 0), n_layer - 2)
        out.append((int(layer), float(keep)))
    return out


LazyLike = Union[None, str, LazyConfig, Sequence[Tuple[Union[int, float], float]]]


def resolve_lazy(lazy: LazyLike, n_layer: int):
    """Turns any accepted form into ([(layer, keep)], prune_decode, [(layer, keep)] decode stages). A string is
    a preset name or "layer:keep,...", optionally with "/DECODE" (the decode steps' stages, or "off")."""
    if lazy is None or lazy is False:
        return [], True, []
    if isinstance(lazy, str):
        schedule, decode, decode_schedule = _core.parse_lazy_spec(lazy, n_layer)
        return list(schedule), decode, list(decode_schedule)
    if isinstance(lazy, LazyConfig):
        return lazy.resolve(n_layer)
    if isinstance(lazy, (list, tuple)):
        return LazyConfig(schedule=tuple(tuple(s) if isinstance(s, (list, tuple)) else s for s in lazy)).resolve(n_layer)
    raise ValueError(f"lazy must be a preset name, a schedule string, a LazyConfig or a list of stages, not {type(lazy).__name__}")
