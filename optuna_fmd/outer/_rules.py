"""One interface for the outer rules: :class:`OuterRule`, and the registry :data:`RULES` that
builds one by name (with each rule's defaults, checked by :func:`check_rule`).

A rule is built once from the space's :class:`~optuna_fmd.outer._geometry.Geometry` and the
sampler's :class:`RuleSettings`; after that it is pure, like an optax transformation:
:meth:`OuterRule.init` gives the state before the first step, and :meth:`OuterRule.step` takes
the state the rule stored with its latest proposal (restored by the adapter from storage) and
the points seen so far, and returns the next :class:`Proposal`. The adapter
(:class:`~optuna_fmd.FMDSampler`) stores the state, emits the notes as warnings and never asks
which rule it holds.

- ``"search"``: :func:`optuna_fmd.outer.search.search_step` (:class:`SearchRule`).
- ``"sign"``, ``"adam"``: :func:`optuna_fmd.outer._paper.decide` (:class:`PaperRule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple, Protocol

from .._checks import non_negative_int, positive
from ._geometry import FIRST_STEP, Geometry
from ._paper import GradientRule, Note, decide, fresh_state
from ._point import Point
from ._state import GradientState, RuleState, SearchState
from .search import search_step

__all__ = [
    "OUTER_RULES",
    "RULES",
    "OuterRule",
    "PaperRule",
    "Proposal",
    "RuleKind",
    "RuleSettings",
    "SearchRule",
    "check_rule",
    "explores",
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
    explore: int = 0
    seed: int = 0


@dataclass(frozen=True)
class SearchRule:
    """The ``"search"`` rule (:func:`optuna_fmd.outer.search.search_step`) over ``geometry``."""

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
                    f"FMDSampler's search converged (best trial {best}): no pattern step "
                    "improves; it proposes the best schedules from now on.",
                )
            )
        return Proposal(x, new, new.probe.kind, notes)


@dataclass(frozen=True)
class PaperRule:
    """The paper's ``"sign"`` or ``"adam"`` rule (:func:`optuna_fmd.outer._paper.decide`)."""

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
    return SearchRule(
        replace(
            geometry, first_step=settings.step_size, explore=settings.explore, seed=settings.seed
        )
    )


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


class RuleKind(NamedTuple):
    """An entry of :data:`RULES`: how to build the rule, its default ``step_size``, and
    whether it can run without hypergradients (``hypergradients=False``)."""

    make: Callable[[Geometry, RuleSettings], OuterRule]
    default_step: float
    plain: bool = False


#: Every outer rule by name: a factory from the space's geometry and the sampler's settings.
RULES: dict[str, RuleKind] = {
    "search": RuleKind(_search, FIRST_STEP, plain=True),
    "sign": RuleKind(_paper("sign"), 0.1),
    "adam": RuleKind(_paper("adam"), 0.1),
}
#: The outer rules :class:`~optuna_fmd.FMDSampler` offers: the search rule and the paper's.
OUTER_RULES = tuple(RULES)


def explores(outer: str) -> bool:
    """Whether the rule ``outer`` runs plain probes, so may explore (an unknown name: no; the
    sampler's checks say why)."""
    kind = RULES.get(outer)
    return kind is not None and kind.plain


def make_rule(name: str, geometry: Geometry, settings: RuleSettings) -> OuterRule:
    """The outer rule ``name`` (a key of :data:`RULES`, checked by :func:`check_rule`) over
    ``geometry``."""
    return RULES[name].make(geometry, settings)


def check_rule(
    outer: str,
    step_size: float | None,
    trust_region: float,
    min_step: float,
    backtrack_tol: float,
    max_backtracks: int,
    betas: tuple[float, float],
    clip: float | None,
    hypergradients: bool = True,
    explore: int = 0,
) -> float:
    """The outer rule's settings checked (:class:`~optuna_fmd.FMDSampler`'s arguments); the
    step size, its default filled in."""
    if outer not in OUTER_RULES:
        raise ValueError(f"`outer` must be one of {OUTER_RULES}, but got {outer!r}.")
    if step_size is None:
        step_size = RULES[outer].default_step
    positive("step_size", step_size)
    positive("trust_region", trust_region)
    positive("min_step", min_step)
    positive("backtrack_tol", backtrack_tol, allow_zero=True)
    non_negative_int("max_backtracks", max_backtracks)
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
    ):
        raise ValueError(f"`betas` must be two floats in [0, 1), but got {betas!r}.")
    if clip is not None:
        positive("clip", clip)
    if not isinstance(hypergradients, bool):
        raise TypeError(f"`hypergradients` must be a bool, but got {hypergradients!r}.")
    if not hypergradients and not RULES[outer].plain:
        raise ValueError(
            "`hypergradients=False` needs outer='search'; the other rules step "
            "along the hypergradient only."
        )
    non_negative_int("explore", explore)
    if explore and not RULES[outer].plain:
        raise ValueError(
            f"`explore` needs outer='search'; the {outer!r} rule steps along the "
            "hypergradient from the first trial."
        )
    return step_size
