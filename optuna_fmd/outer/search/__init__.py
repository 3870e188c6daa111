"""The outer loop's search rule as pure functions over plain floats: no torch, no Optuna.

:class:`~optuna_fmd.FMDSampler` is the Optuna adapter around them: it reads the study into
:class:`Point` s, calls a rule and stores the returned state (a frozen
:class:`~optuna_fmd.outer._state.SearchState`, JSON only in storage) on the trial it
proposes. Every param is stepped in its transformed coordinate
(:class:`~optuna_fmd.outer._geometry.Coord`), lengths measured in its units. One module per
phase: ``_climb``, ``_scale``, ``_edge`` (the hand-over), ``_explore``, ``_pattern``, and
``_trust`` for the checks.

The ``"search"`` rule (:func:`search_step`) uses the hypergradient where it is the slope
(below the good learning rate) and plain episodes where it is not:

1. *Climb*: the start computes the hypergradient (of every member, with a population). Plain
   episodes probe along its descent direction in units, over every first-stage param at once
   (per-layer, per-window and family params move together), twice as far while each probe improves:
   the first step multiplies the fastest log-scale param by ``SCALE_FACTOR`` (and moves no other
   param by more than ``CLIMB_OTHERS`` units), the next ones double the step's length from the
   line's origin, so a line crosses orders of magnitude in a few probes. The vertex of the parabola
   through the best step and its neighbours (the *bracket point*) is then evaluated with its
   hypergradient, so no point is trained twice: the best of the line's points is accepted (never a
   worse one) and the bracket point's hypergradient gives the next line's direction (quasi-Newton:
   L-BFGS over the climb's hypergradients).
2. *Trust* (``_trust``): the climb goes on while its hypergradients are the slope: an iterate's
   members point the same way (positive cosine), it does not explode (a first-order change over the
   step of more than ``EXPLODE`` times the value, or a non-finite one), and a line finds a better
   point (a first probe that does not improve is followed by one half as long). Members that point
   apart still give a slope over the coordinates where every member has the same sign, if those
   hold ``AGREED`` of the mean's length (a learning rate at its edge, the others below theirs). A
   contradicted hypergradient marks the *edge*. If the very first one is contradicted (a start at
   or above the good lr) the plain lr-scale search takes over: factors of 2 from the start
   (downwards first when it exploded) and one probe at the vertex of the parabola through the best
   scale and its neighbours (log scale).
3. *At the edge*, plain episodes only: with ``cfg.explore`` probes, Gaussian draws around the best
   point over every first-stage param, stretched along the recent trusted hypergradients (guided
   evolutionary strategies, ``_explore``); otherwise one coarse pass over the family's other params
   (each block a quarter unit up, then down); then a pattern search over every param (one at a
   time, up and down, with halving steps; after a move that improved, not straight back to the
   point it left, already trained) until its step falls below ``MIN_PATTERN_STEP``: the search has
   converged.
4. *A margin from divergence*: when a step along a line diverges (a member's training or
   hypergradient became non-finite), the bracket point goes half-way back from the best step
   below it and replaces it as the incumbent unless worse by more than ``MARGIN`` of its
   value; the best step is listed in ``SearchState.cliffs`` and never returned as best
   (:func:`optuna_fmd.outer._point.iterate_groups` leaves it out).

Without hypergradients (``cfg.hypergradients`` False, the ablation) the search starts at the
plain lr-scale search of item 2 and goes on as in item 3.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .._geometry import Geometry
from .._point import Point
from .._state import Bracket, Incumbent, Probe, SearchState
from ._climb import after_bracket, after_climb_gradient, after_climb_probe
from ._common import SearchConfig, Step, propose
from ._edge import edge, hand_over
from ._explore import after_probe, explore_next
from ._pattern import after_pattern_probe
from ._scale import after_scale_probe

__all__ = ["SearchConfig", "Step", "search_step"]


def search_step(
    prev: SearchState | None, last: Point | None, geo: Geometry, cfg: SearchConfig
) -> Step:
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
        return propose(_fresh(geo, cfg), geo.start, Probe("start"))
    state = replace(prev, check=None)
    if state.converged:
        return propose(
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
        return propose(replace(state, converged=True), geo.start, Probe("converged"))
    if kind == "start" and state.phase == "climb":
        return after_climb_gradient(state, last, geo, cfg)
    if kind == "climb":
        return after_climb_probe(state, last, value, geo, cfg)
    if kind == "bracket":
        return after_bracket(state, last, value, geo, cfg)
    if kind in ("start", "scale"):
        return after_scale_probe(state, value, improved, geo, cfg)
    if kind == "pattern":
        return after_pattern_probe(state, improved, geo, cfg)
    if kind == "vertex":
        return hand_over(state, geo, cfg)
    if kind == "explore":
        assert state.explore is not None
        return explore_next(replace(state, explore=after_probe(state.explore, improved)), geo, cfg)
    # a state of an earlier release, stepping along a hypergradient: plain episodes from here
    return edge(replace(state, handover="contradicted"), geo, cfg)


def _fresh(geo: Geometry, cfg: SearchConfig) -> SearchState:
    return SearchState(
        phase="climb" if cfg.hypergradients else "scale",
        incumbent=None,
        probe=Probe("start"),
        bracket=Bracket(1, 0.0),
        line=None,
        alpha=cfg.step,
    )
