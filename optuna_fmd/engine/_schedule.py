"""Shared hyperparameter schedules: K values per hyperparameter, each held over a window of steps.

Step ``t`` (0-based) of a ``T``-step run uses window ``floor(t * K / T)`` of a ``K``-window
schedule (Micaelli & Storkey, NeurIPS 2021, "hyperparameter sharing").
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Schedule", "ScheduleSpace", "window_index", "window_start"]


def window_index(step: int, steps: int, windows: int) -> int:
    """The window used at 0-based ``step`` of a ``steps``-long run of ``windows`` windows."""
    return (step * windows) // steps


def window_start(window: int, steps: int, windows: int) -> int:
    """The first step that uses ``window``: the smallest t with floor(t * K / T) == window."""
    return -((-window * steps) // windows)  # ceil(window * steps / windows)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a real number, but got {value!r}.")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be finite, but got {value!r}.")
    return out


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
        if isinstance(self.windows, bool) or not isinstance(self.windows, int):
            raise TypeError(f"`windows` must be an int, but got {self.windows!r}.")
        if self.windows < 1:
            raise ValueError(f"`windows` must be at least 1, but got {self.windows}.")
        low = _finite("low", self.low)
        high = _finite("high", self.high)
        if not low < high:
            raise ValueError(
                f"`low` must be smaller than `high`, but got low={low} >= high={high}."
            )
        if self.log and low <= 0.0:
            raise ValueError(f"`low` must be positive when `log=True`, but got low={low}.")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if self.hyper is not None and (not isinstance(self.hyper, str) or not self.hyper):
            raise ValueError(f"`hyper` must be a hyperparameter name, but got {self.hyper!r}.")
        if self.params is not None:
            patterns = (self.params,) if isinstance(self.params, str) else tuple(self.params)
            if not patterns or not all(isinstance(p, str) and p for p in patterns):
                raise ValueError(
                    "`params` must be a glob pattern or a sequence of them, "
                    f"but got {self.params!r}."
                )
            object.__setattr__(self, "params", patterns)
        if self.init is None:
            default = math.sqrt(low * high) if self.log else 0.5 * (low + high)
            object.__setattr__(self, "init", default)
        else:
            init = _finite("init", self.init)
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
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"schedule `{name}` must be a sequence of floats, but got {values!r}.")
        if len(values) != self.windows:
            raise ValueError(
                f"schedule `{name}` must have {self.windows} values (one per window), "
                f"but got {len(values)}."
            )
        out = [_finite(f"{name}[{k}]", v) for k, v in enumerate(values)]
        for k, v in enumerate(out):
            if not self.low <= v <= self.high:
                raise ValueError(
                    f"schedule `{name}` value {k} must lie inside [{self.low}, {self.high}], "
                    f"but got {v}."
                )
        return out


class ScheduleSpace(Mapping[str, Schedule]):
    """A named set of :class:`Schedule` s: the search space of an optuna-fmd study.

    Trial parameters are named ``<hyper>_<k>`` (``lr_0`` ... ``lr_9``), one per window.

    Example:
        >>> space = ScheduleSpace({"lr": Schedule(windows=3, low=1e-3, high=1.0, log=True)})
        >>> space.param_names()
        ['lr_0', 'lr_1', 'lr_2']
    """

    def __init__(self, schedules: Mapping[str, Schedule]) -> None:
        if not isinstance(schedules, Mapping):
            raise TypeError(
                f"`schedules` must be a mapping of name -> Schedule, but got {schedules!r}."
            )
        if not schedules:
            raise ValueError("`schedules` must name at least one hyperparameter, but got {}.")
        for name, schedule in schedules.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"schedule names must be Python identifiers, but got {name!r}.")
            if not isinstance(schedule, Schedule):
                raise TypeError(
                    f"schedule `{name}` must be a Schedule, but got {type(schedule).__name__}."
                )
        self._schedules = dict(schedules)

    def __getitem__(self, name: str) -> Schedule:
        return self._schedules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schedules)

    def __len__(self) -> int:
        return len(self._schedules)

    def __repr__(self) -> str:
        return f"ScheduleSpace({self._schedules!r})"

    @property
    def n_params(self) -> int:
        """Total number of window values N = sum of K over schedules."""
        return sum(s.windows for s in self._schedules.values())

    def groups(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Per-layer-group entries: ``{name: (hyper, parameter patterns)}``."""
        out = {}
        for name, s in self._schedules.items():
            if s.params is not None or (s.hyper is not None and s.hyper != name):
                patterns = s.params if isinstance(s.params, tuple) else ("*",)
                out[name] = (s.hyper or name, patterns)
        return out

    def hypers(self) -> dict[str, str]:
        """The optimiser hyperparameter each entry sets: ``{name: hyper}``."""
        return {name: s.hyper or name for name, s in self._schedules.items()}

    def param_names(self) -> list[str]:
        """Trial parameter names ``<hyper>_<k>`` in schedule order."""
        return [f"{name}_{k}" for name, s in self._schedules.items() for k in range(s.windows)]

    def initial_values(self) -> dict[str, list[float]]:
        """Every schedule at its ``init``."""
        return {name: s.initial_values() for name, s in self._schedules.items()}

    def validate(self, schedules: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
        """Check that ``schedules`` has exactly this space's names and valid values."""
        unknown = sorted(set(schedules) - set(self._schedules))
        missing = sorted(set(self._schedules) - set(schedules))
        if unknown or missing:
            raise ValueError(
                f"schedules must name exactly {sorted(self._schedules)}, but got "
                f"{sorted(schedules)} (unknown: {unknown}, missing: {missing})."
            )
        return {n: self._schedules[n].validate_values(n, schedules[n]) for n in self._schedules}

    def to_params(self, schedules: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Flatten schedules to trial parameters ``{"lr_0": ..., ...}``."""
        checked = self.validate(schedules)
        return {f"{n}_{k}": v for n, vals in checked.items() for k, v in enumerate(vals)}

    def from_params(self, params: Mapping[str, float]) -> dict[str, list[float]]:
        """Gather trial parameters ``{"lr_0": ..., ...}`` back into schedules."""
        missing = [p for p in self.param_names() if p not in params]
        if missing:
            raise ValueError(f"trial parameters lack {missing}; got {sorted(params)}.")
        return {
            n: [float(params[f"{n}_{k}"]) for k in range(s.windows)]
            for n, s in self._schedules.items()
        }
