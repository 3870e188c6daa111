"""The pattern search at the edge: one param at a time (in the coarse pass, one block of the
family's other params), up and down, the step halving once every move failed."""

from __future__ import annotations

from dataclasses import replace

from .._geometry import Geometry
from ._common import SearchConfig, Step, incumbent_of, propose
from ._state import Pattern, Probe, SearchState

__all__ = [
    "COARSE_STEP",
    "MIN_PATTERN_STEP",
    "PATTERN_STEP",
    "after_pattern_probe",
    "descend",
    "next_pattern_probe",
]

PATTERN_STEP = 0.1  # the pattern search's first step per family param, in units
COARSE_STEP = 0.25  # the coarse pass's step over the family's other params, in units (0: none)
MIN_PATTERN_STEP = 0.01  # the pattern search's smallest step: below it the search has converged


def descend(
    state: SearchState, geo: Geometry, cfg: SearchConfig, back: tuple[int, int] | None = None
) -> Step:
    """After the exploration (or the coarse pass): the pattern search over every param, plain
    episodes only, until its step falls below ``MIN_PATTERN_STEP``; ``back``, the move back to
    the point just left, is not probed."""
    h = PATTERN_STEP if state.pattern is None else state.pattern.h
    return next_pattern_probe(replace(state, pattern=Pattern(h, back=back)), geo, cfg)


def _pattern_coords(geo: Geometry, cfg: SearchConfig, once: bool = False) -> list[list[int]]:
    """The moves of a pattern pass, each a list of params moved together: in the coarse pass
    (``once``) the first-stage params but the lr scale, by block; later one param at a time."""
    if not once:  # the pattern search: every param
        return [[i] for i in range(len(geo.base))]
    moves: dict[int, list[int]] = {}
    for i, b in enumerate(geo.base):
        if b and not geo.scale[i]:
            moves.setdefault(i if geo.blocks is None else geo.blocks[i], []).append(i)
    return list(moves.values())


def next_pattern_probe(state: SearchState, geo: Geometry, cfg: SearchConfig) -> Step:
    """The next plain probe of the pattern search: one family param at a time, +h then -h;
    once every one failed, h halves; below ``MIN_PATTERN_STEP`` the search has converged."""
    assert state.pattern is not None
    pat = state.pattern
    coords = _pattern_coords(geo, cfg, pat.once)
    x = incumbent_of(state).x
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
                return propose(state, moved, Probe("pattern"))
        if pat.once:  # the coarse pass is done: the pattern search from the best
            return descend(replace(state, pattern=None), geo, cfg)
        pat = Pattern(pat.h / 2)
    return propose(replace(state, converged=True), x, Probe("converged"))


def after_pattern_probe(
    state: SearchState, improved: bool, geo: Geometry, cfg: SearchConfig
) -> Step:
    """A pattern probe that improves polls again around the new point at the same step (in
    the coarse pass: the pass goes on from there, to the next param)."""
    assert state.pattern is not None
    pat = state.pattern
    if improved and pat.once:
        if pat.sign < 0:  # +h improved: skip -h
            state = replace(state, pattern=replace(pat, sign=1, i=pat.i + 1))
        return next_pattern_probe(state, geo, cfg)
    if improved:  # poll again around the new point, same step, but not back where it was
        i, sign = (pat.i, 1) if pat.sign < 0 else (pat.i - 1, -1)
        return descend(state, geo, cfg, back=(i, -sign))
    return next_pattern_probe(state, geo, cfg)
