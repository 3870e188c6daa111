"""The climb: lines along the hypergradient's learning-rate part (quasi-Newton over the climb's
earlier ones), each probe twice as far as the one before while it improves, the bracket refined
by golden section in log step with a doubling's margin from a step that diverged, and the line's
minimum differentiated for the next line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .._geometry import Geometry
from .._point import Point
from ._common import SearchConfig, Step, incumbent_of, propose
from ._edge import edge
from ._explore import GUIDE
from ._scale import SCALE_FACTOR, scale_fallback
from ._state import Line, Probe, SearchState
from ._trust import check_members, check_probe, mean_direction, norm

__all__ = [
    "AGREED",
    "BELOW",
    "CLIMB_OTHERS",
    "CLIMB_PROBES",
    "EXPLODE",
    "FIRST_PROBE",
    "GOLDEN",
    "MEMORY",
    "REFINE_PROBES",
    "after_bracket",
    "after_climb_gradient",
    "after_climb_probe",
    "line_block",
]

EXPLODE = 10.0  # |first-order change over half a doubling| / |value| that counts as exploding
CLIMB_PROBES = 7  # probes doubling along one hypergradient
FIRST_PROBE = 2.0  # the first line's first probe, in spacings (doublings of the fastest lr)
REFINE_PROBES = 4  # golden-section probes refining a line's bracket
GOLDEN = 1.0 - 2.0 / (1.0 + math.sqrt(5.0))  # 0.382: where the next probe cuts the wider side
CLIMB_OTHERS = 0.25  # a climb's first step moves a non-log param by at most this many units
MEMORY = 5  # quasi-Newton (L-BFGS) pairs kept
BELOW = 0.1  # a contradicted start: the climb begins again from every lr at this factor
AGREED = 0.1  # members pointing apart: climb on where they agree if it holds this much length


def after_climb_gradient(
    state: SearchState, last: Point | None, geo: Geometry, cfg: SearchConfig
) -> Step:
    """A hypergradient arrived (the start's, or a line minimum's): climb along its block's
    part, or, when that is contradicted, hand over (the very first one: to the scale search)."""
    first = state.outer_step == 0
    state = replace(state, outer_step=state.outer_step + 1)
    best = incumbent_of(state)
    g: list[float] | None = None
    block = geo.lr_mask
    exploding = last is not None and last.diverged
    if last is not None and not last.bad and last.grad is not None and last.x is not None:
        g = _masked(geo.unit_gradient(last.x, last.grad), geo.base)
        block = line_block(geo, state.outer_step, g)
        n = norm(_masked(g, block))
        half = _lead_step(geo, cfg, _direction(g, block)[0]) / 2  # a later line's first step
        exploding = not math.isfinite(n) or n * half > EXPLODE * abs(best.f)
    d: list[float] | None = None if g is None else _masked(g, block)
    if g is not None and last is not None and last.members:
        assert last.x is not None
        members = [_masked(geo.unit_gradient(last.x, m), block) for m in last.members]
        check = replace(check_members(members, block), point=last.number)
        state = replace(state, check=check)
        if not check.agrees and not (check.cosine is not None and check.cosine > 0):
            d = _agreed(members, block)  # the members point apart: where do they agree?
        elif not check.agrees:
            d = mean_direction(members)  # one member dominates the mean: average directions
    if g is None or d is None or exploding:
        why = "exploding" if exploding else "contradicted"
        if not exploding and _may_drop(state, geo):
            return _below(state, geo)
        state = replace(state, handover=why)
        return scale_fallback(state, geo, cfg, down=exploding) if first else edge(state, geo, cfg)
    assert last is not None and last.x is not None
    at = _units(geo, cfg, last.x)
    if state.line is not None and state.line.at is not None:  # a quasi-Newton pair
        step = [b - a for a, b in zip(state.line.at, at, strict=True)]
        change = [b - a for a, b in zip(state.line.g, g, strict=True)]
        if _dot(step, change) > 1e-12 * norm(step) * norm(change):
            state = replace(state, memory=(*state.memory, (tuple(step), tuple(change)))[-MEMORY:])
    f0 = incumbent_of(state).f if last.value is None else float(last.value)
    return _climb_line(state, g, d, block, (tuple(last.x), f0), last.number, tuple(at), geo, cfg)


def _may_drop(state: SearchState, geo: Geometry) -> bool:
    """Whether a contradicted start may climb again from a tenth below (:func:`_below`): on the
    first line only, once, and where the space has an lr scale to drop."""
    return state.outer_step == 1 and not state.below and any(geo.scale)


def _below(state: SearchState, geo: Geometry) -> Step:
    """The start's hypergradient is contradicted (its members point apart, or the first line
    along it finds nothing: a start at or above the good lr): the climb begins again from every
    lr at ``BELOW`` of the start's, where the hypergradient is the slope, with a hypergradient
    there (no quasi-Newton pair across the drop)."""
    x = geo.shift_scale(incumbent_of(state).x, BELOW)
    state = replace(state, below=True, outer_step=0, line=None, check=state.check)
    return propose(state, x, Probe("start"))


def line_block(geo: Geometry, line: int, g: Sequence[float]) -> list[bool]:
    """The params the climb's ``line``-th line moves (from 1): the learning rate's on odd
    lines, the other first-stage params (momentum, weight decay, ...) on even ones, so a step
    in one block never compounds with a step in the other; a block the hypergradient ``g``
    has no slope in gives way to the other."""
    lr = geo.lr_mask
    others = [b and not m for b, m in zip(geo.base, lr, strict=True)]
    blocks = (lr, others) if line % 2 else (others, lr)
    for block in blocks:
        if norm(_masked(g, block)) > 0:
            return block
    return lr


def _climb_line(
    state: SearchState,
    g: list[float],
    descent: list[float],
    block: list[bool],
    origin: tuple[tuple[float, ...], float],
    point: int,
    at: tuple[float, ...],
    geo: Geometry,
    cfg: SearchConfig,
) -> Step:
    """The first probe of a line along ``descent`` (the hypergradient ``g`` per unit, taken at
    ``point``, ``at`` in units, over the line's ``block``) from where it was taken (``origin``:
    params and value; the incumbent, but after a contradicted start's drop): quasi-Newton
    (L-BFGS over the climb's earlier hypergradients) when it has curvature pairs in the block,
    steepest descent otherwise. The line's spacing moves the fastest log-scale param by a
    factor of ``SCALE_FACTOR`` (a doubling); the first line's first probe is ``FIRST_PROBE``
    spacings (the lr x4: a line from far below reaches x256 in three probes), a
    later line's half of one (a quasi-Newton step of its own length, up to 4 spacings); each
    further probe doubles the step."""
    d, slope = _direction(descent, block)
    h = _lead_step(geo, cfg, d)
    p = _quasi_newton(g, block, state.memory) if state.memory else None
    if p is not None and norm(p) > 0 and math.isfinite(norm(p)) and _dot(g, p) < 0:
        n = norm(p)
        d, slope = [pi / n for pi in p], _dot(g, p) / n
        h = _lead_step(geo, cfg, d)
        first = min(max(n, h / 2), 4 * h)
    else:  # a later line starts half as far: its origin is a line's minimum
        first = FIRST_PROBE * h if state.outer_step <= 1 else h / 2
    start, f0 = origin
    x = geo.along(start, d, first)
    if slope == 0.0 or tuple(x) == start:
        return edge(replace(state, handover="blocked"), geo, cfg)
    line = Line(tuple(g), tuple(d), slope, f0, (), start, point, at=at, spacing=h)
    state = replace(state, phase="climb", line=line)
    return propose(state, x, Probe("climb", alpha=first, origin=start))


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
    """After a plain probe of the climb: twice as far while each probe improves; once one does
    not, refine the bracket around the best step (golden section in log step) down to half a
    doubling of the fastest lr; then differentiate the line's minimum. Hand over when the line
    finds nothing down to half a step."""
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
    if line.refined or (len(line.probes) > 1 and alpha != max(a for a, _ in line.probes)):
        line = replace(line, refined=line.refined + 1)
    state = replace(state, line=line)
    pts = sorted([(0.0, line.f0), *line.probes])
    ab = min((f, a) for a, f in pts)[1]
    if ab == 0.0:  # no step along the line improved
        shortest = min(a for a, _ in line.probes)
        if len(line.probes) == 1 and shortest > step / 2:  # one shorter step, half the first
            nxt = shortest / 2
            return propose(state, geo.along(line.origin, line.d, nxt), _climb_probe(nxt, line))
        if _may_drop(state, geo):
            return _below(state, geo)  # the start's own line is barren: from a tenth below
        return edge(replace(state, handover="contradicted"), geo, cfg)
    if ab == pts[-1][0] and not line.refined:  # the longest step is the best: twice as far
        if len(line.probes) < CLIMB_PROBES:
            x = geo.along(line.origin, line.d, ab + max(step, ab))
            if tuple(x) != incumbent_of(state).x:
                return propose(state, x, _climb_probe(ab + max(step, ab), line))
    elif line.refined < REFINE_PROBES:
        t = _refine(pts, ab, step, line.cliff)
        if t is not None:
            x = geo.along(line.origin, line.d, t)
            if all(x != geo.along(line.origin, line.d, a) for a, _ in pts):
                return propose(state, x, _climb_probe(t, line))
    # the line's minimum (its best step): differentiated for the next line
    x = geo.along(line.origin, line.d, ab)
    return propose(state, x, Probe("bracket", alpha=ab, origin=line.origin))


def _climb_probe(alpha: float, line: Line) -> Probe:
    return Probe("climb", alpha=alpha, origin=line.origin)


def _refine(
    pts: Sequence[tuple[float, float]], ab: float, step: float, cliff: float | None
) -> float | None:
    """The next step of a golden-section search in log step around the best step ``ab`` of a
    line's sorted ``(step, value)`` points (``None``: the bracket is refined). A step is a
    doubling of the fastest lr per ``step``; no probe above ``ab`` lies within a doubling of
    it or of a step that diverged (``cliff``), so the line's minimum keeps a doubling's
    margin from any divergence it saw."""
    steps = [a for a, _ in pts]
    i = steps.index(ab)
    lo = steps[i - 1]
    hi = steps[i + 1] if i + 1 < len(steps) else math.inf
    if cliff is not None:
        hi = min(hi, cliff - step)
    below = math.log(ab / lo) if lo > 0 else math.inf
    up = hi
    if ab < hi < math.inf:
        up = max(ab * math.exp(GOLDEN * math.log(hi / ab)), ab + step)
    above = math.log(hi / ab) if up < hi else 0.0  # room above for a probe with its margin
    if ab - lo < step / 2 and not above:  # half a doubling below, none free above: refined
        return None
    if above > below or (above and below == math.inf and hi - ab > ab - lo):
        return up
    if lo == 0.0:
        return ab - GOLDEN * ab
    return ab * math.exp(-GOLDEN * below)


def after_bracket(
    state: SearchState, last: Point | None, value: float, geo: Geometry, cfg: SearchConfig
) -> Step:
    """The line's minimum differentiated: the step it took is the next line's first; the
    guide keeps the line's hypergradient when its first probe confirmed it."""
    line = state.line
    assert line is not None and state.probe.alpha is not None
    pts = sorted((f, a) for a, f in (*line.probes, (state.probe.alpha, value)) if math.isfinite(f))
    if pts and pts[0][0] < line.f0:
        alpha = abs(pts[0][1])
        state = replace(state, alpha=alpha, climbed=state.climbed + 1)
    if line.trusted:
        state = replace(state, guide=(*state.guide, line.g)[-GUIDE:])
    return after_climb_gradient(state, last, geo, cfg)


def _masked(v: Sequence[float], mask: Sequence[bool]) -> list[float]:
    return [x if m else 0.0 for x, m in zip(v, mask, strict=True)]


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
