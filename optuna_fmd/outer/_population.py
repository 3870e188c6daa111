"""Ensemble averaging across workers: M trials (members) per outer iterate, claimed through
storage so that any number of workers sharing a storage run each member exactly once and take
the same outer step.

A claim is the :class:`~optuna_fmd.outer._state.Slot` of the sampler's state stored on a trial
(``STATE_KEY``), naming the iterate and the member: written ``tentative``, checked against the
other trials' claims, then made ``final``. The first claim of an iterate defines its
schedules; once every member is done (or a quorum after a timeout), the iterate's point is the
members' mean value and hypergradient, and the next iterate is the outer rule's step from it.

:class:`Population` decides, :class:`~optuna_fmd.FMDSampler` acts: the sampler reads the
claims and asks what to evaluate (:meth:`Population.ask`); when the next iterate is due it
takes the outer step from the points of the iterates it is told and tells the population
(:meth:`Population.tell`). The population calls nothing of the sampler's.
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


@dataclass(frozen=True)
class Claim:
    """A trial's claim on member ``member`` of outer iterate ``iterate``: the trial and the
    state stored on it (:class:`~optuna_fmd.FMDSampler` reads them, keeping only its own)."""

    trial: FrozenTrial
    iterate: int
    member: int
    state: OuterState


@dataclass(frozen=True)
class Evaluate:
    """The answer to :meth:`Population.ask`: claim member ``member`` of iterate ``iterate``,
    whose schedules and state are ``definition``; ``failed``: that slot's failed trials."""

    iterate: int
    member: int
    definition: OuterState
    failed: tuple[int, ...] = ()


@dataclass(frozen=True)
class Due:
    """The answer to :meth:`Population.ask` when iterate ``iterate + 1`` needs defining (``-1``:
    the first): the outer rule's step from the points of ``iterates`` (each one the mean of its
    members, :meth:`Members.point`), told back with :meth:`Population.tell`. ``used``: the members
    of ``iterate`` that its point averages."""

    iterate: int
    iterates: tuple[Members, ...] = ()
    used: tuple[int, ...] = ()


@dataclass(frozen=True)
class Members:
    """An iterate as its point is computed: the state that defined it, the claims of the
    members its point averages (the lowest-numbered trial each), and whether a member it uses
    failed for good (the iterate is then bad)."""

    iterate: int
    definition: OuterState
    claims: tuple[Claim, ...]
    missing: bool

    def point(self, seen: Sequence[Point], n: int) -> Point:
        """The iterate seen as one point of ``n`` params: its members' mean value and
        hypergradient, from ``seen``, its claims' trials as the outer loop sees them (in
        member order); bad when a member is bad, lacks a hypergradient the iterate asked for,
        or failed for good."""
        definition = self.definition
        assert definition.x is not None
        x, iterate = list(definition.x), self.iterate
        if self.missing:  # a member that failed for good makes the iterate bad
            return Point(iterate, x, None, True, None, definition)
        values, grads, bad, diverged = [], [], False, False
        for p in seen:
            diverged = diverged or p.diverged
            if p.bad or p.value is None or (definition.wants_hypergradient and p.grad is None):
                bad = True
                continue
            values.append(p.value)
            if p.grad is not None:
                grads.append(p.grad)
        if bad or not values:
            return Point(iterate, x, None, True, None, definition, diverged)
        k = len(values)
        mean = [sum(g[i] for g in grads) / k for i in range(n)] if len(grads) == k else None
        return Point(
            iterate,
            x,
            sum(values) / k,
            False,
            mean,
            definition,
            members=grads if mean is not None and k > 1 else None,
        )


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
    """The claim protocol of ``size`` members per outer iterate, asked and told by
    :class:`~optuna_fmd.FMDSampler`, which reads the study and takes the outer step.

    The sampler asks (:meth:`ask`) with the claims it reads; the answer is a slot to evaluate,
    ``None`` (every member is running: wait), or :class:`Due` (the next iterate needs the
    outer step); the sampler tells the step (:meth:`tell`) and gets the slot. A claim written
    as ``tentative`` is checked (:meth:`verdict`) and made ``final``.

    Args:
        size: Members per outer iterate.
        quorum: Members that suffice once ``timeout`` has passed.
        timeout: Seconds after the first member finished from which a quorum suffices
            (``None``: wait for every member).
        poll_interval: Seconds between storage polls while waiting for members.
        rng: Jitter of the polls.
    """

    def __init__(
        self,
        size: int,
        quorum: int,
        timeout: float | None,
        poll_interval: float,
        rng: random.Random,
    ) -> None:
        self.size = size
        self.settle_polls = 600  # short polls waiting for a rival tentative claim to settle
        self._quorum = quorum
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._rng = rng

    def claim_of(self, trial: FrozenTrial, state: OuterState | None, n: int) -> Claim | None:
        """``trial``'s claim, when ``state`` (the sampler's own, read from it) claims a member
        slot, tentative or final, with ``n`` finite params (``None``: it claims none)."""
        if state is None or state.slot is None or not is_slot(state, self.size):
            return None
        if state.slot.claim not in ("tentative", "final") or not state.has_x(n):
            return None
        return Claim(trial, state.slot.iterate, state.slot.member, state)

    def ask(self, claims: Sequence[Claim]) -> Evaluate | Due | None:
        """What to evaluate next, given the study's ``claims``: a member slot of the current
        iterate, ``None`` (every open slot is running: wait and ask again), or :class:`Due`
        (every member of the current iterate is done, or a quorum after the timeout)."""
        by_iterate: dict[int, list[Claim]] = {}
        for c in claims:
            by_iterate.setdefault(c.iterate, []).append(c)
        if not by_iterate:
            return Due(-1)
        cur = max(by_iterate)
        done: dict[int, Claim] = {}
        failed: dict[int, list[int]] = {}
        busy: set[int] = set()
        for c in by_iterate[cur]:
            if c.trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                done.setdefault(c.member, c)
            elif c.trial.state == TrialState.RUNNING:
                busy.add(c.member)
            elif c.trial.state == TrialState.FAIL:
                failed.setdefault(c.member, []).append(c.trial.number)
        for j in range(self.size):
            if j not in done and j not in busy and len(failed.get(j, [])) < _MAX_SLOT_FAILURES:
                definition = by_iterate[cur][0].state  # the lowest-numbered claim defines it
                return Evaluate(cur, j, definition, tuple(sorted(failed.get(j, []), reverse=True)))
        finished = [j for j in range(self.size) if j in done or j not in busy]  # failed: bad
        if len(finished) < self.size:
            if not self._quorum_reached(list(done.values())):
                return None
            finished = sorted(done)
        return Due(cur, tuple(_members(by_iterate, cur, finished)), tuple(finished))

    def tell(self, due: Due, x: Sequence[float], state: OuterState) -> Evaluate:
        """The first slot of the iterate the outer step defined: ``x`` and ``state`` from the
        points of ``due`` (for the first iterate: the start and the rule's first state)."""
        return Evaluate(due.iterate + 1, 0, replace(state, x=tuple(x), used=due.used))

    def _quorum_reached(self, done: list[Claim]) -> bool:
        if self._timeout is None or len(done) < self._quorum:
            return False
        first = min(
            (c.trial.datetime_complete for c in done if c.trial.datetime_complete is not None),
            default=None,
        )
        if first is None:
            return False
        waited = (datetime.datetime.now() - first).total_seconds()
        return waited >= self._timeout

    @staticmethod
    def tentative(slot: Evaluate, retry: OuterState | None) -> OuterState:
        """The state a trial stores to claim ``slot``, tentatively (``retry``: the state of
        the failed trial it retries, whose slot it keeps)."""
        claim = replace(
            slot.definition, slot=Slot(slot.iterate, slot.member, "tentative", slot.failed)
        )
        if retry is not None:
            claim = replace(claim, origin="retry", retry_of=retry.retry_of)
        return claim

    @staticmethod
    def settled(claim: OuterState, how: str) -> OuterState:
        """``claim`` made ``final`` (or ``superseded``: its slot was taken while it waited)."""
        assert claim.slot is not None
        return replace(claim, slot=replace(claim.slot, claim=how))

    @staticmethod
    def verdict(
        claims: Sequence[Claim], own: int, slot: Evaluate, x: tuple[float, ...]
    ) -> bool | None:
        """Whether trial ``own``'s tentative claim on ``slot`` (params ``x``) holds against the
        other trials' ``claims``: ``False`` when it yields (a lower-numbered trial defined the
        iterate otherwise, or holds the slot, or a final claim does), ``None`` while a
        higher-numbered tentative claim on the slot has to settle (wait a little and ask
        again). With any storage whose writes are seen by later reads (RDB, journal,
        in-memory), no slot is ever final twice."""
        rivals = False
        for c in claims:
            if c.trial.state not in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
                continue
            if c.iterate != slot.iterate:
                continue
            if c.trial.number < own and c.state.x != x:
                return False  # a lower-numbered trial defined this iterate: adopt it
            if c.member == slot.member:
                assert c.state.slot is not None
                if c.state.slot.claim == "final" or c.trial.number < own:
                    return False
                rivals = True
        return None if rivals else True

    def wait(self, study: Study, *, short: bool = False) -> None:
        """Sleep a little (with jitter) and fail trials whose worker stopped beating."""
        delay = self._poll_interval * (0.1 if short else 1.0) * (0.5 + self._rng.random())
        time.sleep(delay)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)


def _members(by_iterate: dict[int, list[Claim]], cur: int, finished: list[int]) -> list[Members]:
    """Every iterate up to ``cur`` with the members its point averages: ``finished`` for
    ``cur``, for an earlier one those the iterate after it used."""
    out = []
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
        lowest = list({c.member: c for c in reversed(members)}.values())
        missing = any(j not in {c.member for c in lowest} for j in used)
        ordered = tuple(sorted(lowest, key=lambda c: c.member))
        out.append(Members(k, by_iterate[k][0].state, ordered, missing))
    return out
