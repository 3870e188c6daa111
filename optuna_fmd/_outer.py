"""The outer loop's search rule as pure functions over plain floats: no torch, no Optuna.

:class:`~optuna_fmd.FMDSampler` is the Optuna adapter around them: it reads the study into
:class:`Point` s, calls a rule and stores the returned state (a frozen
:class:`~optuna_fmd._state.SearchState`, JSON only in storage) on the trial it proposes. Every
param is stepped in its transformed coordinate (:class:`~optuna_fmd._geometry.Coord`), lengths
measured in its units.

The ``"search"`` rule (:func:`search_step`) is coarse before fine and never accepts a worse
iterate:

1. *Coarse*: plain episodes (no hypergradient) that multiply the lr scale (the first entry's
   log-scale params) by 2 while the value improves, then by 1/2, then one probe at the vertex
   of the parabola through the best point and its two neighbours (in log scale); then one
   pass over the family's other params, each moved a quarter unit up, then down, keeping
   what improves. With ``geo.explore`` probes, an *exploration* replaces that pass: Gaussian
   draws over every first-stage param at once around the best point
   (:mod:`optuna_fmd._explore`), its cost set by the sampler, not by the number of params.
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
5. *Trust* (:mod:`optuna_fmd._trust`): every hypergradient is checked against the plain
   episodes the search runs anyway: the first probe along it finds a change of the predicted
   sign and within ``DISAGREE`` times the predicted first-order change, and an iterate's members'
   hypergradients point the same way (positive cosine) and within ``DISAGREE`` times each
   other's size. Each check is stored in the state (``SearchState.check``). A hypergradient
   that fails one gets more weight on the probes: members that point apart send the iterate
   to the pattern search without a line; members of very different sizes are averaged as
   unit vectors; a first probe that loses less than the hypergradient promised to gain is
   followed by the opposite probe (a central difference along the direction) and, if neither
   improves, by the pattern search instead of more probes along the same hypergradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ._explore import after_probe, next_probe
from ._explore import start as explore_start
from ._geometry import Geometry
from ._state import (
    Bracket,
    Incumbent,
    Line,
    OuterState,
    Pattern,
    Pending,
    Probe,
    SearchState,
)
from ._trust import check_members, check_probe, dot, mean_direction, norm

__all__ = ["Point", "check_members", "check_probe", "search_step"]

SCALE_FACTOR = 2.0  # the scale search multiplies the lr by this factor per probe
EXPLODE = 10.0  # |first-order change over the first step| / |value| that counts as exploding
BASE_TRIES = 3  # probes along one direction over the family's params before the corrections join
FULL_TRIES = 5  # probes along one direction over every param before the loop has converged
EXPANSIONS = 1  # doublings of a line-search step while each one improves
PATTERN_STEP = 0.1  # the pattern search's first step per family param, in units
COARSE_STEP = 0.25  # the coarse pass's step over the family's other params, in units (0: none)
MIN_PATTERN_STEP = 0.01  # the pattern search's smallest step: below it the search has converged
MEMORY = 5  # quasi-Newton (L-BFGS) pairs kept
TRUST = 0.2  # largest quasi-Newton step per coordinate, in units

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
        phase="scale",
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
    if kind == "grad":
        return _after_gradient(state, last, geo)
    if state.incumbent is None:  # the start itself failed: nothing to scale from
        return _propose(replace(state, converged=True), geo.start, Probe("converged"))
    if kind in ("start", "scale"):
        return _after_scale_probe(state, value, improved, geo)
    if kind == "pattern":
        return _after_pattern_probe(state, improved, geo)
    if kind == "vertex":
        return _coarse_or_gradient(state, geo)
    if kind == "explore":
        assert state.explore is not None
        return _explore(replace(state, explore=after_probe(state.explore, improved)), geo)
    assert kind == "line", kind
    return _after_line_probe(state, value, improved, geo)


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
        return _explore(replace(state, coarse_done=True, explore=explore_start()), geo)
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


def _descend(state: SearchState, geo: Geometry) -> Step:
    """After the coarse phase: hypergradient steps, or (without hypergradients) the pattern
    search over every param."""
    if geo.hypergradients:
        return _gradient_at_best(state, geo)
    h = PATTERN_STEP if state.pattern is None else state.pattern.h
    return _next_pattern_probe(replace(state, stage="full", pattern=Pattern(h)), geo)


def _gradient_at_best(state: SearchState, geo: Geometry) -> Step:
    pending = state.pending
    state = replace(state, phase="descend", pending=None)
    best = _best(state)
    if pending is not None and pending.trial == best.trial:
        # the scale moved nowhere since this hypergradient: follow it without asking again
        members = None if pending.members is None else [list(m) for m in pending.members]
        return _follow(state, list(pending.g), members, pending.point, geo)
    return _propose(state, best.x, Probe("grad"))


def _after_gradient(state: SearchState, last: Point | None, geo: Geometry) -> Step:
    best = _best(state)
    g: list[float] | None = None
    exploding = last is not None and last.diverged
    if last is not None and not last.bad and last.grad is not None and last.x is not None:
        if last.value is not None:  # a fresh seed per trial re-measures the best point
            best = replace(best, f=float(last.value))
            state = replace(state, incumbent=best)
        g = geo.unit_gradient(last.x, last.grad)
        n = norm([gi if m else 0.0 for gi, m in zip(g, geo.scale, strict=True)]) or norm(g)
        exploding = not math.isfinite(n) or n * state.alpha > EXPLODE * abs(best.f)
    state = replace(state, outer_step=state.outer_step + 1)
    distrusted = state.distrust > 0  # then an explosion is chaos, not the lr
    if exploding and any(geo.scale) and not distrusted and state.exploded_at != best.trial:
        state = replace(state, exploded_at=best.trial)
        if g is not None and last is not None:  # kept, in case the lr stays where it is
            assert last.x is not None
            kept = [tuple(geo.unit_gradient(last.x, m)) for m in last.members or ()]
            pending = Pending(best.trial, tuple(g), last.number, tuple(kept) if kept else None)
            state = replace(state, pending=pending)
        # the lr is too high for the hypergradient to mean anything: scale down instead
        h = math.log(SCALE_FACTOR)
        state = replace(state, phase="scale", bracket=Bracket(-1, 0.0, ((0.0, best.f),)))
        moved = geo.shift_scale(best.x, 1.0 / SCALE_FACTOR)
        return _propose(state, moved, Probe("scale", offset=-h))
    if g is None:  # no hypergradient (a failed trial): one more try, then stop
        if state.grad_failures >= 1:
            return _propose(replace(state, converged=True), best.x, Probe("converged"))
        state = replace(state, grad_failures=state.grad_failures + 1)
        return _propose(state, best.x, Probe("grad"))
    assert last is not None and last.x is not None
    members = [geo.unit_gradient(last.x, m) for m in last.members] if last.members else None
    return _follow(replace(state, grad_failures=0), g, members, last.number, geo)


def _follow(
    state: SearchState,
    g: list[float],
    members: list[list[float]] | None,
    point: int,
    geo: Geometry,
) -> Step:
    """A line along the hypergradient ``g`` (per unit) taken at ``point``, unless its members
    point apart."""
    if members:
        check = check_members(members, geo.base if state.stage == "base" else None)
        check = replace(check, point=point)
        state = replace(state, check=check)
        if not check.agrees:
            state = _distrust(state)
        if not check.agrees and check.cosine is not None and check.cosine < 0:
            # the members point apart: no line along their mean, the probes decide
            return _probes_decide(state, geo)
        if not check.agrees and check.norm_ratio is not None:
            g = mean_direction(members)  # one member dominates the mean: average directions
    return _start_line(_remember(state, g, geo), g, geo, grad_point=point)


def _probes_decide(state: SearchState, geo: Geometry) -> Step:
    """The pattern search instead of a hypergradient's line, at the step it last had."""
    h = PATTERN_STEP if state.pattern is None else state.pattern.h
    return _next_pattern_probe(replace(state, pattern=Pattern(h)), geo)


def _distrust(state: SearchState) -> SearchState:
    """One more hypergradient the probes (or members) contradict: the next ``2^n - 1``
    improvements of the pattern search ask for none (``n`` such in a row, at most 3)."""
    n = state.distrust + 1
    return replace(state, distrust=n, skip=2 ** min(n, 3) - 1)


def _units(geo: Geometry, x: Sequence[float]) -> list[float]:
    return [c.to_u(v) / c.unit for c, v in zip(geo.coords, x, strict=True)]


def _remember(state: SearchState, g: list[float], geo: Geometry) -> SearchState:
    """Add the step since the last hypergradient and the change of the gradient to the
    quasi-Newton memory (pairs with no positive curvature are skipped)."""
    line, best = state.line, _best(state)
    if line is None or line.origin == best.x:
        return state
    step = [b - a for a, b in zip(_units(geo, line.origin), _units(geo, best.x), strict=True)]
    dg = [b - a for a, b in zip(line.g, g, strict=True)]
    if math.fsum(a * b for a, b in zip(step, dg, strict=True)) > 1e-12 * norm(step) * norm(dg):
        memory = (*state.memory, (tuple(step), tuple(dg)))
        state = replace(state, memory=memory[len(memory) - MEMORY :] if MEMORY > 0 else ())
    return state


def _quasi_newton(
    g: list[float], mask: Sequence[bool], memory: Sequence[tuple[Sequence[float], Sequence[float]]]
) -> list[float]:
    """-H g by the L-BFGS two-loop recursion over the masked coordinates."""
    q = [gi if m else 0.0 for gi, m in zip(g, mask, strict=True)]
    pairs = [
        (
            [a if m else 0.0 for a, m in zip(sv, mask, strict=True)],
            [b if m else 0.0 for b, m in zip(yv, mask, strict=True)],
        )
        for sv, yv in memory
    ]
    pairs = [(sv, yv) for sv, yv in pairs if dot(sv, yv) > 0]
    if not pairs:  # no curvature left over these coordinates: steepest descent
        return [-qi for qi in q]
    alphas = []
    for sv, yv in reversed(pairs):
        a = dot(sv, q) / dot(sv, yv)
        alphas.append(a)
        q = [qi - a * yi for qi, yi in zip(q, yv, strict=True)]
    sv, yv = pairs[-1]
    q = [qi * dot(sv, yv) / dot(yv, yv) for qi in q]
    for (sv, yv), a in zip(pairs, reversed(alphas), strict=True):
        b = dot(yv, q) / dot(sv, yv)
        q = [qi + (a - b) * si for qi, si in zip(q, sv, strict=True)]
    return [-qi for qi in q]


def _start_line(
    state: SearchState, g: list[float], geo: Geometry, grad_point: int | None = None
) -> Step:
    mask = geo.base if state.stage == "base" else [True] * len(g)
    d, slope = _direction(g, mask)
    if slope == 0.0:
        return _stall(state, g, geo)
    alpha = state.alpha
    if state.memory:  # a quasi-Newton step: length 1 along -H g, within the trust region
        p = _quasi_newton(g, mask, state.memory)
        n = norm(p)
        slope_p = dot(g, p)
        if n > 0 and math.isfinite(n) and slope_p < 0:
            d, slope = [pi / n for pi in p], slope_p / n
            alpha = min(n, TRUST / max(abs(di) for di in d))
    best = _best(state)
    line = Line(tuple(g), tuple(d), slope, best.f, (), best.x, grad_point)
    x = geo.along(best.x, d, alpha)
    return _propose(replace(state, line=line), x, Probe("line", alpha=alpha, origin=best.x))


def _after_line_probe(state: SearchState, value: float, improved: bool, geo: Geometry) -> Step:
    assert state.line is not None and state.probe.alpha is not None
    assert state.probe.origin is not None
    alpha, origin = state.probe.alpha, state.probe.origin
    line = replace(state.line, probes=(*state.line.probes, (alpha, value)))
    if len(line.probes) == 1:  # the first probe checks the hypergradient
        check = replace(check_probe(line.slope * alpha, value - line.f0), point=line.grad_point)
        line = replace(line, trusted=check.agrees)
        state = replace(state, check=check, line=line)
        state = replace(state, distrust=0, skip=0) if check.agrees else _distrust(state)
        if check.ratio is not None and check.ratio <= 0 and check.ratio > -1:
            # a promised gain larger than the loss found (a step too long only loses more than
            # the slope promised): the opposite probe makes a central difference along the
            # direction, to see whether the hypergradient's sign holds
            x = geo.along(origin, line.d, -alpha)
            if tuple(x) != _best(state).x:
                return _propose(state, x, Probe("line", alpha=-alpha, origin=origin))
    return _after_line(replace(state, line=line), line, alpha, origin, value, improved, geo)


def _after_line(
    state: SearchState,
    line: Line,
    alpha: float,
    origin: Sequence[float],
    value: float,
    improved: bool,
    geo: Geometry,
) -> Step:
    """After the probe at ``alpha`` along ``line`` from ``origin``: a longer step, the best
    point found, a shorter step, or (nothing found) the probes decide or the direction widens."""
    gains = [(f, a) for a, f in line.probes if f < line.f0]
    successes = 0
    for _, f in line.probes:
        if not f < line.f0 or (successes and f >= line.probes[successes - 1][1]):
            break
        successes += 1
    if improved and successes == len(line.probes) <= EXPANSIONS:
        # every step so far worked, each better than the last: try twice as far
        x = geo.along(origin, line.d, 2 * alpha)
        if tuple(x) != _best(state).x:
            return _propose(state, x, Probe("line", alpha=2 * alpha, origin=tuple(origin)))
    if gains:  # accept the best point found along the line (either side of it)
        alpha = min(abs(a) for f, a in gains if f == min(f for f, _ in gains))
        return _gradient_at_best(replace(state, alpha=alpha), geo)
    tries = BASE_TRIES if state.stage == "base" else FULL_TRIES
    if not line.trusted and alpha < 0:  # neither side improved: the probes decide
        return _probes_decide(state, geo)
    if len(line.probes) >= tries:
        return _stall(state, list(line.g), geo)
    curv = value - line.f0 - line.slope * alpha
    t = -line.slope * alpha * alpha / (2 * curv) if math.isfinite(value) and curv > 0 else 0.0
    nxt = min(max(t, 0.1 * alpha), 0.5 * alpha)
    return _propose(
        state, geo.along(origin, line.d, nxt), Probe("line", alpha=nxt, origin=tuple(origin))
    )


def _stall(state: SearchState, g: list[float], geo: Geometry) -> Step:
    """No probe along the direction improved: widen to every param, or stop."""
    if state.stage == "base":
        state = replace(state, stage="full", alpha=geo.first_step, memory=())
        return _start_line(state, g, geo)
    return _next_pattern_probe(replace(state, pattern=Pattern(PATTERN_STEP)), geo)


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
            pat = replace(pat, sign=-1) if pat.sign > 0 else replace(pat, sign=1, i=pat.i + 1)
            if tuple(moved) != x:
                state = replace(state, pattern=pat, phase="pattern")
                return _propose(state, moved, Probe("pattern"))
        if pat.once:  # the coarse pass is done: hypergradient steps from the best
            return _descend(replace(state, pattern=None), geo)
        pat = Pattern(pat.h / 2)
    return _propose(replace(state, converged=True), x, Probe("converged"))


def _after_pattern_probe(state: SearchState, improved: bool, geo: Geometry) -> Step:
    """A pattern probe that improves restarts the hypergradient steps from there (in the
    coarse pass: the pass goes on from there, to the next param)."""
    assert state.pattern is not None
    pat = state.pattern
    if improved and pat.once:
        if pat.sign < 0:  # +h improved: skip -h
            state = replace(state, pattern=replace(pat, sign=1, i=pat.i + 1))
        return _next_pattern_probe(state, geo)
    if improved and not geo.hypergradients:  # poll again around the new point, same step
        return _descend(state, geo)
    if improved and state.skip > 0:
        # recent hypergradients were contradicted: poll again as the ablation does
        state = replace(state, skip=state.skip - 1, pattern=Pattern(pat.h))
        return _next_pattern_probe(state, geo)
    if improved:
        state = replace(state, stage=_first_stage(geo), alpha=geo.first_step, memory=(), line=None)
        return _gradient_at_best(state, geo)
    return _next_pattern_probe(state, geo)
