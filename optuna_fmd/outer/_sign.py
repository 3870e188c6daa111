"""The FDS paper's ``"sign"`` rule (Micaelli & Storkey, NeurIPS 2021), in one place: its
state (:class:`SignState`), its step (:class:`SignStep`), its settings (:class:`SignSettings`) and
its factory (:func:`sign`), registered as ``"sign"``. The backtracking wrapper around the
step is what it shares with the Adam rule (``_paper``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from .._checks import positive
from ._paper import Backtracked, GradientStep, PaperSettings, same_sizes
from ._point import Note
from ._registry import register

__all__ = ["SignSettings", "SignState", "SignStep", "sign"]

Vector = tuple[float, ...]


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

    @property
    def vectors(self) -> Mapping[str, tuple[object, ...]]:
        return {"s": self.s, "sign": self.sign}


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


def _sign(v: float) -> int:
    return 1 if v > 0 else (-1 if v < 0 else 0)


@dataclass(frozen=True)
class SignSettings(PaperSettings):
    """The paper's ``"sign"`` rule's settings (:func:`optuna_fmd.outer.sign`)."""

    step_size: float = 0.1
    trust_region: float = 0.25
    min_step: float = 1e-3
    backtrack_tol: float = 0.02
    max_backtracks: int = 6
    name: ClassVar[str] = "sign"

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("min_step", self.min_step)

    def step(self) -> GradientStep:
        return SignStep(float(self.step_size), float(self.min_step))


def sign(
    *,
    step_size: float = 0.1,
    trust_region: float = 0.25,
    min_step: float = 1e-3,
    backtrack_tol: float = 0.02,
    max_backtracks: int = 6,
) -> SignSettings:
    """The FDS paper's rule (Micaelli & Storkey, NeurIPS 2021): ``u <- u - sign(g) * s`` in
    each param's coordinate, with a per-coordinate step ``s`` halved whenever the sign of its
    hypergradient flips; every trial computes a hypergradient.

    Args:
        step_size: The first per-coordinate step, in coordinate units.
        trust_region: The largest move of one coordinate per step, in coordinate units.
        min_step: The rule has converged once every step is below this.
        backtrack_tol: After a failed, diverged or worse episode (worse than the best by more
            than this fraction of it), the rule goes back to the best point and takes a step
            half as long.
        max_backtracks: Consecutive backtracks before the rule stops at the best point.
    """
    return SignSettings(step_size, trust_region, min_step, backtrack_tol, max_backtracks)


register(SignSettings, SignState, check=same_sizes)
