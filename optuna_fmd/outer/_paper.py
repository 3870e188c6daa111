"""What the FDS paper's outer rules, ``"sign"`` (``_sign``) and ``"adam"`` (``_adam``), share:
the backtracking wrapper :func:`decide` around a rule's own step, as pure functions.

Each proposal is a step from one point along its hypergradient, in the transformed coordinates
of the geometry (:class:`~optuna_fmd.outer._geometry.Coord`). A paper rule is its step alone
(a :class:`GradientStep`), with its own state, a :class:`Backtracked`: the sign rule moves
every coordinate by its own step, halved when its hypergradient's sign flips; Adam takes
bias-corrected moment ratios. :func:`decide` wraps either in what they share: the trust region,
and backtracking (a failed or clearly worse proposal is retried from the best point with half
the step, up to a limit). :class:`PaperSettings` is what their settings share, and builds the
rule (:class:`PaperRule`).

No torch and no Optuna here: the states are frozen (stored in the trial by
:class:`~optuna_fmd.FMDSampler`), the points seen are :class:`~optuna_fmd.outer._point.Point`
and the warnings come back as :class:`~optuna_fmd.outer._point.Note` values for the adapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

from .._checks import non_negative_int, positive
from ._codec import StateError
from ._geometry import Coord, Geometry
from ._point import Note, Point, Proposal
from ._registry import OuterRule
from ._state import RuleState

__all__ = [
    "MAX_HYPERGRADIENT",
    "Backtracked",
    "GradientRule",
    "GradientStep",
    "PaperRule",
    "PaperSettings",
    "Summit",
    "decide",
    "fresh_state",
    "same_sizes",
]

#: Larger transformed hypergradient coordinates are clipped.
MAX_HYPERGRADIENT = 1e100


@dataclass(frozen=True)
class Summit:
    """The best point known to a sign or Adam step, in the study's own units."""

    trial: int  # its trial (with a population: its outer iterate)
    value: float


@dataclass(frozen=True, kw_only=True)
class Backtracked:
    """What the backtracking wrapper around a paper rule keeps (:func:`decide`): the step
    scale, halved at each backtrack, the backtracks in a row, the steps taken, whether it
    stopped, the point the proposal steps from and the best one known. A rule's state adds
    its own vectors (:class:`~optuna_fmd.outer._sign.SignState`) and its ``name``."""

    name: ClassVar[str]
    scale: float = 1.0
    backtracks: int = 0
    outer_step: int = 0
    converged: bool = False  # from now on the best point is proposed
    base: int | None = None  # the trial (iterate) the proposal steps from
    best: Summit | None = None

    wants_hypergradient: ClassVar[bool] = True
    cliffs: ClassVar[tuple[int, ...]] = ()  # no point is set aside by these rules
    check: ClassVar[None] = None  # nor is a hypergradient checked

    @property
    def width(self) -> int:
        """Params the state is for."""
        raise NotImplementedError

    @property
    def vectors(self) -> Mapping[str, tuple[object, ...]]:
        """The rule's own vectors by field name, one entry per param each."""
        raise NotImplementedError


def same_sizes(state: Backtracked) -> None:
    """A paper rule's stored vectors hold one entry per param each (the registry's check)."""
    sizes = [len(v) for v in state.vectors.values()]
    if len(set(sizes)) > 1:
        names = " and ".join(f"`state.{k}`" for k in state.vectors)
        have = " and ".join(str(n) for n in sizes)
        raise StateError(f"{names} must have one entry per param, but have {have}.")


class GradientStep(Protocol):
    """A paper rule's own step (``SignStep``, ``AdamStep``), with its own state."""

    @property
    def name(self) -> str:
        """The rule's name."""
        ...

    def fresh(self, n: int) -> Backtracked:
        """The state before the first step, for ``n`` params."""
        ...

    def __call__(
        self, mem: Any, g: list[float], scale: float, trust: float, number: int
    ) -> tuple[list[float], Backtracked, bool, list[Note]]:
        """The move per coordinate (in coordinate units, before each coordinate's unit) from
        the state ``mem`` (the rule's own type) along the hypergradient ``g`` of trial
        ``number``, the new state, whether the rule converged, and its notes."""
        ...


@dataclass(frozen=True)
class GradientRule:
    """A paper rule: its step (a :class:`GradientStep`) inside the backtracking wrapper of
    :func:`decide`.

    Attributes:
        step: The rule's own step and state.
        coords: Each param's coordinate.
        start: The first point (params).
        trust: Largest move of one coordinate per step, in coordinate units.
        backtrack_tol: A proposal worse than the best by this fraction is backtracked from.
        max_backtracks: Consecutive backtracks before the rule stops at the best point.
    """

    step: GradientStep
    coords: Sequence[Coord]
    start: Sequence[float]
    trust: float
    backtrack_tol: float
    max_backtracks: int

    @property
    def name(self) -> str:
        return self.step.name


def fresh_state(rule: GradientRule) -> Backtracked:
    """The state before the first step."""
    return rule.step.fresh(len(rule.coords))


@dataclass(frozen=True)
class PaperRule:
    """A paper rule (:func:`decide`) as the sampler asks for it (an ``OuterRule``)."""

    rule: GradientRule

    @property
    def name(self) -> str:
        return self.rule.name

    def init(self) -> RuleState:
        return fresh_state(self.rule)

    def accepts(self, state: RuleState) -> bool:
        fresh = self.init()
        return (
            type(state) is type(fresh)
            and isinstance(state, Backtracked)
            and state.width == len(self.rule.coords)
        )

    def step(self, state: RuleState | None, seen: Sequence[Point], sense: float) -> Proposal:
        assert state is None or isinstance(state, Backtracked)
        return decide(self.rule, seen, sense, latest=state)


class PaperSettings:
    """What a paper rule's settings share: a frozen dataclass with these fields (and its own),
    checked when made, its rule's ``name`` and its :meth:`step`; it builds the rule, the step
    inside the backtracking wrapper (:func:`decide`) those fields configure."""

    name: ClassVar[str]
    step_size: float  # the first step, in coordinate units
    trust_region: float  # the largest move of one coordinate per step, in coordinate units
    backtrack_tol: float  # a proposal worse than the best by this fraction is backtracked from
    max_backtracks: int  # consecutive backtracks before the rule stops at the best point

    def __post_init__(self) -> None:
        positive("step_size", self.step_size)
        positive("trust_region", self.trust_region)
        positive("backtrack_tol", self.backtrack_tol, allow_zero=True)
        non_negative_int("max_backtracks", self.max_backtracks)

    def step(self) -> GradientStep:
        """The rule's own step."""
        raise NotImplementedError

    def resolved(self, layered: bool, population: int | None) -> PaperSettings:
        return self

    def tags(self, seed: int | None) -> list[object]:
        return []

    def build(self, geometry: Geometry, seed: int) -> OuterRule:
        return PaperRule(
            GradientRule(
                self.step(),
                geometry.coords,
                list(geometry.start),
                trust=float(self.trust_region),
                backtrack_tol=float(self.backtrack_tol),
                max_backtracks=self.max_backtracks,
            )
        )


def _memory(point: Point) -> Backtracked:
    """The rule's state stored with ``point`` (one the rule proposed)."""
    assert point.state is not None and isinstance(point.state.rule, Backtracked)
    return point.state.rule


def decide(
    rule: GradientRule,
    seen: Sequence[Point],
    sense: float,
    latest: Backtracked | None = None,
) -> Proposal:
    """The next point, its state and the warnings, from the points seen so far.

    ``seen`` holds sense-adjusted values (lower is better), in trial order; a point's ``state``
    is the one this rule stored with it (``None``: not proposed by the rule). ``sense`` turns
    the best value back into the study's own units for the stored state. ``latest`` is the
    state stored with the latest point the rule proposed (``None``: read from ``seen``, or the
    fresh state when the rule proposed none).
    """
    notes: list[Note] = []
    in_space = [s for s in seen if s.x is not None]
    usable = [s for s in in_space if s.value is not None and s.grad is not None]
    best = min(usable, key=lambda s: (s.value, s.number)) if usable else None
    ours = [s for s in seen if s.state is not None]
    if latest is None:
        latest = _memory(ours[-1]) if ours else fresh_state(rule)
    # The latest point this rule proposed or that lies in the space: a proposal that failed
    # before suggesting every parameter still counts (otherwise it would be proposed again).
    candidates = [s for s in seen if s.x is not None or s.state is not None]
    parent = candidates[-1] if candidates else None
    summit = (
        None if best is None or best.value is None else Summit(best.number, sense * best.value)
    )

    def info(x: list[float], state: Backtracked, origin: str, base: Point | None) -> Proposal:
        state = replace(state, base=None if base is None else base.number, best=summit)
        return Proposal(x, state, origin, notes)

    def step(mem: Backtracked, base: Point, origin: str) -> Proposal:
        return info(*_step(rule, mem, base, notes), origin, base)

    start = list(rule.start)
    if latest.converged:
        x = list(best.x) if best is not None and best.x is not None else start
        return info(x, latest, "converged", best)
    if parent is None and best is None:
        return info(start, fresh_state(rule), "init", None)
    if best is None:
        assert parent is not None
        if parent.diverged and parent.state is not None:
            notes.append(_init_diverged(parent.number))
            return info(start, replace(latest, converged=True), "converged", None)
        notes.append(Note("no-grad", _NO_GRAD))
        return info(start, latest, "init", None)
    assert parent is not None and best.value is not None
    limit = best.value + rule.backtrack_tol * abs(best.value)
    worse = parent.value is not None and parent.value > limit
    if parent.value is not None and parent.grad is not None and not worse:
        mem = _memory(parent) if parent.state is not None else latest
        return step(replace(mem, backtracks=0), parent, "step")
    if (parent.bad or worse) and parent.state is not None:
        backtracks = _memory(parent).backtracks + 1
        scale = _memory(parent).scale * 0.5
        if backtracks > rule.max_backtracks:
            assert best.x is not None
            return info(list(best.x), replace(latest, converged=True), "converged", best)
        mem = _memory(best) if best.state is not None else latest
        return step(replace(mem, scale=scale, backtracks=backtracks), best, "backtrack")
    # The latest point has no usable hypergradient (enqueued, another sampler, NaN, corrupt,
    # or a bad trial this rule did not propose): continue from the best point.
    why = (
        "has no usable hypergradient"
        if parent.grad is None
        else "was not proposed by FMDSampler and failed or is clearly worse than the best"
    )
    notes.append(
        Note(
            f"fallback:{why[:6]}",
            f"trial {parent.number} {why}; FMDSampler continues from the best trial with a "
            f"hypergradient (trial {best.number}).",
        )
    )
    return step(latest, best, "fallback")


def _init_diverged(number: int) -> Note:
    return Note(
        "init-diverged",
        f"trial {number} diverged with the initial schedules and no trial has a "
        "hypergradient to step from; FMDSampler stops here (is_converged). Lower the "
        "initial learning rate (Schedule(init=...)) and start a new study.",
    )


_NO_GRAD = (
    "no finished trial has a finite value and a hypergradient yet "
    "(user_attrs['hypergradient'], written by HypergradientObjective with "
    "hypergradient=True); FMDSampler proposes the initial schedules again."
)


def _step(
    rule: GradientRule, mem: Backtracked, base: Point, notes: list[Note]
) -> tuple[list[float], Backtracked]:
    """One step of the rule from ``base`` along its hypergradient, with the memory ``mem``."""
    assert base.x is not None and base.grad is not None
    coords = rule.coords
    u = [c.to_u(x) for c, x in zip(coords, base.x, strict=True)]
    g = [gx * c.dx_du(x) for c, gx, x in zip(coords, base.grad, base.x, strict=True)]
    if any(not abs(gi) <= MAX_HYPERGRADIENT for gi in g):
        notes.append(
            Note(
                "exploding",
                f"the hypergradient of trial {base.number} has coordinates beyond "
                f"{MAX_HYPERGRADIENT:g} in the sampler's coordinates (largest "
                f"{max(abs(gi) for gi in g):.3g}); FMDSampler clips them.",
            )
        )
        g = [min(max(gi, -MAX_HYPERGRADIENT), MAX_HYPERGRADIENT) for gi in g]
    moves, state, converged, own = rule.step(mem, g, mem.scale, rule.trust, base.number)
    notes.extend(own)
    x = []
    for c, ui, di, xi in zip(coords, u, moves, base.x, strict=True):
        lo, hi = c.bounds
        di = di * c.unit
        new = c.from_u(min(max(ui + di, lo), hi)) if math.isfinite(ui + di) else xi
        x.append(new if math.isfinite(new) else min(max(xi, c.low), c.high))
    state = replace(state, outer_step=mem.outer_step + 1, converged=bool(converged))
    return x, state
