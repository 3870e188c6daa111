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
   episodes probe along its descent direction in units over one block of params: the learning
   rate's (every layer group's, every family param) on the first line and every odd one, the other
   first-stage params (momentum, weight decay, ...) on the even ones, so that a step in momentum
   never compounds with one in the lr (:func:`~._climb.line_block`). The first line's first probe
   multiplies the fastest log-scale param by ``SCALE_FACTOR`` squared (``FIRST_PROBE`` doublings; a
   later line's by its square root; no other param moves by more than ``CLIMB_OTHERS`` units per
   doubling), and each next probe doubles the step's length from the line's origin, so a line
   crosses orders of magnitude in a few probes. Once a probe does not improve, golden-section
   probes in log step refine the bracket around the best step down to half a doubling (at most
   ``REFINE_PROBES``); the line's minimum is then differentiated for the next line (quasi-Newton:
   L-BFGS over the climb's hypergradients, within the block).
2. *Trust* (``_trust``): the climb goes on while its hypergradients are the slope: an iterate's
   members point the same way (positive cosine), it does not explode (a first-order change over
   half a doubling of the fastest lr, a later line's first step, of more than ``EXPLODE`` times
   the value, or a non-finite one), and a line finds a better point (a first probe that does
   not improve is followed by one half as long). Members that point apart still give a slope
   over the coordinates where every member has the same sign, if those hold ``AGREED`` of the
   mean's length (a learning rate at its edge, the others below theirs). A contradicted
   hypergradient marks the *edge*. If the very first one's members point apart, or
   the first line along it finds nothing (a start at or above the good lr), the climb begins
   again once, differentiated, from every lr at ``BELOW`` (a tenth) of the start's, where the
   hypergradient is the slope. If that one is
   contradicted too, or the first exploded, the plain lr-scale search takes over: factors of 2
   from the start (downwards first when it exploded) and one probe at the vertex of the parabola
   through the best scale and its neighbours (log scale).
3. *At the edge*, plain episodes only: with ``cfg.explore`` probes, Gaussian draws around the best
   point over every first-stage param, stretched along the recent trusted hypergradients (guided
   evolutionary strategies, ``_explore``); otherwise one coarse pass over the family's other params
   (each block a quarter unit up, then down); then a pattern search over every param (one at a
   time, up and down, with halving steps; after a move that improved, not straight back to the
   point it left, already trained) until its step falls below ``MIN_PATTERN_STEP``: the search has
   converged.
4. *A margin from divergence*: when a step along a line diverges (a member's training or
   hypergradient became non-finite), no later probe of the line lies within a doubling of the
   fastest lr below it, and a probe above the best step lies a doubling above it at least, so
   the line's minimum keeps a doubling's margin from every divergence the line saw
   (``SearchState.cliffs``, iterates never returned as best, is kept for states stored by
   earlier releases).

Without hypergradients (``cfg.hypergradients`` False, the ablation) the search starts at the
plain lr-scale search of item 2 and goes on as in item 3.
"""

from __future__ import annotations

from ._common import SearchConfig, Step
from ._rule import SearchRule, SearchSettings, search, search_step
from ._state import SearchState

__all__ = [
    "SearchConfig",
    "SearchRule",
    "SearchSettings",
    "SearchState",
    "Step",
    "search",
    "search_step",
]
