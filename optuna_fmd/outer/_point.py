"""What the outer loop sees of a study: :class:`Point` s, always minimised (:func:`sense_sign`),
the groups it compares (:func:`iterate_groups`), the best of them (:func:`best_group`) and the
record of the best point (:class:`BestIterate`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._state import OuterState, RuleState

__all__ = [
    "BestIterate",
    "Group",
    "Note",
    "Point",
    "Proposal",
    "best_group",
    "iterate_groups",
    "sense_sign",
]


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


class Group(NamedTuple):
    """What the outer loop compares (:func:`iterate_groups`): an outer iterate's mean value over
    its members and their trial numbers, or a trial without an iterate, alone."""

    value: float  # the mean value, in the study's own units (not sense-adjusted)
    trials: list[int]  # the trial numbers, in order


@dataclass(frozen=True)
class BestIterate:
    """The best point of a study, as the sampler compares points: with a population the outer
    iterate with the best mean value over its members, else the best trial. The one record of
    it: :meth:`optuna_fmd.FMDSampler.best_iterate` returns it, the plots, the report, the
    dashboard and the command line read it (built by :func:`~optuna_fmd.outer.best_iterate`
    from :func:`best_group`).

    It is read from the study's trials, never stored. The outer states stored on the trials
    keep their own notes of a best point, parts of those states' JSON: the search rule's
    ``Incumbent`` (the point it accepted and steps from: its params, its value made lower is
    better, its trial or iterate) and the paper rules' ``Summit`` (the best trial or iterate
    their step knew, its value in the study's units). They say what the rule decided when it
    proposed a trial; this record says what the study holds now, and is the one to report.

    Attributes:
        value: The mean value over its members, in the study's own units (a maximize study's
            values are not negated).
        params: Its params (the first member's: the members share them).
        trials: Its trial numbers, in order (one without a population).

    Example:
        >>> best = BestIterate(0.4, {"lr_0": 0.1}, (6, 7))
        >>> best.members, best.trials
        (2, (6, 7))
    """

    value: float
    params: Mapping[str, Any]
    trials: tuple[int, ...]

    @property
    def members(self) -> int:
        """How many trials its value is the mean of: the members of an outer iterate, 1 for a
        trial alone."""
        return len(self.trials)


def sense_sign(maximize: bool) -> float:
    """+1 for a minimize study, -1 for maximize: the outer loop minimises ``sense * value``."""
    return -1.0 if maximize else 1.0


def iterate_groups(
    points: Iterable[tuple[int, int | None, float]],
    size: int | None,
    cliffs: Collection[int] = (),
) -> list[Group]:
    """What the outer loop compares, from ``(trial number, outer iterate or None, value)``
    points: a :class:`Group` (mean value, trial numbers) per outer iterate that has all
    ``size`` members, and ``(value, [number])`` per point without an iterate; an iterate short
    of members (still running, or failed) is left out, and so are the ``cliffs`` (iterates, or
    trials without one, next to a divergence: :class:`~optuna_fmd.outer._state.SearchState`)
    unless nothing else is left. In order of each group's first trial.

    Example:
        >>> iterate_groups([(0, 0, 0.5), (1, 0, 0.3), (2, 1, 0.2), (3, None, 0.4)], 2)
        [Group(value=0.4, trials=[0, 1]), Group(value=0.4, trials=[3])]
        >>> iterate_groups([(0, 0, 0.5), (1, 0, 0.3), (3, None, 0.4)], 2, cliffs=[3])
        [Group(value=0.4, trials=[0, 1])]
    """
    groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for number, iterate, value in points:
        key = ("trial", number) if iterate is None else ("iterate", iterate)
        groups.setdefault(key, []).append((number, value))
    full = {k: g for k, g in groups.items() if k[0] == "trial" or len(g) == (size or 1)}
    kept = {k: g for k, g in full.items() if k[1] not in cliffs} or full
    out = [
        Group(math.fsum(v for _, v in g) / len(g), sorted(n for n, _ in g)) for g in kept.values()
    ]
    return sorted(out, key=lambda group: group.trials[0])


def best_group(
    points: Iterable[tuple[int, int | None, float]],
    size: int | None,
    sense: float = 1.0,
    cliffs: Collection[int] = (),
    tie: Callable[[list[int]], float] | None = None,
) -> Group | None:
    """The best of :func:`iterate_groups`: the lowest ``sense * value``; on a tie the lowest
    ``tie(trials)`` where given (the comparison's: the group that ended first), then the
    earlier group (``None``: no group). The one definition of the best iterate, for the
    sampler, the visualisation (both through :func:`~optuna_fmd.outer.best_iterate`) and the
    comparison.

    Example:
        >>> best_group([(0, 0, 0.5), (1, 0, 0.3), (2, None, 0.4)], 2)
        Group(value=0.4, trials=[0, 1])
        >>> best_group([(0, 0, 0.5), (1, 0, 0.3), (2, None, 0.45)], 2, sense=-1.0)
        Group(value=0.45, trials=[2])
        >>> best_group([(0, None, 0.4), (1, None, 0.4)], None, tie=lambda trials: -trials[0])
        Group(value=0.4, trials=[1])
    """
    groups = iterate_groups(points, size, cliffs)
    if not groups:
        return None
    if tie is None:
        return min(groups, key=lambda g: sense * g.value)
    key = tie
    return min(groups, key=lambda g: (sense * g.value, key(g.trials)))
