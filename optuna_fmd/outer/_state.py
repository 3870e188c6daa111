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
- :class:`RuleState`: what it asks of a rule's state. Each rule's state type lives in its
  rule's module, registered with it (:mod:`optuna_fmd.outer._registry`): the ``"search"``
  rule's in ``search/_state.py``, the paper's ``"sign"`` and ``"adam"`` rules' in ``_sign.py``
  and ``_adam.py`` (beside what their backtracking wrapper keeps, ``_paper.Backtracked``).
  States of earlier releases, which stored both paper rules' vectors, load (the other rule's
  vectors are left out). The rules' types are read here by name too (``_state.SignState``).
- A :data:`Check` (:class:`ProbeCheck`, :class:`MembersCheck`): the check of a hypergradient
  the search rule made, stored in its state and in a user attribute (:data:`CHECK_ATTR`).

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
from typing import Any, ClassVar, Protocol, TypeVar

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
from ._registry import rule_names, rule_of

__all__ = [
    "CHECK_ATTR",
    "STATE_KEY",
    "VERSION",
    "Check",
    "MembersCheck",
    "OuterState",
    "ProbeCheck",
    "RuleState",
    "Slot",
    "StateError",
    "StateView",
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


# -- the check of a hypergradient (the search rule's; a user attr too) -------------------
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


# -- what every proposed trial carries -------------------------------------------------------
class RuleState(Protocol):
    """What the outer state asks of a rule's state: a frozen dataclass of the codec's field
    types (``_codec``), its rule's ``name`` a class variable (stored as ``rule``), registered
    with its rule (:func:`~optuna_fmd.outer.register`)."""

    @property
    def name(self) -> str:
        """Its rule's name."""
        ...

    @property
    def converged(self) -> bool:
        """Whether the rule stopped: it proposes its best point from now on."""
        ...

    @property
    def wants_hypergradient(self) -> bool:
        """Whether the trial proposed with it needs the hypergradient."""
        ...

    @property
    def cliffs(self) -> tuple[int, ...]:
        """Trials (iterates) next to a divergence: never returned as best."""
        ...

    @property
    def check(self) -> Check | None:
        """The check of a hypergradient made for this proposal, if any."""
        ...


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
        return self.rule.check

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
        known = rule_of(name)
        if known is None:
            names = [repr(n) for n in rule_names()]
            listed = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            raise StateError(f"`state.rule` must be {listed}, but got {short(name)}.")
        rule: RuleState = decode(known.state, raw, "state")
        if known.check is not None:
            known.check(rule)
        slot = None if raw.get("iterate") is None else decode(Slot, raw, "state")
        return decode(cls, raw, "state", rule=rule, slot=slot)


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
