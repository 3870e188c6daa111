"""The ``"search"`` rule in one place: its step (:func:`search_step`, over the phases' modules),
its settings (:class:`SearchSettings`), the rule the sampler holds (:class:`SearchRule`) and its
factory (:func:`search`), registered as ``"search"``; its state is ``_state``'s
:class:`~optuna_fmd.outer.search._state.SearchState`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from ..._checks import non_negative_int, positive
from .._geometry import FIRST_STEP, Geometry
from .._point import Note, Point, Proposal
from .._registry import OuterRule, register
from .._state import RuleState
from ._climb import after_bracket, after_climb_gradient, after_climb_probe
from ._common import SearchConfig, Step, propose
from ._edge import edge, hand_over
from ._explore import after_probe, explore_next, probes_for
from ._pattern import after_pattern_probe
from ._scale import after_scale_probe
from ._state import Bracket, Incumbent, Probe, SearchState

__all__ = ["SearchRule", "SearchSettings", "search", "search_step"]


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


@dataclass(frozen=True)
class SearchRule:
    """The ``"search"`` rule (:func:`optuna_fmd.outer.search.search_step`) over ``geometry``,
    with its settings ``config``."""

    geometry: Geometry
    config: SearchConfig = field(default_factory=SearchConfig)
    name: ClassVar[str] = SearchState.name

    def init(self) -> RuleState:
        return search_step(None, None, self.geometry, self.config)[1]

    def accepts(self, state: RuleState) -> bool:
        return isinstance(state, SearchState)

    def step(self, state: RuleState | None, seen: Sequence[Point], sense: float) -> Proposal:
        assert state is None or isinstance(state, SearchState)
        ours = [p for p in seen if p.state is not None]
        x, new = search_step(state, ours[-1] if ours else None, self.geometry, self.config)
        notes: list[Note] = []
        if new.probe.kind == "converged" and not (state is not None and state.converged):
            best = None if new.incumbent is None else new.incumbent.trial
            notes.append(
                Note(
                    "search-converged",
                    f"FMDSampler's search converged (best trial {best}): no pattern step "
                    "improves; it proposes the best schedules from now on.",
                    info=True,
                )
            )
        return Proposal(x, new, new.probe.kind, notes)


@dataclass(frozen=True)
class SearchSettings:
    """The ``"search"`` rule's settings (:func:`optuna_fmd.outer.search`)."""

    step: float = FIRST_STEP
    explore: int | None = None
    hypergradients: bool = True
    name: ClassVar[str] = SearchState.name

    def __post_init__(self) -> None:
        positive("step", self.step)
        if self.explore is not None:
            non_negative_int("explore", self.explore)
        if not isinstance(self.hypergradients, bool):
            raise TypeError(f"`hypergradients` must be a bool, but got {self.hypergradients!r}.")

    def resolved(self, layered: bool, population: int | None) -> SearchSettings:
        """With the exploration's default filled in (:func:`probes_for`)."""
        return replace(self, explore=probes_for(layered, self.explore, population))

    def tags(self, seed: int | None) -> list[object]:
        """What sets the rule's proposals apart beyond its name, for the state's fingerprint."""
        tags: list[object] = [] if self.hypergradients else [0]
        return tags + ([["explore", self.explore, seed]] if self.explore else [])

    def build(self, geometry: Geometry, seed: int) -> OuterRule:
        config = SearchConfig(self.step, self.hypergradients, self.explore or 0, seed)
        return SearchRule(geometry, config)


def search(
    *, step: float = FIRST_STEP, explore: int | None = None, hypergradients: bool = True
) -> SearchSettings:
    """The search rule (the default): it climbs along the hypergradient while the hypergradient
    is the slope, then explores and refines with plain episodes (docs/sampler.md).

    From the start (its members' hypergradients, with a population) it line-searches along the
    descent direction in each param's units, twice as far while each probe improves, then
    takes the hypergradient at the bracket's vertex for the next line (quasi-Newton over the
    climb's hypergradients), so no point is trained twice. When a hypergradient is
    contradicted (members that point apart, a probe that finds the opposite change, an
    exploding first-order change) it hands over to plain episodes: Gaussian draws around the
    best point guided by the recent trusted hypergradients (Maheswaranathan et al., ICML 2019),
    then a pattern search with halving steps until it converges. If the very first
    hypergradient is contradicted (a start above the edge), a plain lr-scale search comes
    first. A step that diverges leaves a margin: the point half-way back replaces the best
    step next to it, which is never returned as best.

    Args:
        step: The first line-search step, in coordinate units along a unit direction, where
            the direction moves no log-scale param (the climb's first step otherwise
            multiplies the fastest lr by 2).
        explore: Exploration probes (outer iterates) at the edge; ``None``: 24 trials' worth
            on a space whose optimiser hyperparameters are split over layer groups, none
            elsewhere.
        hypergradients: ``False``: the ablation without hypergradients (the lr-scale search,
            then the exploration and the pattern search; no trial computes one).
    """
    return SearchSettings(step, explore, hypergradients)


register(SearchSettings, SearchState)
