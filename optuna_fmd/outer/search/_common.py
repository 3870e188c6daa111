"""What every phase of the search rule shares: a proposal, the incumbent, a parabola's vertex."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .._geometry import FIRST_STEP
from ._state import Incumbent, Probe, SearchState

__all__ = ["SearchConfig", "Step", "incumbent_of", "parabola", "propose"]

#: The params to evaluate next and the search state to store with them.
Step = tuple[list[float], SearchState]


@dataclass(frozen=True)
class SearchConfig:
    """The search rule's settings as it runs (:class:`~optuna_fmd.outer._rules.SearchSettings`
    with its defaults filled in, and the sampler's seed)."""

    step: float = FIRST_STEP  # the first line-search step, in units, where no lr moves
    hypergradients: bool = True  # False: the same search with plain episodes only (an ablation)
    explore: int = 0  # probes of the exploration at the edge (0: none)
    seed: int = 0  # seeds the exploration's draws


def propose(state: SearchState, x: Sequence[float], probe: Probe) -> Step:
    return [float(v) for v in x], replace(state, probe=probe)


def incumbent_of(state: SearchState) -> Incumbent:
    """The search's incumbent: the point it accepted and steps from (set once the start is
    seen). Not the study's best iterate (:class:`~optuna_fmd.outer.BestIterate`)."""
    assert state.incumbent is not None
    return state.incumbent


def parabola(points: Sequence[Sequence[float]]) -> float | None:
    """Vertex of the parabola through three (t, f) points, or None if it opens downwards."""
    (a, fa), (b, fb), (c, fc) = sorted((float(t), float(f)) for t, f in points)
    den = (b - a) * (fb - fc) - (b - c) * (fb - fa)
    if den == 0 or not all(math.isfinite(v) for v in (fa, fb, fc)):
        return None
    num = (b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)
    t = b - 0.5 * num / den
    if not a < t < c or (fa + fc - 2 * fb) <= 0:
        return None
    return t
