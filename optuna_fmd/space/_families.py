"""The closed-form schedule families: :class:`Constant`, :class:`Cosine`, :class:`Linear`,
:class:`StepDecay` and a user's own :class:`Custom`, each a :class:`~optuna_fmd.space.Family`
of a few parameters with its value and exact gradient at a training fraction.

The cosine's maths is :func:`cosine_value`, which :func:`optuna_fmd.baselines.cosine` uses too.
Import these names from :mod:`optuna_fmd.space`, which re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from ._family import Family, FamilyParam

__all__ = ["Constant", "Cosine", "Custom", "Linear", "StepDecay", "cosine_value"]


def cosine_value(u: float, peak: float, warmup: float, final: float) -> float:
    """The cosine schedule with linear warm-up at training fraction ``u``.

    A linear warm-up from 0 to ``peak`` over the fraction ``warmup`` of the run, then a half
    cosine from ``peak`` down to ``final * peak``: ``final`` is a *fraction* of the peak (as
    :class:`Cosine`'s parameter). For an absolute end value ``end`` (as
    :func:`optuna_fmd.baselines.cosine`'s ``final``) pass ``final = end / peak``.

    Args:
        u: Training fraction in [0, 1].
        peak: The value at the end of the warm-up.
        warmup: Warm-up fraction in [0, 1).
        final: The end value as a fraction of ``peak``.

    Returns:
        ``peak * u / warmup`` while ``u < warmup``, else
        ``peak * (final + (1 - final) * (1 + cos(pi * (u - warmup) / (1 - warmup))) / 2)``.

    Example:
        >>> round(cosine_value(0.5, 0.1, 0.0, 0.0), 4)
        0.05
    """
    if u < warmup:
        return peak * u / warmup
    c = 0.5 * (1.0 + math.cos(math.pi * (u - warmup) / (1.0 - warmup)))
    return peak * (final + (1.0 - final) * c)


class Constant(Family):
    """One value over the whole run (one window by default).

    Args:
        low, high, log: Bounds and scale of ``value``.
        init: Its start (default: the middle of the bounds).
    """

    def __init__(
        self,
        low: float = 1e-3,
        high: float = 1.0,
        *,
        log: bool = True,
        init: float | None = None,
        windows: int = 1,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        self.parameters = {"value": FamilyParam(low, high, log, init)}

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return p["value"]

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        return {"value": 1.0}


class Cosine(Family):
    """Linear warm-up from 0 to ``peak`` over the fraction ``warmup`` of the run, then a cosine
    from ``peak`` down to ``final * peak`` (``final`` in [0, 1]).

    Args:
        low, high: Bounds of ``peak`` (log scale).
        max_warmup: Upper bound of ``warmup``.
        init: Start of ``peak`` (default: the geometric middle of the bounds); ``warmup`` and
            ``final`` start at 0.
        windows: Windows K.
    """

    def __init__(
        self,
        low: float = 1e-3,
        high: float = 1.0,
        *,
        max_warmup: float = 0.5,
        init: float | None = None,
        windows: int = 10,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        if not 0 < max_warmup < 1:
            raise ValueError(f"`max_warmup` must lie in (0, 1), but got {max_warmup!r}.")
        self.parameters = {
            "peak": FamilyParam(low, high, log=True, init=init),
            "warmup": FamilyParam(0.0, max_warmup, init=0.0),
            "final": FamilyParam(0.0, 1.0, init=0.0),
        }

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return cosine_value(u, p["peak"], p["warmup"], p["final"])

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        peak, w, f = p["peak"], p["warmup"], p["final"]
        if u < w:
            return {"peak": u / w, "warmup": -peak * u / (w * w), "final": 0.0}
        z = (u - w) / (1.0 - w)
        c = 0.5 * (1.0 + math.cos(math.pi * z))
        dc_dw = -0.5 * math.pi * math.sin(math.pi * z) * (u - 1.0) / (1.0 - w) ** 2
        return {
            "peak": f + (1.0 - f) * c,
            "warmup": peak * (1.0 - f) * dc_dw,
            "final": peak * (1.0 - c),
        }


class Linear(Family):
    """A straight line from ``start`` down (or up) to ``final * start`` at the end of the run."""

    def __init__(
        self,
        low: float = 1e-3,
        high: float = 1.0,
        *,
        max_final: float = 1.0,
        init: float | None = None,
        windows: int = 10,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        self.parameters = {
            "start": FamilyParam(low, high, log=True, init=init),
            "final": FamilyParam(0.0, max_final, init=0.0),
        }

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return p["start"] * (1.0 - (1.0 - p["final"]) * u)

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        return {"start": 1.0 - (1.0 - p["final"]) * u, "final": p["start"] * u}


class StepDecay(Family):
    """``value``, multiplied by ``gamma`` at each milestone (fixed training fractions)."""

    def __init__(
        self,
        low: float = 1e-3,
        high: float = 1.0,
        *,
        milestones: Sequence[float] = (0.5, 0.75),
        init: float | None = None,
        windows: int = 10,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        ms = [float(m) for m in milestones]
        if any(not 0 < m < 1 for m in ms) or ms != sorted(set(ms)):
            raise ValueError(
                f"`milestones` must be increasing fractions in (0, 1), but got {milestones!r}."
            )
        self.milestones = ms
        self.parameters = {
            "value": FamilyParam(low, high, log=True, init=init),
            "gamma": FamilyParam(1e-3, 1.0, log=True, init=0.1),
        }

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return p["value"] * p["gamma"] ** sum(m <= u for m in self.milestones)

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        n = sum(m <= u for m in self.milestones)
        g = p["gamma"]
        return {"value": g**n, "gamma": p["value"] * n * g ** (n - 1) if n else 0.0}


class Custom(Family):
    """A user's own ``fn(u, **params)``.

    Args:
        fn: The schedule at training fraction ``u``.
        parameters: Its parameters.
        grad: ``grad(u, **params) -> {param: derivative}``; without it, derivatives are central
            differences of ``fn`` (step ``1e-6`` relative): the chain rule stays exact through the
            episode and approximates only this closed-form map.
        windows: Windows K.
    """

    def __init__(
        self,
        fn: Callable[..., float],
        parameters: Mapping[str, FamilyParam],
        grad: Callable[..., Mapping[str, float]] | None = None,
        *,
        windows: int = 10,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        if not callable(fn) or (grad is not None and not callable(grad)):
            raise TypeError(f"`fn` and `grad` must be callables, but got {fn!r} and {grad!r}.")
        if not parameters or not all(isinstance(q, FamilyParam) for q in parameters.values()):
            raise ValueError(
                f"`parameters` must map names to FamilyParam, but got {parameters!r}."
            )
        self.fn, self.grad, self.parameters = fn, grad, dict(parameters)

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return float(self.fn(u, **p))

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        if self.grad is not None:
            g = self.grad(u, **p)
            return {n: float(g[n]) for n in self.parameters}
        out = {}
        for n in self.parameters:
            h = 1e-6 * max(1.0, abs(p[n]))
            hi, lo = dict(p), dict(p)
            hi[n] += h
            lo[n] -= h
            out[n] = (self.value(u, hi) - self.value(u, lo)) / (2 * h)
        return out
