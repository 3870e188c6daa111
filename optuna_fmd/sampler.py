"""FMDSampler: an Optuna sampler that refines shared hyperparameter schedules by hypergradients.

The outer loop of FDS (Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long
Horizons", NeurIPS 2021): every trial trains with the current schedules, the objective stores the
exact hypergradient ``dL_val / d(param)`` in ``trial.user_attrs["hypergradient"]``
(:class:`~optuna_fmd.HypergradientObjective` does), and the next trial's schedules are the latest
iterate moved against that hypergradient.

The outer state lives in storage (one JSON trial system attribute per proposed trial), never only
in the Python object, so a study continues in another process with the same proposals.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from .outer import (
    CHECK_ATTR,
    STATE_KEY,
    BestIterate,
    Claim,
    Due,
    Evaluate,
    OuterState,
    Point,
    Population,
    Settings,
    StateError,
    StateView,
    best_iterate,
    check_json,
    check_population,
    check_start,
    geometry_of,
    is_slot,
    read_view,
    rule_settings,
    study_sense,
)
from .space import ScheduleSpace

if TYPE_CHECKING:
    from optuna.study import Study

__all__ = ["CHECK_ATTR", "STATE_KEY", "FMDSampler"]

#: News of the search that is not a warning (e.g. that it converged).
logger = logging.getLogger("optuna_fmd.sampler")


class FMDSampler(BaseSampler):
    """Refine hyperparameter schedules by exact hypergradients (the FDS outer loop).

    The space may hold window schedules (a param per window) and schedule *families* (a cosine
    with warm-up, a constant, a refiner that bends a family window by window; see
    :mod:`optuna_fmd.space`). Every trial param is stepped in a transformed coordinate:
    ``log(x)`` on a log scale, ``logit((x - low) / (high - low))`` for window values and family
    params that start inside their bounds (steps shrink near a bound: momentum 0.9 -> 0.93
    rather than 0.9 -> 0.99), ``x`` for family params that start at a bound (a warm-up
    fraction of 0). Lengths are measured in each coordinate's natural unit (``log(high /
    low)``, 4 logit units, or ``high - low``).

    The outer rule (``outer``) is one of :mod:`optuna_fmd.outer`'s, each with its own
    settings: :func:`~optuna_fmd.outer.search` (the default: it climbs along the hypergradient
    while the hypergradient is the slope, then refines with plain episodes), and the paper's
    :func:`~optuna_fmd.outer.sign` and :func:`~optuna_fmd.outer.adam`. The sampler builds it
    once, restores its state from the latest trial it proposed, asks it for the next step and
    stores the result, the same way for each rule. How the search does against TPE, CMA-ES
    and random search at equal budget: docs/benchmarks.md.

    Direction: on a ``direction="maximize"`` study the sampler ascends: it minimises the
    negated value along the negated hypergradient throughout, so
    ``user_attrs["hypergradient"]`` holds ``d value / d param`` of the value the objective
    returns, as for a minimize study.

    State: the outer state (the rule's state, why the trial was proposed, its params) is
    stored as JSON in the trial system attribute ``"fmd:state"`` of every proposed trial, so a
    study continued in another process proposes exactly what an uninterrupted run would.
    Trials without a usable hypergradient (enqueued, from another sampler, failed, NaN,
    missing or corrupt attribute) do not break the outer loop: the rule steps from the best
    iterate that has one, with a warning. Parameters outside the schedule space go to
    ``independent_sampler``.

    Ensemble averaging (``population=M``): every outer iterate is evaluated by M trials, its
    *members*, which :class:`~optuna_fmd.HypergradientObjective` trains with seeds
    ``seed + 0 ... seed + M - 1``; the outer step is taken from the mean of their values and
    hypergradients once all M are done (the paper's variance reduction). Members are claimed
    through storage, so any number of workers (threads, processes, machines sharing an RDB or
    journal storage) run them, each member exactly once, and every worker computes the same
    step. A member whose trial failed is claimed again by the next trial (resuming from its
    checkpoint); after 3 failures it counts as bad. With ``population_timeout``, the step is
    taken with the ``quorum`` members done once the first of them finished that many seconds
    ago, so a hung worker cannot stall the study. docs/sampler.md has the protocol.

    Divergence: a trial whose training or hypergradient became NaN or infinite (user attr
    ``diverged``) is bad; proposals are always finite and inside the bounds.

    Args:
        space: The schedules to optimise; trial params are named ``<hyper>_<k>``.
        outer: The outer rule: its settings (``fmd.outer.search(explore=8)``) or its name
            (one of :func:`~optuna_fmd.outer.rule_names`, e.g. ``"sign"``: its defaults).
        population: Members (seeds) per outer iterate whose hypergradients are averaged
            (``None``: one trial per outer step, each stepping from the latest finished trial).
        quorum: Members that suffice after ``population_timeout`` (default: a majority).
        population_timeout: Seconds after the first member of an iterate finished from which a
            quorum suffices (``None``: wait for all M).
        poll_interval: Seconds between storage polls while waiting for members.
        seed: Seeds the search's exploration and the default independent sampler.
        independent_sampler: Sampler for parameters outside ``space`` (default
            :class:`optuna.samplers.RandomSampler`).
        warn_independent_sampling: Warn (once per parameter) when a parameter is sampled by
            the independent sampler.
        start: Where the outer loop starts, as trial params of ``space`` (e.g. the
            ``best_params`` of a TPE study over the same space): each one named replaces its
            param's start, the others keep theirs (a refiner's corrections stay 0). Checked
            here: every name must be a param of the space and every value inside its bounds.

    Example:
        >>> import optuna, optuna_fmd as fmd
        >>> space = fmd.ScheduleSpace({"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0,
        ...                                               log=True, init=0.05)})
        >>> task = fmd.tasks.Digits(steps=20, batch_size=32)
        >>> study = optuna.create_study(sampler=fmd.FMDSampler(space))
        >>> study.optimize(fmd.HypergradientObjective(task, space), n_trials=2)
        >>> study.trials[0].params
        {'lr_0': 0.05, 'lr_1': 0.05}
    """

    def __init__(
        self,
        space: ScheduleSpace,
        *,
        outer: str | Settings = "search",
        population: int | None = None,
        quorum: int | None = None,
        population_timeout: float | None = None,
        poll_interval: float = 0.5,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
        warn_independent_sampling: bool = True,
        start: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(space, ScheduleSpace):
            raise TypeError(f"`space` must be a ScheduleSpace, but got {type(space).__name__}.")
        check_population(population, quorum, population_timeout, poll_interval)
        settings = rule_settings(outer).resolved(space.layered(), population)
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise TypeError(
                "`independent_sampler` must be an optuna BaseSampler or None, "
                f"but got {type(independent_sampler).__name__}."
            )
        self._space = space
        self._population = population
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._warn_independent_sampling = warn_independent_sampling
        self._names = space.param_names()
        dists = space.distributions()
        self._dists = {n: FloatDistribution(lo, hi, log=log) for n, (lo, hi, log) in dists.items()}
        geometry = geometry_of(space, start=check_start(space, start))
        self._init_x = list(geometry.start)
        self._rule = settings.build(geometry, 0 if seed is None else int(seed))
        self._members = self._members_of(
            population, quorum, population_timeout, poll_interval, seed
        )
        desc: list[object] = [settings.name, [[n, *d] for n, d in dists.items()]]
        desc += settings.tags(seed)
        self._fingerprint = hashlib.sha1(json.dumps(desc).encode()).hexdigest()[:16]
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _members_of(
        population: int | None,
        quorum: int | None,
        timeout: float | None,
        poll_interval: float,
        seed: int | None,
    ) -> Population | None:
        """The claim protocol of the population (``None``: one trial per outer step)."""
        if population is None:
            return None
        quorum = quorum if quorum is not None else population // 2 + 1
        return Population(population, quorum, timeout, float(poll_interval), random.Random(seed))

    # -- public helpers ----------------------------------------------------------------------
    @property
    def space(self) -> ScheduleSpace:
        """The schedule space this sampler optimises."""
        return self._space

    def outer_state(self, study: Study) -> OuterState | None:
        """The outer state stored on the latest trial this sampler proposed (``None``: none)."""
        states = [
            s
            for t in study.get_trials(deepcopy=False)
            if (s := self._read_state(t, warn=False)) is not None
        ]
        return states[-1] if states else None

    @staticmethod
    def wants_hypergradient(trial: Any) -> bool:
        """Whether ``trial`` (running, proposed by an FMDSampler) needs the hypergradient: the
        search rule's plain probes do not; every other trial does."""
        view = _stored_view(trial)
        return view is None or view.hypergradient

    @property
    def population(self) -> int | None:
        """Members (seeds) per outer iterate (``None``: one trial per outer step)."""
        return self._population

    def best_iterate(self, study: Study) -> BestIterate | None:
        """The best point so far (``None``: none yet): its mean value, params and trials.

        Without a population this is ``study.best_trial``. With ``population=M`` it is the outer
        iterate with the best mean value over its members (every member COMPLETE with a finite
        value), which is what the sampler compares; ``study.best_trial`` would instead be the
        single luckiest member. The plots read the same record
        (:func:`optuna_fmd.outer.best_iterate`).

        Example:
            >>> best = sampler.best_iterate(study)  # doctest: +SKIP
            >>> best.value, best.trials, best.params  # doctest: +SKIP
            (0.1072, (6, 7), {'lr_peak': 0.21, ...})
        """
        return best_iterate(study, self._population, self._own_view)

    def _own_view(self, trial: FrozenTrial) -> StateView | None:
        """The state stored on ``trial`` when this sampler's space and rule wrote it."""
        if self._read_state(trial, warn=False) is None:
            return None
        return read_view(trial.system_attrs.get(STATE_KEY))

    def set_aside(self, trial: Any) -> tuple[int, ...]:
        """The trials (with a population: iterates) the search had set aside as next to a
        divergence when it proposed ``trial`` (a running or finished trial of this sampler):
        :meth:`best_iterate` does not return them. ``()`` for another sampler's trial."""
        view = _stored_view(trial)
        return () if view is None else view.cliffs

    def is_converged(self, study: Study) -> bool:
        """Whether the outer loop reported convergence (step sizes or backtracks exhausted)."""
        state = self.outer_state(study)
        return state is not None and state.converged

    # -- BaseSampler -------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._independent_sampler.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._raise_error_if_multi_objective(study)
        self._independent_sampler.before_trial(study, trial)
        # A retry of a failed trial (RetryHeartbeatStaleTrialCallback) already holds every
        # parameter, so sample_relative is never called for it: claim its slot here.
        retry = self._retried_state(trial)
        if retry is not None and self._members is not None and is_slot(retry, self._population):
            _, state = self._claim(study, trial, retry)
            study._storage.set_trial_system_attr(trial._trial_id, STATE_KEY, state.to_json())

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self._raise_error_if_multi_objective(study)
        return dict(self._dists)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._raise_error_if_multi_objective(study)
        names = [n for n in self._names if n in search_space]
        if not names:
            return {}
        x, state = self._propose(study, trial)
        state = replace(state, x=tuple(float(v) for v in x))
        study._storage.set_trial_system_attr(trial._trial_id, STATE_KEY, state.to_json())
        if state.check is not None:  # the latest hypergradient's check, shown
            study._storage.set_trial_user_attr(
                trial._trial_id, CHECK_ATTR, check_json(state.check)
            )
        values = dict(zip(self._names, x, strict=True))
        return {n: float(values[n]) for n in names}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._raise_error_if_multi_objective(study)
        if self._warn_independent_sampling:
            why = (
                f"its distribution differs from the schedule space's {self._dists[param_name]}"
                if param_name in self._dists
                else "it is not in the schedule space"
            )
            self._warn_once(
                f"indep:{param_name}",
                f"FMDSampler samples parameter {param_name!r} of trial {trial.number} with "
                f"{type(self._independent_sampler).__name__} because {why}.",
            )
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    # -- reading the study -------------------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)

    def _read_state(self, trial: FrozenTrial, *, warn: bool = True) -> OuterState | None:
        """The state stored on ``trial`` by a sampler of this space and rule (``None``: none,
        or another space's, another rule's or a corrupt one, ignored with a warning)."""
        raw = trial.system_attrs.get(STATE_KEY)
        if raw is None:
            return None
        try:
            state: OuterState | None = OuterState.from_json(raw)
            corrupt = ""
        except StateError as err:
            state, corrupt = None, f": {err}"
        if state is None or not self._fits(state):
            if warn:
                self._warn_once(
                    f"state:{trial.number}",
                    f"trial {trial.number} carries an FMDSampler state for another schedule "
                    f"space or outer rule (or a corrupt one{corrupt}); FMDSampler ignores it.",
                )
            return None
        return state

    def _fits(self, state: OuterState) -> bool:
        """Whether ``state`` was written for this space and outer rule."""
        return state.space == self._fingerprint and self._rule.accepts(state.rule)

    def _read_grad(self, trial: FrozenTrial) -> list[float] | None:
        raw = trial.user_attrs.get("hypergradient")
        if raw is None:
            return None
        try:
            if not isinstance(raw, Mapping):
                raise TypeError
            out = []
            for n in self._names:
                v = raw[n]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise TypeError
                if not math.isfinite(v):
                    raise ValueError
                out.append(float(v))
            return out
        except (KeyError, TypeError, ValueError):
            self._warn_once(
                "corrupt-grad",
                f"trial {trial.number} has a hypergradient attribute that is not a dict of finite "
                f"floats for every parameter {self._names[:3]}...; FMDSampler treats such trials "
                "as having no hypergradient.",
            )
            return None

    def _see(self, trial: FrozenTrial, sense: float) -> Point:
        x: list[float] | None = []
        for n in self._names:
            dist = trial.distributions.get(n)
            if n not in trial.params or dist != self._dists[n]:
                if dist is not None and dist != self._dists[n]:
                    self._warn_once(
                        f"dist:{n}",
                        f"trial {trial.number} suggested {n!r} with {dist}, but the schedule "
                        f"space has {self._dists[n]}; FMDSampler ignores such trials.",
                    )
                x = None
                break
            assert x is not None
            x.append(float(trial.params[n]))
        value: float | None = None
        bad = trial.state in (TrialState.FAIL, TrialState.PRUNED)
        if trial.state == TrialState.COMPLETE:
            v = trial.value
            if v is None or not math.isfinite(v) or trial.user_attrs.get("diverged") is True:
                bad = True
            else:
                value = sense * float(v)
        grad = self._read_grad(trial) if x is not None and value is not None else None
        if grad is not None:
            grad = [sense * g for g in grad]
        diverged = trial.user_attrs.get("diverged") is True
        return Point(trial.number, x, value, bad, grad, self._read_state(trial), diverged)

    # -- the outer step ----------------------------------------------------------------------
    def _fresh_state(self) -> OuterState:
        return OuterState(self._rule.init(), "init", space=self._fingerprint)

    def _propose(self, study: Study, trial: FrozenTrial) -> tuple[list[float], OuterState]:
        retry = self._retried_state(trial)
        if retry is not None and self._population is None:
            assert retry.x is not None
            return list(retry.x), retry
        if self._members is not None:
            return self._claim(study, trial, retry)
        sense = study_sense(study)
        finished = sorted(
            (
                t
                for t in study.get_trials(deepcopy=False)
                if t.state.is_finished() and t.number != trial.number
            ),
            key=lambda t: t.number,
        )
        retried = {
            int(n)
            for t in study.get_trials(deepcopy=False)
            if isinstance(n := t.system_attrs.get("failed_trial"), int)
        }
        # A failed trial that has been retried (heartbeat, RetryHeartbeatStaleTrialCallback) says
        # nothing about its schedules: its retry stands for it.
        seen = [
            self._see(t, sense)
            for t in finished
            if not (t.state == TrialState.FAIL and t.number in retried)
        ]
        return self._decide(seen, sense)

    # -- the population's claims ---------------------------------------------------------
    def _claim(
        self, study: Study, trial: FrozenTrial, retry: OuterState | None
    ) -> tuple[list[float], OuterState]:
        """Claim a member slot of the current iterate for ``trial`` (or define the next
        iterate): ask the population, take the outer step when it is due, store the claim
        tentatively and make it final once it holds (a retry keeps its failed trial's slot)."""
        members = self._members
        assert members is not None
        while True:
            if retry is not None and retry.slot is not None and is_slot(retry, members.size):
                slot = Evaluate(retry.slot.iterate, retry.slot.member, retry)
            else:
                answer = members.ask(self._claims(study, trial.number))
                if answer is None:  # every open member slot is running: wait for one
                    members.wait(study)
                    continue
                if isinstance(answer, Due):
                    answer = members.tell(answer, *self._step_due(answer, study_sense(study)))
                slot = answer
            claim = members.tentative(slot, retry)
            assert claim.x is not None
            study._storage.set_trial_system_attr(trial._trial_id, STATE_KEY, claim.to_json())
            if self._holds(study, trial.number, slot, claim.x):
                return list(claim.x), members.settled(claim, "final")
            if retry is not None:  # its slot was taken over while it waited: do not rerun it
                return list(claim.x), members.settled(claim, "superseded")

    def _claims(self, study: Study, own: int) -> list[Claim]:
        """The member claims this sampler's states make in ``study`` (but ``own``'s)."""
        members, n = self._members, len(self._names)
        assert members is not None
        out = []
        for t in study.get_trials(deepcopy=False):
            if t.number != own:
                claim = members.claim_of(t, self._read_state(t, warn=False), n)
                out += [] if claim is None else [claim]
        return sorted(out, key=lambda c: c.trial.number)

    def _holds(self, study: Study, own: int, slot: Evaluate, x: tuple[float, ...]) -> bool:
        """Whether trial ``own``'s tentative claim on ``slot`` holds, once any rival
        tentative claim on it has settled."""
        members = self._members
        assert members is not None
        for _ in range(members.settle_polls):
            verdict = members.verdict(self._claims(study, own), own, slot, x)
            if verdict is not None:
                return verdict
            members.wait(study, short=True)  # a higher-numbered tentative claim: let it settle
        return True

    def _step_due(self, due: Due, sense: float) -> tuple[list[float], OuterState]:
        """The params and state of the iterate ``due`` asks for: the start and the rule's
        first state for the first, else the outer step from the iterates' mean points."""
        if due.iterate < 0:
            return list(self._init_x), self._fresh_state()
        n = len(self._names)
        points = [m.point([self._see(c.trial, sense) for c in m.claims], n) for m in due.iterates]
        return self._decide(points, sense)

    def _retried_state(self, trial: FrozenTrial) -> OuterState | None:
        """The state of the failed trial that ``trial`` retries (same params), if any."""
        if "failed_trial" not in trial.system_attrs:
            return None
        state = self._read_state(trial, warn=False)
        if state is None:
            return None
        if not state.has_x(len(self._names)):
            pairs = zip(self._names, self._init_x, strict=True)
            state = replace(state, x=tuple(float(trial.params.get(n, x)) for n, x in pairs))
        failed = trial.system_attrs["failed_trial"]
        retry_of = failed if isinstance(failed, int) and not isinstance(failed, bool) else None
        return replace(state, origin="retry", retry_of=retry_of)

    def _decide(self, seen: list[Point], sense: float) -> tuple[list[float], OuterState]:
        """The next iterate from the points seen so far (trials, or averaged iterates).

        ``seen`` holds sense-adjusted values (lower is better); ``sense`` turns the best value
        back into the study's own units for the stored state.
        """
        ours = [p.state for p in seen if p.state is not None]
        latest = ours[-1].rule if ours else None
        x, state, origin, notes = self._rule.step(latest, seen, sense)
        for note in notes:
            if note.info:
                logger.info(note.message)
            else:
                self._warn_once(note.key, note.message)
        return x, OuterState(state, origin, space=self._fingerprint)


def _stored_view(trial: Any) -> StateView | None:
    """The state an FMD sampler stored on ``trial`` (a running ``Trial`` or a ``FrozenTrial``),
    read leniently (``None``: none)."""
    storage, trial_id = getattr(trial, "storage", None), getattr(trial, "_trial_id", None)
    attrs = trial.system_attrs if isinstance(trial, FrozenTrial) else None
    if attrs is None and storage is not None and isinstance(trial_id, int):
        attrs = storage.get_trial_system_attrs(trial_id)
    return read_view((attrs or {}).get(STATE_KEY))
