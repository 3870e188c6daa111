"""The outer loop's rules as pure functions over plain floats: no torch, no Optuna.

:class:`~optuna_fmd.FMDSampler` is the Optuna adapter around them: it reads the study into
:class:`Point` s, calls a rule and stores the returned state (JSON) on the trial it proposes.

Coordinates: every trial param is stepped in a transformed coordinate ``u`` (:class:`Coord`):
``log(x)`` on a log scale, ``logit`` of the position inside the bounds for window values of
linear hypers (a step shrinks near a bound), or ``x`` itself for family parameters on a linear
scale (a warm-up fraction that starts at 0 must be free to leave it). ``unit`` is a
coordinate's natural scale; lengths along a search direction are measured in units.

The ``"search"`` rule (:func:`search_step`) is coarse before fine and never accepts a worse
iterate:

1. *Coarse*: plain episodes (no hypergradient) that multiply the lr scale (the first entry's
   log-scale params) by 2 while the value improves, then by 1/2, then one probe at the vertex
   of the parabola through the best point and its two neighbours (in log scale); then one
   pass over the family's other params, each moved a quarter unit up, then down, keeping
   what improves.
2. *Descend*: a hypergradient episode at the best point; its gradient in units, normalised,
   is the search direction. Plain episodes probe along it: a step that improves is doubled
   once; a step that does not is replaced by the minimiser of the quadratic through the value,
   the exact slope (the hypergradient) and the probe, at most half the step. The best point
   found is accepted (never a worse one) and a new hypergradient is computed there.
   A refiner's corrections (``*_delta_<k>``) stay frozen until the family's few parameters
   stall (no probe along their direction improves); then the direction spans every param.
3. When no probe along the full direction improves either, a pattern search over the family's
   params (one at a time, up and down, with halving steps) looks for a better point to
   restart the hypergradient steps from; when none is found the search has converged.
4. An *exploding* hypergradient (a first-order change, over the first step, of more than
   ``EXPLODE`` times the value) or a non-finite one says the lr is too high: the scale search
   resumes downwards instead of stepping along it.
5. *Trust*: every hypergradient is checked against the plain episodes the search runs anyway
   (:func:`check_probe`): the first probe along it finds a change of the predicted sign and
   within ``DISAGREE`` times the predicted first-order change, and an iterate's members'
   hypergradients point the same way (positive cosine) and within ``DISAGREE`` times each
   other's size. Each check is stored in the state (``state["check"]``). A hypergradient
   that fails one gets more weight on the probes: members that point apart send the iterate
   to the pattern search without a line; members of very different sizes are averaged as
   unit vectors; a first probe that loses less than the hypergradient promised to gain is
   followed by the opposite probe (a central difference along the direction) and, if neither
   improves, by the pattern search instead of more probes along the same hypergradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Coord",
    "Geometry",
    "Point",
    "check_members",
    "check_probe",
    "search_step",
]

LOGIT_EPS = 1e-3  # logit coordinates clamp (x - low) / (high - low) into [eps, 1 - eps]
LOGIT_UNIT = 4.0  # d(logit)/dp at p = 1/2: a step of 0.1 * 4 in logit moves x by ~10% of range
SCALE_FACTOR = 2.0  # the scale search multiplies the lr by this factor per probe
FIRST_STEP = 0.05  # the first line-search step, in coordinate units along a unit direction
EXPLODE = 10.0  # |first-order change over the first step| / |value| that counts as exploding
BASE_TRIES = 3  # probes along one direction over the family's params before the corrections join
FULL_TRIES = 5  # probes along one direction over every param before the loop has converged
EXPANSIONS = 1  # doublings of a line-search step while each one improves
PATTERN_STEP = 0.1  # the pattern search's first step per family param, in units
COARSE_STEP = 0.25  # the coarse pass's step over the family's other params, in units (0: none)
MIN_PATTERN_STEP = 0.01  # the pattern search's smallest step: below it the search has converged
MEMORY = 5  # quasi-Newton (L-BFGS) pairs kept
DISAGREE = 10.0  # a found change off the predicted one by more than this factor: not trusted
TRUST = 0.2  # largest quasi-Newton step per coordinate, in units


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


@dataclass
class Point:
    """A trial (or an averaged iterate) as the outer loop sees it: always a minimisation.

    On a maximize study ``value`` and ``grad`` are the negated objective value and
    hypergradient, so "lower is better" holds everywhere in the outer loop.
    """

    number: int
    x: list[float] | None  # params in space order (None: trial not in the space)
    value: float | None  # finite (sense-adjusted) value of a COMPLETE, non-diverged trial
    bad: bool  # failed, pruned, diverged or non-finite value
    grad: list[float] | None  # finite (sense-adjusted) hypergradient in param order
    state: dict[str, Any] | None  # the sampler's state stored on the trial (same space)
    diverged: bool = False  # training or the hypergradient became NaN / infinite
    members: list[list[float]] | None = None  # an iterate's members' hypergradients (>= 2)


@dataclass(frozen=True)
class Geometry:
    """What the search rule knows of the space: each param's coordinate, which params set the
    lr scale, which belong to the first stage (not a refiner's correction), the start, and the
    blocks the coarse pass moves together (``None``: each param on its own; a window schedule's
    windows form one block, so its pass costs two probes however many windows it has)."""

    coords: list[Coord]
    scale: list[bool]
    base: list[bool]
    start: list[float]
    first_step: float = FIRST_STEP
    hypergradients: bool = True  # False: the same search with pattern steps only (an ablation)
    blocks: list[int] | None = None

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


def _norm(v: Sequence[float]) -> float:
    return math.sqrt(math.fsum(a * a for a in v))


def _direction(g: Sequence[float], mask: Sequence[bool]) -> tuple[list[float], float]:
    """The unit descent direction over the masked coordinates and the slope along it."""
    masked = [gi if m else 0.0 for gi, m in zip(g, mask, strict=True)]
    n = _norm(masked)
    if not n > 0 or not math.isfinite(n):
        return [0.0] * len(masked), 0.0
    return [-gi / n for gi in masked], -n


def _parabola(points: Sequence[Sequence[float]]) -> float | None:
    """Vertex of the parabola through three (t, f) points, or None if it opens downwards."""
    (a, fa), (b, fb), (c, fc) = sorted((float(t), float(f)) for t, f in points)
    den = (b - a) * (fb - fc) - (b - c) * (fb - fa)
    if den == 0 or not all(math.isfinite(v) for v in (fa, fb, fc)):
        return None
    num = (b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)
    t = b - 0.5 * num / den
    if not a < t < c or (fa + fc - 2 * fb) <= 0:
        return None
    return t


def _fresh(geo: Geometry) -> dict[str, Any]:
    return {
        "rule": "search",
        "phase": "scale",
        "stage": "base" if not all(geo.base) else "full",
        "incumbent": None,
        "probe": {"kind": "start"},
        "bracket": {"dir": 1, "offset": 0.0, "points": []},
        "line": None,
        "alpha": geo.first_step,
        "outer_step": 0,
        "hypergradient": False,
        "converged": False,
    }


def _propose(
    state: dict[str, Any], x: Sequence[float], kind: str, hypergradient: bool, **probe: Any
) -> tuple[list[float], dict[str, Any]]:
    state["probe"] = {"kind": kind, **probe}
    state["origin"] = kind
    state["hypergradient"] = hypergradient
    return [float(v) for v in x], state


def search_step(
    prev: dict[str, Any] | None, last: Point | None, geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    """The next params and state of the ``"search"`` rule.

    Args:
        prev: The state stored on the latest trial the rule proposed (``None``: none yet).
        last: That trial as finished (``None``: none yet). Its value and hypergradient are
            what ``prev["probe"]`` asked for.
        geo: The space's geometry.

    Returns:
        The params to evaluate next and the state to store with them; ``state["hypergradient"]``
        says whether that trial needs the hypergradient.
    """
    if prev is None or prev.get("rule") != "search":
        return _propose(_fresh(geo), geo.start, "start", False)
    state = {k: v for k, v in prev.items() if k not in ("origin", "base", "x", "check")}
    if state.get("converged"):
        best = state.get("incumbent") or {"x": geo.start}
        return _propose(state, best["x"], "converged", False)
    value = math.inf
    if last is not None and last.value is not None and not last.bad:
        value = float(last.value)
    x = list(last.x) if last is not None and last.x is not None else None
    best = state.get("incumbent")
    improved = x is not None and value < (math.inf if best is None else float(best["f"]))
    if improved:
        state["incumbent"] = best = {"x": x, "f": value, "trial": last.number if last else None}
    kind = state["probe"]["kind"]
    if kind == "grad":
        return _after_gradient(state, last, geo)
    if best is None:  # the start itself failed: nothing to scale from
        state["converged"] = True
        return _propose(state, geo.start, "converged", False)
    if kind in ("start", "scale"):
        return _after_scale_probe(state, value, improved, geo)
    if kind == "pattern":
        return _after_pattern_probe(state, improved, geo)
    if kind == "vertex":
        return _coarse_or_gradient(state, geo)
    assert kind == "line", kind
    return _after_line_probe(state, value, improved, geo)


def _after_scale_probe(
    state: dict[str, Any], value: float, improved: bool, geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    sc = dict(state["bracket"])
    offset = float(state["probe"].get("offset", 0.0))
    sc["points"] = [*sc["points"], [offset, value]]
    h = math.log(SCALE_FACTOR)
    if not any(geo.scale):
        state["bracket"] = sc
        return _descend(state, geo)
    if improved:
        sc["offset"] = offset
    elif sc["dir"] > 0 and len(sc["points"]) == 2 and sc["offset"] == 0.0:
        sc["dir"] = -1  # the first step up failed: search downwards from the start
    else:
        state["bracket"] = sc
        return _vertex_or_gradient(state, geo)
    state["bracket"] = sc
    nxt = sc["offset"] + sc["dir"] * h
    if any(p[0] == nxt for p in sc["points"]):  # already seen: the bracket is closed
        return _vertex_or_gradient(state, geo)
    factor = math.exp(nxt - sc["offset"])
    moved = geo.shift_scale(state["incumbent"]["x"], factor)
    if moved == state["incumbent"]["x"]:  # at the bound already
        return _vertex_or_gradient(state, geo)
    return _propose(state, moved, "scale", False, offset=nxt)


def _vertex_or_gradient(
    state: dict[str, Any], geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    """One probe at the parabola's vertex through the best scale and its neighbours."""
    sc = state["bracket"]
    h = math.log(SCALE_FACTOR)
    at = float(sc["offset"])
    pts = {float(t): float(f) for t, f in sc["points"]}
    near = [(t, pts[t]) for t in (at - h, at, at + h) if t in pts]
    t = _parabola(near) if len(near) == 3 else None
    if t is None or abs(t - at) < h / 8:
        return _coarse_or_gradient(state, geo)
    moved = geo.shift_scale(state["incumbent"]["x"], math.exp(t - at))
    return _propose(state, moved, "vertex", False, offset=t)


def _coarse_or_gradient(
    state: dict[str, Any], geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    """After the scale: one coarse pattern pass over the other family params (if enabled)."""
    if COARSE_STEP > 0 and not state.get("coarse_done"):
        state["coarse_done"] = True
        state["pattern"] = {"h": COARSE_STEP, "i": 0, "sign": 1, "once": True}
        return _next_pattern_probe(state, geo)
    return _descend(state, geo)


def _descend(state: dict[str, Any], geo: Geometry) -> tuple[list[float], dict[str, Any]]:
    """After the coarse phase: hypergradient steps, or (without hypergradients) the pattern
    search over every param."""
    if geo.hypergradients:
        return _gradient_at_best(state, geo)
    h = (state.get("pattern") or {}).get("h", PATTERN_STEP)
    state["stage"] = "full"
    state["pattern"] = {"h": h, "i": 0, "sign": 1}
    return _next_pattern_probe(state, geo)


def _gradient_at_best(state: dict[str, Any], geo: Geometry) -> tuple[list[float], dict[str, Any]]:
    state["phase"] = "descend"
    pending = state.pop("pending", None)
    if pending and pending["trial"] == state["incumbent"].get("trial"):
        # the scale moved nowhere since this hypergradient: follow it without asking again
        return _follow(state, pending["g"], pending.get("members"), pending["point"], geo)
    return _propose(state, state["incumbent"]["x"], "grad", True)


def _after_gradient(
    state: dict[str, Any], last: Point | None, geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    best = state["incumbent"]
    ok = last is not None and not last.bad and last.grad is not None and last.x is not None
    if ok:
        assert last is not None and last.x is not None and last.grad is not None
        if last.value is not None:  # a fresh seed per trial re-measures the best point
            best["f"] = float(last.value)
        g = geo.unit_gradient(last.x, last.grad)
        n = _norm([gi if m else 0.0 for gi, m in zip(g, geo.scale, strict=True)]) or _norm(g)
        exploding = not math.isfinite(n) or n * float(state["alpha"]) > EXPLODE * abs(best["f"])
    else:
        g, exploding = None, last is not None and last.diverged
    state["outer_step"] = int(state.get("outer_step", 0)) + 1
    distrusted = int(state.get("distrust", 0)) > 0  # then an explosion is chaos, not the lr
    if (
        exploding
        and any(geo.scale)
        and not distrusted
        and state.get("exploded_at") != best.get("trial")
    ):
        state["exploded_at"] = best.get("trial")
        if g is not None and last is not None:  # kept, in case the lr stays where it is
            state["pending"] = {"trial": best.get("trial"), "g": g, "point": last.number}
            if last.members:
                state["pending"]["members"] = [
                    geo.unit_gradient(last.x, m)  # type: ignore[arg-type]
                    for m in last.members
                ]
        # the lr is too high for the hypergradient to mean anything: scale down instead
        state["phase"] = "scale"
        state["bracket"] = {"dir": -1, "offset": 0.0, "points": [[0.0, best["f"]]]}
        h = math.log(SCALE_FACTOR)
        return _propose(
            state, geo.shift_scale(best["x"], 1.0 / SCALE_FACTOR), "scale", False, offset=-h
        )
    if g is None:  # no hypergradient (a failed trial): one more try, then stop
        if state.get("grad_failures", 0) >= 1:
            state["converged"] = True
            return _propose(state, best["x"], "converged", False)
        state["grad_failures"] = int(state.get("grad_failures", 0)) + 1
        return _propose(state, best["x"], "grad", True)
    state["grad_failures"] = 0
    assert last is not None and last.x is not None
    members = [geo.unit_gradient(last.x, m) for m in last.members] if last.members else None
    return _follow(state, g, members, last.number, geo)


def _follow(
    state: dict[str, Any],
    g: list[float],
    members: list[list[float]] | None,
    point: int,
    geo: Geometry,
) -> tuple[list[float], dict[str, Any]]:
    """A line along the hypergradient ``g`` (per unit) taken at ``point``, unless its members
    point apart."""
    if members:
        check = check_members(members, geo.base if state["stage"] == "base" else None)
        state["check"] = {"kind": "members", "point": point, **check}
        if not check["agrees"]:
            _distrust(state)
        if not check["agrees"] and check["cosine"] < 0:
            # the members point apart: no line along their mean, the probes decide
            return _probes_decide(state, geo)
        if not check["agrees"] and check["norm_ratio"] is not None:
            g = _mean_direction(members)  # one member dominates the mean: average directions
    _remember(state, g, geo)
    return _start_line(state, g, geo, grad_point=point)


def _probes_decide(state: dict[str, Any], geo: Geometry) -> tuple[list[float], dict[str, Any]]:
    """The pattern search instead of a hypergradient's line, at the step it last had."""
    h = (state.get("pattern") or {}).get("h", PATTERN_STEP)
    state["pattern"] = {"h": h, "i": 0, "sign": 1}
    return _next_pattern_probe(state, geo)


def _distrust(state: dict[str, Any]) -> None:
    """One more hypergradient the probes (or members) contradict: the next ``2^n - 1``
    improvements of the pattern search ask for none (``n`` such in a row, at most 3)."""
    n = int(state.get("distrust", 0)) + 1
    state["distrust"] = n
    state["skip"] = 2 ** min(n, 3) - 1


def check_probe(predicted: float, found: float) -> dict[str, Any]:
    """Whether a plain probe along a hypergradient agrees with it.

    Args:
        predicted: The first-order change over the step (negative: a descent step).
        found: The change the probe found (its value minus the line's origin value).

    Returns:
        ``{"predicted", "found", "ratio", "agrees"}``: the probe agrees when it found a change
        of the predicted sign within ``DISAGREE`` times the predicted size either way.

    Example:
        >>> check_probe(-0.01, -0.004)["agrees"], check_probe(-5.0, 0.002)["agrees"]
        (True, False)
    """
    ok = predicted != 0 and math.isfinite(predicted) and math.isfinite(found)
    ratio = found / predicted if ok else None
    agrees = ratio is not None and 1.0 / DISAGREE <= ratio <= DISAGREE
    return {
        "predicted": predicted if math.isfinite(predicted) else None,
        "found": found if math.isfinite(found) else None,
        "ratio": ratio,
        "agrees": bool(agrees),
    }


def check_members(
    members: Sequence[Sequence[float]], mask: Sequence[bool] | None = None
) -> dict[str, Any]:
    """Whether an iterate's members' hypergradients (per coordinate unit) agree.

    Args:
        members: Two or more hypergradients in the same coordinates.
        mask: The coordinates that count (``None``: all).

    Returns:
        ``{"cosine", "norm_ratio", "agrees"}``: the smallest cosine between two members and the
        largest norm over the smallest; they agree when the cosine is positive and the ratio is
        at most ``DISAGREE``.

    Example:
        >>> check_members([[1.0, 0.5], [2.0, 0.8]])["agrees"]
        True
        >>> check_members([[1.0, 0.5], [-300.0, 10.0]])["agrees"]
        False
    """
    keep = [True] * len(members[0]) if mask is None else list(mask)
    vs = [[x if m else 0.0 for x, m in zip(v, keep, strict=True)] for v in members]
    norms = [_norm(v) for v in vs]
    if not all(math.isfinite(n) for n in norms) or min(norms) == 0:
        return {"cosine": 0.0, "norm_ratio": None, "agrees": False}
    cosine = min(
        _dot(a, b) / (na * nb)
        for i, (a, na) in enumerate(zip(vs, norms, strict=True))
        for b, nb in zip(vs[i + 1 :], norms[i + 1 :], strict=True)
    )
    ratio = max(norms) / min(norms)
    return {
        "cosine": cosine,
        "norm_ratio": ratio,
        "agrees": bool(cosine > 0 and ratio <= DISAGREE),
    }


def _mean_direction(members: Sequence[Sequence[float]]) -> list[float]:
    """The mean of the members' unit vectors, scaled to their mean norm."""
    norms = [_norm(v) for v in members]
    scale = math.fsum(norms) / len(norms)
    return [
        scale * math.fsum(v[i] / n for v, n in zip(members, norms, strict=True)) / len(members)
        for i in range(len(members[0]))
    ]


def _units(geo: Geometry, x: Sequence[float]) -> list[float]:
    return [c.to_u(v) / c.unit for c, v in zip(geo.coords, x, strict=True)]


def _remember(state: dict[str, Any], g: list[float], geo: Geometry) -> None:
    """Add the step since the last hypergradient and the change of the gradient to the
    quasi-Newton memory (pairs with no positive curvature are skipped)."""
    line = state.get("line")
    if not line or line.get("origin") is None or line["origin"] == state["incumbent"]["x"]:
        return
    step = [
        b - a
        for a, b in zip(
            _units(geo, line["origin"]), _units(geo, state["incumbent"]["x"]), strict=True
        )
    ]
    dg = [b - a for a, b in zip(line["g"], g, strict=True)]
    if math.fsum(a * b for a, b in zip(step, dg, strict=True)) > 1e-12 * _norm(step) * _norm(dg):
        memory = [*state.get("memory", []), [step, dg]]
        state["memory"] = memory[len(memory) - MEMORY :] if MEMORY > 0 else []


def _quasi_newton(g: list[float], mask: Sequence[bool], memory: list[Any]) -> list[float]:
    """-H g by the L-BFGS two-loop recursion over the masked coordinates."""
    q = [gi if m else 0.0 for gi, m in zip(g, mask, strict=True)]
    pairs = [
        (
            [a if m else 0.0 for a, m in zip(sv, mask, strict=True)],
            [b if m else 0.0 for b, m in zip(yv, mask, strict=True)],
        )
        for sv, yv in memory
    ]
    pairs = [(sv, yv) for sv, yv in pairs if _dot(sv, yv) > 0]
    if not pairs:  # no curvature left over these coordinates: steepest descent
        return [-qi for qi in q]
    alphas = []
    for sv, yv in reversed(pairs):
        a = _dot(sv, q) / _dot(sv, yv)
        alphas.append(a)
        q = [qi - a * yi for qi, yi in zip(q, yv, strict=True)]
    sv, yv = pairs[-1]
    q = [qi * _dot(sv, yv) / _dot(yv, yv) for qi in q]
    for (sv, yv), a in zip(pairs, reversed(alphas), strict=True):
        b = _dot(yv, q) / _dot(sv, yv)
        q = [qi + (a - b) * si for qi, si in zip(q, sv, strict=True)]
    return [-qi for qi in q]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _start_line(
    state: dict[str, Any], g: list[float], geo: Geometry, grad_point: int | None = None
) -> tuple[list[float], dict[str, Any]]:
    mask = geo.base if state["stage"] == "base" else [True] * len(g)
    d, slope = _direction(g, mask)
    if slope == 0.0:
        return _stall(state, g, geo)
    alpha = float(state["alpha"])
    memory = state.get("memory", [])
    if memory:  # a quasi-Newton step: length 1 along -H g, within the trust region
        p = _quasi_newton(g, mask, memory)
        n = _norm(p)
        slope_p = _dot(g, p)
        if n > 0 and math.isfinite(n) and slope_p < 0:
            d, slope = [pi / n for pi in p], slope_p / n
            alpha = min(n, TRUST / max(abs(di) for di in d))
    origin = state["incumbent"]["x"]
    state["line"] = {
        "g": g,
        "d": d,
        "slope": slope,
        "f0": state["incumbent"]["f"],
        "probes": [],
        "origin": origin,
        "grad_point": grad_point,
        "trusted": True,
    }
    x = geo.along(origin, d, alpha)
    return _propose(state, x, "line", False, alpha=alpha, origin=origin)


def _after_line_probe(
    state: dict[str, Any], value: float, improved: bool, geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    line = dict(state["line"])
    alpha = float(state["probe"]["alpha"])
    origin = state["probe"]["origin"]
    line["probes"] = [*line["probes"], [alpha, value]]
    if len(line["probes"]) == 1:  # the first probe checks the hypergradient
        check = check_probe(float(line["slope"]) * alpha, value - float(line["f0"]))
        state["check"] = {"kind": "probe", "point": line.get("grad_point"), **check}
        line["trusted"] = check["agrees"]
        if check["agrees"]:
            state["distrust"], state["skip"] = 0, 0
        else:
            _distrust(state)
        if check["ratio"] is not None and check["ratio"] <= 0 and check["ratio"] > -1:
            # a promised gain larger than the loss found (a step too long only loses more than
            # the slope promised): the opposite probe makes a central difference along the
            # direction, to see whether the hypergradient's sign holds
            state["line"] = line
            x = geo.along(origin, line["d"], -alpha)
            if x != state["incumbent"]["x"]:
                return _propose(state, x, "line", False, alpha=-alpha, origin=origin)
    state["line"] = line
    gains = [(f, a) for a, f in line["probes"] if f < line["f0"]]
    successes = 0
    for _, f in line["probes"]:
        if not f < line["f0"] or (successes and f >= line["probes"][successes - 1][1]):
            break
        successes += 1
    if improved and successes == len(line["probes"]) <= EXPANSIONS:
        # every step so far worked, each better than the last: try twice as far
        x = geo.along(origin, line["d"], 2 * alpha)
        if x != state["incumbent"]["x"]:
            return _propose(state, x, "line", False, alpha=2 * alpha, origin=origin)
    if gains:  # accept the best point found along the line (either side of it)
        state["alpha"] = min(abs(a) for f, a in gains if f == min(f for f, _ in gains))
        return _gradient_at_best(state, geo)
    tries = BASE_TRIES if state["stage"] == "base" else FULL_TRIES
    if not line.get("trusted", True) and alpha < 0:  # neither side improved: the probes decide
        return _probes_decide(state, geo)
    if len(line["probes"]) >= tries:
        return _stall(state, line["g"], geo)
    f0, slope = float(line["f0"]), float(line["slope"])
    curv = value - f0 - slope * alpha
    t = -slope * alpha * alpha / (2 * curv) if math.isfinite(value) and curv > 0 else 0.0
    nxt = min(max(t, 0.1 * alpha), 0.5 * alpha)
    return _propose(
        state, geo.along(origin, line["d"], nxt), "line", False, alpha=nxt, origin=origin
    )


def _stall(
    state: dict[str, Any], g: list[float], geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    """No probe along the direction improved: widen to every param, or stop."""
    if state["stage"] == "base":
        state["stage"] = "full"
        state["alpha"] = geo.first_step
        state["memory"] = []
        return _start_line(state, g, geo)
    state["pattern"] = {"h": PATTERN_STEP, "i": 0, "sign": 1}
    return _next_pattern_probe(state, geo)


def _pattern_coords(geo: Geometry, once: bool = False) -> list[list[int]]:
    """The moves of a pattern pass, each a list of params moved together: in the coarse pass
    (``once``) the first-stage params but the lr scale, by block; later one param at a time."""
    if not geo.hypergradients and not once:  # the ablation's pattern search: every param
        return [[i] for i in range(len(geo.base))]
    if not once:
        return [[i] for i, b in enumerate(geo.base) if b]
    moves: dict[int, list[int]] = {}
    for i, b in enumerate(geo.base):
        if b and not geo.scale[i]:
            moves.setdefault(i if geo.blocks is None else geo.blocks[i], []).append(i)
    return list(moves.values())


def _next_pattern_probe(
    state: dict[str, Any], geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    """The next plain probe of the pattern search: one family param at a time, +h then -h;
    once every one failed, h halves; below ``MIN_PATTERN_STEP`` the search has converged."""
    pat = dict(state["pattern"])
    coords = _pattern_coords(geo, bool(pat.get("once")))
    x = state["incumbent"]["x"]
    while pat["h"] >= MIN_PATTERN_STEP:
        while pat["i"] < len(coords):
            d = [0.0] * len(x)
            for i in coords[pat["i"]]:
                d[i] = float(pat["sign"])
            moved = geo.along(x, d, pat["h"])
            if pat["sign"] > 0:
                pat["sign"] = -1
            else:
                pat["sign"], pat["i"] = 1, pat["i"] + 1
            if moved != x:
                state["pattern"] = pat
                state["phase"] = "pattern"
                return _propose(state, moved, "pattern", False)
        if pat.get("once"):  # the coarse pass is done: hypergradient steps from the best
            state["pattern"] = None
            return _descend(state, geo)
        pat = {"h": pat["h"] / 2, "i": 0, "sign": 1}
    state["converged"] = True
    return _propose(state, x, "converged", False)


def _after_pattern_probe(
    state: dict[str, Any], improved: bool, geo: Geometry
) -> tuple[list[float], dict[str, Any]]:
    """A pattern probe that improves restarts the hypergradient steps from there (in the
    coarse pass: the pass goes on from there, to the next param)."""
    pat = state["pattern"]
    if improved and pat.get("once"):
        if pat["sign"] < 0:  # +h improved: skip -h
            state["pattern"] = {**pat, "sign": 1, "i": pat["i"] + 1}
        return _next_pattern_probe(state, geo)
    if improved and not geo.hypergradients:  # poll again around the new point, same step
        return _descend(state, geo)
    if improved and int(state.get("skip", 0)) > 0:
        # recent hypergradients were contradicted: poll again as the ablation does
        state["skip"] = int(state["skip"]) - 1
        state["pattern"] = {"h": pat["h"], "i": 0, "sign": 1}
        return _next_pattern_probe(state, geo)
    if improved:
        state["stage"] = "base" if not all(geo.base) else "full"
        state["alpha"] = geo.first_step
        state["memory"] = []
        state["line"] = None
        return _gradient_at_best(state, geo)
    return _next_pattern_probe(state, geo)
