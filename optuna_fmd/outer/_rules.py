"""One interface for the outer rules: :class:`OuterRule`; each rule's settings, a frozen type
with its own fields, checked when made (:class:`SearchSettings`, :class:`SignSettings`,
:class:`AdamSettings`); and the registry :data:`RULES` of their defaults by name.

A rule is built once from its settings and the space's
:class:`~optuna_fmd.outer._geometry.Geometry`; after that it is pure, like an optax transformation:
:meth:`OuterRule.init` gives the state before the first step, and :meth:`OuterRule.step` takes the
state the rule stored with its latest proposal (restored by the adapter from storage) and the
points seen so far, and returns the next :class:`Proposal`. The adapter
(:class:`~optuna_fmd.FMDSampler`) stores the state, emits the notes (warnings, or log lines) and
never asks which rule it holds.

- ``"search"``: :func:`optuna_fmd.outer.search.search_step` (:class:`SearchRule`).
- ``"sign"``, ``"adam"``: :func:`optuna_fmd.outer._paper.decide` (:class:`PaperRule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

from .._checks import non_negative_int, positive
from ._geometry import FIRST_STEP, Geometry
from ._paper import AdamStep, GradientRule, SignStep, decide, fresh_state
from ._point import Note, Point, Proposal
from ._state import GradientState, RuleState, SearchState
from .search import SearchConfig, search_step
from .search._explore import probes_for

__all__ = [
    "OUTER_RULES",
    "RULES",
    "AdamSettings",
    "OuterRule",
    "PaperRule",
    "SearchRule",
    "SearchSettings",
    "Settings",
    "SignSettings",
    "rule_settings",
]


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
class PaperRule:
    """The paper's ``"sign"`` or ``"adam"`` rule (:func:`optuna_fmd.outer._paper.decide`)."""

    rule: GradientRule

    @property
    def name(self) -> str:
        return self.rule.name

    def init(self) -> RuleState:
        return fresh_state(self.rule)

    def accepts(self, state: RuleState) -> bool:
        fresh = self.init()
        return type(state) is type(fresh) and state.width == len(self.rule.coords)  # type: ignore[union-attr]

    def step(self, state: RuleState | None, seen: Sequence[Point], sense: float) -> Proposal:
        assert state is None or isinstance(state, GradientState)
        return decide(self.rule, seen, sense, latest=state)


def _paper_rule(
    settings: SignSettings | AdamSettings, step: SignStep | AdamStep, geometry: Geometry
) -> OuterRule:
    """A paper rule: its ``step`` in the backtracking wrapper the settings configure."""
    return PaperRule(
        GradientRule(
            step,
            geometry.coords,
            list(geometry.start),
            trust=float(settings.trust_region),
            backtrack_tol=float(settings.backtrack_tol),
            max_backtracks=settings.max_backtracks,
        )
    )


def _check_paper(settings: SignSettings | AdamSettings) -> None:
    positive("step_size", settings.step_size)
    positive("trust_region", settings.trust_region)
    positive("backtrack_tol", settings.backtrack_tol, allow_zero=True)
    non_negative_int("max_backtracks", settings.max_backtracks)


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


@dataclass(frozen=True)
class SignSettings:
    """The paper's ``"sign"`` rule's settings (:func:`optuna_fmd.outer.sign`)."""

    step_size: float = 0.1
    trust_region: float = 0.25
    min_step: float = 1e-3
    backtrack_tol: float = 0.02
    max_backtracks: int = 6
    name: ClassVar[str] = "sign"

    def __post_init__(self) -> None:
        _check_paper(self)
        positive("min_step", self.min_step)

    def resolved(self, layered: bool, population: int | None) -> SignSettings:
        return self

    def tags(self, seed: int | None) -> list[object]:
        return []

    def build(self, geometry: Geometry, seed: int) -> OuterRule:
        return _paper_rule(self, SignStep(float(self.step_size), float(self.min_step)), geometry)


@dataclass(frozen=True)
class AdamSettings:
    """The ``"adam"`` rule's settings (:func:`optuna_fmd.outer.adam`)."""

    step_size: float = 0.1
    trust_region: float = 0.25
    backtrack_tol: float = 0.02
    max_backtracks: int = 6
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = 5.0
    name: ClassVar[str] = "adam"

    def __post_init__(self) -> None:
        _check_paper(self)
        betas = self.betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise ValueError(f"`betas` must be two floats in [0, 1), but got {betas!r}.")
        if self.clip is not None:
            positive("clip", self.clip)

    def resolved(self, layered: bool, population: int | None) -> AdamSettings:
        return self

    def tags(self, seed: int | None) -> list[object]:
        return []

    def build(self, geometry: Geometry, seed: int) -> OuterRule:
        step = AdamStep(
            float(self.step_size),
            (float(self.betas[0]), float(self.betas[1])),
            None if self.clip is None else float(self.clip),
        )
        return _paper_rule(self, step, geometry)


#: One rule's settings.
Settings = SearchSettings | SignSettings | AdamSettings
#: Every outer rule by name, with its default settings.
RULES: dict[str, Callable[[], Settings]] = {
    "search": SearchSettings,
    "sign": SignSettings,
    "adam": AdamSettings,
}
#: The outer rules :class:`~optuna_fmd.FMDSampler` offers: the search rule and the paper's.
OUTER_RULES = tuple(RULES)


def rule_settings(outer: object) -> Settings:
    """The settings ``outer`` names (a rule's name: its defaults) or is."""
    if isinstance(outer, str):
        if outer not in RULES:
            raise ValueError(f"`outer` must be one of {OUTER_RULES}, but got {outer!r}.")
        return RULES[outer]()
    if isinstance(outer, (SearchSettings, SignSettings, AdamSettings)):
        return outer
    raise TypeError(
        f"`outer` must be a rule's name {OUTER_RULES} or its settings "
        f"(fmd.outer.search(...)), but got {type(outer).__name__}."
    )
