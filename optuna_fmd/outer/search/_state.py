"""The ``"search"`` rule's state (:func:`optuna_fmd.outer.search.search_step`):
:class:`SearchState` with its parts, :class:`Incumbent`, :class:`Probe`, :class:`Bracket`,
:class:`Line`, :class:`Pattern`, :class:`Explore`, and the check of a hypergradient it made
(:data:`~optuna_fmd.outer._state.Check`). Frozen, like every outer state; stored as JSON by
:class:`~optuna_fmd.outer.OuterState` (each type an object of its fields, see ``_codec``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .._codec import ABSENT
from .._state import Check, Vector

__all__ = [
    "Bracket",
    "Explore",
    "Incumbent",
    "Line",
    "Pattern",
    "Probe",
    "SearchState",
]


@dataclass(frozen=True)
class Incumbent:
    """The best point the search has accepted."""

    x: Vector  # params, in space order
    f: float  # value (lower is better)
    trial: int | None  # its trial (with a population: its outer iterate)


@dataclass(frozen=True)
class Probe:
    """What a proposed trial is for: ``start``, ``scale``, ``vertex``, ``explore``,
    ``pattern``, ``climb``, ``bracket`` or ``converged`` (``grad`` and ``line`` in earlier
    releases)."""

    kind: str
    # scale, vertex: log of the lr factor from the start
    offset: float | None = field(default=None, metadata=ABSENT)
    # line: the step along the line's direction, in units
    alpha: float | None = field(default=None, metadata=ABSENT)
    # line: the params the line starts from
    origin: Vector | None = field(default=None, metadata=ABSENT)


@dataclass(frozen=True)
class Bracket:
    """The lr-scale search."""

    dir: int  # +1: searching up, -1: down
    offset: float  # the best log-factor so far
    points: tuple[tuple[float, float], ...] = ()  # every (log-factor, value) probed


@dataclass(frozen=True)
class Line:
    """A line search along a hypergradient."""

    g: Vector  # the hypergradient per coordinate unit
    d: Vector  # the unit direction searched along
    slope: float  # the directional derivative along d
    f0: float  # the value at the origin
    probes: tuple[tuple[float, float], ...]  # every (alpha, value) probed
    origin: Vector  # the params it starts from
    grad_point: int | None  # the trial (iterate) whose hypergradient it follows
    trusted: bool = True  # whether its first probe agreed with the hypergradient
    # the shortest step whose episode diverged (None: none did)
    cliff: float | None = field(default=None, metadata=ABSENT)
    # where its hypergradient was taken, per unit (for the quasi-Newton pairs)
    at: Vector | None = field(default=None, metadata=ABSENT)
    spacing: float | None = field(default=None, metadata=ABSENT)  # between probes, in units
    refined: int = 0  # probes refining its bracket so far


@dataclass(frozen=True)
class Pattern:
    """The pattern search over the family's params: one move at a time, +h then -h."""

    h: float  # the step, in units
    i: int = 0  # the move it is at
    sign: int = 1  # +1: up next, -1: down next
    once: bool = False  # the coarse pass: one pass, no halving
    # the move (index, sign) back to the point the last improving move left: already trained
    back: tuple[int, int] | None = field(default=None, metadata={"absent": True})


@dataclass(frozen=True)
class Explore:
    """The exploration before the first hypergradient: Gaussian draws around the incumbent
    (:mod:`optuna_fmd.outer.search._explore`), each followed by its mirror when it does not
    improve."""

    sigma: float  # the draws' standard deviation per param, in units
    draws: int = 0  # directions drawn so far
    probes: int = 0  # probes proposed so far
    mirror: bool = False  # the proposed probe is the latest draw's mirror
    guide: tuple[Vector, ...] = ()  # an orthonormal basis the draws are stretched along


@dataclass(frozen=True)
class SearchState:
    """The ``"search"`` rule's state (:func:`optuna_fmd.outer.search.search_step`)."""

    name: ClassVar[str] = "search"
    phase: str  # climb, scale, explore or pattern
    incumbent: Incumbent | None
    probe: Probe  # what the proposed trial is for
    bracket: Bracket  # the lr-scale search
    line: Line | None  # the climb's line
    alpha: float  # the latest line's accepted step, in units (a record)
    outer_step: int = 0  # hypergradients taken
    converged: bool = False  # from now on the incumbent is proposed
    coarse_done: bool = False  # the coarse pass over the family's other params is done
    pattern: Pattern | None = None
    climbed: int = 0  # lines of the climb that found a better point
    edge: bool = False  # a hypergradient was contradicted: plain episodes from now on
    # why the climb handed over: contradicted, exploding or blocked (None: it has not)
    handover: str | None = field(default=None, metadata=ABSENT)
    guide: tuple[Vector, ...] = ()  # the latest trusted hypergradients, per unit
    memory: tuple[tuple[Vector, Vector], ...] = ()  # quasi-Newton (step, gradient change) pairs
    cliffs: tuple[int, ...] = ()  # trials (iterates) next to a divergence: never returned as best
    below: bool = False  # the start was contradicted and the climb began again a tenth below it
    explore: Explore | None = field(default=None, metadata=ABSENT)  # the exploration, if any
    # the check of a hypergradient made for this proposal
    check: Check | None = field(default=None, metadata=ABSENT)

    @property
    def wants_hypergradient(self) -> bool:
        """The climb's start and bracket points need the hypergradient; the other probes
        are plain episodes."""
        kind = self.probe.kind
        return kind == "bracket" or (kind == "start" and self.phase == "climb")
