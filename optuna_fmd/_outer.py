"""The outer loop's search rule as pure functions over plain floats: no torch, no Optuna.

:class:`~optuna_fmd.FMDSampler` is the Optuna adapter around them: it reads the study into
:class:`Point` s, calls a rule and stores the returned state (a frozen
:class:`~optuna_fmd._state.SearchState`, JSON only in storage) on the trial it proposes. Every
param is stepped in its transformed coordinate (:class:`~optuna_fmd._geometry.Coord`), lengths
measured in its units.

The ``"search"`` rule (:func:`search_step`) uses the hypergradient where it is the slope
(below the good learning rate) and plain episodes where it is not:

1. *Climb*: the start computes the hypergradient (of every member, with a population). Plain
   episodes probe along its descent direction in units, over every first-stage param at once
   (per-layer, per-window and family params move together), twice as far while each probe
   improves: the first step multiplies the fastest log-scale param by ``SCALE_FACTOR`` (and
   moves no other param by more than ``CLIMB_OTHERS`` units), the next ones double the step's
   length from the line's origin, so a line crosses orders of magnitude in a few probes. The
   vertex of the parabola through the best step and
   its neighbours (the *bracket point*) is then evaluated with its hypergradient, so no point
   is trained twice: the best of the line's points is accepted (never a worse one) and the
   bracket point's hypergradient gives the next line's direction (quasi-Newton: L-BFGS over
   the climb's hypergradients).
2. *Trust* (:mod:`optuna_fmd._trust`): the climb goes on while its hypergradients are the
   slope: an iterate's members point the same way (positive cosine), it does not explode (a
   first-order change over the step of more than ``EXPLODE`` times the value, or a non-finite
   one), and a line finds a better point (a first probe that does not improve is followed by
   one half as long). Members that point apart still give a slope over the coordinates where
   every member has the same sign, if those hold ``AGREED`` of the mean's length (a learning
   rate at its edge, the others below theirs). A contradicted hypergradient marks the *edge*.
   If the very first one is contradicted (a start at or above the good lr) the plain lr-scale
   search takes over: factors of 2 from the start (downwards first when it exploded) and one
   probe at the vertex of the parabola through the best scale and its neighbours (log scale).
3. *At the edge*, plain episodes only: with ``geo.explore`` probes, Gaussian draws around the
   best point over every first-stage param, stretched along the recent trusted hypergradients
   (guided evolutionary strategies, :mod:`optuna_fmd._explore`); otherwise one coarse pass over
   the family's other params (each block a quarter unit up, then down); then a pattern search
   over every param (one at a time, up and down, with halving steps; after a move that
   improved, not straight back to the point it left, already trained) until its step falls
   below ``MIN_PATTERN_STEP``: the search has converged.
4. *A margin from divergence*: when a step along a line diverges (a member's training or
   hypergradient became non-finite), the bracket point goes half-way back from the best step
   below it and replaces it as the incumbent unless worse by more than ``MARGIN`` of its
   value; the best step is listed in ``SearchState.cliffs`` and never returned as best
   (:func:`optuna_fmd._population.iterate_groups` leaves it out).

Without hypergradients (``geo.hypergradients`` False, the ablation) the search starts at the
plain lr-scale search of item 2 and goes on as in item 3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ._explore import GUIDE, after_probe, next_probe
from ._explore import start as explore_start
from ._geometry import Geometry
from ._state import (
    Bracket,
    Incumbent,
    Line,
    OuterState,
    Pattern,
    Probe,
    SearchState,
)
from ._trust import check_members, check_probe, mean_direction, norm

__all__ = ["Point", "check_members", "check_probe", "search_step"]

SCALE_FACTOR = 2.0  # the scale search multiplies the lr by this factor per probe
EXPLODE = 10.0  # |first-order change over the first step| / |value| that counts as exploding
CLIMB_PROBES = 8  # probes along one hypergradient, its bracket point included
CLIMB_OTHERS = 0.25  # a climb's first step moves a non-log param by at most this many units
MARGIN = 0.05  # a point half-way back from a divergence replaces the best within this fraction
MEMORY = 5  # quasi-Newton (L-BFGS) pairs kept
AGREED = 0.1  # members pointing apart: climb on where they agree if it holds this much length
PATTERN_STEP = 0.1  # the pattern search's first step per family param, in units
COARSE_STEP = 0.25  # the coarse pass's step over the family's other params, in units (0: none)
MIN_PATTERN_STEP = 0.01  # the pattern search's smallest step: below it the search has converged

#: The params to evaluate next and the search state to store with them.
Step = tuple[list[float], SearchState]


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
    state: OuterState | None  # the sampler's state stored on the trial (same space and rule)
    diverged: bool = False  # training or the hypergradient became NaN / infinite
    members: list[list[float]] | None = None  # an iterate's members' hypergradients (>= 2)


def _direction(g: Sequence[float], mask: Sequence[bool]) -> tuple[list[float], float]:
    """The unit descent direction over the masked coordinates and the slope along it."""
    masked = [gi if m else 0.0 for gi, m in zip(g, mask, strict=True)]
    n = norm(masked)
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


def _fresh(geo: Geometry) -> SearchState:
    return SearchState(
        phase="climb" if geo.hypergradients else "scale",
        stage=_first_stage(geo),
        incumbent=None,
        probe=Probe("start"),
        bracket=Bracket(1, 0.0),
        line=None,
        alpha=geo.first_step,
    )


def _first_stage(geo: Geometry) -> str:
    """A refiner's corrections wait for a second stage; without them every param is in the
    first."""
    return "base" if not all(geo.base) else "full"


def _propose(state: SearchState, x: Sequence[float], probe: Probe) -> Step:
    return [float(v) for v in x], replace(state, probe=probe)


def _best(state: SearchState) -> Incumbent:
    assert state.incumbent is not None
    return state.incumbent


def search_step(prev: SearchState | None, last: Point | None, geo: Geometry) -> Step:
    """The next params and state of the ``"search"`` rule.

    Args:
        prev: The state stored on the latest trial the rule proposed (``None``: none yet).
        last: That trial as finished (``None``: none yet). Its value and hypergradient are
            what ``prev.probe`` asked for.
        geo: The space's geometry.

    Returns:
        The params to evaluate next and the state to store with them;
        ``state.wants_hypergradient`` says whether that trial needs the hypergradient.
    """
    if prev is None:
        return _propose(_fresh(geo), geo.start, Probe("start"))
    state = replace(prev, check=None)
    if state.converged:
        return _propose(
            state, geo.start if state.incumbent is None else state.incumbent.x, Probe("converged")
        )
    value = math.inf
    if last is not None and last.value is not None and not last.bad:
        value = float(last.value)
    x = list(last.x) if last is not None and last.x is not None else None
    best = state.incumbent
    improved = x is not None and value < (math.inf if best is None else best.f)
    if improved:
        assert x is not None and last is not None
        state = replace(state, incumbent=Incumbent(tuple(x), value, last.number))
    kind = state.probe.kind
    if state.incumbent is None:  # the start itself failed: nothing to step from
        return _propose(replace(state, converged=True), geo.start, Probe("converged"))
    if kind == "start" and state.phase == "climb":
        return _after_climb_gradient(state, last, geo)
    if kind == "climb":
        return _after_climb_probe(state, last, value, geo)
    if kind == "bracket":
        return _after_bracket(state, last, value, geo)
    if kind in ("start", "scale"):
        return _after_scale_probe(state, value, improved, geo)
    if kind == "pattern":
        return _after_pattern_probe(state, improved, geo)
    if kind == "vertex":
        return _coarse_or_gradient(state, geo)
    if kind == "explore":
        assert state.explore is not None
        return _explore(replace(state, explore=after_probe(state.explore, improved)), geo)
    # a state of an earlier release, stepping along a hypergradient: plain episodes from here
    return _edge(replace(state, handover="contradicted"), geo)


def _after_scale_probe(state: SearchState, value: float, improved: bool, geo: Geometry) -> Step:
    sc = state.bracket
    offset = 0.0 if state.probe.offset is None else state.probe.offset
    sc = replace(sc, points=(*sc.points, (offset, value)))
    h = math.log(SCALE_FACTOR)
    if not any(geo.scale):
        return _descend(replace(state, bracket=sc), geo)
    if improved:
        sc = replace(sc, offset=offset)
    elif sc.dir > 0 and len(sc.points) == 2 and sc.offset == 0.0:
        sc = replace(sc, dir=-1)  # the first step up failed: search downwards from the start
    else:
        return _vertex_or_gradient(replace(state, bracket=sc), geo)
    state = replace(state, bracket=sc)
    nxt = sc.offset + sc.dir * h
    if any(p[0] == nxt for p in sc.points):  # already seen: the bracket is closed
        return _vertex_or_gradient(state, geo)
    best = _best(state)
    moved = geo.shift_scale(best.x, math.exp(nxt - sc.offset))
    if tuple(moved) == best.x:  # at the bound already
        return _vertex_or_gradient(state, geo)
    return _propose(state, moved, Probe("scale", offset=nxt))


def _vertex_or_gradient(state: SearchState, geo: Geometry) -> Step:
    """One probe at the parabola's vertex through the best scale and its neighbours."""
    sc = state.bracket
    h = math.log(SCALE_FACTOR)
    at = sc.offset
    pts = {t: f for t, f in sc.points}
    near = [(t, pts[t]) for t in (at - h, at, at + h) if t in pts]
    t = _parabola(near) if len(near) == 3 else None
    if t is None or abs(t - at) < h / 8:
        return _coarse_or_gradient(state, geo)
    moved = geo.shift_scale(_best(state).x, math.exp(t - at))
    return _propose(state, moved, Probe("vertex", offset=t))


def _coarse_or_gradient(state: SearchState, geo: Geometry) -> Step:
    """After the scale: the exploration (``geo.explore``), or else one coarse pattern pass over
    the other family params (if enabled)."""
    if geo.explore and state.explore is None:
        ex = explore_start(state.guide, geo)
        return _explore(replace(state, coarse_done=True, explore=ex), geo)
    if COARSE_STEP > 0 and not state.coarse_done:
        pattern = Pattern(COARSE_STEP, once=True)
        return _next_pattern_probe(replace(state, coarse_done=True, pattern=pattern), geo)
    return _descend(state, geo)


def _explore(state: SearchState, geo: Geometry) -> Step:
    """The exploration's next draw around the best point, or, once it is spent, descend."""
    assert state.explore is not None
    nxt = next_probe(state.explore, _best(state).x, geo)
    if nxt is None:
        return _descend(state, geo)
    x, ex = nxt
    return _propose(replace(state, phase="explore", explore=ex), x, Probe("explore"))


def _descend(state: SearchState, geo: Geometry, back: tuple[int, int] | None = None) -> Step:
    """After the exploration (or the coarse pass): the pattern search over every param, plain
    episodes only, until its step falls below ``MIN_PATTERN_STEP``; ``back``, the move back to
    the point just left, is not probed."""
    h = PATTERN_STEP if state.pattern is None else state.pattern.h
    return _next_pattern_probe(replace(state, stage="full", pattern=Pattern(h, back=back)), geo)


# -- the climb ---------------------------------------------------------------------------------
def _after_climb_gradient(state: SearchState, last: Point | None, geo: Geometry) -> Step:
    """A hypergradient arrived (the start's, or a bracket point's): climb along it, or, when it
    is contradicted, hand over (the very first one: to the scale search)."""
    first = state.outer_step == 0
    state = replace(state, outer_step=state.outer_step + 1)
    best = _best(state)
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
        return _scale_fallback(state, geo, down=exploding) if first else _edge(state, geo)
    assert last is not None and last.x is not None
    at = _units(geo, last.x)
    if state.line is not None and state.line.at is not None:  # a quasi-Newton pair
        step = [b - a for a, b in zip(state.line.at, at, strict=True)]
        change = [b - a for a, b in zip(state.line.g, g, strict=True)]
        if _dot(step, change) > 1e-12 * norm(step) * norm(change):
            state = replace(state, memory=(*state.memory, (tuple(step), tuple(change)))[-MEMORY:])
    return _climb_line(state, g, last.number, tuple(at), geo)


def _climb_line(
    state: SearchState, g: list[float], point: int, at: tuple[float, ...], geo: Geometry
) -> Step:
    """The first probe of a line from the incumbent along the hypergradient ``g`` (per unit)
    taken at ``point`` (``at``, in units): quasi-Newton (L-BFGS over the climb's earlier
    hypergradients) when it has curvature pairs, steepest descent otherwise. The first probe
    moves the fastest log-scale param by a factor of ``SCALE_FACTOR`` (a quasi-Newton step of
    its own length, up to 4 such steps); each further one doubles the step."""
    d, slope = _direction(g, geo.base)
    h = _lead_step(geo, d)
    p = _quasi_newton(g, geo.base, state.memory) if state.memory else None
    if p is not None and norm(p) > 0 and math.isfinite(norm(p)) and _dot(g, p) < 0:
        n = norm(p)
        d, slope = [pi / n for pi in p], _dot(g, p) / n
        h = _lead_step(geo, d)
        h = min(max(n, h), 4 * h)
    best = _best(state)
    x = geo.along(best.x, d, h)
    if slope == 0.0 or tuple(x) == best.x:
        return _edge(replace(state, handover="blocked"), geo)
    line = Line(tuple(g), tuple(d), slope, best.f, (), best.x, point, at=at, spacing=h)
    state = replace(state, phase="climb", line=line)
    return _propose(state, x, Probe("climb", alpha=h, origin=best.x))


def _lead_step(geo: Geometry, d: Sequence[float]) -> float:
    """The step along the unit direction ``d`` that multiplies its fastest log-scale param by
    ``SCALE_FACTOR`` and moves no other param by more than ``CLIMB_OTHERS`` units
    (``geo.first_step`` when it moves none)."""
    logs = [abs(di) * c.unit for c, di in zip(geo.coords, d, strict=True) if c.kind == "log"]
    others = [abs(di) for c, di in zip(geo.coords, d, strict=True) if c.kind != "log"]
    steps = [math.log(SCALE_FACTOR) / max(logs)] if max(logs, default=0.0) > 0 else []
    steps += [CLIMB_OTHERS / max(others)] if max(others, default=0.0) > 0 else []
    return min(steps, default=geo.first_step)


def _after_climb_probe(
    state: SearchState, last: Point | None, value: float, geo: Geometry
) -> Step:
    """After a plain probe of the climb: twice as far while each probe improves;
    differentiate the bracket's vertex once one does not; hand over when the line finds
    nothing down to half a step."""
    assert state.line is not None and state.probe.alpha is not None
    line, alpha = state.line, state.probe.alpha
    step = geo.first_step if line.spacing is None else line.spacing
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
            return _propose(state, geo.along(line.origin, line.d, nxt), _climb_probe(nxt, line))
        return _edge(replace(state, handover="contradicted"), geo)
    longer = [a for a, _ in pts if a > ab]
    t: float | None
    if not longer:  # the longest step is the best so far: twice as far
        if len(line.probes) < CLIMB_PROBES - 1:
            x = geo.along(line.origin, line.d, ab + max(step, ab))
            if tuple(x) != _best(state).x:
                return _propose(state, x, _climb_probe(ab + max(step, ab), line))
        t = ab + step / 2 if len(line.probes) < CLIMB_PROBES else None
    else:
        t = _bracket_vertex(pts, ab, line.cliff)
    if t is None or tuple(geo.along(line.origin, line.d, t)) == _best(state).x:
        lower = max(a for a, _ in pts if a < ab)
        t = (lower + ab) / 2
    x = geo.along(line.origin, line.d, t)
    return _propose(state, x, Probe("bracket", alpha=t, origin=line.origin))


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
    t = _parabola([(a, fa), (ab, pts[i][1]), (c, fc)])
    if t is None:
        return (ab + c) / 2 if c - ab > ab - a else (a + ab) / 2
    lo, hi = ab - 0.8 * (ab - a), ab + 0.8 * (c - ab)
    t = min(max(t, lo), hi)
    if abs(t - ab) < 0.2 * min(ab - a, c - ab):
        t = ab + 0.2 * (c - ab) if c - ab > ab - a else ab - 0.2 * (ab - a)
    return t


def _after_bracket(state: SearchState, last: Point | None, value: float, geo: Geometry) -> Step:
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
    return _after_climb_gradient(_margin(state, last, value), last, geo)


def _units(geo: Geometry, x: Sequence[float]) -> list[float]:
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
    best = _best(state)
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


def _scale_fallback(state: SearchState, geo: Geometry, *, down: bool) -> Step:
    """The very first hypergradient is contradicted (a start at or above the edge): the plain
    lr-scale search, downwards first when it exploded."""
    state = replace(state, edge=True, phase="scale", line=None)
    best = _best(state)
    if not any(geo.scale):
        return _coarse_or_gradient(state, geo)
    h = math.log(SCALE_FACTOR)
    sign = -1 if down else 1
    bracket = Bracket(sign, 0.0, ((0.0, best.f),))
    moved = geo.shift_scale(best.x, SCALE_FACTOR**sign)
    if tuple(moved) == best.x:
        return _coarse_or_gradient(replace(state, bracket=bracket), geo)
    return _propose(replace(state, bracket=bracket), moved, Probe("scale", offset=sign * h))


def _edge(state: SearchState, geo: Geometry) -> Step:
    """A hypergradient contradicted after the climb moved (the edge): the exploration, guided
    by the recent trusted hypergradients, then the pattern search; no more hypergradients."""
    return _coarse_or_gradient(replace(state, edge=True, line=None), geo)


def _pattern_coords(geo: Geometry, once: bool = False) -> list[list[int]]:
    """The moves of a pattern pass, each a list of params moved together: in the coarse pass
    (``once``) the first-stage params but the lr scale, by block; later one param at a time."""
    if not once:  # the pattern search: every param
        return [[i] for i in range(len(geo.base))]
    moves: dict[int, list[int]] = {}
    for i, b in enumerate(geo.base):
        if b and not geo.scale[i]:
            moves.setdefault(i if geo.blocks is None else geo.blocks[i], []).append(i)
    return list(moves.values())


def _next_pattern_probe(state: SearchState, geo: Geometry) -> Step:
    """The next plain probe of the pattern search: one family param at a time, +h then -h;
    once every one failed, h halves; below ``MIN_PATTERN_STEP`` the search has converged."""
    assert state.pattern is not None
    pat = state.pattern
    coords = _pattern_coords(geo, pat.once)
    x = _best(state).x
    while pat.h >= MIN_PATTERN_STEP:
        while pat.i < len(coords):
            d = [0.0] * len(x)
            for i in coords[pat.i]:
                d[i] = float(pat.sign)
            moved = geo.along(x, d, pat.h)
            back = (pat.i, pat.sign) == pat.back
            pat = replace(pat, sign=-1) if pat.sign > 0 else replace(pat, sign=1, i=pat.i + 1)
            if tuple(moved) != x and not back:
                state = replace(state, pattern=pat, phase="pattern")
                return _propose(state, moved, Probe("pattern"))
        if pat.once:  # the coarse pass is done: the pattern search from the best
            return _descend(replace(state, pattern=None), geo)
        pat = Pattern(pat.h / 2)
    return _propose(replace(state, converged=True), x, Probe("converged"))


def _after_pattern_probe(state: SearchState, improved: bool, geo: Geometry) -> Step:
    """A pattern probe that improves polls again around the new point at the same step (in
    the coarse pass: the pass goes on from there, to the next param)."""
    assert state.pattern is not None
    pat = state.pattern
    if improved and pat.once:
        if pat.sign < 0:  # +h improved: skip -h
            state = replace(state, pattern=replace(pat, sign=1, i=pat.i + 1))
        return _next_pattern_probe(state, geo)
    if improved:  # poll again around the new point, same step, but not back where it was
        i, sign = (pat.i, 1) if pat.sign < 0 else (pat.i - 1, -1)
        return _descend(state, geo, back=(i, -sign))
    return _next_pattern_probe(state, geo)
