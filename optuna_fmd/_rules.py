"""One interface for the outer rules: :class:`OuterRule`, and the registry :data:`RULES` that
builds one by name.

A rule is built once from the space's :class:`~optuna_fmd._geometry.Geometry` and the
sampler's :class:`RuleSettings`; after that it is pure, like an optax transformation:
:meth:`OuterRule.init` gives the state before the first step, and :meth:`OuterRule.step` takes
the state the rule stored with its latest proposal (restored by the adapter from storage) and
the points seen so far, and returns the next :class:`Proposal`. The adapter
(:class:`~optuna_fmd.FMDSampler`) stores the state, emits the notes as warnings and never asks
which rule it holds.

- ``"search"``: :func:`optuna_fmd._outer.search_step` (:class:`SearchRule`).
- ``"sign"``, ``"adam"``: :func:`optuna_fmd._gradient_rules.decide` (:class:`PaperRule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple, Protocol

from ._geometry import Geometry
from ._gradient_rules import GradientRule, Note, decide, fresh_state
from ._outer import Point, search_step
from ._state import GradientState, RuleState, SearchState

__all__ = [
    "RULES",
    "OuterRule",
    "PaperRule",
    "Proposal",
    "RuleSettings",
    "SearchRule",
    "make_rule",
]


class Proposal(NamedTuple):
    """The next params, the rule's state to store with them, why they were proposed (the
    search rule's probe kind; ``init``, ``step``, ``backtrack``, ``fallback`` or ``converged``
    for the paper rules) and the warnings for the adapter (each key worth one warning)."""

    x: list[float]
    state: RuleState
    origin: str
    notes: list[Note]


class OuterRule(Protocol):
    """What :class:`~optuna_fmd.FMDSampler` asks of an outer rule."""

    @property
    def name(self) -> str:
        """The rule's name, stored with its state (``state.rule``)."""
        ...

    def init(self) -> RuleState:
        """The state before the first step."""
        ...

    def accepts(self, state: RuleState) -> bool:
        """Whether ``state`` (read from storage) is one this rule wrote for this space."""
        ...

    def step(self, state: RuleState | None, seen: Sequence[Point], sense: float) -> Proposal:
        """The next proposal.

        Args:
            state: The state stored with the latest point of ``seen`` that this rule proposed
                (``None``: none yet).
            seen: The points so far in trial order (sense-adjusted: lower is better; with a
                population, the averaged iterates); a point's ``state`` is the one the rule
                stored with it (``None``: not proposed by it).
            sense: +1 for a minimize study, -1 for maximize (for values stored in the state).
        """
        ...


@dataclass(frozen=True)
class RuleSettings:
    """The sampler's settings of the outer rules (see :class:`~optuna_fmd.FMDSampler`)."""

    step_size: float
    trust: float
    min_step: float
    backtrack_tol: float
    max_backtracks: int
    betas: tuple[float, float]
    clip: float | None


@dataclass(frozen=True)
class SearchRule:
    """The ``"search"`` rule (:func:`optuna_fmd._outer.search_step`) over ``geometry``."""

    geometry: Geometry
    name: ClassVar[str] = SearchState.name

    def init(self) -> RuleState:
        return search_step(None, None, self.geometry)[1]

    def accepts(self, state: RuleState) -> bool:
        return isinstance(state, SearchState)

    def step(self, state: RuleState | None, seen: Sequence[Point], sense: float) -> Proposal:
        assert state is None or isinstance(state, SearchState)
        ours = [p for p in seen if p.state is not None]
        x, new = search_step(state, ours[-1] if ours else None, self.geometry)
        notes: list[Note] = []
        if new.probe.kind == "converged" and not (state is not None and state.converged):
            best = None if new.incumbent is None else new.incumbent.trial
            notes.append(
                (
                    "search-converged",
                    f"FMDSampler's search converged (best trial {best}): no step along "
                    "the hypergradient improves; it proposes the best schedules from now on.",
                )
            )
        return Proposal(x, new, new.probe.kind, notes)


@dataclass(frozen=True)
class PaperRule:
    """The paper's ``"sign"`` or ``"adam"`` rule (:func:`optuna_fmd._gradient_rules.decide`)."""

    rule: GradientRule

    @property
    def name(self) -> str:
        return self.rule.name

    def init(self) -> RuleState:
        return fresh_state(self.rule)

    def accepts(self, state: RuleState) -> bool:
        return (
            isinstance(state, GradientState)
            and state.name == self.rule.name
            and len(state.s) == len(self.rule.coords)
        )

    def step(self, state: RuleState | None, seen: Sequence[Point], sense: float) -> Proposal:
        assert state is None or isinstance(state, GradientState)
        x, new, origin, notes = decide(self.rule, seen, sense, latest=state)
        return Proposal(x, new, origin, notes)


def _search(geometry: Geometry, settings: RuleSettings) -> OuterRule:
    return SearchRule(replace(geometry, first_step=settings.step_size))


def _paper(name: str) -> Callable[[Geometry, RuleSettings], OuterRule]:
    def make(geometry: Geometry, settings: RuleSettings) -> OuterRule:
        rule = GradientRule(
            name,
            geometry.coords,
            list(geometry.start),
            step_size=settings.step_size,
            trust=settings.trust,
            min_step=settings.min_step,
            backtrack_tol=settings.backtrack_tol,
            max_backtracks=settings.max_backtracks,
            betas=settings.betas,
            clip=settings.clip,
        )
        return PaperRule(rule)

    return make


#: Every outer rule by name: a factory from the space's geometry and the sampler's settings.
RULES: dict[str, Callable[[Geometry, RuleSettings], OuterRule]] = {
    "search": _search,
    "sign": _paper("sign"),
    "adam": _paper("adam"),
}


def make_rule(name: str, geometry: Geometry, settings: RuleSettings) -> OuterRule:
    """The outer rule ``name`` (a key of :data:`RULES`, checked by
    :func:`~optuna_fmd._gradient_rules.check_rule`) over ``geometry``."""
    return RULES[name](geometry, settings)
