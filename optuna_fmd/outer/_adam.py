"""The ``"adam"`` rule (Adam, Kingma & Ba, ICLR 2015, on the hypergradient), in one place: its
state (:class:`AdamState`), its step (:class:`AdamStep`), its settings (:class:`AdamSettings`) and
its factory (:func:`adam`), registered as ``"adam"``. The backtracking wrapper around the
step is what it shares with the sign rule (``_paper``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from .._checks import positive
from ._paper import Backtracked, GradientStep, PaperSettings, same_sizes
from ._point import Note
from ._registry import register

__all__ = ["AdamSettings", "AdamState", "AdamStep", "adam"]

Vector = tuple[float, ...]


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

    @property
    def vectors(self) -> Mapping[str, tuple[object, ...]]:
        return {"m": self.m, "v": self.v}


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
        """As ``SignStep.__call__`` (``_sign``); Adam never converges by itself."""
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
class AdamSettings(PaperSettings):
    """The ``"adam"`` rule's settings (:func:`optuna_fmd.outer.adam`)."""

    step_size: float = 0.1
    trust_region: float = 0.25
    backtrack_tol: float = 0.02
    max_backtracks: int = 6
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = 5.0
    name: ClassVar[str] = "adam"

    def __post_init__(self) -> None:
        super().__post_init__()
        betas = self.betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise ValueError(f"`betas` must be two floats in [0, 1), but got {betas!r}.")
        if self.clip is not None:
            positive("clip", self.clip)

    def step(self) -> GradientStep:
        return AdamStep(
            float(self.step_size),
            (float(self.betas[0]), float(self.betas[1])),
            None if self.clip is None else float(self.clip),
        )


def adam(
    *,
    step_size: float = 0.1,
    trust_region: float = 0.25,
    backtrack_tol: float = 0.02,
    max_backtracks: int = 6,
    betas: tuple[float, float] = (0.9, 0.999),
    clip: float | None = 5.0,
) -> AdamSettings:
    """Adam (Kingma & Ba, ICLR 2015) on the hypergradient in each param's coordinate; every
    trial computes a hypergradient.

    Args:
        step_size: Adam's step, in coordinate units.
        trust_region: The largest move of one coordinate per step, in coordinate units.
        backtrack_tol: As for :func:`sign`.
        max_backtracks: As for :func:`sign`.
        betas: The moments' decay rates.
        clip: A hypergradient coordinate beyond this many times its running RMS is clipped
            (``None``: never).
    """
    return AdamSettings(step_size, trust_region, backtrack_tol, max_backtracks, betas, clip)


register(AdamSettings, AdamState, check=same_sizes)
