"""The climb: lines along the hypergradient (quasi-Newton over the climb's earlier ones), each
probe twice as far as the one before while it improves, the bracket's vertex differentiated
for the next line; a margin from a step that diverged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .._geometry import Geometry
from .._point import Point
from .._state import Incumbent, Line, Probe, SearchState
from ._common import SearchConfig, Step, best_of, parabola, propose
from ._edge import edge
from ._explore import GUIDE
from ._scale import SCALE_FACTOR, scale_fallback
from ._trust import check_members, check_probe, mean_direction, norm

__all__ = [
    "AGREED",
    "CLIMB_OTHERS",
    "CLIMB_PROBES",
    "EXPLODE",
    "MARGIN",
    "MEMORY",
    "after_bracket",
    "after_climb_gradient",
    "after_climb_probe",
]

EXPLODE = 10.0  # |first-order change over the first step| / |value| that counts as exploding
CLIMB_PROBES = 8  # probes along one hypergradient, its bracket point included
CLIMB_OTHERS = 0.25  # a climb's first step moves a non-log param by at most this many units
MARGIN = 0.05  # a point half-way back from a divergence replaces the best within this fraction
MEMORY = 5  # quasi-Newton (L-BFGS) pairs kept
AGREED = 0.1  # members pointing apart: climb on where they agree if it holds this much length


def after_climb_gradient(
    state: SearchState, last: Point | None, geo: Geometry, cfg: SearchConfig
) -> Step:
    """A hypergradient arrived (the start's, or a bracket point's): climb along it, or, when it
    is contradicted, hand over (the very first one: to the scale search)."""
    first = state.outer_step == 0
    state = replace(state, outer_step=state.outer_step + 1)
    best = best_of(state)
    g: list[float] | None = None
    exploding = last is not None and last.diverged
    if last is not None and not last.bad and last.grad is not None and last.x is not None:
        g = geo.unit_gradient(last.x, last.grad)
        n = norm([gi if b else 0.0 for gi, b in zip(g, geo.base, strict=True)])
        exploding = not math.isfinite(n) or n * state.alpha > EXPLODE * abs(best.f)
    members = None
    if g is not None and last is not None and last.members:
        assert last.x is not None
        members = [geo.unit_gradient(last.x, m) for m in last.members]
        check = replace(check_members(members, geo.base), point=last.number)
        state = replace(state, check=check)
        if not check.agrees and not (check.cosine is not None and check.cosine > 0):
            g = _agreed(members, geo.base)  # the members point apart: where do they agree?
        elif not check.agrees:
            g = mean_direction(members)  # one member dominates the mean: average directions
    if g is None or exploding:
        why = "exploding" if exploding else "contradicted"
        state = replace(state, handover=why)
        return scale_fallback(state, geo, cfg, down=exploding) if first else edge(state, geo, cfg)
    assert last is not None and last.x is not None
    at = _units(geo, cfg, last.x)
    if state.line is not None and state.line.at is not None:  # a quasi-Newton pair
        step = [b - a for a, b in zip(state.line.at, at, strict=True)]
        change = [b - a for a, b in zip(state.line.g, g, strict=True)]
        if _dot(step, change) > 1e-12 * norm(step) * norm(change):
            state = replace(state, memory=(*state.memory, (tuple(step), tuple(change)))[-MEMORY:])
    return _climb_line(state, g, last.number, tuple(at), geo, cfg)


def _climb_line(
    state: SearchState,
    g: list[float],
    point: int,
    at: tuple[float, ...],
    geo: Geometry,
    cfg: SearchConfig,
) -> Step:
    """The first probe of a line from the incumbent along the hypergradient ``g`` (per unit)
    taken at ``point`` (``at``, in units): quasi-Newton (L-BFGS over the climb's earlier
    hypergradients) when it has curvature pairs, steepest descent otherwise. The first probe
    moves the fastest log-scale param by a factor of ``SCALE_FACTOR`` (a quasi-Newton step of
    its own length, up to 4 such steps); each further one doubles the step."""
    d, slope = _direction(g, geo.base)
    h = _lead_step(geo, cfg, d)
    p = _quasi_newton(g, geo.base, state.memory) if state.memory else None
    if p is not None and norm(p) > 0 and math.isfinite(norm(p)) and _dot(g, p) < 0:
        n = norm(p)
        d, slope = [pi / n for pi in p], _dot(g, p) / n
        h = _lead_step(geo, cfg, d)
        h = min(max(n, h), 4 * h)
    best = best_of(state)
    x = geo.along(best.x, d, h)
    if slope == 0.0 or tuple(x) == best.x:
        return edge(replace(state, handover="blocked"), geo, cfg)
    line = Line(tuple(g), tuple(d), slope, best.f, (), best.x, point, at=at, spacing=h)
    state = replace(state, phase="climb", line=line)
    return propose(state, x, Probe("climb", alpha=h, origin=best.x))


def _lead_step(geo: Geometry, cfg: SearchConfig, d: Sequence[float]) -> float:
    """The step along the unit direction ``d`` that multiplies its fastest log-scale param by
    ``SCALE_FACTOR`` and moves no other param by more than ``CLIMB_OTHERS`` units
    (``cfg.step`` when it moves none)."""
    logs = [abs(di) * c.unit for c, di in zip(geo.coords, d, strict=True) if c.kind == "log"]
    others = [abs(di) for c, di in zip(geo.coords, d, strict=True) if c.kind != "log"]
    steps = [math.log(SCALE_FACTOR) / max(logs)] if max(logs, default=0.0) > 0 else []
    steps += [CLIMB_OTHERS / max(others)] if max(others, default=0.0) > 0 else []
    return min(steps, default=cfg.step)


def _direction(g: Sequence[float], mask: Sequence[bool]) -> tuple[list[float], float]:
    """The unit descent direction over the masked coordinates and the slope along it."""
    masked = [gi if m else 0.0 for gi, m in zip(g, mask, strict=True)]
    n = norm(masked)
    if not n > 0 or not math.isfinite(n):
        return [0.0] * len(masked), 0.0
    return [-gi / n for gi in masked], -n


def after_climb_probe(
    state: SearchState, last: Point | None, value: float, geo: Geometry, cfg: SearchConfig
) -> Step:
    """After a plain probe of the climb: twice as far while each probe improves;
    differentiate the bracket's vertex once one does not; hand over when the line finds
    nothing down to half a step."""
    assert state.line is not None and state.probe.alpha is not None
    line, alpha = state.line, state.probe.alpha
    step = cfg.step if line.spacing is None else line.spacing
    line = replace(line, probes=(*line.probes, (alpha, value)))
    if (last is not None and last.diverged) or not math.isfinite(value):
        line = replace(line, cliff=alpha if line.cliff is None else min(line.cliff, alpha))
    if len(line.probes) == 1:  # the first probe checks the hypergradient
        check = replace(check_probe(line.slope * alpha, value - line.f0), point=line.grad_point)
        line = replace(line, trusted=check.agrees)
        state = replace(state, check=check)
    state = replace(state, line=line)
    pts = sorted([(0.0, line.f0), *line.probes])
    ab = min((f, a) for a, f in pts)[1]
    if ab == 0.0:  # no step along the line improved
        shortest = min(a for a, _ in line.probes)
        if shortest > step / 2:  # one shorter step, half the first
            nxt = shortest / 2
            return propose(state, geo.along(line.origin, line.d, nxt), _climb_probe(nxt, line))
        return edge(replace(state, handover="contradicted"), geo, cfg)
    longer = [a for a, _ in pts if a > ab]
    t: float | None
    if not longer:  # the longest step is the best so far: twice as far
        if len(line.probes) < CLIMB_PROBES - 1:
            x = geo.along(line.origin, line.d, ab + max(step, ab))
            if tuple(x) != best_of(state).x:
                return propose(state, x, _climb_probe(ab + max(step, ab), line))
        t = ab + step / 2 if len(line.probes) < CLIMB_PROBES else None
    else:
        t = _bracket_vertex(pts, ab, line.cliff)
    if t is None or tuple(geo.along(line.origin, line.d, t)) == best_of(state).x:
        lower = max(a for a, _ in pts if a < ab)
        t = (lower + ab) / 2
    x = geo.along(line.origin, line.d, t)
    return propose(state, x, Probe("bracket", alpha=t, origin=line.origin))


def _climb_probe(alpha: float, line: Line) -> Probe:
    return Probe("climb", alpha=alpha, origin=line.origin)


def _bracket_vertex(
    pts: Sequence[tuple[float, float]], ab: float, cliff: float | None
) -> float | None:
    """Where to differentiate around the best step ``ab`` of a line's ``(step, value)``
    points: the vertex of the parabola through it and its neighbours, kept at least a fifth of
    the gap from ``ab``; next to a step that diverged (``cliff``), half-way back towards the
    shorter neighbour (a margin from the cliff)."""
    i = [a for a, _ in pts].index(ab)
    (a, fa), (c, fc) = pts[i - 1], pts[i + 1]
    if cliff is not None and c >= cliff:
        return (a + ab) / 2
    t = parabola([(a, fa), (ab, pts[i][1]), (c, fc)])
    if t is None:
        return (ab + c) / 2 if c - ab > ab - a else (a + ab) / 2
    lo, hi = ab - 0.8 * (ab - a), ab + 0.8 * (c - ab)
    t = min(max(t, lo), hi)
    if abs(t - ab) < 0.2 * min(ab - a, c - ab):
        t = ab + 0.2 * (c - ab) if c - ab > ab - a else ab - 0.2 * (ab - a)
    return t


def after_bracket(
    state: SearchState, last: Point | None, value: float, geo: Geometry, cfg: SearchConfig
) -> Step:
    """The bracket point's value and hypergradient: the line's accepted point is the best of
    its probes (the bracket point included), the step it took is the next line's first; the
    guide keeps the line's hypergradient when its first probe confirmed it."""
    line = state.line
    assert line is not None and state.probe.alpha is not None
    t = state.probe.alpha
    line = replace(line, probes=(*line.probes, (t, value)))
    pts = sorted((f, a) for a, f in line.probes if math.isfinite(f))
    state = replace(state, line=line)
    if pts and pts[0][0] < line.f0:
        alpha = abs(pts[0][1])
        state = replace(state, alpha=alpha, climbed=state.climbed + 1)
    if line.trusted:
        state = replace(state, guide=(*state.guide, line.g)[-GUIDE:])
    return after_climb_gradient(_margin(state, last, value), last, geo, cfg)


def _units(geo: Geometry, cfg: SearchConfig, x: Sequence[float]) -> list[float]:
    return [c.to_u(v) / c.unit for c, v in zip(geo.coords, x, strict=True)]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _quasi_newton(
    g: list[float], mask: Sequence[bool], memory: Sequence[tuple[Sequence[float], Sequence[float]]]
) -> list[float] | None:
    """-H g by the L-BFGS two-loop recursion over the masked coordinates (``None``: no pair
    with positive curvature over them)."""
    q = [gi if m else 0.0 for gi, m in zip(g, mask, strict=True)]
    pairs = [
        (
            [a if m else 0.0 for a, m in zip(sv, mask, strict=True)],
            [b if m else 0.0 for b, m in zip(yv, mask, strict=True)],
        )
        for sv, yv in memory
    ]
    pairs = [(sv, yv) for sv, yv in pairs if _dot(sv, yv) > 0]
    if not pairs:
        return None
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


def _margin(state: SearchState, last: Point | None, value: float) -> SearchState:
    """Next to a step that diverged, the bracket point (half-way back) replaces the best step
    as the incumbent unless it is worse by more than ``MARGIN`` of its value; the best step is
    listed among the cliffs, never returned as best."""
    line = state.line
    assert line is not None
    if line.cliff is None or last is None or last.x is None or not math.isfinite(value):
        return state
    best = best_of(state)
    if best.trial == last.number:  # the bracket point is the best: the margin holds
        return state
    steps = [a for a, f in line.probes[:-1] if a > 0]
    values = dict(line.probes[:-1])
    ab = min(steps, key=lambda a: (values[a], a), default=None)
    longer = [a for a in steps if ab is not None and a > ab]
    if ab is None or not longer or min(longer) < line.cliff:
        return state
    if best.trial is not None:
        state = replace(state, cliffs=(*state.cliffs, best.trial))
    if value <= best.f + MARGIN * abs(best.f):
        state = replace(state, incumbent=Incumbent(tuple(last.x), value, last.number))
    return state


def _agreed(members: list[list[float]], mask: Sequence[bool]) -> list[float] | None:
    """The members' mean over the coordinates where every member has the same sign, when
    the members agree there (:func:`check_members`) and those coordinates hold at least
    ``AGREED`` of the mean's length (``None``: no such slope)."""
    keep = [
        m and (all(v[i] > 0 for v in members) or all(v[i] < 0 for v in members))
        for i, m in enumerate(mask)
    ]
    if not any(keep) or not check_members(members, keep).agrees:
        return None
    mean = [math.fsum(v[i] for v in members) / len(members) for i in range(len(mask))]
    kept = [x if k else 0.0 for x, k in zip(mean, keep, strict=True)]
    full = norm([x if m else 0.0 for x, m in zip(mean, mask, strict=True)])
    return kept if norm(kept) >= AGREED * full else None
