"""Window schedules: ``K`` free values, each shared over a contiguous window of steps.

The sibling of the families (:mod:`optuna_fmd.space._family`); import :class:`Schedule` from
:mod:`optuna_fmd.space`, which re-exports it beside the space (``_space``: the conversion
between params and schedules) and the trial params' names (``_names``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._checks import check_target, check_values, finite
from .._checks import windows as check_windows
from ._family import ParamSpec

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    """A schedule of ``windows`` values, each shared over a contiguous window of steps.

    Args:
        windows: Number of values K (windows). Step t of T uses value ``floor(t * K / T)``.
        low: Lower bound of every value.
        high: Upper bound of every value (``low < high``).
        log: Whether the values are searched on a log scale (then ``low > 0``).
        init: Initial value of every window (inside ``[low, high]``); defaults to the geometric
            (log) or arithmetic mean of the bounds.
        hyper: The optimiser hyperparameter this schedule sets; defaults to its name in the
            :class:`ScheduleSpace`. Set it for per-layer-group schedules.
        params: Restrict the schedule to the parameters whose names match these glob patterns
            (``fnmatch``, e.g. ``"blocks.1.*"``); ``None`` applies it to every parameter. A
            parameter matched by a group schedule takes the group's value instead of the
            ungrouped schedule of the same hyper (the last matching group wins).

    Example:
        >>> lr = Schedule(windows=10, low=1e-3, high=1.0, log=True, init=0.05)
        >>> lr.initial_values()[:2]
        [0.05, 0.05]
        >>> head = Schedule(windows=10, low=1e-3, high=1.0, log=True, hyper="lr", params="fc.*")
    """

    windows: int
    low: float
    high: float
    log: bool = False
    init: float | None = None
    hyper: str | None = None
    params: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_windows(self.windows)
        low = finite("low", self.low)
        high = finite("high", self.high)
        if not low < high:
            raise ValueError(
                f"`low` must be smaller than `high`, but got low={low} >= high={high}."
            )
        if self.log and low <= 0.0:
            raise ValueError(f"`low` must be positive when `log=True`, but got low={low}.")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "params", check_target(self.hyper, self.params))
        if self.init is None:
            default = math.sqrt(low * high) if self.log else 0.5 * (low + high)
            object.__setattr__(self, "init", default)
        else:
            init = finite("init", self.init)
            if not low <= init <= high:
                raise ValueError(
                    f"`init` must lie inside [low, high] = [{low}, {high}], but got init={init}."
                )
            object.__setattr__(self, "init", init)

    def initial_values(self) -> list[float]:
        """The schedule at its initial point: ``init`` in every window."""
        assert self.init is not None
        return [self.init] * self.windows

    def validate_values(self, name: str, values: Sequence[float]) -> list[float]:
        """Check a list of window values against this schedule; return them as floats."""
        out = check_values(name, values, self.windows)
        for k, v in enumerate(out):
            if not self.low <= v <= self.high:
                raise ValueError(
                    f"schedule `{name}` value {k} must lie inside [{self.low}, {self.high}], "
                    f"but got {v}."
                )
        return out

    # -- the entry protocol of ScheduleSpace: one trial param per window ---------------------
    def param_specs(self) -> list[ParamSpec]:
        assert self.init is not None
        return [(str(k), self.low, self.high, self.log, self.init) for k in range(self.windows)]

    def values_of(self, xs: Sequence[float]) -> list[float]:
        return [float(x) for x in xs]

    def pullback(self, xs: Sequence[float], window_hypergradient: Sequence[float]) -> list[float]:
        return [float(g) for g in window_hypergradient]
