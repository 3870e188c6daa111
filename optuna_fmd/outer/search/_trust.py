"""Whether a hypergradient is trusted: checked against the plain probe along it, and an
iterate's members against each other (the search rule's item 5, :mod:`optuna_fmd.outer.search`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._state import MembersCheck, ProbeCheck

__all__ = ["DISAGREE", "check_members", "check_probe", "dot", "mean_direction", "norm"]

DISAGREE = 10.0  # a found change off the predicted one by more than this factor: not trusted


def norm(v: Sequence[float]) -> float:
    return math.sqrt(math.fsum(a * a for a in v))


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def check_probe(predicted: float, found: float) -> ProbeCheck:
    """Whether a plain probe along a hypergradient agrees with it.

    Args:
        predicted: The first-order change over the step (negative: a descent step).
        found: The change the probe found (its value minus the line's origin value).

    Returns:
        The check: the probe agrees when it found a change of the predicted sign within
        ``DISAGREE`` times the predicted size either way.

    Example:
        >>> check_probe(-0.01, -0.004).agrees, check_probe(-5.0, 0.002).agrees
        (True, False)
    """
    ok = predicted != 0 and math.isfinite(predicted) and math.isfinite(found)
    ratio = found / predicted if ok else None
    agrees = ratio is not None and 1.0 / DISAGREE <= ratio <= DISAGREE
    return ProbeCheck(
        predicted=predicted if math.isfinite(predicted) else None,
        found=found if math.isfinite(found) else None,
        ratio=ratio,
        agrees=bool(agrees),
    )


def check_members(
    members: Sequence[Sequence[float]], mask: Sequence[bool] | None = None
) -> MembersCheck:
    """Whether an iterate's members' hypergradients (per coordinate unit) agree.

    Args:
        members: Two or more hypergradients in the same coordinates.
        mask: The coordinates that count (``None``: all).

    Returns:
        The check: the smallest cosine between two members and the largest norm over the
        smallest; they agree when the cosine is positive and the ratio is at most
        ``DISAGREE``.

    Example:
        >>> check_members([[1.0, 0.5], [2.0, 0.8]]).agrees
        True
        >>> check_members([[1.0, 0.5], [-300.0, 10.0]]).agrees
        False
    """
    keep = [True] * len(members[0]) if mask is None else list(mask)
    vs = [[x if m else 0.0 for x, m in zip(v, keep, strict=True)] for v in members]
    norms = [norm(v) for v in vs]
    if not all(math.isfinite(n) for n in norms) or min(norms) == 0:
        return MembersCheck(cosine=0.0, norm_ratio=None, agrees=False)
    cosine = min(
        dot(a, b) / (na * nb)
        for i, (a, na) in enumerate(zip(vs, norms, strict=True))
        for b, nb in zip(vs[i + 1 :], norms[i + 1 :], strict=True)
    )
    ratio = max(norms) / min(norms)
    return MembersCheck(
        cosine=cosine, norm_ratio=ratio, agrees=bool(cosine > 0 and ratio <= DISAGREE)
    )


def mean_direction(members: Sequence[Sequence[float]]) -> list[float]:
    """The mean of the members' unit vectors, scaled to their mean norm."""
    norms = [norm(v) for v in members]
    scale = math.fsum(norms) / len(norms)
    return [
        scale * math.fsum(v[i] / n for v, n in zip(members, norms, strict=True)) / len(members)
        for i in range(len(members[0]))
    ]
