"""Ensemble averaging across workers: M trials (members) per outer iterate, claimed through
storage so that any number of workers sharing a storage run each member exactly once and take
the same outer step.

A claim is the :class:`~optuna_fmd.outer._state.Slot` of the sampler's state stored on a trial
(``STATE_KEY``), naming the iterate and the member: written ``tentative``, checked against the
other trials' claims, then made ``final``. The first claim of an iterate defines its
schedules; once every member is done (or a quorum after a timeout), the iterate's point is the
members' mean value and hypergradient, and the next iterate is the outer rule's step from it.
"""

from __future__ import annotations

import datetime
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from optuna.storages import fail_stale_trials
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .._checks import positive, positive_int
from ._point import BestIterate, Point, best_group, sense_sign
from ._state import STATE_KEY, OuterState, Slot, StateView, read_view

if TYPE_CHECKING:
    import random

    from optuna.study import Study

_MAX_SLOT_FAILURES = 3  # a population member whose trial failed this often counts as bad
_MAX_SETTLE_POLLS = 600  # short polls waiting for a rival tentative claim to settle


@dataclass
class _Claim:
    """A trial's claim on member ``member`` of outer iterate ``iterate`` (population mode)."""

    trial: FrozenTrial
    iterate: int
    member: int
    state: OuterState


def check_population(
    population: int | None, quorum: int | None, timeout: float | None, poll_interval: float
) -> None:
    """The population's settings checked (:class:`~optuna_fmd.FMDSampler`'s arguments)."""
    if population is not None:
        positive_int("population", population)
    if quorum is not None:
        positive_int("quorum", quorum)
        if population is None or quorum > population:
            raise ValueError(
                f"`quorum` must be at most `population` ({population}), but got {quorum}."
            )
    if timeout is not None:
        positive("population_timeout", timeout, allow_zero=True)
    positive("poll_interval", poll_interval)


def is_slot(state: OuterState, population: int | None) -> bool:
    """Whether ``state`` claims a member slot of a population of ``population``."""
    slot = state.slot
    return (
        population is not None
        and slot is not None
        and slot.iterate >= 0
        and 0 <= slot.member < population
    )


def study_sense(study: Study) -> float:
    """:func:`~optuna_fmd.outer._point.sense_sign` of an Optuna study's direction."""
    return sense_sign(study.direction == StudyDirection.MAXIMIZE)


def stored_view(trial: FrozenTrial) -> StateView | None:
    """The state stored on ``trial``, read leniently (:func:`~optuna_fmd.outer.read_view`)."""
    return read_view(trial.system_attrs.get(STATE_KEY))


def best_iterate(
    study: Study,
    population: int | None,
    read: Callable[[FrozenTrial], StateView | None] = stored_view,
) -> BestIterate | None:
    """The best point of ``study`` as the sampler compares points (``None``: no trial
    completed with a finite value yet): with a population of ``population`` members the outer
    iterate with the best mean value over its members, every one of them complete
    (:func:`~optuna_fmd.outer.best_group`), a trial that claims no member slot a point of its
    own; without one (``None``) the best trial. The earlier point on a tie.

    A trial's outer iterate and member are those of the state ``read`` returns for it (default:
    the one stored on it); the points next to a divergence (``cliffs``) that the latest state
    naming any set aside are left out, unless nothing else is left. The one computation of the
    best point: :meth:`~optuna_fmd.FMDSampler.best_iterate` passes its population and reads
    only its own states, the plots the population the sampler stored.
    """
    points: list[tuple[int, int | None, float]] = []
    done: dict[int, FrozenTrial] = {}
    cliffs: tuple[int, ...] = ()
    for t in study.get_trials(deepcopy=False):
        view = read(t)
        cliffs = view.cliffs if view is not None and view.cliffs else cliffs
        if t.state != TrialState.COMPLETE or t.value is None or not math.isfinite(t.value):
            continue
        iterate = view.iterate if view is not None and _claims(view, population) else None
        points.append((t.number, iterate, float(t.value)))
        done[t.number] = t
    best = best_group(points, population, study_sense(study), cliffs)
    if best is None:
        return None
    return BestIterate(best.value, dict(done[best.trials[0]].params), tuple(best.trials))


def _claims(view: StateView, population: int | None) -> bool:
    """Whether ``view`` names a member slot of a population of ``population``
    (:func:`is_slot` of a state read leniently)."""
    member = 0 if view.member is None else view.member
    return (
        population is not None
        and view.iterate is not None
        and view.iterate >= 0
        and 0 <= member < population
    )


class Population:
    """The claim protocol of ``size`` members per outer iterate: a collaborator of
    :class:`~optuna_fmd.FMDSampler`, which hands it the ways to read a trial and the outer step.

    Args:
        size: Members per outer iterate.
        quorum: Members that suffice once ``timeout`` has passed.
        timeout: Seconds after the first member finished from which a quorum suffices
            (``None``: wait for every member).
        poll_interval: Seconds between storage polls while waiting for members.
        rng: Jitter of the polls.
        start: The first iterate's params.
        n_params: Params per point (a claim without as many finite params is ignored).
        read: The state a trial carries (``None``: none of this sampler's).
        see: A finished trial as the outer loop sees it (sense-adjusted).
        first: The rule's state before the first step.
        decide: The outer step from the points seen (averaged iterates) and the study's sense.
    """

    def __init__(
        self,
        size: int,
        quorum: int,
        timeout: float | None,
        poll_interval: float,
        rng: random.Random,
        start: Sequence[float],
        *,
        read: Callable[[FrozenTrial], OuterState | None],
        see: Callable[[FrozenTrial, float], Point],
        first: Callable[[], OuterState],
        decide: Callable[[list[Point], float], tuple[list[float], OuterState]],
    ) -> None:
        self._population = size
        self._quorum = quorum
        self._population_timeout = timeout
        self._poll_interval = poll_interval
        self._rng = rng
        self._start = tuple(start)
        self._n = len(self._start)
        self._read_state = read
        self._see = see
        self._first = first
        self._decide = decide

    def _claims(self, study: Study, own: int) -> list[_Claim]:
        out = []
        for t in study.get_trials(deepcopy=False):
            if t.number == own:
                continue
            state = self._read_state(t)
            if state is None or state.slot is None or not is_slot(state, self._population):
                continue
            if state.slot.claim not in ("tentative", "final"):
                continue
            if not state.has_x(self._n):
                continue
            out.append(_Claim(t, state.slot.iterate, state.slot.member, state))
        return sorted(out, key=lambda c: c.trial.number)

    def _point(
        self, iterate: int, definition: OuterState, members: list[_Claim], sense: float
    ) -> Point:
        """Iterate ``iterate`` seen as one point: its members' mean value and hypergradient."""
        values, grads, bad, diverged = [], [], False, False
        assert definition.x is not None
        x = list(definition.x)
        for c in sorted(members, key=lambda c: c.member):
            seen = self._see(c.trial, sense)
            diverged = diverged or seen.diverged
            wants_grad = definition.wants_hypergradient
            if seen.bad or seen.value is None or (wants_grad and seen.grad is None):
                bad = True
                continue
            values.append(seen.value)
            if seen.grad is not None:
                grads.append(seen.grad)
        if bad or not values:
            return Point(iterate, x, None, True, None, definition, diverged)
        n = len(values)
        mean_grad = (
            [sum(g[i] for g in grads) / n for i in range(self._n)] if len(grads) == n else None
        )
        return Point(
            iterate,
            x,
            sum(values) / n,
            False,
            mean_grad,
            definition,
            members=grads if mean_grad is not None and n > 1 else None,
        )

    def _next_slot(
        self, claims: list[_Claim], sense: float
    ) -> tuple[int, int, OuterState, list[int]] | None:
        """(iterate, member, iterate definition, failed trials of that slot), or None: wait."""
        m = self._population
        assert m is not None
        by_iterate: dict[int, list[_Claim]] = {}
        for c in claims:
            by_iterate.setdefault(c.iterate, []).append(c)
        if not by_iterate:
            state = replace(self._first(), origin="init", x=self._start, used=())
            return 0, 0, state, []
        cur = max(by_iterate)
        definition = by_iterate[cur][0].state  # the lowest-numbered claim defines it
        done: dict[int, _Claim] = {}
        failed: dict[int, list[int]] = {}
        busy: set[int] = set()
        for c in by_iterate[cur]:
            if c.trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                done.setdefault(c.member, c)
            elif c.trial.state == TrialState.RUNNING:
                busy.add(c.member)
            elif c.trial.state == TrialState.FAIL:
                failed.setdefault(c.member, []).append(c.trial.number)
        for j in range(m):
            if j not in done and j not in busy and len(failed.get(j, [])) < _MAX_SLOT_FAILURES:
                return cur, j, definition, sorted(failed.get(j, []), reverse=True)
        finished = [j for j in range(m) if j in done or j not in busy]  # failed for good: bad
        if len(finished) < m:
            if not self._quorum_reached(list(done.values())):
                return None
            finished = sorted(done)
        # Every member of ``cur`` is done (or the quorum after the timeout): take the outer step.
        points = []
        for k in sorted(by_iterate):
            if k == cur:
                used = finished
            else:
                later = by_iterate.get(k + 1)
                used = list(later[0].state.used or ()) if later else []
            members = [
                c
                for c in by_iterate[k]
                if c.member in used and c.trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            ]
            members = list({c.member: c for c in reversed(members)}.values())  # lowest number
            missing = [j for j in used if j not in {c.member for c in members}]
            point = self._point(k, by_iterate[k][0].state, members, sense)
            if missing:  # a member that failed for good makes the iterate bad
                point = Point(k, point.x, None, True, None, point.state)
            points.append(point)
        x, state = self._decide(points, sense)
        return cur + 1, 0, replace(state, x=tuple(x), used=tuple(finished)), []

    def _quorum_reached(self, done: list[_Claim]) -> bool:
        if self._population_timeout is None or len(done) < self._quorum:
            return False
        first = min(
            (c.trial.datetime_complete for c in done if c.trial.datetime_complete is not None),
            default=None,
        )
        if first is None:
            return False
        waited = (datetime.datetime.now() - first).total_seconds()
        return waited >= self._population_timeout

    def claim(
        self, study: Study, trial: FrozenTrial, retry: OuterState | None
    ) -> tuple[list[float], OuterState]:
        """Claim a member slot of the current iterate (or define the next iterate).

        A claim is written as ``tentative``, checked against the other trials' claims and made
        ``final``; a trial yields to a final claim on the same slot or to a tentative one from
        a lower-numbered trial, and waits for higher-numbered tentative claims to settle. With
        any storage whose writes are seen by later reads (RDB, journal, in-memory), no slot is
        ever final twice.
        """
        storage = study._storage
        while True:
            claims = self._claims(study, trial.number)
            slot: tuple[int, int, OuterState, list[int]]
            if retry is not None and retry.slot is not None and is_slot(retry, self._population):
                slot = (retry.slot.iterate, retry.slot.member, retry, [])
            else:
                found = self._next_slot(claims, study_sense(study))
                if found is None:  # every member of the iterate is running: wait for one
                    self._wait(study)
                    continue
                slot = found
            iterate, member, definition, failed = slot
            claim = replace(definition, slot=Slot(iterate, member, "tentative", tuple(failed)))
            if retry is not None:
                claim = replace(claim, origin="retry", retry_of=retry.retry_of)
            assert claim.x is not None
            storage.set_trial_system_attr(trial._trial_id, STATE_KEY, claim.to_json())
            if self._verify(study, trial, iterate, member, claim.x):
                return list(claim.x), _settled(claim, "final")
            if retry is not None:  # its slot was taken over while it waited: do not rerun it
                return list(claim.x), _settled(claim, "superseded")

    def _verify(
        self, study: Study, trial: FrozenTrial, iterate: int, member: int, x: tuple[float, ...]
    ) -> bool:
        for _ in range(_MAX_SETTLE_POLLS):
            rivals = []
            for c in self._claims(study, trial.number):
                if c.trial.state not in (
                    TrialState.RUNNING,
                    TrialState.COMPLETE,
                    TrialState.PRUNED,
                ):
                    continue
                if c.iterate == iterate and c.trial.number < trial.number and c.state.x != x:
                    return False  # a lower-numbered trial defined this iterate: adopt it
                if c.iterate == iterate and c.member == member:
                    assert c.state.slot is not None
                    if c.state.slot.claim == "final" or c.trial.number < trial.number:
                        return False
                    rivals.append(c)
            if not rivals:
                return True
            self._wait(study, short=True)  # a higher-numbered tentative claim: let it settle
        return True

    def _wait(self, study: Study, *, short: bool = False) -> None:
        """Sleep a little (with jitter) and fail trials whose worker stopped beating."""
        delay = self._poll_interval * (0.1 if short else 1.0) * (0.5 + self._rng.random())
        time.sleep(delay)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)


def _settled(claim: OuterState, how: str) -> OuterState:
    """``claim`` made ``final`` (or ``superseded``)."""
    assert claim.slot is not None
    return replace(claim, slot=replace(claim.slot, claim=how))
