"""What the outer loop sees of a study: :class:`Point` s, always minimised (:func:`sense_sign`),
and the groups it compares (:func:`iterate_groups`), the best of them (:func:`best_group`)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ._state import OuterState, RuleState

__all__ = ["Note", "Point", "Proposal", "best_group", "iterate_groups", "sense_sign"]


@dataclass
class Point:
    """A trial (or an averaged iterate) as the outer loop sees it: always a minimisation.

    On a maximize study ``value`` and ``grad`` are the negated objective value and
    hypergradient, so "lower is better" holds everywhere in the outer loop.
    """

    number: int
    x: list[float] | None  # params in space order (None: trial not in the space)
    value: float | None  # finite (sense-adjusted) value of a COMPLETE, non-diverged trial
    bad: bool  # failed, pruned, diverged or non-finite value
    grad: list[float] | None  # finite (sense-adjusted) hypergradient in param order
    state: OuterState | None  # the sampler's state stored on the trial (same space and rule)
    diverged: bool = False  # training or the hypergradient became NaN / infinite
    members: list[list[float]] | None = None  # an iterate's members' hypergradients (>= 2)


class Note(NamedTuple):
    """A note for the adapter, each key worth one: a warning, or (``info``) news of the search
    for the log (``logging``, logger ``optuna_fmd``)."""

    key: str
    message: str
    info: bool = False


class Proposal(NamedTuple):
    """The next params, the rule's state to store with them, why they were proposed (the
    search rule's probe kind; ``init``, ``step``, ``backtrack``, ``fallback`` or ``converged``
    for the paper rules) and the notes for the adapter."""

    x: list[float]
    state: RuleState
    origin: str
    notes: list[Note]


def sense_sign(maximize: bool) -> float:
    """+1 for a minimize study, -1 for maximize: the outer loop minimises ``sense * value``."""
    return -1.0 if maximize else 1.0


def iterate_groups(
    points: Iterable[tuple[int, int | None, float]],
    size: int | None,
    cliffs: Collection[int] = (),
) -> list[tuple[float, list[int]]]:
    """What the outer loop compares, from ``(trial number, outer iterate or None, value)``
    points: ``(mean value, trial numbers)`` per outer iterate that has all ``size`` members,
    and ``(value, [number])`` per point without an iterate; an iterate short of members (still
    running, or failed) is left out, and so are the ``cliffs`` (iterates, or trials without
    one, next to a divergence: :class:`~optuna_fmd.outer._state.SearchState`) unless nothing
    else is left. In order of each group's first trial.

    Example:
        >>> iterate_groups([(0, 0, 0.5), (1, 0, 0.3), (2, 1, 0.2), (3, None, 0.4)], 2)
        [(0.4, [0, 1]), (0.4, [3])]
        >>> iterate_groups([(0, 0, 0.5), (1, 0, 0.3), (3, None, 0.4)], 2, cliffs=[3])
        [(0.4, [0, 1])]
    """
    groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for number, iterate, value in points:
        key = ("trial", number) if iterate is None else ("iterate", iterate)
        groups.setdefault(key, []).append((number, value))
    full = {k: g for k, g in groups.items() if k[0] == "trial" or len(g) == (size or 1)}
    kept = {k: g for k, g in full.items() if k[1] not in cliffs} or full
    out = [(math.fsum(v for _, v in g) / len(g), sorted(n for n, _ in g)) for g in kept.values()]
    return sorted(out, key=lambda group: group[1][0])


def best_group(
    points: Iterable[tuple[int, int | None, float]],
    size: int | None,
    sense: float = 1.0,
    cliffs: Collection[int] = (),
) -> tuple[float, list[int]] | None:
    """The best of :func:`iterate_groups`: the lowest ``sense * value``, the earlier group on a
    tie (``None``: no group). The one definition of the best iterate, for the sampler, the
    visualisation and the comparison.

    Example:
        >>> best_group([(0, 0, 0.5), (1, 0, 0.3), (2, None, 0.4)], 2)
        (0.4, [0, 1])
        >>> best_group([(0, 0, 0.5), (1, 0, 0.3), (2, None, 0.45)], 2, sense=-1.0)
        (0.45, [2])
    """
    groups = iterate_groups(points, size, cliffs)
    return min(groups, key=lambda g: sense * g[0]) if groups else None
