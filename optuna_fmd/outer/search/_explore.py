"""The search rule's exploration at the edge: Gaussian draws around the incumbent, over every
first-stage param at once, stretched along the recent trusted hypergradients.

Per-layer schedules of a deep network hold gains far from the start (one layer's peak lr ten
times the global one, another's a tenth of it) that neither a hypergradient nor a one-param-
at-a-time pattern move reaches: near the start the loss barely changes along any one of them.
Each draw moves every first-stage param by ``sigma`` units times a standard normal number, so
its cost does not grow with the number of params. A draw that improves moves the incumbent and
widens ``sigma``; one that does not is followed by its mirror (the opposite move), and when
that fails too ``sigma`` narrows. The draws are seeded by the sampler's seed and the draw's
number, so a resumed study draws what an uninterrupted one would.

Guided evolutionary strategies (Maheswaranathan et al., "Guided evolutionary strategies:
augmenting random search with surrogate gradients", ICML 2019): with ``k`` guiding directions
(an orthonormal basis ``U`` of the latest trusted hypergradients), a draw is
``sqrt(ALPHA) z + sqrt((1 - ALPHA) n / k) U w`` with ``z`` and ``w`` standard normal, ``n`` the
number of params moved: the same expected length as an isotropic draw, a share ``1 - ALPHA``
of it along the subspace. A guide that points the right way speeds the draws up; a wrong one
costs the mirrored probe.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace

from .._geometry import Geometry
from ._common import SearchConfig, Step, incumbent_of, propose
from ._pattern import descend
from ._state import Explore, Probe, SearchState

__all__ = [
    "ALPHA",
    "GUIDE",
    "LAYER_TRIALS",
    "SIGMA",
    "after_probe",
    "draw",
    "explore_next",
    "next_probe",
    "probes_for",
    "start",
]

#: Plain episodes the exploration spends by default on a space with schedules per layer group
LAYER_TRIALS = 24

SIGMA = 0.15  # the first draws' standard deviation per param, in units
GROW = 1.5  # sigma's factor after a draw (or its mirror) improved
SHRINK = 0.7  # sigma's factor after a draw and its mirror both failed
MIN_SIGMA, MAX_SIGMA = 0.02, 0.5
GUIDE = 3  # trusted hypergradients kept to guide the draws
ALPHA = 0.5  # the isotropic share of a guided draw's variance


def probes_for(layered: bool, explore: int | None, population: int | None) -> int:
    """The exploration's probes (outer iterates): ``explore`` as given (the sampler checks it
    with the other rule settings), or by default (``None``) :data:`LAYER_TRIALS` trials' worth
    on a space whose optimiser hyperparameters are split over layer groups (``layered``: the
    coarse pass's block moves cannot set the groups apart), and 0 elsewhere."""
    if explore is not None:
        return explore
    return LAYER_TRIALS // (population or 1) if layered else 0


def start(guide: Sequence[Sequence[float]] = (), geo: Geometry | None = None) -> Explore:
    """The exploration before its first draw, guided by ``guide`` (hypergradients per unit,
    over ``geo``'s first-stage params; none: isotropic draws)."""
    mask = None if geo is None else geo.base
    return Explore(SIGMA, guide=orthonormal(guide, mask))


def orthonormal(
    vectors: Sequence[Sequence[float]], mask: Sequence[bool] | None = None
) -> tuple[tuple[float, ...], ...]:
    """An orthonormal basis of the span of ``vectors`` over the ``mask`` ed coordinates (Gram-
    Schmidt; a vector within 1e-6 of the span of those before it adds nothing).

    Example:
        >>> orthonormal([[3.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
        ((1.0, 0.0), (0.0, 1.0))
    """
    basis: list[list[float]] = []
    for v in vectors:
        u = [float(a) if mask is None or mask[i] else 0.0 for i, a in enumerate(v)]
        size = math.sqrt(math.fsum(a * a for a in u))
        if not size > 0 or not math.isfinite(size):
            continue
        for b in basis:
            c = math.fsum(x * y for x, y in zip(u, b, strict=True))
            u = [x - c * y for x, y in zip(u, b, strict=True)]
        rest = math.sqrt(math.fsum(a * a for a in u))
        if rest > 1e-6 * size:
            basis.append([a / rest for a in u])
    return tuple(tuple(b) for b in basis)


def draw(
    geo: Geometry, cfg: SearchConfig, k: int, guide: Sequence[Sequence[float]] = ()
) -> list[float]:
    """Draw ``k``'s direction: a standard normal number per first-stage param, 0 elsewhere;
    with a ``guide`` (an orthonormal basis), the guided draw of the module's docstring."""
    rng = random.Random(f"optuna-fmd explore {cfg.seed} {k}")
    z = [rng.gauss(0.0, 1.0) if b else 0.0 for b in geo.base]
    if not guide:
        return z
    n = sum(geo.base)
    w = [rng.gauss(0.0, 1.0) for _ in guide]
    a, c = math.sqrt(ALPHA), math.sqrt((1.0 - ALPHA) * n / len(guide))
    along = [math.fsum(wj * u[i] for wj, u in zip(w, guide, strict=True)) for i in range(len(z))]
    return [a * zi + c * gi for zi, gi in zip(z, along, strict=True)]


def next_probe(
    ex: Explore, x: Sequence[float], geo: Geometry, cfg: SearchConfig
) -> tuple[list[float], Explore] | None:
    """The next probe around the incumbent ``x`` and the exploration after it (``None``: the
    exploration's ``cfg.explore`` probes are spent, or no draw moves ``x``)."""
    if ex.probes >= cfg.explore or not any(geo.base):
        return None
    for _ in range(4):  # a draw (or its mirror) blocked by the bounds is skipped
        sign = -1.0 if ex.mirror else 1.0
        moved = geo.along(x, draw(geo, cfg, ex.draws, ex.guide), sign * ex.sigma)
        if tuple(moved) != tuple(x):
            return moved, replace(ex, probes=ex.probes + 1)
        if ex.mirror:
            ex = replace(ex, draws=ex.draws + 1, mirror=False)
        else:
            ex = replace(ex, mirror=True)
    return None


def after_probe(ex: Explore, improved: bool) -> Explore:
    """The exploration after its latest probe found a better point (``improved``) or not."""
    if improved:
        return replace(ex, sigma=min(ex.sigma * GROW, MAX_SIGMA), draws=ex.draws + 1, mirror=False)
    if not ex.mirror:
        return replace(ex, mirror=True)
    return replace(ex, sigma=max(ex.sigma * SHRINK, MIN_SIGMA), draws=ex.draws + 1, mirror=False)


def explore_next(state: SearchState, geo: Geometry, cfg: SearchConfig) -> Step:
    """The exploration's next draw around the best point, or, once it is spent, descend."""
    assert state.explore is not None
    nxt = next_probe(state.explore, incumbent_of(state).x, geo, cfg)
    if nxt is None:
        return descend(state, geo, cfg)
    x, ex = nxt
    return propose(replace(state, phase="explore", explore=ex), x, Probe("explore"))
