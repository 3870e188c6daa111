"""At the edge, where the hypergradient is no longer the slope: plain episodes only, the
exploration first (or one coarse pass), then the pattern search."""

from __future__ import annotations

from dataclasses import replace

from .._geometry import Geometry
from ._common import SearchConfig, Step
from ._explore import explore_next
from ._explore import start as explore_start
from ._pattern import COARSE_STEP, descend, next_pattern_probe
from ._state import Pattern, SearchState

__all__ = ["edge", "hand_over"]


def hand_over(state: SearchState, geo: Geometry, cfg: SearchConfig) -> Step:
    """After the scale: the exploration (``cfg.explore``), or else one coarse pattern pass over
    the other family params (if enabled)."""
    if cfg.explore and state.explore is None:
        ex = explore_start(state.guide, geo)
        return explore_next(replace(state, coarse_done=True, explore=ex), geo, cfg)
    if COARSE_STEP > 0 and not state.coarse_done:
        pattern = Pattern(COARSE_STEP, once=True)
        return next_pattern_probe(replace(state, coarse_done=True, pattern=pattern), geo, cfg)
    return descend(state, geo, cfg)


def edge(state: SearchState, geo: Geometry, cfg: SearchConfig) -> Step:
    """A hypergradient contradicted after the climb moved (the edge): the exploration, guided
    by the recent trusted hypergradients, then the pattern search; no more hypergradients."""
    return hand_over(replace(state, edge=True, line=None), geo, cfg)
