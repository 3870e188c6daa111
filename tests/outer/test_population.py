"""FMDSampler(population=M): ensemble averaging of hypergradients over M seeds per outer iterate.

The members of an iterate are claimed through storage, so any number of workers (threads here;
processes in tests/integration/test_workers.py) evaluate them; the outer step is taken once from
their mean.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

import optuna_fmd as fmd
from optuna_fmd.outer import Claim, Due, Evaluate, Point, Population, study_sense
from optuna_fmd.sampler import STATE_KEY

from ..test_sampler import SPACE, quad_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(("direction", "sense"), [("minimize", 1.0), ("maximize", -1.0)])
def test_the_outer_loop_minimises_sense_times_the_value(direction: str, sense: float) -> None:
    assert study_sense(optuna.create_study(direction=direction)) == sense


def noisy_objective(delay: float = 0.0):  # type: ignore[no-untyped-def]
    """The quadratic objective plus a member-dependent tilt of the hypergradient (mean zero
    over members 0..3 pairs), so averaging is visible in the step."""
    base = quad_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        value = base(trial)
        member = trial.study._storage.get_trial_system_attrs(trial._trial_id)[STATE_KEY]["member"]
        grad = dict(trial.user_attrs["hypergradient"])
        tilt = (-1.0) ** member * (1 + member) * 10.0
        grad = {k: g + tilt for k, g in grad.items()}
        trial.set_user_attr("hypergradient", grad)
        trial.set_user_attr("member_seen", member)
        if delay:
            threading.Event().wait(delay)
        return value + 0.001 * member

    return objective


def definitions(study: optuna.Study) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        st = t.system_attrs[STATE_KEY]
        out.setdefault(st["iterate"], st["x"])
        assert out[st["iterate"]] == st["x"]  # every member trains the same schedules
        assert [t.params[n] for n in SPACE.param_names()] == st["x"]
    return out


def slots(study: optuna.Study) -> list[tuple[int, int]]:
    return [
        (t.system_attrs[STATE_KEY]["iterate"], t.system_attrs[STATE_KEY]["member"])
        for t in study.get_trials(states=(TrialState.COMPLETE,))
    ]


def test_members_share_the_iterate_and_the_step_uses_their_mean() -> None:
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign", population=3))
    study.optimize(noisy_objective(), n_trials=7)
    assert slots(study) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    defs = definitions(study)
    assert defs[0] == [0.05, 0.05, 0.9, 0.9]
    # the step of iterate 1 equals a population-1 step fed with the mean hypergradient
    members = study.trials[:3]
    names = SPACE.param_names()
    mean = {n: sum(t.user_attrs["hypergradient"][n] for t in members) / 3 for n in names}
    single = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    first = single.ask()
    for name, s in SPACE.items():
        for k in range(s.windows):
            first.suggest_float(f"{name}_{k}", s.low, s.high, log=s.log)
    first.set_user_attr("hypergradient", mean)
    single.tell(first, sum(t.value for t in members) / 3)  # type: ignore[misc]
    second = single.ask()
    second.suggest_float("lr_0", 1e-3, 1.0, log=True)  # relative params are sampled lazily
    state = single._storage.get_trial_system_attrs(second._trial_id)[STATE_KEY]
    expected = state["x"]
    assert defs[1] == pytest.approx(expected, rel=0, abs=0)
    # seeds: member j of a fixed-seed objective trains with seed + j
    objective = fmd.HypergradientObjective(fmd.tasks.Digits(steps=4, batch_size=16), SPACE)
    assert [objective.seed_for(t) for t in study.trials[:3]] == [0, 1, 2]


def test_threads_claim_every_slot_once_and_match_one_worker() -> None:
    one = optuna.create_study(
        sampler=fmd.FMDSampler(SPACE, outer="sign", population=4, poll_interval=0.01)
    )
    one.optimize(noisy_objective(), n_trials=12)
    many = optuna.create_study(
        sampler=fmd.FMDSampler(SPACE, outer="sign", population=4, poll_interval=0.01)
    )
    many.optimize(noisy_objective(delay=0.02), n_trials=12, n_jobs=4)
    assert (
        sorted(slots(many)) == sorted(slots(one)) == [(i, j) for i in range(3) for j in range(4)]
    )
    assert definitions(many) == definitions(one)


def test_failed_member_is_run_again_by_the_next_trial() -> None:
    calls = {"n": 0}
    inner = noisy_objective()

    def flaky(trial: optuna.trial.Trial) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            trial.suggest_float("lr_0", 1e-3, 1.0, log=True)  # the claim is made
            raise RuntimeError("worker lost")
        return inner(trial)

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign", population=2))
    study.optimize(flaky, n_trials=4, catch=(RuntimeError,))
    states = [(t.state, t.system_attrs[STATE_KEY]["member"]) for t in study.trials]
    assert states[1] == (TrialState.FAIL, 1)
    assert states[2] == (TrialState.COMPLETE, 1)  # the same slot, claimed again
    assert study.trials[2].system_attrs[STATE_KEY]["resume"] == [1]
    assert study.trials[3].system_attrs[STATE_KEY]["iterate"] == 1


def test_a_member_that_always_fails_makes_the_iterate_bad_not_a_deadlock() -> None:
    inner = noisy_objective()

    def objective(trial: optuna.trial.Trial) -> float:
        trial.suggest_float("lr_0", 1e-3, 1.0, log=True)
        st = trial.study._storage.get_trial_system_attrs(trial._trial_id)[STATE_KEY]
        if st["iterate"] == 1 and st["member"] == 1:
            raise RuntimeError("always fails")
        return inner(trial)

    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign", population=2))
    study.optimize(objective, n_trials=8, catch=(RuntimeError,))
    last = study.trials[-1].system_attrs[STATE_KEY]
    assert last["iterate"] >= 2
    # iterate 1 was bad (a member failed for good): the sampler backtracked from iterate 0
    defining = next(t for t in study.trials if t.system_attrs[STATE_KEY]["iterate"] == 2)
    assert defining.system_attrs[STATE_KEY]["origin"] == "backtrack"


def test_quorum_after_timeout_steps_without_a_stuck_member() -> None:
    sampler = fmd.FMDSampler(
        SPACE, population=3, quorum=2, population_timeout=0.0, poll_interval=0.01
    )
    study = optuna.create_study(sampler=sampler)
    objective = noisy_objective()
    stuck = study.ask()  # member 0 of iterate 0, never told: a worker that hangs
    for name, s in SPACE.items():
        for k in range(s.windows):
            stuck.suggest_float(f"{name}_{k}", s.low, s.high, log=s.log)
    study.optimize(objective, n_trials=3)
    st = [t.system_attrs[STATE_KEY] for t in study.trials]
    assert [(s["iterate"], s["member"]) for s in st] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert st[3]["used"] == [1, 2]


def test_retried_trial_keeps_its_slot_and_seed() -> None:
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign", population=2))
    study.optimize(noisy_objective(), n_trials=1)
    running = study.ask()  # member 1, its worker dies
    for name, s in SPACE.items():
        for k in range(s.windows):
            running.suggest_float(f"{name}_{k}", s.low, s.high, log=s.log)
    study._storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
    failed = study.trials[1]
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, failed)
    study.optimize(noisy_objective(), n_trials=1)  # runs the WAITING retry
    retry = study.trials[2]
    assert retry.state == TrialState.COMPLETE
    assert retry.system_attrs[STATE_KEY]["member"] == 1
    assert retry.system_attrs[STATE_KEY]["claim"] == "final"
    assert retry.user_attrs["member_seen"] == 1


def test_retry_whose_slot_was_taken_is_pruned_not_rerun() -> None:
    sampler = fmd.FMDSampler(SPACE, outer="sign", population=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(noisy_objective(), n_trials=1)
    dead = study.ask()
    for name, s in SPACE.items():
        for k in range(s.windows):
            dead.suggest_float(f"{name}_{k}", s.low, s.high, log=s.log)
    study._storage.set_trial_state_values(dead._trial_id, TrialState.FAIL)
    # another trial reclaims the failed slot before the retry callback ran
    study.optimize(noisy_objective(), n_trials=1)
    assert study.trials[2].system_attrs[STATE_KEY]["member"] == 1
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[1])
    task = fmd.tasks.Digits(steps=4, batch_size=16)
    study.optimize(fmd.HypergradientObjective(task, SPACE), n_trials=1)
    retry = study.trials[3]
    assert retry.state == TrialState.PRUNED
    assert retry.system_attrs[STATE_KEY]["claim"] == "superseded"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population": 0}, "`population` must be a positive int, but got 0"),
        ({"population": 2.0}, "`population` must be a positive int, but got 2.0"),
        ({"population": 2, "quorum": 3}, "`quorum` must be at most"),
        ({"quorum": 1}, "`quorum` must be at most"),
        ({"population": 2, "population_timeout": -1.0}, "`population_timeout` must be"),
        ({"poll_interval": 0.0}, "`poll_interval` must be positive"),
    ],
)
def test_bad_population_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        fmd.FMDSampler(SPACE, **kwargs)


def test_population_values_are_finite_and_in_bounds_under_wild_hypergradients() -> None:
    wild = [1e300, -1e300, 1e-300, 0.0, 5.0, -3e12]

    def objective(trial: optuna.trial.Trial) -> float:
        grad = {}
        for i, n in enumerate(SPACE.param_names()):
            grad[n] = wild[(trial.number + i) % len(wild)]
            s = SPACE[n.rsplit("_", 1)[0]]
            trial.suggest_float(n, s.low, s.high, log=s.log)
        trial.set_user_attr("hypergradient", grad)
        return float(trial.number % 3)

    for outer in ("sign", "adam"):
        study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer=outer, population=2))
        with pytest.warns(UserWarning) if outer == "adam" else _nothing():
            study.optimize(objective, n_trials=16)
        for t in study.trials:
            for n, v in t.params.items():
                s = SPACE[n.rsplit("_", 1)[0]]
                assert math.isfinite(v) and s.low <= v <= s.high


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_claims_are_a_collaborator_of_the_sampler_not_a_mixin() -> None:
    assert not issubclass(fmd.FMDSampler, Population)
    assert fmd.FMDSampler(SPACE)._members is None
    members = fmd.FMDSampler(SPACE, population=3)._members
    assert isinstance(members, Population) and members._quorum == 2 and members.size == 3


def _trial(number: int, state: TrialState) -> optuna.trial.FrozenTrial:
    value = 1.0 if state == TrialState.COMPLETE else None
    trial = optuna.trial.create_trial(state=state, value=value)
    trial.number = number
    return trial


def test_the_population_is_asked_and_told_and_calls_nothing_back() -> None:
    """The claim protocol as ask/tell, without a sampler: the first ask says the first iterate
    is due, told with the start it becomes member 0's slot; a running member 0 leaves member 1
    to ask for; with both done the next step is due, with the members' points to average."""
    members = Population(2, 2, None, 0.01, random.Random(0))
    sampler = fmd.FMDSampler(SPACE, population=2)
    start = sampler._fresh_state()
    assert members.ask([]) == Due(-1)
    first = members.tell(Due(-1), [0.1] * len(SPACE.param_names()), start)
    assert (first.iterate, first.member, first.definition.used) == (0, 0, ())
    final = Population.settled(Population.tentative(first, None), "final")
    running = Claim(_trial(0, TrialState.RUNNING), 0, 0, final)
    assert members.ask([running]) == Evaluate(0, 1, final)
    assert members.ask([running, Claim(_trial(1, TrialState.RUNNING), 0, 1, final)]) is None
    done = [Claim(_trial(j, TrialState.COMPLETE), 0, j, final) for j in (0, 1)]
    due = members.ask(done)
    assert isinstance(due, Due) and due.iterate == 0 and due.used == (0, 1)
    (iterate,) = due.iterates
    assert iterate.claims == tuple(done) and not iterate.missing
    n = len(SPACE.param_names())
    seen = [Point(j, list(final.x), 1.0 + 2 * j, False, [1.0 + 2 * j] * n, final) for j in (0, 1)]
    point = iterate.point(seen, n)
    assert (
        point.value == 2.0 and point.grad == [2.0] * n and point.members == [[1.0] * n, [3.0] * n]
    )
    nxt = members.tell(due, [0.2] * n, start)
    assert (nxt.iterate, nxt.member, nxt.definition.used) == (1, 0, (0, 1))
    # a lower-numbered trial that defined the iterate otherwise wins over a later claim
    other = Population.tentative(Evaluate(0, 1, replace(final, x=(0.3,) * n)), None)
    assert Population.verdict([running], 5, Evaluate(0, 1, other), other.x) is False
    assert Population.verdict([running], 5, Evaluate(0, 1, final), final.x) is True
    # a higher-numbered tentative claim on the same slot: wait for it to settle
    rival = Claim(
        _trial(7, TrialState.RUNNING), 0, 1, Population.tentative(Evaluate(0, 1, final), None)
    )
    assert Population.verdict([rival], 5, Evaluate(0, 1, final), final.x) is None
