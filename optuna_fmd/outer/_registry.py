"""The outer rules' registry: every rule by name, with its settings and its state type.

A rule is one module (``_sign``, ``_adam``, the ``search`` package): its settings, its state
type and its factory, registered from there with :func:`register`. Everything that names the
rules reads this registry: :meth:`~optuna_fmd.outer.OuterState.from_json` (which state type a
stored ``rule`` name reads back as), :func:`rule_settings` (the sampler's ``outer``) and the
command line's ``--outer`` choices (:func:`rule_names`).

A rule is built once from its settings and the space's
:class:`~optuna_fmd.outer._geometry.Geometry`; after that it is pure, like an optax
transformation: :meth:`OuterRule.init` gives the state before the first step, and
:meth:`OuterRule.step` takes the state the rule stored with its latest proposal (restored by the
adapter from storage) and the points seen so far, and returns the next
:class:`~optuna_fmd.outer._point.Proposal`. The adapter (:class:`~optuna_fmd.FMDSampler`)
stores the state, emits the notes (warnings, or log lines) and never asks which rule it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the state and the points import this module
    from ._geometry import Geometry
    from ._point import Point, Proposal
    from ._state import RuleState

__all__ = [
    "OuterRule",
    "Rule",
    "Settings",
    "register",
    "rule_names",
    "rule_of",
    "rule_settings",
    "rules",
    "unregister",
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


class Settings(Protocol):
    """A rule's settings: a frozen type with its own fields, checked when made, and its
    rule's ``name``; made with no arguments, the rule's defaults."""

    @property
    def name(self) -> str:
        """The rule's name."""
        ...

    def resolved(self, layered: bool, population: int | None) -> Settings:
        """With the defaults that depend on the space and the population filled in."""
        ...

    def tags(self, seed: int | None) -> list[object]:
        """What sets the rule's proposals apart beyond its name, for the state's fingerprint."""
        ...

    def build(self, geometry: Geometry, seed: int) -> OuterRule:
        """The rule over the space's ``geometry``."""
        ...


@dataclass(frozen=True)
class Rule:
    """A registered outer rule.

    Attributes:
        settings: Its settings' type (no arguments: its defaults).
        state: Its state's type: a frozen dataclass of the codec's field types, with the
            rule's ``name`` as a class variable, read back from JSON field by field.
        check: What a stored state must hold beyond its fields' types (e.g. vectors of one
            size), raising :class:`~optuna_fmd.outer.StateError`; ``None``: nothing.
    """

    settings: type[Settings]
    state: type[RuleState]
    check: Callable[[Any], None] | None = None

    @property
    def name(self) -> str:
        return str(self.settings.name)


#: The registered rules by name, in the order they were registered.
_RULES: dict[str, Rule] = {}


def register(
    settings: type[Settings], state: type[RuleState], *, check: Callable[[Any], None] | None = None
) -> Rule:
    """Register the outer rule whose settings are ``settings`` and whose state is ``state``
    (both naming it by their ``name``); the sampler then takes its settings as ``outer``, its
    name as a string, and reads its stored states back. A rule's module registers it, below
    its types and its factory (``register(SignSettings, SignState, check=same_sizes)``).
    """
    name, named = str(settings.name), str(state.name)
    if named != name:
        raise ValueError(f"`state.name` must be the settings' name {name!r}, but got {named!r}.")
    if name in _RULES:
        raise ValueError(f"`settings.name` must be a new rule's name, but got {name!r}.")
    rule = Rule(settings, state, check)
    _RULES[name] = rule
    return rule


def unregister(name: str) -> None:
    """Remove the rule registered as ``name`` (one registered for a test, say)."""
    if name not in _RULES:
        raise ValueError(f"`name` must be one of {rule_names()}, but got {name!r}.")
    del _RULES[name]


def rule_names() -> tuple[str, ...]:
    """The registered rules' names, in the order they were registered."""
    return tuple(_RULES)


def rules() -> tuple[Rule, ...]:
    """The registered rules, in the order they were registered."""
    return tuple(_RULES.values())


def rule_of(name: object) -> Rule | None:
    """The rule registered as ``name`` (``None``: none)."""
    return _RULES.get(name) if isinstance(name, str) else None


def rule_settings(outer: object) -> Settings:
    """The settings ``outer`` names (a rule's name: its defaults) or is."""
    if isinstance(outer, str):
        rule = rule_of(outer)
        if rule is None:
            raise ValueError(f"`outer` must be one of {rule_names()}, but got {outer!r}.")
        return rule.settings()
    if isinstance(outer, tuple(r.settings for r in _RULES.values())):
        return outer  # type: ignore[return-value]
    raise TypeError(
        f"`outer` must be a rule's name {rule_names()} or its settings "
        f"(fmd.outer.search(...)), but got {type(outer).__name__}."
    )
