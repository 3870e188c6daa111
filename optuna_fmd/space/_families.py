"""Schedule families: a schedule given by a few parameters, evaluated at the window midpoints.

A :class:`Family` is an entry of a :class:`~optuna_fmd.space.ScheduleSpace` next to window
:class:`~optuna_fmd.space.Schedule` s; its trial params are ``<name>_<param>`` (``lr_peak``).
Import these names from :mod:`optuna_fmd.space`, which re-exports them. The cosine's maths is
:func:`cosine_value`, which :func:`optuna_fmd.baselines.cosine` uses too. The loss side's
families are here too: the class-weight shapes (:func:`inverse_frequency_weights`,
:func:`effective_number_weights`) and the deferred re-weighting :class:`DeferredStep`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .._checks import check_target, check_values, finite
from .._checks import windows as check_windows

__all__ = [
    "CLASS_WEIGHT_BOUNDS",
    "DELTA",
    "LABEL_SMOOTHING_BOUNDS",
    "SHAPES",
    "Constant",
    "Cosine",
    "Custom",
    "DeferredStep",
    "Family",
    "FamilyParam",
    "Linear",
    "ParamSpec",
    "Refiner",
    "StepDecay",
    "cosine_value",
    "effective_number_weights",
    "inverse_frequency_weights",
    "loss_families",
    "midpoints",
]

#: One trial parameter of a space entry: ``(suffix, low, high, log, init)``.
ParamSpec = tuple[str, float, float, bool, float]


def midpoints(windows: int) -> list[float]:
    """Training fraction at the middle of each of ``windows`` windows: ``(k + 0.5) / K``."""
    k = check_windows(windows)
    return [(i + 0.5) / k for i in range(k)]


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


#: Prefix of a refiner's per-window corrections (``delta_0`` ...).
DELTA = "delta_"


class Refiner(Family):
    """A family times a windowed correction: value_k = base(u_k) * exp(delta_k).

    The base sets the shape and scale (few parameters, found first); the ``windows`` corrections
    ``delta_0`` ... (in [-``span``, ``span``], starting at 0) let gradient steps bend it window by
    window. The refiner has ``windows`` windows whatever the base's.
    """

    def __init__(self, base: Family, windows: int, *, span: float = 2.0) -> None:
        super().__init__(windows=windows, hyper=base.hyper, params=base.params)
        if any(n.startswith(DELTA) for n in base.parameters):
            raise ValueError(f"the base family's parameters must not be named `{DELTA}<k>`.")
        self.base = base
        self.parameters = {
            **base.parameters,
            **{f"{DELTA}{k}": FamilyParam(-span, span, init=0.0) for k in range(windows)},
        }

    def _k(self, u: float) -> int:
        return min(self.windows - 1, int(u * self.windows))

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return self.base.value(u, p) * math.exp(p[f"{DELTA}{self._k(u)}"])

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        k, scale = self._k(u), math.exp(p[f"{DELTA}{self._k(u)}"])
        out = {n: g * scale for n, g in self.base.gradient(u, p).items()}
        out.update({f"{DELTA}{j}": 0.0 for j in range(self.windows)})
        out[f"{DELTA}{k}"] = self.value(u, p)
        return out


# -- the loss side: class weights and label smoothing ------------------------------------------
#: Class weights ``(low, high, log, init)``, as :data:`~optuna_fmd.space.DEFAULT_BOUNDS`: from a
#: twentieth to twenty times a class's share, on a log scale, starting unweighted.
CLASS_WEIGHT_BOUNDS: tuple[float, float, bool, float] = (0.05, 20.0, True, 1.0)
#: Label smoothing ``(low, high, log, init)``: epsilon from none (the start) to 0.3.
LABEL_SMOOTHING_BOUNDS: tuple[float, float, bool, float] = (0.0, 0.3, False, 0.0)


def _counts(counts: Iterable[object]) -> list[float]:
    """``counts`` as floats: finite positive numbers (ints, numpy or 0-d torch scalars), >= 1."""
    if isinstance(counts, (str, bytes, Mapping)) or not isinstance(counts, Iterable):
        raise ValueError(f"`counts` must be a sequence of class counts, but got {counts!r}.")
    out = []
    for c, n in enumerate(counts):
        v = math.nan if isinstance(n, (bool, str, bytes)) else float(n)  # type: ignore[arg-type]
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"`counts[{c}]` must be a positive number, but got {n!r}.")
        out.append(v)
    if not out:
        raise ValueError("`counts` must name at least one class, but got none.")
    return out


def _mean_one(raw: Sequence[float]) -> list[float]:
    return [len(raw) * r / math.fsum(raw) for r in raw]


def inverse_frequency_weights(counts: Iterable[float]) -> list[float]:
    """Class weights proportional to ``1 / n_c``, averaging 1 over the ``C`` classes:
    ``w_c = C * (1 / n_c) / sum_j (1 / n_j)``.

    Args:
        counts: ``n_c``, the training examples of class ``c`` (positive), in class order.

    Example:
        >>> [round(w, 4) for w in inverse_frequency_weights([1, 2, 4])]
        [1.7143, 0.8571, 0.4286]
    """
    return _mean_one([1.0 / n for n in _counts(counts)])


def effective_number_weights(counts: Iterable[float], beta: float = 0.9999) -> list[float]:
    """Class weights proportional to the inverse *effective number* of examples,
    ``(1 - beta) / (1 - beta ** n_c)``, averaging 1 over the classes (Cui et al., "Class-Balanced
    Loss Based on Effective Number of Samples", CVPR 2019).

    ``beta = 0`` weighs every class 1; as ``beta`` tends to 1 the weights tend to
    :func:`inverse_frequency_weights`.

    Args:
        counts: ``n_c``, the training examples of class ``c`` (positive), in class order.
        beta: In [0, 1); the paper's default 0.9999.

    Example:
        >>> [round(w, 4) for w in effective_number_weights([1, 2], beta=0.5)]
        [1.2, 0.8]
    """
    n = _counts(counts)
    b = finite("beta", beta)
    if not 0.0 <= b < 1.0:
        raise ValueError(f"`beta` must lie in [0, 1), but got {beta!r}.")
    if b == 0.0:
        return [1.0] * len(n)
    return _mean_one([(1.0 - b) / -math.expm1(m * math.log(b)) for m in n])


#: The class-weight shapes of :func:`loss_families`: ``{shape: weights of the class counts}``.
SHAPES: Mapping[str, Callable[[Iterable[float]], list[float]]] = {
    "effective": effective_number_weights,
    "inverse": inverse_frequency_weights,
}


class DeferredStep(Family):
    """A multiplier that is 1 early in training and switches to ``target`` later: deferred
    re-weighting (DRW, Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware
    Margin Loss", NeurIPS 2019), e.g. one class's weight with ``target`` its
    :func:`effective_number_weights` value.

    ``value(u) = 1 + strength * (target - 1) * s(u)``, where ``s(u) = 1 / (1 + exp(-(u -
    switch) / width))`` is a smooth step of width ``1 / (2K)`` (``K`` the windows). A hard step
    would leave every window value flat in ``switch`` (a zero hypergradient); a logistic this
    wide keeps the sum of ``s`` over the window midpoints (spaced ``1 / K``) affine in
    ``switch`` to within 0.2 % away from the ends of the run, so the hypergradient pulls
    ``switch`` evenly wherever it sits between two midpoints, while the step still goes from
    12 % to 88 % within one window either side of it.

    Params: ``switch``, the training fraction of the step, in [0.05, 0.95]; ``strength``, how
    far towards ``target`` it goes (1: all the way), in [0, ``max_strength``], lowered for a
    ``target`` below 1 so that the value never falls under :data:`CLASS_WEIGHT_BOUNDS`'s
    ``low`` (a negative class weight would train the model *away* from that class).

    Args:
        target: The value after the switch at ``strength`` 1 (positive).
        switch: Start of ``switch``.
        max_strength: Upper bound of ``strength`` (it starts at 1, or its bound if lower).
        windows: Windows K.

    Example:
        >>> cw = DeferredStep(3.0, windows=4, hyper="class_weight", params="7")
        >>> [round(v, 2) for v in cw.initial_values()]
        [1.04, 1.28, 2.1, 2.8]
    """

    def __init__(
        self,
        target: float,
        *,
        switch: float = 0.6,
        max_strength: float = 2.0,
        windows: int = 10,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        self.target = finite("target", target)
        top = finite("max_strength", max_strength)
        if self.target <= 0 or top <= 0:
            raise ValueError(
                f"`target` and `max_strength` must be positive, but got {target!r} and "
                f"{max_strength!r}."
            )
        if self.target < 1:
            top = min(top, (1.0 - CLASS_WEIGHT_BOUNDS[0]) / (1.0 - self.target))
        self.width = 0.5 / self.windows
        self.parameters = {
            "switch": FamilyParam(0.05, 0.95, init=switch),
            "strength": FamilyParam(0.0, top, init=min(1.0, top)),
        }

    def _step(self, u: float, p: Mapping[str, float]) -> float:
        return 0.5 * (1.0 + math.tanh(0.5 * (u - p["switch"]) / self.width))  # the logistic

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return 1.0 + p["strength"] * (self.target - 1.0) * self._step(u, p)

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        s = self._step(u, p)
        return {
            "switch": -p["strength"] * (self.target - 1.0) * s * (1.0 - s) / self.width,
            "strength": (self.target - 1.0) * s,
        }


def loss_families(
    class_counts: Iterable[float],
    windows: int = 10,
    *,
    shape: str = "effective",
    refine: bool = False,
    label_smoothing: bool = False,
) -> dict[str, Family]:
    """The loss-side entries of :func:`~optuna_fmd.space.imbalanced_space`: ``cw_<c>``, a
    :class:`DeferredStep` of hyper ``class_weight`` for class ``c`` towards its ``shape``
    weight (times its windows' corrections with ``refine``, :class:`Refiner`), and with
    ``label_smoothing`` one :class:`Constant` in :data:`LABEL_SMOOTHING_BOUNDS`.

    Example:
        >>> sorted(loss_families([90, 10], windows=2, label_smoothing=True))
        ['cw_0', 'cw_1', 'label_smoothing']
    """
    if shape not in SHAPES:
        raise ValueError(f"`shape` must be one of {list(SHAPES)}, but got {shape!r}.")
    out: dict[str, Family] = {}
    for c, w in enumerate(SHAPES[shape](class_counts)):
        cw = DeferredStep(w, windows=windows, hyper="class_weight", params=str(c))
        out[f"cw_{c}"] = Refiner(cw, windows) if refine else cw
    if label_smoothing:
        low, high, log, init = LABEL_SMOOTHING_BOUNDS
        out["label_smoothing"] = Constant(low, high, log=log, init=init)
    return out
