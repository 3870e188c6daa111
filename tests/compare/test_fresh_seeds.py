"""Best schedules scored on fresh seeds: the seeds, the figures, rescoring a finished run, the
population's best, merging and the tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from optuna_fmd import compare, evaluate_schedule, run_episode
from optuna_fmd.compare import _retrain, _runner, _unit
from optuna_fmd.compare._cli import merge_results
from optuna_fmd.tasks import Digits


def _trial(number: int, end: float, value: float | None, iterate: int | None = None) -> dict:
    t: dict[str, Any] = {
        "number": number,
        "end": end,
        "value": value,
        "state": "COMPLETE" if value is not None else "FAIL",
        "params": {"lr": number},
    }
    if iterate is not None:
        t["iterate"] = iterate
    return t


def test_a_population_best_is_the_iterate_with_the_lowest_member_mean() -> None:
    trials = [
        _trial(0, 1.0, 0.50, 0),
        _trial(1, 2.0, 0.30, 0),  # iterate 0: mean 0.40
        _trial(2, 3.0, 0.20, 1),  # the lowest single value, but iterate 1's mean is 0.45
        _trial(3, 4.0, 0.70, 1),
        _trial(4, 5.0, 0.41, 2),
        _trial(5, 6.0, 0.37, 2),  # iterate 2: mean 0.39, complete only from cost 6
    ]
    assert _unit._best(trials, 10.0)["number"] == 2  # one seed: the single lowest value
    best = _unit._best(trials, 10.0, population=2)
    assert best["number"] == 4 and best["value"] == pytest.approx(0.39) and best["end"] == 6.0
    # within a budget of 5.5 iterate 2 has one member: it does not count yet
    early = _unit._best(trials, 5.5, population=2)
    assert early["number"] == 0 and early["value"] == pytest.approx(0.40)
    assert _unit._best(trials[:1], 10.0, population=2) is None


def test_fresh_seeds_start_at_the_one_seed_protocols_seed() -> None:
    cfg = compare.CompareConfig(retrain_seeds=3)
    assert _retrain.retrain_seeds(cfg, 7) == (1007, 2007, 3007)
    assert _retrain.retrain_seeds(compare.CompareConfig(retrain_seeds=1), 7) == (1007,)
    with pytest.raises(ValueError, match="retrain_seeds"):
        compare.CompareConfig(retrain_seeds=0).validate()


@pytest.fixture(scope="module")
def digits() -> Digits:
    task = Digits(steps=30, batch_size=32)
    task.data()
    return task


def test_fresh_seed_figures_are_plain_episodes_and_retrainings_on_those_seeds(
    digits: Digits,
) -> None:
    schedule = {"lr": [0.2, 0.1], "momentum": [0.9], "weight_decay": [0.0]}
    out = _retrain.fresh_seed_figures(digits, schedule, (5, 6))
    vals = [run_episode(digits, schedule, seed=s, hypergradient=False).val_loss for s in (5, 6)]
    ev = evaluate_schedule(digits, schedule, seeds=(5, 6))
    assert out["retrain_seeds"] == [5, 6]
    assert out["fresh_vals"] == pytest.approx(vals, rel=0, abs=0)
    assert out["fresh_val"] == pytest.approx(sum(vals) / 2)
    assert out["test_accuracies"] == [e.test_accuracy for e in ev.per_seed]
    assert out["test_accuracy"] == pytest.approx(ev.test_accuracy)
    assert out["test_loss"] == pytest.approx(ev.test_loss)
    assert vals[0] != vals[1]  # the seeds differ (weights, batches, split)
    # a schedule that diverges on a seed has no mean: it is not averaged away
    bad = _retrain.fresh_seed_figures(digits, {"lr": [1e12]}, (5,))
    assert bad["fresh_vals"] == [None] and bad["fresh_val"] is None
    assert bad["test_accuracies"] == [None] and bad["test_accuracy"] is None


def test_an_anchors_best_is_scored_with_the_anchors_optimiser(
    digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same schedule from the task's optimiser and from anchors' is scored once each, with
    its own optimiser: the engine's on a task that trains with it, or a PyTorch loop's."""
    cfg = compare.CompareConfig(tasks=("digits-sgd",), seeds=(0,), retrain_seeds=1)
    scored: list[str] = []

    def figures(task, schedule, seeds, groups=None, *, optimizer=None):  # type: ignore[no-untyped-def]
        scored.append(optimizer or task.optimizer)
        return {"fresh_val": 0.1 * len(scored)}

    monkeypatch.setattr(_retrain, "fresh_seed_figures", figures)
    best = {"value": 0.3, "trial": 0, "end": 1.0, "schedule": {"lr": [0.01]}}
    unit = {
        "task": "digits-sgd",
        "seed": 0,
        "methods": {
            "tpe": {"best": {"long": dict(best)}},
            "adamw-cosine-grid": {"best": {"long": {**best, "optimizer": "adamw"}}},
            "prodigy": {"best": {"long": {**best, "optimizer": "prodigy"}}},
        },
    }
    _retrain.retrain_unit(cfg, unit, digits)
    assert scored == ["sgd", "adamw", "prodigy"]
    assert unit["methods"]["adamw-cosine-grid"]["best"]["long"]["fresh_val"] == 0.2


def _run_file(tmp_path: Path, digits: Digits) -> Path:
    """A one-unit run of two methods whose best schedules were scored on one fresh seed."""
    cfg = compare.CompareConfig(tasks=("digits-sgd",), seeds=(0,), retrain_seeds=1)
    schedules = {
        "fmd": {"lr": [0.2, 0.1], "momentum": [0.9], "weight_decay": [0.0]},
        "tpe": {"lr": [0.05], "momentum": [0.5], "weight_decay": [0.0]},
    }
    methods = {}
    for m, sched in schedules.items():
        best = {"value": 0.3, "trial": 0, "end": 1.0, "schedule": sched}
        methods[m] = {"trials": [], "best": {"short": dict(best), "long": dict(best)}}
    unit = {"task": "digits-sgd", "seed": 0, "methods": methods}
    _runner._setup(cfg.threads)  # as the run's worker did: sums split by thread differ in rounding
    _retrain.retrain_unit(cfg, unit, digits)
    path = tmp_path / "run.jsonl"
    config = {**cfg.to_dict(), "methods": ["fmd", "tpe"]}
    config.pop("retrain_seeds")  # a file from before fresh seeds were counted
    with open(path, "w") as fh:
        fh.write(json.dumps({"header": {"config": config, "provenance": {"commit": "r1"}}}))
        fh.write("\n" + json.dumps(unit) + "\n")
    return path


def test_rescoring_keeps_the_search_and_adds_seeds_whose_first_is_the_old_one(
    tmp_path: Path, digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Spec:
        def make_task(self, device: str = "cpu") -> Digits:
            return digits

        def groups(self, task: Digits) -> dict:
            return {}

    monkeypatch.setattr(_retrain, "TASKS", {"digits-sgd": Spec()})
    path = _run_file(tmp_path, digits)
    source = compare.load_results(str(path))
    old = source["units"][0]["methods"]["fmd"]["best"]["long"]
    assert len(old["test_accuracies"]) == 1
    cfg = compare.CompareConfig(retrain_seeds=2, jobs=1)
    out = tmp_path / "rescored.jsonl"
    (unit,) = _runner.rescore_results(source, cfg, partial=out, allow_dirty=True)
    new = unit["methods"]["fmd"]["best"]["long"]
    assert {k: new[k] for k in ("value", "trial", "end", "schedule")} == {
        k: old[k] for k in ("value", "trial", "end", "schedule")
    }
    assert new["retrain_seeds"] == [1000, 2000]
    # the first fresh seed reproduces the one-seed figures exactly
    assert new["test_accuracies"][0] == old["test_accuracies"][0]
    assert new["fresh_vals"][0] == old["fresh_vals"][0]
    results = compare.load_results(str(out))
    assert results["config"]["retrain_seeds"] == 2
    assert results["provenance"]["commit"] == "r1"  # the search's commit stays
    assert "commit" in results["provenance"]["rescored"]
    # resuming does nothing more; another setting is refused
    assert len(_runner.rescore_results(source, cfg, partial=out, allow_dirty=True)) == 1
    with pytest.raises(RuntimeError, match="another rescoring"):
        _runner.rescore_results(
            source, compare.CompareConfig(retrain_seeds=3), partial=out, allow_dirty=True
        )
    # a one-seed file and a two-seed file are not one protocol
    with pytest.raises(SystemExit, match="retrain_seeds"):
        merge_results([source, results])
    assert len(merge_results([source, source])["config"]["methods"]) == 4  # one protocol


def test_tables_compare_fresh_seed_figures_against_the_primary() -> None:
    config = {
        "tasks": ["t"],
        "methods": ["fmd", "tpe"],
        "primary": "fmd",
        "budgets": {"long": 10.0},
    }
    units = []
    for k in range(4):
        methods = {}
        for m, (val, acc) in {"fmd": (0.30, 0.87), "tpe": (0.31, 0.86 + 0.02 * (k == 0))}.items():
            best = {
                "value": val,
                "end": 1.0,
                "fresh_val": val + 0.01,
                "test_accuracy": acc,
                "test_loss": val + 0.02,
                "test_accuracies": [acc] * 3,
            }
            if m == "tpe" and k == 1:  # diverged on a fresh seed: the worst loss
                best["fresh_val"] = None
            methods[m] = {"trials": [_trial(0, 1.0, val)], "best": {"long": best}}
        units.append({"task": "t", "seed": k, "methods": methods})
    s = compare.summarize(units, config, {"commit": "c"})
    d = s["runs"][0]["detail"]["tpe"]
    assert d["fresh_seeds"] == 3
    assert d["fresh_val_vs_primary"]["lower_on"] == 4
    # one-sided Wilcoxon, fmd lower on 4 of 4 seeds: p = 1/16, one baseline to correct over
    assert s["runs"][0]["fresh_holm_p"] == pytest.approx({"tpe": 1 / 16})
    assert d["test_acc_vs_primary"]["higher_on"] == 3 and d["test_acc_vs_primary"]["n"] == 4
    assert d["test_acc_vs_primary"]["mean_difference"] == pytest.approx((3 * 0.01 - 0.01) / 4)
    assert math.isclose(s["runs"][0]["detail"]["fmd"]["test_loss_mean_ci"][0], 0.32)
    table = compare.format_markdown(s)
    assert "Best schedules on 3 fresh seeds per unit" in table
    assert "| tpe | " in table and "| 3/4 |" in table and "+0.50 [" in table
    assert "| 4/4 | 0.0625 |" in table


def test_a_merged_report_takes_the_primary_it_is_told(tmp_path: Path) -> None:
    from optuna_fmd import cli

    def write(name: str, methods: list[str]) -> Path:
        config = {
            "tasks": ["t"],
            "seeds": [0, 1],
            "methods": methods,
            "primary": methods[0],
            "budgets": {"long": 10.0},
        }
        units = []
        for seed in (0, 1):
            ms = {}
            for k, m in enumerate(methods):
                best = {"value": 0.3 + 0.01 * k, "end": 1.0, "schedule": {"lr": [0.1]}}
                ms[m] = {"trials": [_trial(0, 1.0, 0.3 + 0.01 * k)], "best": {"long": best}}
            units.append({"task": "t", "seed": seed, "methods": ms})
        path = tmp_path / f"{name}.jsonl"
        header = {"config": config, "provenance": {"commit": name}}
        path.write_text("\n".join(json.dumps(x) for x in [{"header": header}, *units]) + "\n")
        return path

    a, b = write("a", ["fmd-pop2", "tpe"]), write("b", ["fmd"])
    args = ["compare", "--from-results", str(a), str(b), "--out-dir", str(tmp_path)]
    assert cli.main([*args, "--primary", "fmd-pop2", "--name", "m"]) == 0
    summary = json.loads((tmp_path / "m_summary.json").read_text())
    assert {r["primary"] for r in summary["runs"]} == {"fmd-pop2"}
    assert "vs_primary" in summary["runs"][0]["detail"]["fmd"]
    with pytest.raises(SystemExit, match="--primary must be an FMD method"):
        cli.main([*args, "--primary", "tpe"])


def test_a_merged_report_can_keep_the_tasks_every_run_shares() -> None:
    from optuna_fmd.compare._cli import _restrict

    run = {
        "config": {"tasks": ["a", "b"], "methods": ["fmd"]},
        "provenance": {},
        "units": [{"task": "a", "seed": 0}, {"task": "b", "seed": 0}],
    }
    only = _restrict(run, ["b"])
    assert only["config"]["tasks"] == ["b"] and only["units"] == [{"task": "b", "seed": 0}]
    assert run["config"]["tasks"] == ["a", "b"]  # the loaded run is left as it was
    with pytest.raises(SystemExit, match=r"--tasks \['c'\]"):
        _restrict(run, ["c"])


def test_a_population_primary_reaches_a_baseline_by_iterate_means_not_lucky_members() -> None:
    config = {
        "tasks": ["t"],
        "methods": ["fmd-pop2", "tpe"],
        "primary": "fmd-pop2",
        "budgets": {"long": 10.0},
    }
    pop = [
        {**_trial(0, 1.0, 0.30, 0), "state": "COMPLETE"},  # a lucky member: iterate 0's mean
        {**_trial(1, 2.0, 0.50, 0), "state": "COMPLETE"},  # is 0.40, above the baseline
        {**_trial(2, 3.0, 0.34, 1), "state": "COMPLETE"},
        {**_trial(3, 4.0, 0.36, 1), "state": "COMPLETE"},  # iterate 1: mean 0.35 at cost 4
    ]
    units = []
    for seed in range(2):
        best_pop = _unit._best(pop, 10.0, population=2)
        assert best_pop is not None and best_pop["value"] == pytest.approx(0.35)
        methods = {
            "fmd-pop2": {"trials": pop, "best": {"long": dict(best_pop)}},
            "tpe": {
                "trials": [_trial(0, 2.0, 0.35)],
                "best": {"long": {"value": 0.35, "end": 2.0}},
            },
        }
        units.append({"task": "t", "seed": seed, "methods": methods})
    s = compare.summarize(units, config, {"commit": "c"})
    assert s["runs"][0]["time_to_reach_ratio"]["tpe"] == pytest.approx(4.0 / 2.0)
