"""The plain lr-scale search: every lr multiplied by factors of ``SCALE_FACTOR`` from the
incumbent, then one probe at the vertex of the parabola through the best scale and its
neighbours (log scale)."""

from __future__ import annotations

import math
from dataclasses import replace

from .._geometry import Geometry
from ._common import SearchConfig, Step, incumbent_of, parabola, propose
from ._edge import hand_over
from ._pattern import descend
from ._state import Bracket, Probe, SearchState

__all__ = ["SCALE_FACTOR", "after_scale_probe", "scale_fallback"]

SCALE_FACTOR = 2.0  # the scale search multiplies the lr by this factor per probe


def after_scale_probe(
    state: SearchState, value: float, improved: bool, geo: Geometry, cfg: SearchConfig
) -> Step:
    sc = state.bracket
    offset = 0.0 if state.probe.offset is None else state.probe.offset
    sc = replace(sc, points=(*sc.points, (offset, value)))
    h = math.log(SCALE_FACTOR)
    if not any(geo.scale):
        return descend(replace(state, bracket=sc), geo, cfg)
    if improved:
        sc = replace(sc, offset=offset)
    elif sc.dir > 0 and len(sc.points) == 2 and sc.offset == 0.0:
        sc = replace(sc, dir=-1)  # the first step up failed: search downwards from the start
    else:
        return _vertex(replace(state, bracket=sc), geo, cfg)
    state = replace(state, bracket=sc)
    nxt = sc.offset + sc.dir * h
    if any(p[0] == nxt for p in sc.points):  # already seen: the bracket is closed
        return _vertex(state, geo, cfg)
    best = incumbent_of(state)
    moved = geo.shift_scale(best.x, math.exp(nxt - sc.offset))
    if tuple(moved) == best.x:  # at the bound already
        return _vertex(state, geo, cfg)
    return propose(state, moved, Probe("scale", offset=nxt))


def _vertex(state: SearchState, geo: Geometry, cfg: SearchConfig) -> Step:
    """One probe at the parabola's vertex through the best scale and its neighbours."""
    sc = state.bracket
    h = math.log(SCALE_FACTOR)
    at = sc.offset
    pts = {t: f for t, f in sc.points}
    near = [(t, pts[t]) for t in (at - h, at, at + h) if t in pts]
    t = parabola(near) if len(near) == 3 else None
    if t is None or abs(t - at) < h / 8:
        return hand_over(state, geo, cfg)
    moved = geo.shift_scale(incumbent_of(state).x, math.exp(t - at))
    return propose(state, moved, Probe("vertex", offset=t))


def scale_fallback(state: SearchState, geo: Geometry, cfg: SearchConfig, *, down: bool) -> Step:
    """The very first hypergradient is contradicted (a start at or above the edge): the plain
    lr-scale search, downwards first when it exploded."""
    state = replace(state, edge=True, phase="scale", line=None)
    best = incumbent_of(state)
    if not any(geo.scale):
        return hand_over(state, geo, cfg)
    h = math.log(SCALE_FACTOR)
    sign = -1 if down else 1
    bracket = Bracket(sign, 0.0, ((0.0, best.f),))
    moved = geo.shift_scale(best.x, SCALE_FACTOR**sign)
    if tuple(moved) == best.x:
        return hand_over(replace(state, bracket=bracket), geo, cfg)
    return propose(replace(state, bracket=bracket), moved, Probe("scale", offset=sign * h))
