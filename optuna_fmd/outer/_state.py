"""The outer loop's state: typed, frozen, and serialised to JSON only at the storage edge.

:class:`~optuna_fmd.FMDSampler` stores one :class:`OuterState` on every trial it proposes, as
JSON in the trial system attribute :data:`STATE_KEY`; the next proposal starts from the state
stored on the latest one, so a study continues in another process (or on another machine
sharing an RDB storage) with the same proposals. As in Optuna's ``CmaEsSampler`` (restore,
tell, ask, store) and optax's ``NamedTuple`` states, the rules never change a state in place:
they return a new one (``dataclasses.replace``).

- :class:`OuterState`: what every proposed trial carries: the rule's state, why the trial was
  proposed (``origin``), its params, the space's fingerprint, a population member's
  :class:`Slot` and the failed trial a retry stands for.
- :class:`SearchState`: the ``"search"`` rule's state (:mod:`optuna_fmd.outer.search`) with its
  parts: :class:`Incumbent`, :class:`Probe`, :class:`Bracket`, :class:`Line`,
  :class:`Pattern`, :class:`Explore` and a :data:`Check` (:class:`ProbeCheck`,
  :class:`MembersCheck`).
- :class:`SignState` and :class:`AdamState`: the paper's ``"sign"`` and ``"adam"`` rules'
  states (:mod:`optuna_fmd.outer._paper`), each with its own vectors beside what the
  backtracking wrapper keeps (:class:`Backtracked`: the step scale, the best point it knew, a
  :class:`Summit`). States of earlier releases, which stored both rules' vectors, load (the
  other rule's vectors are left out).

Layout (:data:`VERSION` 1, the flat JSON object the sampler has always written): every type is
a JSON object of its fields by name (tuples as lists; ``None`` as null, or left out for the
few fields marked so); an :class:`OuterState` holds its rule's fields and its slot's fields at
the top level, beside ``version``, ``rule`` (the rule's name) and ``hypergradient`` (whether
the trial needs one); a check holds its ``kind``. :meth:`OuterState.from_json` reads it back,
checking every type, and raises one :class:`StateError` naming the key, what it must be and
what it holds. The objective, the command line and the plots read a stored state of any
version, or a hand-made one, leniently, through :func:`read_view` and :func:`read_check`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ._codec import (
    ABSENT,
    Bad,
    StateError,
    decode,
    encode,
    integer,
    real,
    short,
    string,
)

__all__ = [
    "CHECK_ATTR",
    "STATE_KEY",
    "VERSION",
    "AdamState",
    "Backtracked",
    "Bracket",
    "Check",
    "Explore",
    "GradientState",
    "Incumbent",
    "Line",
    "MembersCheck",
    "OuterState",
    "Pattern",
    "Probe",
    "ProbeCheck",
    "RuleState",
    "SearchState",
    "SignState",
    "Slot",
    "StateError",
    "StateView",
    "Summit",
    "check_json",
    "read_check",
    "read_view",
]

#: Trial system attribute that holds the sampler's outer state (JSON) for the trial it proposed.
STATE_KEY = "fmd:state"
#: Trial user attribute with the check of the latest hypergradient against the plain probes
#: along it, or of its members against each other (a :data:`Check` as JSON), for the report.
CHECK_ATTR = "hypergradient_check"
#: The layout :meth:`OuterState.to_json` writes.
VERSION = 1

Vector = tuple[float, ...]
T = TypeVar("T")


# -- the search rule ---------------------------------------------------------------------------
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
class ProbeCheck:
    """The first plain probe along a hypergradient against the change it predicted: it agrees
    when it found a change of the predicted sign within the tolerated factor either way."""

    kind: ClassVar[str] = "probe"
    predicted: float | None  # the first-order change over the step (None: not finite)
    found: float | None  # the change found (None: not finite, a failed episode)
    ratio: float | None  # found / predicted (None: either not finite, or 0)
    agrees: bool
    point: int | None = None  # the trial (iterate) whose hypergradient was checked


@dataclass(frozen=True)
class MembersCheck:
    """An iterate's members' hypergradients against each other: they agree when every cosine
    is positive and their sizes are within the tolerated factor."""

    kind: ClassVar[str] = "members"
    cosine: float | None  # the smallest cosine between two members
    norm_ratio: float | None  # the largest norm over the smallest (None: a zero one)
    agrees: bool
    point: int | None = None  # the iterate whose members were checked


Check = ProbeCheck | MembersCheck


@dataclass(frozen=True)
class SearchState:
    """The ``"search"`` rule's state (:func:`optuna_fmd.outer.search.search_step`)."""

    name: ClassVar[str] = "search"
    phase: str  # climb, scale, explore or pattern
    incumbent: Incumbent | None
    probe: Probe  # what the proposed trial is for
    bracket: Bracket  # the lr-scale search
    line: Line | None  # the climb's line
    alpha: float  # the next line's first step, in units
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


# -- the sign and Adam rules -------------------------------------------------------------------
@dataclass(frozen=True)
class Summit:
    """The best point known to a sign or Adam step, in the study's own units."""

    trial: int  # its trial (with a population: its outer iterate)
    value: float


@dataclass(frozen=True, kw_only=True)
class Backtracked:
    """What the backtracking wrapper around a paper rule keeps (:func:`optuna_fmd.outer._paper.
    decide`): the step scale, halved at each backtrack, the backtracks in a row, the steps
    taken, whether it stopped, the point the proposal steps from and the best one known."""

    scale: float = 1.0
    backtracks: int = 0
    outer_step: int = 0
    converged: bool = False  # from now on the best point is proposed
    base: int | None = None  # the trial (iterate) the proposal steps from
    best: Summit | None = None

    wants_hypergradient: ClassVar[bool] = True
    cliffs: ClassVar[tuple[int, ...]] = ()  # no point is set aside by these rules


@dataclass(frozen=True, kw_only=True)
class SignState(Backtracked):
    """The ``"sign"`` rule's state: each param's step and the sign of its latest
    hypergradient (0: none yet)."""

    name: ClassVar[str] = "sign"
    s: Vector
    sign: tuple[int, ...]

    @property
    def width(self) -> int:
        """Params the state is for."""
        return len(self.s)


@dataclass(frozen=True, kw_only=True)
class AdamState(Backtracked):
    """The ``"adam"`` rule's state: each param's first and second moments, and the steps."""

    name: ClassVar[str] = "adam"
    m: Vector
    v: Vector
    t: int = 0

    @property
    def width(self) -> int:
        """Params the state is for."""
        return len(self.m)


#: The paper rules' states.
GradientState = SignState | AdamState
RuleState = SearchState | SignState | AdamState


# -- what every proposed trial carries -------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """A population member's claim on member ``member`` of outer iterate ``iterate``."""

    iterate: int
    member: int
    claim: str  # tentative, then final; superseded: a retry whose slot another trial took
    resume: tuple[int, ...] = ()  # failed trials of the slot, newest first (checkpoints)


@dataclass(frozen=True)
class OuterState:
    """The state stored on a trial the sampler proposed (JSON at :data:`STATE_KEY`).

    Attributes:
        rule: The outer rule's state.
        origin: Why the trial was proposed: the probe's kind (search), ``step``,
            ``backtrack``, ``fallback`` or ``converged`` (sign, Adam), ``init`` (the first
            iterate) or ``retry``.
        space: The fingerprint of the schedule space and rule that wrote it.
        x: The params proposed, in space order.
        slot: A population member's claim (``None``: no population).
        used: With a population, the members of the previous iterate its step averaged.
        retry_of: The failed trial this one retries.
    """

    rule: RuleState
    origin: str
    space: str = ""
    x: Vector | None = field(default=None, metadata=ABSENT)
    slot: Slot | None = None
    used: tuple[int, ...] | None = field(default=None, metadata=ABSENT)
    retry_of: int | None = field(default=None, metadata=ABSENT)

    @property
    def wants_hypergradient(self) -> bool:
        """Whether the trial needs the hypergradient (the search rule's plain probes do not)."""
        return self.rule.wants_hypergradient

    @property
    def converged(self) -> bool:
        return self.rule.converged

    @property
    def check(self) -> Check | None:
        """The check of a hypergradient made for this proposal (search rule), if any."""
        return self.rule.check if isinstance(self.rule, SearchState) else None

    def has_x(self, n: int) -> bool:
        """Whether ``x`` holds ``n`` finite params."""
        return self.x is not None and len(self.x) == n and all(math.isfinite(v) for v in self.x)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored at :data:`STATE_KEY` (layout :data:`VERSION`)."""
        out = {"version": VERSION, "rule": self.rule.name, **encode(self.rule)}
        out.update(encode(self, skip=("rule", "slot")), hypergradient=self.wants_hypergradient)
        return out if self.slot is None else {**out, **encode(self.slot)}

    @classmethod
    def from_json(cls, raw: object) -> OuterState:
        """The state stored as ``raw``, checked; :class:`StateError` if it does not fit.

        Keys the layout does not know are ignored (earlier releases carried some along).
        """
        if not isinstance(raw, Mapping):
            raise StateError(f"`state` must be a JSON object, but got {short(raw)}.")
        version, name = raw.get("version"), raw.get("rule")
        if version != VERSION or isinstance(version, bool):
            raise StateError(f"`state.version` must be {VERSION}, but got {short(version)}.")
        rule: RuleState
        if name == SearchState.name:
            rule = decode(SearchState, raw, "state")
        elif name == SignState.name:
            rule = decode(SignState, raw, "state")
            _same_sizes({"s": rule.s, "sign": rule.sign})
        elif name == AdamState.name:
            rule = decode(AdamState, raw, "state")
            _same_sizes({"m": rule.m, "v": rule.v})
        else:
            raise StateError(
                f"`state.rule` must be 'search', 'sign' or 'adam', but got {short(name)}."
            )
        slot = None if raw.get("iterate") is None else decode(Slot, raw, "state")
        return decode(cls, raw, "state", rule=rule, slot=slot)


def _same_sizes(vectors: Mapping[str, tuple[object, ...]]) -> None:
    """A paper rule's vectors hold one entry per param each."""
    sizes = [len(v) for v in vectors.values()]
    if len(set(sizes)) > 1:
        names = " and ".join(f"`state.{k}`" for k in vectors)
        have = " and ".join(str(n) for n in sizes)
        raise StateError(f"{names} must have one entry per param, but have {have}.")


# -- lenient reads for displays ----------------------------------------------------------------
@dataclass(frozen=True)
class StateView:
    """What the objective, the command line and the plots read of a stored state, leniently
    (:func:`read_view`): a field the state lacks, or holds with the wrong type, reads as its
    default, so a display never fails on a study's states."""

    origin: str = ""  # why the trial was proposed ("": not said)
    rule: str = ""  # the outer rule ("": not said)
    hypergradient: bool = True  # whether the trial needs one (False: a plain probe)
    iterate: int | None = None  # a population member's outer iterate
    member: int | None = None  # a population member's member
    claim: str | None = None  # a population member's claim
    resume: tuple[int, ...] = ()  # failed trials whose checkpoints it may resume from
    retry_of: int | None = None  # the failed trial it retries
    base: int | None = None  # the trial a sign or Adam step stepped from
    probe: str = ""  # the search rule's kind of probe ("": none)
    offset: float | None = None  # a scale probe's log-factor
    alpha: float | None = None  # a line probe's step
    coarse: bool = False  # a pattern probe of the coarse pass
    sigma: float | None = None  # an exploration probe's standard deviation, in units
    mirror: bool = False  # an exploration probe that mirrors the draw before it
    x: Vector | None = None  # the params proposed
    incumbent: Vector | None = None  # the search's incumbent's params
    cliffs: tuple[int, ...] = ()  # trials (iterates) next to a divergence: not returned as best
    handover: str | None = None  # why the search's climb handed over (None: it has not)
    climbed: int = 0  # lines of the search's climb that found a better point
    best: float | None = None  # the search's incumbent's value (lower is better)


def _lenient(raw: Mapping[str, Any], key: str, parse: Callable[[object], T]) -> T | None:
    try:
        return parse(raw.get(key))
    except Bad:
        return None


def _vector(v: object) -> Vector:
    if isinstance(v, list):
        return tuple(real(x) for x in v)
    raise Bad("a list of numbers")


def _ints(v: object) -> tuple[int, ...]:
    if not isinstance(v, list):
        return ()
    return tuple(n for n in v if isinstance(n, int) and not isinstance(n, bool))


def _object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def read_view(raw: object) -> StateView | None:
    """The :class:`StateView` of a stored state (``None``: ``raw`` is not a JSON object).

    Example:
        >>> view = read_view({"origin": "step", "base": 1, "iterate": "?"})
        >>> view.origin, view.base, view.iterate, view.hypergradient
        ('step', 1, None, True)
    """
    if not isinstance(raw, Mapping):
        return None
    probe, resume = _object(raw, "probe"), raw.get("resume")
    return StateView(
        origin=_lenient(raw, "origin", string) or "",
        rule=_lenient(raw, "rule", string) or "",
        hypergradient=raw.get("hypergradient") is not False,
        iterate=_lenient(raw, "iterate", integer),
        member=_lenient(raw, "member", integer),
        claim=_lenient(raw, "claim", string),
        resume=_ints(resume),
        retry_of=_lenient(raw, "retry_of", integer),
        base=_lenient(raw, "base", integer),
        probe=_lenient(probe, "kind", string) or "",
        offset=_lenient(probe, "offset", real),
        alpha=_lenient(probe, "alpha", real),
        coarse=bool(_object(raw, "pattern").get("once")),
        sigma=_lenient(_object(raw, "explore"), "sigma", real),
        mirror=_object(raw, "explore").get("mirror") is True,
        x=_lenient(raw, "x", _vector),
        incumbent=_lenient(_object(raw, "incumbent"), "x", _vector),
        cliffs=_ints(raw.get("cliffs")),
        handover=_lenient(raw, "handover", string),
        climbed=_lenient(raw, "climbed", integer) or 0,
        best=_lenient(_object(raw, "incumbent"), "f", real),
    )


def read_check(raw: object) -> Check | None:
    """The check stored in the user attribute :data:`CHECK_ATTR`, read leniently (``None``:
    not a JSON object with a bool ``agrees``; a number it lacks reads as ``None``).

    Example:
        >>> read_check({"kind": "members", "cosine": -0.5, "norm_ratio": 3.0, "agrees": False})
        MembersCheck(cosine=-0.5, norm_ratio=3.0, agrees=False, point=None)
    """
    if not isinstance(raw, Mapping) or not isinstance(raw.get("agrees"), bool):
        return None
    point, agrees = _lenient(raw, "point", integer), bool(raw.get("agrees"))
    if raw.get("kind") == MembersCheck.kind:
        cosine, ratio = _lenient(raw, "cosine", real), _lenient(raw, "norm_ratio", real)
        return MembersCheck(cosine, ratio, agrees, point)
    predicted, found = _lenient(raw, "predicted", real), _lenient(raw, "found", real)
    return ProbeCheck(predicted, found, _lenient(raw, "ratio", real), agrees, point)


def check_json(check: Check) -> dict[str, Any]:
    """``check`` as the JSON object stored in :data:`CHECK_ATTR` (and in the state)."""
    out: dict[str, Any] = encode(check)
    return out
