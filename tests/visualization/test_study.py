"""What the report, plots and dashboard read of a study: names, best iterate, origins."""

from __future__ import annotations

import io
import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_fmd._cli_console import best_words, print_best
from optuna_fmd.outer import BestIterate, search
from optuna_fmd.sampler import STATE_KEY, FMDSampler
from optuna_fmd.space import Schedule, ScheduleSpace, default_family_space
from optuna_fmd.visualization._schedules import _fitted_range, _get_schedule_info
from optuna_fmd.visualization._study import (
    StudyNames,
    best_iterate,
    describe_best,
    hypergradient_note,
    hypergradient_status,
    luckiest,
    origin_words,
    stored_population,
)


def test_names_read_a_refiner_through_the_space_or_the_stored_windows() -> None:
    space = default_family_space("sgd", windows=2)
    params = space.initial_params()
    stored = {"schedules": space.from_params(params)}
    for names in (StudyNames(space), StudyNames()):
        fam = names.family_params(params, stored)
        assert fam["lr"] == {
            "peak": 0.05,
            "warmup": 0.0,
            "final": 0.0,
            "delta_0": 0.0,
            "delta_1": 0.0,
        }
        assert fam["momentum"] == {"value": 0.9}
        assert names.schedules(params, stored) == space.from_params(params)
    # without the stored windows, no space: only window params make schedules (none here)
    assert StudyNames().schedules(params, {}) == {}


def test_best_iterate_compares_iterates_by_their_mean_and_names_the_luckiest() -> None:
    def study(values: list[float], direction: str = "minimize", size: int = 2) -> optuna.Study:
        s = optuna.create_study(direction=direction)
        for number, value in enumerate(values):
            slot = {"iterate": number // size, "member": number % size} if size > 1 else None
            s.add_trial(_trial(value, slot))
        return s

    low = study([0.30, 0.50, 0.34, 0.36, 0.1])  # iterate 2 is short of a member: left out
    best = best_iterate(low)
    assert best is not None and best.trials == (2, 3) and math.isclose(best.value, 0.35)
    assert best.members == 2 and luckiest(low, best) == (4, 0.1)
    high = study([0.30, 0.50, 0.34, 0.36, 0.1], "maximize")
    top = best_iterate(high)
    assert top is not None and top.trials == (0, 1) and luckiest(high, top) == (1, 0.5)
    alone = study([0.2, 0.1], size=1)
    single = best_iterate(alone)
    assert single is not None and single.trials == (1,) and luckiest(alone, single) is None
    assert best_iterate(optuna.create_study()) is None


def _trial(value: float | None, state: dict | None, **attrs: object) -> optuna.trial.FrozenTrial:
    t = create_trial(
        params={"lr_0": 0.1},
        distributions={"lr_0": FloatDistribution(1e-3, 1.0, log=True)},
        value=value,
        user_attrs=dict(attrs),
        system_attrs={} if state is None else {STATE_KEY: state},
        state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
    )
    return t


def test_best_iterate_reads_the_members_from_the_sampler_state() -> None:
    s = optuna.create_study()
    for number, value in enumerate([0.3, 0.5, 0.34, 0.36]):
        s.add_trial(_trial(value, {"iterate": number // 2, "member": number % 2}))
    best = best_iterate(s)
    assert best is not None and best.trials == (2, 3) and luckiest(s, best) == (0, 0.3)
    assert _get_schedule_info(s).best == 2  # the plots' best is the same iterate


def test_origin_words_say_what_each_probe_is() -> None:
    names = ["lr_peak", "lr_warmup"]
    scale = {"origin": "scale", "probe": {"kind": "scale", "offset": math.log(4.0)}}
    assert origin_words(scale) == ("scale", origin_words(scale)[1])
    assert "lr scale times 4 of the start" in origin_words(scale)[1]
    start = {"origin": "init", "probe": {"kind": "start"}}
    assert origin_words(start)[0] == "start"
    pattern = {
        "origin": "pattern",
        "pattern": {"once": True},
        "x": [0.4, 0.125],
        "incumbent": {"x": [0.4, 0.0]},
    }
    assert origin_words(pattern, names)[1].startswith("coarse pass: lr_warmup moved")
    line = {"origin": "line", "probe": {"kind": "line", "alpha": 0.05}}
    assert "step 0.05 units" in origin_words(line)[1]
    explore = {
        "origin": "explore",
        "explore": {"sigma": 0.15, "mirror": True},
        "x": [0.5, 0.1],
        "incumbent": {"x": [0.4, 0.0]},
    }
    assert origin_words(explore, names)[1] == (
        "exploration: the mirror of the draw before, 0.15 units a parameter, lr_peak, "
        "lr_warmup moved from the best point (plain episode)"
    )
    assert origin_words({"origin": "backtrack", "rule": "sign", "base": 3})[1].startswith(
        "back to the best trial 3"
    )
    assert origin_words(None) == ("", "") and origin_words({"origin": "odd"}) == ("odd", "odd")


def test_hypergradient_status_and_the_empty_panels_note() -> None:
    plain = {"hypergradient": False, "origin": "scale", "probe": {"kind": "scale"}}
    assert hypergradient_status(_trial(0.3, plain)) == "no: plain probe"
    assert hypergradient_status(_trial(0.3, {}, hypergradient={"lr_0": 1.0})) == "yes"
    assert hypergradient_status(_trial(math.inf, {}, diverged=True)) == "no: diverged"
    assert hypergradient_status(_trial(0.3, None)) == "no: not asked for"
    assert hypergradient_status(_trial(None, {})) == "no: fail"
    s = optuna.create_study()
    assert hypergradient_note(s, 0) == "no hypergradient yet: no trial has finished"
    s.add_trial(_trial(0.3, plain))
    assert hypergradient_note(s, 0).startswith("no hypergradient yet: the first 1 trials search")
    s.add_trial(_trial(0.2, {}, hypergradient={"lr_0": 1.0}))
    assert hypergradient_note(s, 1).startswith("hypergradients of 1 of 2 finished trials")
    other = optuna.create_study()
    other.add_trial(_trial(0.3, None))
    assert "hypergradient=False" in hypergradient_note(other, 0)


def test_fitted_range_shows_small_flat_values() -> None:
    lo, hi = _fitted_range([5e-4, 5e-4])
    assert 4e-4 < lo < 5e-4 < hi < 6e-4
    assert _fitted_range([0.0]) == (-1e-3, 1e-3)
    lo, hi = _fitted_range([0.8, 0.9])
    assert lo < 0.8 and hi > 0.9 and hi - lo < 0.2


def test_check_words_say_whether_the_probes_agreed_with_the_hypergradient() -> None:
    import optuna

    from optuna_fmd.sampler import CHECK_ATTR
    from optuna_fmd.visualization._study import check_words

    def trial(check: object) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(value=1.0, user_attrs={CHECK_ATTR: check})

    agree = {"kind": "probe", "point": 7, "predicted": -0.004, "found": -0.003, "ratio": 0.75}
    assert check_words(trial({**agree, "agrees": True})) == (
        "the hypergradient of trial 7 predicted -0.004, the first probe along it found -0.003: "
        "agrees"
    )
    lie = {"kind": "probe", "point": 7, "predicted": -1.7, "found": None, "agrees": False}
    assert "contradicts it: the probes decide" in check_words(trial(lie))
    assert "a failed episode" in check_words(trial(lie))
    # with a population, the point checked is an outer iterate, named with its trials
    apart = {"kind": "members", "point": 3, "cosine": -0.8, "norm_ratio": 40.0, "agrees": False}
    member = trial(apart)
    member.user_attrs.update(iterate=4, member=1)
    assert check_words(member, {3: [6, 7], 4: [8, 9]}) == (
        "the hypergradients of iterate 3's members (trials 6, 7) disagree (cosine -0.80, sizes "
        "40x apart): the probes decide"
    )
    assert check_words(trial("garbage")) == "" and check_words(trial({"agrees": 1})) == ""


@pytest.mark.parametrize("population", [None, 2])
def test_the_report_shows_each_check_and_counts_the_contradicted_ones(
    tmp_path, population: int | None
) -> None:
    """A study whose hypergradients point the wrong way: the report's table names each check
    (on every member of an iterate) and the panel's note counts each contradicted one once."""
    import optuna

    import optuna_fmd as fmd
    from optuna_fmd.sampler import CHECK_ATTR, STATE_KEY
    from optuna_fmd.space import default_family_space
    from optuna_fmd.visualization import write_report

    space = default_family_space("sgd", windows=3)
    dists = space.distributions()

    def objective(trial: optuna.trial.Trial) -> float:
        x = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in dists.items()}
        d = math.log(x["lr_peak"] / 0.2)
        state = trial.storage.get_trial_system_attrs(trial._trial_id)[STATE_KEY]
        if state["hypergradient"]:  # of the wrong sign
            grad = dict.fromkeys(dists, 0.0) | {"lr_peak": -2 * d / x["lr_peak"]}
            trial.set_user_attr("hypergradient", grad)
        return 0.1 + d * d + (x["momentum_value"] - 0.5) ** 2

    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, population=population))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=40)
    checks = [t.user_attrs[CHECK_ATTR] for t in study.trials if CHECK_ATTR in t.user_attrs]
    probes = [c for c in checks if c["kind"] == "probe"]
    assert probes and not any(c["agrees"] for c in probes)  # both members lie alike
    against = [c for c in checks if not c["agrees"]]
    page = write_report(study, tmp_path).read_text()
    table = page.split('<table class="steps">', 1)[1]
    assert table.count("the probes decide") == len(against)
    m = population or 1
    assert f"contradicted {len(against) // m} of the {len(checks) // m} checked" in page


def test_log_axes_get_a_few_readable_ticks() -> None:
    from optuna_fmd.visualization._layout import log_ticks as _log_ticks

    assert _log_ticks([0.001, 0.3]) == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    narrow = _log_ticks([0.0073, 0.0427, 0.0854])  # a cosine's windows, peak 0.1
    assert narrow == [0.01, 0.02, 0.05]
    tight = _log_ticks([0.03, 0.04])
    assert tight == [0.03, 0.035, 0.04]
    assert _log_ticks([0.0, -1.0]) == []
    # as many as the panel holds: the powers of ten, then every second one
    assert _log_ticks([0.00025, 0.997], most=6) == [0.001, 0.01, 0.1]
    assert _log_ticks([0.00025, 0.997], most=2) == [0.001, 0.1]
    assert _log_ticks([0.0015, 0.09], most=3) == [0.002, 0.01, 0.05]  # one power of ten inside


def _one_best_study(population: int | None, trials: int) -> tuple[FMDSampler, optuna.Study]:
    space = ScheduleSpace({"lr": Schedule(windows=1, low=1e-3, high=1.0, log=True, init=0.05)})
    sampler = FMDSampler(space, outer=search(hypergradients=False), population=population, seed=0)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr_0", 1e-3, 1.0, log=True)
        lucky = -0.8 if trial.number == 1 else 0.0  # a lucky member of the start
        return math.log(lr / 0.12) ** 2 + lucky

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=trials)
    return sampler, study


@pytest.mark.parametrize("population", [None, 2])
def test_the_sampler_the_plots_and_the_cli_read_one_best_record(population: int | None) -> None:
    sampler, study = _one_best_study(population, 8)
    best = sampler.best_iterate(study)
    assert isinstance(best, BestIterate)
    assert best.members == (population or 1) == len(best.trials)
    assert best.params == study.trials[best.trials[0]].params
    # the plots: the same record, in the sampler's process and from the storage alone
    assert best_iterate(study) == best
    stored = optuna.load_study(
        study_name=study.study_name,
        storage=study._storage,
        sampler=optuna.samplers.RandomSampler(),
    )
    assert best_iterate(stored) == best
    # the command line prints that record
    out = io.StringIO()
    print_best(sampler, study, sampler.space, out)
    which = describe_best(best).rsplit(", value ", 1)[0]
    assert out.getvalue().startswith(f"best: {which}, validation loss {best.value:.4f}\n")
    assert best_words(best).startswith("best")


def test_the_plots_read_the_population_the_sampler_has_not_the_members_seen() -> None:
    # two of three members done: no iterate is complete, for the sampler and the plots alike
    sampler, study = _one_best_study(3, 2)
    assert sampler.best_iterate(study) is None
    assert stored_population(study) == 3
    assert best_iterate(study) is None
