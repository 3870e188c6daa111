"""The FDS paper's outer rules, ``"sign"`` and ``"adam"``, as pure functions.

Each proposal is a step from one point along its hypergradient, in the transformed coordinates
of the geometry (:class:`~optuna_fmd.outer._geometry.Coord`). Each rule is its step alone, with
its own state: :class:`SignStep` moves every coordinate by its own step, halved when its
hypergradient's sign flips (the paper's rule; :class:`~optuna_fmd.outer._state.SignState`);
:class:`AdamStep` takes bias-corrected moment ratios (:class:`~optuna_fmd.outer._state.
AdamState`). :func:`decide` wraps either in what they share: the trust region, and
backtracking (a failed or clearly worse proposal is retried from the best point with half the
step, up to a limit; :class:`~optuna_fmd.outer._state.Backtracked`).

No torch and no Optuna here: the states are frozen (stored in the trial by
:class:`~optuna_fmd.FMDSampler`), the points seen are :class:`~optuna_fmd.outer._point.Point`
and the warnings come back as :class:`~optuna_fmd.outer._point.Note` values for the adapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from ._geometry import Coord
from ._point import Note, Point, Proposal
from ._state import AdamState, GradientState, SignState, Summit

__all__ = [
    "MAX_HYPERGRADIENT",
    "AdamStep",
    "GradientRule",
    "SignStep",
    "decide",
    "fresh_state",
]

#: Larger transformed hypergradient coordinates are clipped.
MAX_HYPERGRADIENT = 1e100


@dataclass(frozen=True)
class SignStep:
    """The sign rule's step: ``u <- u - sign(g) * s`` per coordinate, ``s`` halved whenever the
    sign of its hypergradient flips; converged once every step is below ``min_step``."""

    step_size: float
    min_step: float
    name: ClassVar[str] = SignState.name

    def fresh(self, n: int) -> SignState:
        return SignState(s=(self.step_size,) * n, sign=(0,) * n)

    def __call__(
        self, mem: SignState, g: list[float], scale: float, trust: float, number: int
    ) -> tuple[list[float], SignState, bool, list[Note]]:
        """The move per coordinate (in coordinate units, before each coordinate's unit), the
        new state, whether the rule converged, and its notes."""
        s, signs = list(mem.s), list(mem.sign)
        delta = [0.0] * len(g)
        for i, gi in enumerate(g):
            sg = _sign(gi)
            if sg != 0 and signs[i] != 0 and sg != signs[i]:
                s[i] *= 0.5
            if sg != 0:
                signs[i] = sg
            delta[i] = -sg * min(s[i] * scale, trust)
        converged = max(si * scale for si in s) < self.min_step
        return delta, replace(mem, s=tuple(s), sign=tuple(signs)), converged, []


@dataclass(frozen=True)
class AdamStep:
    """Adam's step (Kingma & Ba, ICLR 2015) on the hypergradient, each coordinate clipped to
    ``clip`` times its running RMS (``None``: never)."""

    step_size: float
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = 5.0
    name: ClassVar[str] = AdamState.name

    def fresh(self, n: int) -> AdamState:
        return AdamState(m=(0.0,) * n, v=(0.0,) * n)

    def __call__(
        self, mem: AdamState, g: list[float], scale: float, trust: float, number: int
    ) -> tuple[list[float], AdamState, bool, list[Note]]:
        """As :meth:`SignStep.__call__`; Adam never converges by itself."""
        b1, b2 = self.betas
        t, m, v2, notes = mem.t, list(mem.m), list(mem.v), []
        g = list(g)
        if t > 0 and self.clip is not None:
            for i in range(len(g)):
                rms = math.sqrt(v2[i] / (1.0 - b2**t))
                if rms > 0 and abs(g[i]) > self.clip * rms:
                    notes.append(
                        Note(
                            "adam-clip",
                            f"the hypergradient of trial {number} exceeds {self.clip:g} "
                            "times its running RMS in some coordinates; FMDSampler clips them "
                            "(`clip`).",
                        )
                    )
                    g[i] = min(max(g[i], -self.clip * rms), self.clip * rms)
        t += 1
        delta = [0.0] * len(g)
        for i in range(len(g)):
            m[i] = b1 * m[i] + (1.0 - b1) * g[i]
            v2[i] = b2 * v2[i] + (1.0 - b2) * g[i] * g[i]
            m_hat = m[i] / (1.0 - b1**t)
            v_hat = v2[i] / (1.0 - b2**t)
            ratio = m_hat / (math.sqrt(v_hat) + 1e-30) if v_hat > 0 else 0.0
            step = self.step_size * scale * ratio
            delta[i] = -min(max(step, -trust), trust)
        return delta, replace(mem, m=tuple(m), v=tuple(v2), t=t), False, notes


@dataclass(frozen=True)
class GradientRule:
    """A paper rule: its step (:class:`SignStep` or :class:`AdamStep`) inside the backtracking
    wrapper of :func:`decide`.

    Attributes:
        step: The rule's own step and state.
        coords: Each param's coordinate.
        start: The first point (params).
        trust: Largest move of one coordinate per step, in coordinate units.
        backtrack_tol: A proposal worse than the best by this fraction is backtracked from.
        max_backtracks: Consecutive backtracks before the rule stops at the best point.
    """

    step: SignStep | AdamStep
    coords: Sequence[Coord]
    start: Sequence[float]
    trust: float
    backtrack_tol: float
    max_backtracks: int

    @property
    def name(self) -> str:
        return self.step.name


def fresh_state(rule: GradientRule) -> GradientState:
    """The state before the first step."""
    return rule.step.fresh(len(rule.coords))


def _memory(point: Point) -> GradientState:
    """The rule's state stored with ``point`` (one the rule proposed)."""
    assert point.state is not None and isinstance(point.state.rule, GradientState)
    return point.state.rule


def decide(
    rule: GradientRule,
    seen: Sequence[Point],
    sense: float,
    latest: GradientState | None = None,
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

    def info(x: list[float], state: GradientState, origin: str, base: Point | None) -> Proposal:
        state = replace(state, base=None if base is None else base.number, best=summit)
        return Proposal(x, state, origin, notes)

    def step(mem: GradientState, base: Point, origin: str) -> Proposal:
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


def _sign(v: float) -> int:
    return 1 if v > 0 else (-1 if v < 0 else 0)


def _step(
    rule: GradientRule, mem: GradientState, base: Point, notes: list[Note]
) -> tuple[list[float], GradientState]:
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
    moves, state, converged, own = rule.step(mem, g, mem.scale, rule.trust, base.number)  # type: ignore[arg-type]
    notes.extend(own)
    x = []
    for c, ui, di, xi in zip(coords, u, moves, base.x, strict=True):
        lo, hi = c.bounds
        di = di * c.unit
        new = c.from_u(min(max(ui + di, lo), hi)) if math.isfinite(ui + di) else xi
        x.append(new if math.isfinite(new) else min(max(xi, c.low), c.high))
    state = replace(state, outer_step=mem.outer_step + 1, converged=bool(converged))
    return x, state
