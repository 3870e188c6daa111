"""The equal-budget comparison (``optuna-fmd compare``): statistics, summary, low-dimensional
objectives, options, and (slow) a whole ``--quick`` run on SQLite."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd import _compare, cli

# -- statistics -------------------------------------------------------------------------------


def test_wilcoxon_matches_scipy_exact() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (3, 5, 8, 12):
        for _ in range(5):
            a = [rng.gauss(0, 1) for _ in range(n)]
            b = [x + rng.gauss(0.3, 1) for x in a]
            want = stats.wilcoxon(a, b, alternative="less", method="exact").pvalue
            assert _compare.wilcoxon_less(a, b) == pytest.approx(want, abs=1e-12)


def test_wilcoxon_edge_cases() -> None:
    lower = [0.30, 0.31, 0.29, 0.32, 0.30]
    higher = [0.35, 0.36, 0.33, 0.34, 0.38]
    assert _compare.wilcoxon_less(lower, higher) == 1 / 32  # the smallest p with 5 pairs
    assert _compare.wilcoxon_less(higher, lower) == 1.0
    assert _compare.wilcoxon_less([1.0, 2.0], [1.0, 2.0]) == 1.0  # no difference at all
    assert _compare.wilcoxon_less([1.0, math.inf], [2.0, 3.0]) is None
    with pytest.raises(ValueError, match="must pair up"):
        _compare.wilcoxon_less([1.0], [1.0, 2.0])


def test_paired_t_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    a, b = [0.30, 0.33, 0.29, 0.35, 0.31], [0.35, 0.34, 0.33, 0.36, 0.38]
    want = stats.ttest_rel(a, b, alternative="less").pvalue
    assert _compare.paired_t_less(a, b) == pytest.approx(want)
    assert _compare.paired_t_less([1.0], [2.0]) is None


def _trials(*points: tuple[float, float | None]) -> list[dict[str, object]]:
    return [{"t_end": t, "value": v, "in_budget": True} for t, v in points]


def test_best_curve_and_time_to_reach() -> None:
    trials = _trials((1.0, 0.5), (2.0, None), (3.0, 0.6), (4.0, 0.3), (5.0, 0.35))
    trials.append({"t_end": 9.0, "value": 0.1, "in_budget": False})  # ended past the budget
    assert _compare.best_curve(trials) == [(1.0, 0.5), (4.0, 0.3)]
    assert _compare.time_to_reach(trials, 0.5) == 1.0
    assert _compare.time_to_reach(trials, 0.4) == 4.0
    assert _compare.time_to_reach(trials, 0.2) is None


def _record(method: str, seed: int, best: float, t_best: float, acc: float) -> dict[str, object]:
    return {
        "method": method,
        "seed": seed,
        "study_name": f"x-{method}-s{seed}",
        "budget": 100.0,
        "best_value": best,
        "best_time": t_best,
        "n_in_budget": 3,
        "engines": ["reverse"] if method.startswith("fmd") else ["none"],
        "converged": False,
        "trials": _trials((t_best / 2, best + 0.1), (t_best, best)),
        "retrain": {"test_accuracy": acc, "test_accuracy_std": 0.0},
    }


def test_summarize_tests_time_to_reach_and_accuracy() -> None:
    studies = []
    for seed in range(5):
        studies.append(_record("fmd-sign", seed, 0.30 + 0.001 * seed, 10.0, 0.88))
        studies.append(_record("tpe", seed, 0.35 + 0.002 * seed, 80.0, 0.86))
        studies.append(_record("cosine-grid", seed, 0.32, 20.0, 0.87 + 0.02 * (seed == 0)))
    summary = _compare.summarize(studies, ["fmd-sign", "tpe", "cosine-grid"])
    m = summary["methods"]
    assert list(m) == ["fmd-sign", "tpe", "cosine-grid"]
    assert m["tpe"]["best_mean"] == pytest.approx(0.354)
    assert m["fmd-sign"]["engines"] == ["reverse"]
    tests = {t["baseline"]: t for t in summary["tests"]}
    assert tests["tpe"]["fmd_lower_on"] == 5 and tests["tpe"]["wilcoxon_p"] == 1 / 32
    assert tests["tpe"]["mean_difference"] == pytest.approx(-0.052)
    (reach,) = summary["time_to_reach"]  # black-box baselines only, not the grid
    assert reach["baseline"] == "tpe" and reach["reached"] == 5
    # FMD's curve (0.40 at t = 5, 0.30 at t = 10) reaches TPE's final best at t = 10; TPE: 80 s
    assert reach["median_ratio"] == pytest.approx(10.0 / 80.0)
    assert reach["per_seed"][0]["ratio_to_budget"] == pytest.approx(0.1)
    (acc,) = summary["accuracy_vs_cosine"]
    assert acc["fmd_higher_or_equal_on"] == 4 and acc["n"] == 5
    table = _compare.format_summary(summary)
    assert "| fmd-sign | tpe | 5/5 |" in table and "88.00%" in table


def test_summarize_counts_a_missing_best_as_a_loss() -> None:
    studies = [_record("fmd-adam", s, 0.3, 5.0, 0.8) for s in range(3)]
    studies += [_record("random", s, 0.4, 5.0, 0.8) for s in range(3)]
    studies[0]["best_value"] = None  # every FMD trial of seed 0 diverged
    summary = _compare.summarize(studies)
    (test,) = summary["tests"]
    assert test["fmd_lower_on"] == 2 and test["wilcoxon_p"] is not None


def test_merge_results_from_json_and_partial_files(tmp_path: Path) -> None:
    first = {
        "config": {"methods": ["fmd-sign", "tpe"], "seeds": [0], "storage": "sqlite://"},
        "machine": {"cpu_count": 2},
        "studies": [_record("fmd-sign", 0, 0.3, 5.0, 0.8), _record("tpe", 0, 0.4, 9.0, 0.8)],
    }
    (tmp_path / "a.json").write_text(json.dumps(first))
    lines = [_record("tpe", 1, 0.5, 9.0, 0.8), _record("fmd-sign", 1, 0.2, 5.0, 0.8)]
    (tmp_path / "b.partial").write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = _compare.CompareConfig()
    merged = _compare.merge_results([str(tmp_path / "a.json"), str(tmp_path / "b.partial")], cfg)
    assert merged["config"]["seeds"] == [0, 1]
    assert merged["config"]["methods"] == ["fmd-sign", "tpe"]
    assert merged["machine"] == {"cpu_count": 2}
    assert len(merged["studies"]) == 4
    (test,) = merged["summary"]["tests"]
    assert test["fmd_lower_on"] == 2


# -- low-dimensional spaces -------------------------------------------------------------------


def test_constant_and_cosine_mappings() -> None:
    const = _compare.constant_schedules(0.1, 0.9, 1e-4, 10)
    assert const == {"lr": [0.1] * 10, "momentum": [0.9] * 10, "weight_decay": [1e-4] * 10}
    cos = _compare.cosine_schedules(0.2, 0.2, 0.5, 0.0, 10)
    assert cos["lr"] == fmd.baselines.cosine(0.2, 10, warmup=0.2)
    assert cos["lr"][0] == pytest.approx(0.2 * 0.05 / 0.2)  # warming up
    assert max(cos["lr"]) <= 0.2 and cos["lr"][-1] < 0.01  # annealed
    assert cos["momentum"] == [0.5] * 10 and cos["weight_decay"] == [0.0] * 10


def test_reduced_objective_runs_the_mapped_schedule() -> None:
    task = fmd.tasks.Digits(steps=20, batch_size=32)
    objective = _compare.ReducedObjective(
        task,
        {"lr": (1e-3, 1.0, True), "momentum": (0.0, 0.99, False)},
        lambda p: {"lr": [p["lr"]] * 2, "momentum": [p["momentum"]] * 2},
        seed=3,
    )
    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.1, "momentum": 0.5})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs["schedule"] == {"lr": [0.1, 0.1], "momentum": [0.5, 0.5]}
    assert trial.user_attrs["engine"] == "none"
    want = fmd.run_episode(task, trial.user_attrs["schedule"], seed=3, hypergradient=False)
    assert trial.value == want.val_loss


def test_methods_and_interleaved_order() -> None:
    assert {m.kind for m in _compare.METHODS.values()} == {"fmd", "full", "reduced", "grid"}
    cfg = _compare.CompareConfig(methods=("fmd-sign", "tpe", "random"), seeds=(0, 1))
    assert _compare.jobs_of(cfg) == [
        ("fmd-sign", 0),
        ("tpe", 0),
        ("random", 0),
        ("tpe", 1),
        ("random", 1),
        ("fmd-sign", 1),
    ]
    assert _compare.make_space(10).n_params == 30


# -- options ----------------------------------------------------------------------------------


def test_cli_presets_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    p = argparse.ArgumentParser()
    _compare.add_arguments(p)
    cfg = _compare.config_from_args(
        p.parse_args(["--quick", "--budget", "2", "--seeds", "3"]), default_storage="sqlite://"
    )
    assert (cfg.task, cfg.steps, cfg.budget, cfg.seeds) == ("digits", 300, 2.0, (3,))
    gpu = _compare.config_from_args(p.parse_args(["--gpu"]), default_storage="sqlite://")
    assert gpu.device == "cuda" and gpu.clock == "wall"
    full = _compare.config_from_args(p.parse_args([]), default_storage="sqlite://")
    assert (full.task, full.steps, full.seeds, full.windows) == (
        "fashion-mnist",
        2000,
        (0, 1, 2, 3, 4),
        10,
    )
    with pytest.raises(SystemExit, match="`methods` must be among"):
        cli.main(["compare", "--quick", "--methods", "fmd-sign,bogus"])
    with pytest.raises(SystemExit, match="`budget` must be positive"):
        cli.main(["compare", "--quick", "--budget", "0"])


# -- a whole run ------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_compare_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'compare.db'}"
    out, png = tmp_path / "compare.json", tmp_path / "compare.png"
    argv = ["compare", "--quick", "--storage", url, "--prefix", "q", "--jobs", "2"]
    assert cli.main([*argv, "--out", str(out), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "| fmd-sign | tpe |" in printed and f"optuna-dashboard {url}" in printed
    results = json.loads(out.read_text())
    cfg = results["config"]
    assert len(results["studies"]) == len(_compare.METHODS) * len(cfg["seeds"])
    for s in results["studies"]:
        counted = [t for t in s["trials"] if t["in_budget"]]
        assert counted and all(t["t_end"] <= cfg["budget"] for t in counted)
        assert s["best_value"] == min(t["value"] for t in counted if t["value"] is not None)
        assert s["retrain"]["test_accuracy"] > 0.5
        assert set(s["best_schedule"]) == {"lr", "momentum", "weight_decay"}
        assert all(len(v) == 10 for v in s["best_schedule"].values())
        if s["method"].startswith("fmd"):
            assert s["engines"] and "none" not in s["engines"]
    assert set(results["summary"]["methods"]) == set(_compare.METHODS)
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == {s["study_name"] for s in results["studies"]}
    assert png.stat().st_size > 1000
    # nothing stored is overwritten: the same names again are refused
    with pytest.raises(ValueError, match="already exist"):
        cli.main([*argv, "--methods", "tpe", "--seeds", "0"])
