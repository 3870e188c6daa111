"""What every schedule family is: :class:`Family`, a schedule given by a few parameters
(:class:`FamilyParam`), evaluated at the window midpoints (:func:`midpoints`), with its
Jacobian, the chain rule from window hypergradients to parameter hypergradients, and the entry
protocol of :class:`~optuna_fmd.space.ScheduleSpace` (:data:`ParamSpec`, one trial param per
family parameter, ``<name>_<param>`` such as ``lr_peak``).

The families themselves are the base's subclasses: the closed-form ones in ``_families``, the
windowed :class:`~optuna_fmd.space.Refiner` in ``_refiner``, the loss side's in
``_loss_families``. Import these names from :mod:`optuna_fmd.space`, which re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._checks import check_target, check_values, finite
from .._checks import windows as check_windows

__all__ = ["Family", "FamilyParam", "ParamSpec", "midpoints"]

#: One trial parameter of a space entry: ``(suffix, low, high, log, init)``.
ParamSpec = tuple[str, float, float, bool, float]


def midpoints(windows: int) -> list[float]:
    """Training fraction at the middle of each of ``windows`` windows: ``(k + 0.5) / K``."""
    k = check_windows(windows)
    return [(i + 0.5) / k for i in range(k)]


@dataclass(frozen=True)
class FamilyParam:
    """One parameter of a family: its bounds, scale and starting value (default: the middle,
    geometric on a log scale)."""

    low: float
    high: float
    log: bool = False
    init: float | None = None

    def __post_init__(self) -> None:
        low, high = finite("low", self.low), finite("high", self.high)
        if not low < high or (self.log and low <= 0):
            raise ValueError(
                f"a family parameter needs low < high (and low > 0 on a log scale), but got "
                f"low={low}, high={high}, log={self.log}."
            )
        if self.init is not None and not low <= finite("init", self.init) <= high:
            raise ValueError(f"`init` must lie inside [{low}, {high}], but got {self.init!r}.")

    def start(self) -> float:
        if self.init is not None:
            return float(self.init)
        return math.sqrt(self.low * self.high) if self.log else 0.5 * (self.low + self.high)


class Family:
    """A schedule given by a few parameters (subclasses set :attr:`parameters` and define
    :meth:`value` and :meth:`gradient` at a training fraction ``u``); its ``windows`` values
    are the function at the window midpoints.

    ``hyper`` and ``params`` restrict it to a layer group, as for :class:`Schedule`.
    """

    parameters: Mapping[str, FamilyParam] = {}

    def __init__(
        self,
        *,
        windows: int,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        self.windows = check_windows(windows)
        self.hyper = hyper
        self.params = check_target(hyper, params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(windows={self.windows}, parameters={dict(self.parameters)})"

    def value(self, u: float, p: Mapping[str, float]) -> float:
        raise NotImplementedError

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        """d value(u) / d parameter, for every parameter."""
        raise NotImplementedError

    def initial(self) -> dict[str, float]:
        """Every parameter at its start."""
        return {n: q.start() for n, q in self.parameters.items()}

    def initial_values(self) -> list[float]:
        """The window values at the start."""
        return self.window_values(self.initial())

    def check(self, p: Mapping[str, float]) -> dict[str, float]:
        """``p`` as floats, every parameter present, finite and inside its bounds."""
        out = {}
        for n, q in self.parameters.items():
            if n not in p:
                raise ValueError(
                    f"{type(self).__name__} needs parameter `{n}`, but got {dict(p)}."
                )
            v = float(p[n])
            if not (math.isfinite(v) and q.low <= v <= q.high):
                raise ValueError(
                    f"{type(self).__name__} parameter `{n}` must lie inside [{q.low}, {q.high}], "
                    f"but got {p[n]!r}."
                )
            out[n] = v
        return out

    def window_values(self, p: Mapping[str, float]) -> list[float]:
        """The K window values: the schedule at the window midpoints."""
        q = self.check(p)
        return [self.value(u, q) for u in midpoints(self.windows)]

    def jacobian(self, p: Mapping[str, float]) -> dict[str, list[float]]:
        """``{param: [d value_k / d param for each window k]}``."""
        q = self.check(p)
        grads = [self.gradient(u, q) for u in midpoints(self.windows)]
        return {n: [g[n] for g in grads] for n in self.parameters}

    def chain(
        self, p: Mapping[str, float], window_hypergradient: Sequence[float]
    ) -> dict[str, float]:
        """The hypergradient with respect to the family's parameters from the one with respect
        to its window values (``dL/d value_k``, e.g. an episode's ``hypergradient[hyper]``)."""
        g = [float(x) for x in window_hypergradient]
        if len(g) != self.windows:
            raise ValueError(
                f"the window hypergradient must have {self.windows} values, but got {len(g)}."
            )
        jac = self.jacobian(p)
        return {n: math.fsum(a * b for a, b in zip(col, g, strict=True)) for n, col in jac.items()}

    def validate_values(self, name: str, values: Sequence[float]) -> list[float]:
        """Check a list of window values (finite, one per window); return them as floats."""
        return check_values(name, values, self.windows)

    # -- the entry protocol of ScheduleSpace: one trial param per family parameter -----------
    def param_specs(self) -> list[ParamSpec]:
        return [(n, q.low, q.high, q.log, q.start()) for n, q in self.parameters.items()]

    def values_of(self, xs: Sequence[float]) -> list[float]:
        return self.window_values(dict(zip(self.parameters, xs, strict=True)))

    def pullback(self, xs: Sequence[float], window_hypergradient: Sequence[float]) -> list[float]:
        g = self.chain(dict(zip(self.parameters, xs, strict=True)), window_hypergradient)
        return [g[n] for n in self.parameters]
