"""The outer rules' view of a space, without torch: each trial param's coordinate
(:class:`Coord`), and for the search rule the lr-scale and first-stage masks, the coarse pass's
blocks and the start (a :class:`Geometry`), built from a
:class:`~optuna_fmd.space.ScheduleSpace` and a user's ``start`` checked against it.
:class:`~optuna_fmd.FMDSampler` builds it once.

Coordinates: every trial param is stepped in a transformed coordinate ``u``: ``log(x)`` on a
log scale, ``logit`` of the position inside the bounds for window values of linear hypers (a
step shrinks near a bound), or ``x`` itself for family parameters on a linear scale (a warm-up
fraction that starts at 0 must be free to leave it). ``unit`` is a coordinate's natural scale;
lengths along a search direction are measured in units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..space import DELTA, Family, Refiner, Schedule, ScheduleSpace

__all__ = ["FIRST_STEP", "Coord", "Geometry", "check_start", "geometry_of"]

LOGIT_EPS = 1e-3  # logit coordinates clamp (x - low) / (high - low) into [eps, 1 - eps]
LOGIT_UNIT = 4.0  # d(logit)/dp at p = 1/2: a step of 0.1 * 4 in logit moves x by ~10% of range
FIRST_STEP = 0.05  # the first line-search step, in coordinate units along a unit direction


@dataclass(frozen=True)
class Coord:
    """One trial param's transformed coordinate u: ``log``, ``linear`` or ``logit``."""

    kind: str
    low: float
    high: float

    @property
    def unit(self) -> float:
        """The coordinate's natural scale: step lengths are multiples of it."""
        if self.kind == "log":
            return math.log(self.high / self.low)
        if self.kind == "linear":
            return self.high - self.low
        return LOGIT_UNIT

    @property
    def bounds(self) -> tuple[float, float]:
        if self.kind == "log":
            return math.log(self.low), math.log(self.high)
        if self.kind == "linear":
            return self.low, self.high
        lo = math.log(LOGIT_EPS / (1.0 - LOGIT_EPS))
        return lo, -lo

    def _p(self, x: float) -> float:
        p = (x - self.low) / (self.high - self.low)
        return min(max(p, LOGIT_EPS), 1.0 - LOGIT_EPS)

    def to_u(self, x: float) -> float:
        x = min(max(x, self.low), self.high)
        if self.kind == "log":
            return math.log(x)
        if self.kind == "linear":
            return x
        p = self._p(x)
        return math.log(p / (1.0 - p))

    def from_u(self, u: float) -> float:
        lo, hi = self.bounds
        if u <= lo:  # projected onto a bound: exactly the bound (logit cannot reach it)
            return self.low
        if u >= hi:
            return self.high
        if self.kind == "log":
            x = math.exp(u)
        elif self.kind == "linear":
            x = u
        else:
            x = self.low + (self.high - self.low) / (1.0 + math.exp(-u))
        return float(min(max(x, self.low), self.high))

    def dx_du(self, x: float) -> float:
        """Chain rule factor: dL/du = dL/dx * dx/du at ``x``."""
        if self.kind == "log":
            return min(max(x, self.low), self.high)
        if self.kind == "linear":
            return 1.0
        p = self._p(x)
        return (self.high - self.low) * p * (1.0 - p)

    def move(self, x: float, du: float) -> float:
        """``x`` moved by ``du`` in u, projected into the bounds (``x`` if not finite)."""
        u = self.to_u(x) + du
        if not math.isfinite(u):
            return x
        lo, hi = self.bounds
        return self.from_u(min(max(u, lo), hi))


@dataclass(frozen=True)
class Geometry:
    """What the outer rules know of the space, coordinates only: each param's coordinate, which
    params set the lr scale, which belong to the first stage (not a refiner's correction), the
    start, and the blocks the coarse pass moves together (``None``: each param on its own; a window
    schedule's windows form one block, so its pass costs two probes however many windows it
    has)."""

    coords: list[Coord]
    scale: list[bool]
    base: list[bool]
    start: list[float]
    blocks: list[int] | None = None
    lr: list[bool] | None = None  # the learning rate's first-stage params (None: ``scale``)

    @property
    def lr_mask(self) -> list[bool]:
        """The first-stage params of the learning rate's hyper (every layer group's, every
        family param): what the climb's lines move."""
        return list(self.scale) if self.lr is None else list(self.lr)

    def shift_scale(self, x: Sequence[float], factor: float) -> list[float]:
        """``x`` with its lr-scale params multiplied by ``factor`` (within bounds)."""
        du = math.log(factor)
        return [
            c.move(v, du) if s else float(v)
            for c, v, s in zip(self.coords, x, self.scale, strict=True)
        ]

    def unit_gradient(self, x: Sequence[float], grad: Sequence[float]) -> list[float]:
        """dL/d(u / unit) for every param: the hypergradient per coordinate unit."""
        return [g * c.dx_du(v) * c.unit for c, v, g in zip(self.coords, x, grad, strict=True)]

    def along(self, x: Sequence[float], direction: Sequence[float], alpha: float) -> list[float]:
        """``x`` moved ``alpha`` units along ``direction`` (a unit vector), within bounds."""
        return [
            c.move(v, alpha * d * c.unit) if d else float(v)
            for c, v, d in zip(self.coords, x, direction, strict=True)
        ]


def check_start(space: ScheduleSpace, start: object) -> dict[str, float] | None:
    """``start`` as floats, every name a param of ``space`` and every value inside its bounds."""
    if start is None:
        return None
    if not isinstance(start, Mapping):
        raise TypeError(f"`start` must be a mapping of trial params, but got {start!r}.")
    dists = space.distributions()
    unknown = sorted(str(n) for n in start if n not in dists)
    if unknown:
        raise ValueError(
            f"`start` names params the space does not have: {unknown}; its params are "
            f"{list(dists)}."
        )
    out = {}
    for name, value in start.items():
        low, high, _ = dists[name]
        v = (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )
        if v is None or not (math.isfinite(v) and low <= v <= high):
            raise ValueError(
                f"`start[{name!r}]` must lie inside [{low}, {high}], but got {value!r}."
            )
        out[name] = v
    return out


def geometry_of(space: ScheduleSpace, *, start: Mapping[str, float] | None = None) -> Geometry:
    """Each param's coordinate, the lr-scale and first-stage masks and the start of ``space``.

    Window values of a linear hyper, and family parameters that start inside their bounds
    (a constant momentum), step in logit coordinates; family parameters that start at a bound
    (warm-up and final fractions) and a refiner's corrections step linearly. The lr scale is
    the log-scale params of every entry of the first entry's hyper (every layer group's lr), and
    ``lr`` every first-stage param of that hyper (a family's shape params too);
    a refiner's corrections join after the first stage. The coarse pass's blocks join the same
    family param (or the windows) of every entry of one hyper, so its cost does not grow with
    the number of layer groups.
    """
    coords, scale, base, blocks, lrs = [], [], [], [], []
    hypers = space.hypers()
    lr = hypers[next(iter(space))]
    block_ids: dict[tuple[str, str], int] = {}
    dists, init = space.distributions(), space.initial_params()
    for name in space.param_names():
        owner = space.owner(name)
        assert owner is not None
        entry_name, local = owner
        entry = space[entry_name]
        low, high, log = dists[name]
        correction = isinstance(entry, Refiner) and local.startswith(DELTA)
        inside = low < init[name] < high and not correction
        kind = "log" if log else ("logit" if inside or not isinstance(entry, Family) else "linear")
        coords.append(Coord(kind, low, high))
        scale.append(hypers[entry_name] == lr and log)
        base.append(not correction)
        lrs.append(hypers[entry_name] == lr and not correction)
        # the coarse pass moves together what plays the same part: a window schedule's
        # windows, and the same family param (or windows) of every group of one hyper
        role = "" if isinstance(entry, Schedule) else local
        blocks.append(block_ids.setdefault((hypers[entry_name], role), len(block_ids)))
    x0 = [(start or {}).get(n, init[n]) for n in space.param_names()]
    return Geometry(coords, scale, base, x0, blocks=blocks, lr=lrs)
