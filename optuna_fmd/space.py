"""Search spaces without torch: each inner optimiser's default window space, and schedule
*families* (a schedule given by a few parameters) with the exact derivative of their window values.

A family's schedule is a function of the training fraction ``u`` in [0, 1); its K window values
are the function at the window midpoints ``(k + 0.5) / K`` (as :mod:`optuna_fmd.baselines`). An
episode's hypergradient with respect to the window values therefore gives the hypergradient with
respect to the family's parameters exactly, by the chain rule (:meth:`Family.chain`).

Example:
    >>> from optuna_fmd.space import Cosine, default_space
    >>> default_space("sgd", windows=2).initial_values()
    {'lr': [0.05, 0.05], 'momentum': [0.9, 0.9], 'weight_decay': [0.0005, 0.0005]}
    >>> cos = Cosine()
    >>> [round(v, 4) for v in cos.window_values({"peak": 0.1, "warmup": 0.0, "final": 0.0}, 4)]
    [0.0962, 0.0691, 0.0309, 0.0038]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import ScheduleSpace

__all__ = [
    "DEFAULT_BOUNDS",
    "Constant",
    "Cosine",
    "Custom",
    "Family",
    "FamilyParam",
    "Linear",
    "Refiner",
    "StepDecay",
    "default_space",
]

#: ``{optimizer: {hyper: (low, high, log, init)}}``. SGD: the usual 0.05 / 0.9 / 5e-4 start with
#: bounds that contain every setting that trains the small models here; Adam(W): PyTorch's
#: defaults (lr 1e-3, beta1 0.9) and AdamW's common decoupled weight decay of 0.01.
DEFAULT_BOUNDS: Mapping[str, Mapping[str, tuple[float, float, bool, float]]] = {
    "sgd": {
        "lr": (1e-3, 1.0, True, 0.05),
        "momentum": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 5e-4),
    },
    "adam": {
        "lr": (1e-5, 1e-1, True, 1e-3),
        "beta1": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 0.0),
    },
    "adamw": {
        "lr": (1e-5, 1e-1, True, 1e-3),
        "beta1": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 0.3, False, 1e-2),
    },
}


def default_space(
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    hypers: Sequence[str] | None = None,
    init: Mapping[str, float] | None = None,
) -> ScheduleSpace:
    """The default window space of ``optimizer``: every scheduled hyperparameter of
    :data:`DEFAULT_BOUNDS` with ``windows`` values.

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K per hyperparameter.
        hypers: Only these hyperparameters (default: all of the optimiser's).
        init: Starting values that replace the defaults, ``{hyper: value}``.
    """
    if optimizer not in DEFAULT_BOUNDS:
        raise ValueError(
            f"`optimizer` must be one of {list(DEFAULT_BOUNDS)}, but got {optimizer!r}."
        )
    bounds = DEFAULT_BOUNDS[optimizer]
    names = list(bounds) if hypers is None else list(hypers)
    unknown = [h for h in [*names, *(init or {})] if h not in bounds]
    if unknown or not names:
        raise ValueError(
            f"`hypers` must be a non-empty subset of {list(bounds)} for optimizer="
            f"{optimizer!r}, but got {unknown if unknown else names}."
        )
    from .engine import Schedule, ScheduleSpace  # torch only when a space is built

    starts = {h: bounds[h][3] for h in names} | dict(init or {})
    return ScheduleSpace(
        {
            h: Schedule(
                windows=windows,
                low=bounds[h][0],
                high=bounds[h][1],
                log=bounds[h][2],
                init=starts[h],
            )
            for h in names
        }
    )


# --------------------------------------------------------------------------------------------
# Schedule families
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyParam:
    """One parameter of a family: its bounds, scale and starting value (default: the middle,
    geometric on a log scale)."""

    low: float
    high: float
    log: bool = False
    init: float | None = None

    def start(self) -> float:
        if self.init is not None:
            return float(self.init)
        return math.sqrt(self.low * self.high) if self.log else 0.5 * (self.low + self.high)


def _midpoints(windows: int) -> list[float]:
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ValueError(f"`windows` must be a positive int, but got {windows!r}.")
    return [(k + 0.5) / windows for k in range(windows)]


class Family:
    """A schedule given by a few parameters (subclasses define :meth:`value` and
    :meth:`gradient` at a training fraction ``u``)."""

    params: Mapping[str, FamilyParam] = {}

    def value(self, u: float, p: Mapping[str, float]) -> float:
        raise NotImplementedError

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        """d value(u) / d parameter, for every parameter."""
        raise NotImplementedError

    def initial(self) -> dict[str, float]:
        """Every parameter at its start."""
        return {n: q.start() for n, q in self.params.items()}

    def check(self, p: Mapping[str, float]) -> dict[str, float]:
        """``p`` as floats, every parameter present, finite and inside its bounds."""
        out = {}
        for n, q in self.params.items():
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

    def window_values(self, p: Mapping[str, float], windows: int) -> list[float]:
        """The K window values: the schedule at the window midpoints."""
        q = self.check(p)
        return [self.value(u, q) for u in _midpoints(windows)]

    def jacobian(self, p: Mapping[str, float], windows: int) -> dict[str, list[float]]:
        """``{param: [d value_k / d param for each window k]}``."""
        q = self.check(p)
        grads = [self.gradient(u, q) for u in _midpoints(windows)]
        return {n: [g[n] for g in grads] for n in self.params}

    def chain(
        self, p: Mapping[str, float], window_hypergradient: Sequence[float]
    ) -> dict[str, float]:
        """The hypergradient with respect to the family's parameters from the one with respect
        to its window values (``dL/d value_k``, e.g. an episode's ``hypergradient[hyper]``)."""
        g = [float(x) for x in window_hypergradient]
        jac = self.jacobian(p, len(g))
        return {n: math.fsum(a * b for a, b in zip(col, g, strict=True)) for n, col in jac.items()}


class Constant(Family):
    """One value over the whole run."""

    def __init__(self, low: float = 1e-3, high: float = 1.0, *, log: bool = True) -> None:
        self.params = {"value": FamilyParam(low, high, log)}

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
    """

    def __init__(self, low: float = 1e-3, high: float = 1.0, *, max_warmup: float = 0.5) -> None:
        if not 0 < max_warmup < 1:
            raise ValueError(f"`max_warmup` must lie in (0, 1), but got {max_warmup!r}.")
        self.params = {
            "peak": FamilyParam(low, high, log=True),
            "warmup": FamilyParam(0.0, max_warmup, init=0.0),
            "final": FamilyParam(0.0, 1.0, init=0.0),
        }

    def value(self, u: float, p: Mapping[str, float]) -> float:
        peak, w, f = p["peak"], p["warmup"], p["final"]
        if u < w:
            return peak * u / w
        c = 0.5 * (1.0 + math.cos(math.pi * (u - w) / (1.0 - w)))
        return peak * (f + (1.0 - f) * c)

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

    def __init__(self, low: float = 1e-3, high: float = 1.0, *, max_final: float = 1.0) -> None:
        self.params = {
            "start": FamilyParam(low, high, log=True),
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
    ) -> None:
        ms = [float(m) for m in milestones]
        if any(not 0 < m < 1 for m in ms) or ms != sorted(set(ms)):
            raise ValueError(
                f"`milestones` must be increasing fractions in (0, 1), but got {milestones!r}."
            )
        self.milestones = ms
        self.params = {
            "value": FamilyParam(low, high, log=True),
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
        params: Its parameters.
        grad: ``grad(u, **params) -> {param: derivative}``; without it, derivatives are central
            differences of ``fn`` (step ``1e-6`` relative): the chain rule stays exact through the
            episode and approximates only this closed-form map.
    """

    def __init__(
        self,
        fn: Callable[..., float],
        params: Mapping[str, FamilyParam],
        grad: Callable[..., Mapping[str, float]] | None = None,
    ) -> None:
        if not callable(fn) or (grad is not None and not callable(grad)):
            raise TypeError(f"`fn` and `grad` must be callables, but got {fn!r} and {grad!r}.")
        if not params:
            raise ValueError("`params` must name at least one parameter.")
        self.fn, self.grad, self.params = fn, grad, dict(params)

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return float(self.fn(u, **p))

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        if self.grad is not None:
            g = self.grad(u, **p)
            return {n: float(g[n]) for n in self.params}
        out = {}
        for n in self.params:
            h = 1e-6 * max(1.0, abs(p[n]))
            hi, lo = dict(p), dict(p)
            hi[n] += h
            lo[n] -= h
            out[n] = (self.value(u, hi) - self.value(u, lo)) / (2 * h)
        return out


class Refiner(Family):
    """A family times a windowed correction: value_k = base(u_k) * exp(delta_k).

    The base sets the shape and scale (few parameters, found first); the ``windows`` corrections
    ``delta_0`` ... (in [-``span``, ``span``], starting at 0) let gradient steps bend it window by
    window.
    """

    def __init__(self, base: Family, windows: int, *, span: float = 2.0) -> None:
        _midpoints(windows)
        if any(n.startswith("delta_") for n in base.params):
            raise ValueError("the base family's parameters must not be named `delta_<k>`.")
        self.base, self.windows = base, windows
        self.params = {
            **base.params,
            **{f"delta_{k}": FamilyParam(-span, span, init=0.0) for k in range(windows)},
        }

    def _k(self, u: float) -> int:
        return min(self.windows - 1, int(u * self.windows))

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return self.base.value(u, p) * math.exp(p[f"delta_{self._k(u)}"])

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        k, scale = self._k(u), math.exp(p[f"delta_{self._k(u)}"])
        out = {n: g * scale for n, g in self.base.gradient(u, p).items()}
        out.update({f"delta_{j}": 0.0 for j in range(self.windows)})
        out[f"delta_{k}"] = self.value(u, p)
        return out

    def window_values(self, p: Mapping[str, float], windows: int) -> list[float]:
        if windows != self.windows:
            raise ValueError(f"this refiner has {self.windows} windows, but got {windows}.")
        return super().window_values(p, windows)
