"""Search spaces, without torch: window schedules, schedule *families* and the one place that
names trial parameters and converts them to and from schedules.

A :class:`ScheduleSpace` maps names to entries. A :class:`Schedule` is ``K`` free window values
(trial params ``<name>_0`` ... ``<name>_{K-1}``); a :class:`Family` is a schedule given by a few
parameters (trial params ``<name>_<param>``, e.g. ``lr_peak``), evaluated at the ``K`` window
midpoints ``(k + 0.5) / K``. An episode's hypergradient with respect to the window values gives
the hypergradient with respect to a family's parameters exactly, by the chain rule
(:meth:`ScheduleSpace.chain`).

Example:
    >>> from optuna_fmd.space import Constant, Cosine, ScheduleSpace, default_space
    >>> default_space("sgd", windows=2).initial_values()
    {'lr': [0.05, 0.05], 'momentum': [0.9, 0.9], 'weight_decay': [0.0005, 0.0005]}
    >>> cos = Cosine(windows=4)
    >>> [round(v, 4) for v in cos.window_values({"peak": 0.1, "warmup": 0.0, "final": 0.0})]
    [0.0962, 0.0691, 0.0309, 0.0038]
    >>> space = ScheduleSpace({"lr": Cosine(windows=4, init=0.1), "momentum": Constant(0.0, 0.99,
    ...                        log=False, init=0.9)})
    >>> space.param_names()
    ['lr_peak', 'lr_warmup', 'lr_final', 'momentum_value']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DEFAULT_BOUNDS",
    "Constant",
    "Cosine",
    "Custom",
    "Family",
    "FamilyParam",
    "Linear",
    "ParamRef",
    "Refiner",
    "Schedule",
    "ScheduleSpace",
    "StepDecay",
    "default_family_space",
    "default_space",
    "param_name",
    "parse_param",
    "per_layer_space",
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


def default_family_space(
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    refine: bool = True,
    init: Mapping[str, float] | None = None,
) -> ScheduleSpace:
    """The default *family* space of ``optimizer``, the one :class:`~optuna_fmd.FMDSampler`
    searches by default: the lr as a :class:`Cosine` with warm-up (peak at the default lr, no
    warm-up, decaying to 0), optionally times a windowed correction (:class:`Refiner`,
    ``refine=True``), and every other hyperparameter of :data:`DEFAULT_BOUNDS` as one
    :class:`Constant` at its default.

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K of the lr schedule.
        refine: Add the per-window corrections ``lr_delta_<k>`` (found after the family's
            few parameters, see :class:`~optuna_fmd.FMDSampler`).
        init: Starting values that replace the defaults, ``{hyper: value}`` (the lr's is the
            cosine's peak).
    """
    if optimizer not in DEFAULT_BOUNDS:
        raise ValueError(
            f"`optimizer` must be one of {list(DEFAULT_BOUNDS)}, but got {optimizer!r}."
        )
    bounds = DEFAULT_BOUNDS[optimizer]
    unknown = [h for h in init or {} if h not in bounds]
    if unknown:
        raise ValueError(f"`init` must name hypers of {list(bounds)}, but got {unknown}.")
    starts = {h: b[3] for h, b in bounds.items()} | dict(init or {})
    lo, hi, _, _ = bounds["lr"]
    lr: Family = Cosine(lo, hi, windows=windows, init=starts["lr"])
    if refine:
        lr = Refiner(lr, windows)
    entries: dict[str, Schedule | Family] = {"lr": lr}
    for h, (low, high, log, _) in bounds.items():
        if h != "lr":
            entries[h] = Constant(low, high, log=log, init=starts[h])
    return ScheduleSpace(entries)


def per_layer_space(
    layers: Mapping[str, str | Sequence[str]],
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    init: Mapping[str, float] | None = None,
) -> ScheduleSpace:
    """A cosine lr schedule per layer group and every other hyperparameter of
    :data:`DEFAULT_BOUNDS` as one :class:`Constant` shared by all layers.

    Entry ``lr_<label>`` is a :class:`Cosine` (peak, warm-up, final) restricted to the
    parameters matched by ``layers[label]`` (``fnmatch`` globs over
    ``model.named_parameters()``), so its trial params are ``lr_<label>_peak``,
    ``lr_<label>_warmup`` and ``lr_<label>_final``. :class:`~optuna_fmd.FMDSampler` moves every
    layer's peak together when it searches the lr scale and every layer's warm-up (or final)
    together in its coarse pass, so its cost before the first hypergradient does not grow with
    the number of layers.

    Args:
        layers: ``{label: glob or globs}``; labels must make identifiers (``"l0"``, ``"fc"``).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K of every lr schedule.
        init: Starting values that replace the defaults, ``{hyper: value}`` (the lr's is every
            cosine's peak).

    Example:
        >>> space = per_layer_space({"l0": "1.*", "l1": "3.*"}, windows=4)
        >>> space.param_names()[:3]
        ['lr_l0_peak', 'lr_l0_warmup', 'lr_l0_final']
        >>> space.groups()["lr_l1"]
        ('lr', ('3.*',))
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError(
            f"`layers` must be a non-empty mapping of label -> globs, but got {layers!r}."
        )
    family = default_family_space(optimizer, windows, refine=False, init=init)
    lr = family["lr"]
    assert isinstance(lr, Cosine)
    peak = lr.parameters["peak"]
    entries: dict[str, Schedule | Family] = {}
    for label, globs in layers.items():
        name = f"lr_{label}"
        if not name.isidentifier():
            raise ValueError(f"layer labels must make identifiers, but got {label!r}.")
        entries[name] = Cosine(
            peak.low, peak.high, init=peak.start(), windows=windows, hyper="lr", params=globs
        )
    entries.update({h: e for h, e in family.items() if h != "lr"})
    return ScheduleSpace(entries)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a real number, but got {value!r}.")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be finite, but got {value!r}.")
    return out


def _check_windows(windows: object) -> int:
    if isinstance(windows, bool) or not isinstance(windows, int):
        raise TypeError(f"`windows` must be an int, but got {windows!r}.")
    if windows < 1:
        raise ValueError(f"`windows` must be at least 1, but got {windows}.")
    return windows


def _check_target(hyper: object, params: object) -> tuple[str, ...] | None:
    """Validate a schedule's ``hyper`` and ``params`` (glob patterns); return the patterns."""
    if hyper is not None and (not isinstance(hyper, str) or not hyper):
        raise ValueError(f"`hyper` must be a hyperparameter name, but got {hyper!r}.")
    if params is None:
        return None
    patterns = (params,) if isinstance(params, str) else tuple(params)  # type: ignore[arg-type]
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(
            f"`params` must be a glob pattern or a sequence of them, but got {params!r}."
        )
    return patterns


def _check_values(name: str, values: Sequence[float], windows: int) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"schedule `{name}` must be a sequence of floats, but got {values!r}.")
    if len(values) != windows:
        raise ValueError(
            f"schedule `{name}` must have {windows} values (one per window), "
            f"but got {len(values)}."
        )
    return [_finite(f"{name}[{k}]", v) for k, v in enumerate(values)]


#: One trial parameter of a space entry: ``(suffix, low, high, log, init)``.
ParamSpec = tuple[str, float, float, bool, float]


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
        _check_windows(self.windows)
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
        object.__setattr__(self, "params", _check_target(self.hyper, self.params))
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
        out = _check_values(name, values, self.windows)
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

    def __post_init__(self) -> None:
        low, high = _finite("low", self.low), _finite("high", self.high)
        if not low < high or (self.log and low <= 0):
            raise ValueError(
                f"a family parameter needs low < high (and low > 0 on a log scale), but got "
                f"low={low}, high={high}, log={self.log}."
            )
        if self.init is not None and not low <= _finite("init", self.init) <= high:
            raise ValueError(f"`init` must lie inside [{low}, {high}], but got {self.init!r}.")

    def start(self) -> float:
        if self.init is not None:
            return float(self.init)
        return math.sqrt(self.low * self.high) if self.log else 0.5 * (self.low + self.high)


def _midpoints(windows: int) -> list[float]:
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ValueError(f"`windows` must be a positive int, but got {windows!r}.")
    return [(k + 0.5) / windows for k in range(windows)]


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
        self.windows = _check_windows(windows)
        self.hyper = hyper
        self.params = _check_target(hyper, params)

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
        return [self.value(u, q) for u in _midpoints(self.windows)]

    def jacobian(self, p: Mapping[str, float]) -> dict[str, list[float]]:
        """``{param: [d value_k / d param for each window k]}``."""
        q = self.check(p)
        grads = [self.gradient(u, q) for u in _midpoints(self.windows)]
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
        return _check_values(name, values, self.windows)

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


# --------------------------------------------------------------------------------------------
# Param names
# --------------------------------------------------------------------------------------------
class ParamRef(NamedTuple):
    """What a trial parameter stands for in its space.

    Attributes:
        entry: The space entry it belongs to (``"lr"``, ``"lr_head"``).
        local: Its name inside the entry (``"3"`` for window 3, ``"peak"``, ``"delta_3"``).
        kind: ``"window"`` (a window value of a :class:`Schedule`), ``"family"`` (a family
            parameter) or ``"correction"`` (a :class:`Refiner`'s correction ``delta_<k>``).
        index: The window k of a ``"window"`` or ``"correction"`` param, else ``None``.
    """

    entry: str
    local: str
    kind: str
    index: int | None


def param_name(entry: str, local: str | int) -> str:
    """The trial parameter of ``entry``'s ``local`` param: ``<entry>_<local>`` (``lr_0``,
    ``lr_peak``, ``lr_delta_3``)."""
    return f"{entry}_{local}"


def _ref(entry: str, local: str) -> ParamRef:
    """``local`` read by its shape: ``delta_<k>`` a correction, ``<k>`` a window value."""
    if local.startswith(DELTA) and local[len(DELTA) :].isdigit():
        return ParamRef(entry, local, "correction", int(local[len(DELTA) :]))
    if local.isdigit():
        return ParamRef(entry, local, "window", int(local))
    return ParamRef(entry, local, "family", None)


def parse_param(name: str, entries: Iterable[str] | None = None) -> ParamRef | None:
    """Read a trial parameter name without the space that made it (a stored study's params).

    With ``entries`` (the space's entry names, e.g. the keys of a trial's
    ``user_attrs["schedules"]``), the longest entry that prefixes ``name`` owns it; ``None`` if
    none does. Without them, a name ending in ``_delta_<k>`` is a refiner's correction, one
    ending in ``_<k>`` a window value and any other ``<entry>_<param>`` a family parameter
    (split at the last underscore). :meth:`ScheduleSpace.parse` is exact; this is for studies
    whose space is not at hand.

    Example:
        >>> parse_param("lr_delta_3", ["lr", "momentum"])
        ParamRef(entry='lr', local='delta_3', kind='correction', index=3)
        >>> parse_param("lr_head_1")
        ParamRef(entry='lr_head', local='1', kind='window', index=1)
        >>> parse_param("weight_decay_value")
        ParamRef(entry='weight_decay', local='value', kind='family', index=None)
    """
    if entries is not None:
        owners = [e for e in entries if name.startswith(f"{e}_") and len(name) > len(e) + 1]
        if not owners:
            return None
        entry = max(owners, key=len)
        return _ref(entry, name[len(entry) + 1 :])
    head, _, k = name.rpartition("_")
    if not head:
        return None
    stem, _, tag = head.rpartition("_")
    if k.isdigit() and stem and f"{tag}_" == DELTA:
        return ParamRef(stem, f"{DELTA}{k}", "correction", int(k))
    return _ref(head, k)


# --------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------
Entry = Schedule | Family


class ScheduleSpace(Mapping[str, Entry]):
    """A named set of :class:`Schedule` s and :class:`Family` s: the search space of a study.

    Trial parameters are named ``<name>_<k>`` (``lr_0`` ... ``lr_9``), one per window, for a
    :class:`Schedule`, and ``<name>_<param>`` (``lr_peak``) for a :class:`Family`. This class
    is the one place that spells those names and converts params to schedules and window
    hypergradients to param hypergradients.

    Example:
        >>> space = ScheduleSpace({"lr": Schedule(windows=3, low=1e-3, high=1.0, log=True)})
        >>> space.param_names()
        ['lr_0', 'lr_1', 'lr_2']
    """

    def __init__(self, schedules: Mapping[str, Entry]) -> None:
        if not isinstance(schedules, Mapping):
            raise TypeError(
                f"`schedules` must be a mapping of name -> Schedule, but got {schedules!r}."
            )
        if not schedules:
            raise ValueError("`schedules` must name at least one hyperparameter, but got {}.")
        for name, schedule in schedules.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"schedule names must be Python identifiers, but got {name!r}.")
            if not isinstance(schedule, (Schedule, Family)):
                raise TypeError(
                    f"schedule `{name}` must be a Schedule or a Family, but got "
                    f"{type(schedule).__name__}."
                )
        self._schedules = dict(schedules)
        self._specs = {n: s.param_specs() for n, s in self._schedules.items()}

    def __getitem__(self, name: str) -> Entry:
        return self._schedules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schedules)

    def __len__(self) -> int:
        return len(self._schedules)

    def __repr__(self) -> str:
        return f"ScheduleSpace({self._schedules!r})"

    @property
    def n_params(self) -> int:
        """Total number of trial parameters (window values and family parameters)."""
        return sum(len(v) for v in self._specs.values())

    def has_families(self) -> bool:
        """Whether any entry is a :class:`Family`."""
        return any(isinstance(s, Family) for s in self._schedules.values())

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
        """Trial parameter names in entry order."""
        return [f"{n}_{spec[0]}" for n, specs in self._specs.items() for spec in specs]

    def distributions(self) -> dict[str, tuple[float, float, bool]]:
        """``{param: (low, high, log)}`` for ``trial.suggest_float``."""
        return {
            f"{n}_{sfx}": (lo, hi, log)
            for n, specs in self._specs.items()
            for sfx, lo, hi, log, _ in specs
        }

    def initial_params(self) -> dict[str, float]:
        """Every trial parameter at its start."""
        return {f"{n}_{s[0]}": s[4] for n, specs in self._specs.items() for s in specs}

    def owner(self, param: str) -> tuple[str, str] | None:
        """``(entry name, local param name)`` of a trial parameter (``None``: not in the space)."""
        for n, specs in self._specs.items():
            for spec in specs:
                if f"{n}_{spec[0]}" == param:
                    return n, spec[0]
        return None

    def parse(self, param: str) -> ParamRef | None:
        """What trial parameter ``param`` stands for (``None``: not in the space).

        Example:
            >>> space = default_family_space("sgd", windows=2)
            >>> space.parse("lr_delta_1")
            ParamRef(entry='lr', local='delta_1', kind='correction', index=1)
            >>> space.parse("momentum_value").kind
            'family'
        """
        owner = self.owner(param)
        if owner is None:
            return None
        entry, local = owner
        schedule = self._schedules[entry]
        if isinstance(schedule, Schedule):
            return ParamRef(entry, local, "window", int(local))
        if isinstance(schedule, Refiner) and local.startswith(DELTA):
            return ParamRef(entry, local, "correction", int(local[len(DELTA) :]))
        return ParamRef(entry, local, "family", None)

    def initial_values(self) -> dict[str, list[float]]:
        """Every schedule at its start, as window values."""
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
        """Window schedules as trial parameters ``{"lr_0": ..., ...}`` (window entries only:
        a family's parameters are not determined by its window values)."""
        families = [n for n, s in self._schedules.items() if isinstance(s, Family)]
        if families:
            raise ValueError(
                f"window values do not determine family parameters ({families}); pass the "
                "family's parameters as trial params instead."
            )
        checked = self.validate(schedules)
        return {f"{n}_{k}": v for n, vals in checked.items() for k, v in enumerate(vals)}

    def _local(self, params: Mapping[str, float]) -> dict[str, list[float]]:
        missing = [p for p in self.param_names() if p not in params]
        if missing:
            raise ValueError(f"trial parameters lack {missing}; got {sorted(params)}.")
        return {
            n: [float(params[f"{n}_{s[0]}"]) for s in specs] for n, specs in self._specs.items()
        }

    def from_params(self, params: Mapping[str, float]) -> dict[str, list[float]]:
        """Trial parameters back to window schedules (families evaluated at the window
        midpoints)."""
        return {n: self._schedules[n].values_of(xs) for n, xs in self._local(params).items()}

    def chain(
        self, params: Mapping[str, float], window_hypergradient: Mapping[str, Sequence[float]]
    ) -> dict[str, float]:
        """The hypergradient with respect to every trial parameter, from an episode's
        hypergradient with respect to the window values (``{name: [dL/d value_k]}``)."""
        out: dict[str, float] = {}
        for n, xs in self._local(params).items():
            entry = self._schedules[n]
            g = window_hypergradient[n]
            if len(g) != entry.windows:
                raise ValueError(
                    f"the hypergradient of `{n}` must have {entry.windows} values, "
                    f"but got {len(g)}."
                )
            grads = entry.pullback(xs, g)
            out.update({f"{n}_{s[0]}": v for s, v in zip(self._specs[n], grads, strict=True)})
        return out
