"""The summary, tables and plots, from unit records alone; provenance and resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optuna_fmd import compare
from optuna_fmd.compare import _runner, _stats

CONFIG = {
    "tasks": ["t"],
    "methods": ["fmd", "tpe", "cosine-grid"],
    "primary": "fmd",
    "budgets": {"short": 4.0, "long": 10.0},
}
PROV = {"commit": "abc123", "dirty": False}


def _trials(*points: tuple[float, float | None]) -> list[dict[str, Any]]:
    return [
        {
            "end": e,
            "value": v,
            "state": "COMPLETE" if v is not None else "FAIL",
            "hypergradient": False,
        }
        for e, v in points
    ]


def _unit(seed: int, fmd: float, tpe: float, grid: float | None) -> dict[str, Any]:
    """FMD reaches `fmd` at cost 6 (0.6 at cost 2); TPE `tpe` at cost 3; the grid at 2."""

    def best(trials: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
        ok = [t for t in trials if t["end"] <= budget and t["value"] is not None]
        b = min(ok, key=lambda t: t["value"]) if ok else None
        return (
            None
            if b is None
            else {"value": b["value"], "end": b["end"], "test_accuracy": 1 - b["value"]}
        )

    methods = {
        "fmd": _trials((2.0, 0.6), (6.0, fmd)),
        "tpe": _trials((1.0, 0.7), (3.0, tpe), (9.0, tpe + 0.01)),
        "cosine-grid": _trials((2.0, grid)),
    }
    return {
        "task": "t",
        "seed": seed,
        "methods": {
            m: {"trials": tr, "best": {b: best(tr, v) for b, v in CONFIG["budgets"].items()}}
            for m, tr in methods.items()
        },
    }


def test_summary_has_the_published_shape_and_holm_corrected_tests() -> None:
    units = [_unit(k, 0.30 + 0.001 * k, 0.40 + 0.002 * k, 0.35) for k in range(10)]
    units[3] = _unit(3, 0.303, 0.403, None)  # the grid failed on seed 3: counts as a loss
    s = compare.summarize(units, CONFIG, PROV)
    assert s["commit"] == "abc123" and s["dirty"] is False and s["seeds"] == list(range(10))
    assert [(r["task"], r["budget"], r["budget_plain_episodes"]) for r in s["runs"]] == [
        ("t", "short", 4.0),
        ("t", "long", 10.0),
    ]
    long = s["runs"][1]
    assert long["primary"] == "fmd"
    assert set(long["methods"]) == {"fmd", "tpe", "cosine-grid"}
    assert long["methods"]["fmd"]["best_val"][0] == 0.30
    assert long["methods"]["cosine-grid"]["best_val"][3] is None
    # FMD lower on all 10 seeds against both: raw p = 1/1024, Holm over two baselines: 2/1024
    assert long["holm_p"] == pytest.approx({"tpe": 2 / 1024, "cosine-grid": 2 / 1024})
    # the grid's best (0.35, at cost 2) is reached by FMD at cost 6: ratio 3 on every seed
    # where the grid has a best; seed 3 has none: not reached on every seed
    assert long["time_to_reach_ratio"]["cosine-grid"] is None
    # TPE's final best within 10 is reached by FMD at 6, by TPE at 3
    assert long["time_to_reach_ratio"]["tpe"] == pytest.approx(2.0)
    # short budget: FMD's best is 0.6 (its cost-6 trial does not fit in 4): it loses to TPE
    short = s["runs"][0]
    assert short["methods"]["fmd"]["best_val"] == [0.6] * 10
    assert short["holm_p"]["tpe"] == pytest.approx(1.0)
    effect = short["detail"]["tpe"]["vs_primary"]
    assert effect["lower_on"] == 0 and effect["ci"][0] > 0
    table = compare.format_markdown(s)
    assert "| fmd | cosine x 10 lr corrections" in table and "not on every seed" in table


def test_outputs_rebuild_from_the_results_file_alone(tmp_path: Path) -> None:
    units = [_unit(k, 0.30 + 0.001 * k, 0.40, 0.35) for k in range(3)]
    partial = tmp_path / "run.jsonl"
    with open(partial, "w") as fh:
        fh.write(json.dumps({"header": {"config": CONFIG, "provenance": PROV}}) + "\n")
        for u in units:
            fh.write(json.dumps(u) + "\n")
    results = compare.load_results(str(partial))
    paths = compare.write_outputs(results, tmp_path, "run")
    names = sorted(Path(p).name for p in paths)
    assert names == ["run.json", "run.md", "run_summary.json", "run_t.png"]
    again = compare.load_results(str(tmp_path / "run.json"))
    assert again["summary"] == json.loads((tmp_path / "run_summary.json").read_text())
    assert (tmp_path / "run_t.png").stat().st_size > 10_000


def test_a_dirty_tree_is_refused_and_a_resume_must_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compare.CompareConfig(**compare.preset("quick"))
    prov = {"commit": "abc", "dirty": True}
    monkeypatch.setattr(_runner, "provenance", lambda cfg, argv=None: dict(prov))
    monkeypatch.setattr(
        _runner, "run_unit", lambda cfg, t, s, log=None: {"task": t, "seed": s, "commit": "abc"}
    )
    partial = tmp_path / "p.jsonl"
    with pytest.raises(RuntimeError, match="differs from its commit"):
        compare.run_compare(cfg, partial=partial)
    assert not partial.exists()
    prov["dirty"] = False
    done = compare.run_compare(cfg, partial=partial)
    assert [(u["task"], u["seed"]) for u in done] == _runner.units_of(cfg)
    header, units = compare.read_units(partial)
    assert header is not None and header["provenance"]["commit"] == "abc" and len(units) == 4
    assert len(compare.run_compare(cfg, partial=partial)) == 4  # nothing left to run
    prov["commit"] = "def"
    with pytest.raises(RuntimeError, match="started on commit abc"):
        compare.run_compare(cfg, partial=partial)
    cfg.budgets = {"short": 1.0, "long": 2.0}
    prov["commit"] = "abc"
    with pytest.raises(RuntimeError, match="other settings"):
        compare.run_compare(cfg, partial=partial)


def test_time_to_reach_ignores_trials_past_the_budget() -> None:
    trials = _trials((2.0, 0.6), (12.0, 0.1))
    assert _stats.time_to_reach(trials, 0.2, budget=10.0) is None


def test_bad_configs_get_one_clear_error() -> None:
    for kwargs, match in [
        ({"tasks": ("nope",)}, "`tasks` must be among"),
        ({"budgets": {"short": 0.0}}, "`budgets` must be positive"),
        ({"methods": ("tpe", "fmd"), "primary": "tpe"}, "`primary` must be an FMD method"),
        ({"methods": ("fmd", "gp")}, "`methods` must be among"),
        ({"seeds": (1, 1)}, "`seeds` must be distinct"),
    ]:
        with pytest.raises(ValueError, match=match):
            compare.CompareConfig(**kwargs).validate()


@pytest.mark.slow
def test_quick_comparison_end_to_end(tmp_path: Path) -> None:
    from optuna_fmd import cli

    args = ["compare", "--quick", "--seeds", "0", "--allow-dirty", "--out-dir", str(tmp_path)]
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "compare_quick_summary.json").read_text())
    assert [(r["task"], r["budget"]) for r in summary["runs"]] == [
        ("digits-sgd", "short"),
        ("digits-sgd", "long"),
        ("digits-adamw", "short"),
        ("digits-adamw", "long"),
    ]
    results = json.loads((tmp_path / "compare_quick.json").read_text())
    (unit,) = [u for u in results["units"] if u["task"] == "digits-sgd"]
    for m, rec in unit["methods"].items():
        counted = [t for t in rec["trials"] if t["counted"]]
        assert counted, m
        assert all(t["end"] <= 30.0 + 1e-9 for t in counted)
        assert all(t["seconds"] > 0 and t["wall"] > 0 and t["unit"] > 0 for t in rec["trials"])
    fmd_trials = unit["methods"]["fmd"]["trials"]
    assert fmd_trials[0]["hypergradient"] is False  # the search rule's start: a plain episode
    assert any(t["hypergradient"] for t in fmd_trials)  # and, later, hypergradient steps
    assert len(unit["methods"]["cosine-grid"]["trials"]) == 3
    assert unit["yardstick"]["n"] >= 3 + len(unit["methods"]["tpe"]["trials"])
    # rebuilt from the JSON alone, the summary is the same
    assert (
        cli.main(
            [
                "compare",
                "--from-results",
                str(tmp_path / "compare_quick.json"),
                "--out-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "compare_quick_summary.json").read_text()) == summary


def test_runs_of_one_protocol_merge_with_their_provenance_and_renames() -> None:
    from optuna_fmd.compare._cli import merge_results

    def run(methods: list[str], commit: str, offset: float) -> dict[str, Any]:
        units = []
        for seed in range(3):
            u = _unit(seed, 0.3 + offset, 0.4, 0.5)
            u["methods"] = {m: u["methods"][m] for m in methods}
            units.append(u)
        config = {**CONFIG, "methods": methods, "tasks": ["t"], "seeds": [0, 1, 2]}
        return {"config": config, "provenance": {"commit": commit}, "units": units}

    old = run(["fmd", "tpe", "cosine-grid"], "1111111aaa", 0.1)
    new = run(["fmd"], "2222222bbb", 0.0)
    merged = merge_results([old, new], {"fmd": "fmd-windows"})
    assert merged["config"]["methods"] == ["fmd-windows", "tpe", "cosine-grid", "fmd"]
    u = merged["units"][0]
    assert u["methods"]["fmd"]["trials"][-1]["value"] == pytest.approx(0.3)
    assert u["methods"]["fmd-windows"]["trials"][-1]["value"] == pytest.approx(0.4)
    parts = merged["provenance"]["parts"]
    assert [p["commit"] for p in parts] == ["1111111aaa", "2222222bbb"]
    assert parts[0]["methods"] == ["fmd-windows", "tpe", "cosine-grid"]
    # without a rename, the earlier run's clashing name is tagged with its commit
    tagged = merge_results([old, new])
    assert tagged["config"]["methods"][0] == "fmd@1111111"
    other = run(["fmd"], "3333333ccc", 0.0)
    other["config"]["budgets"] = {**CONFIG["budgets"], "short": CONFIG["budgets"]["short"] + 1}
    with pytest.raises(SystemExit, match="budgets"):
        merge_results([old, other])


def test_a_run_with_a_longer_budget_merges_with_the_methods_that_had_stopped_before_it() -> None:
    """A grid run once (it stopped within the earlier run's budgets) is compared at the later
    run's longer budget by its final best; a search still going at the earlier run's end is
    not, unless left out."""
    from optuna_fmd.compare._cli import merge_results

    def run(methods: list[str], budgets: dict[str, float], commit: str) -> dict[str, Any]:
        units = []
        for seed in range(3):
            u = _unit(seed, 0.3, 0.4, 0.5)
            u["methods"] = {m: u["methods"][m] for m in methods}
            for m, r in u["methods"].items():
                r["best"] = {b: r["best"].get(b) for b in budgets if b in r["best"]}
                r["stopped"], r["used"] = (
                    ("grid done", 2.0)
                    if m == "cosine-grid"
                    else (
                        "budget",
                        max(budgets.values()),
                    )
                )
            units.append(u)
        config = {**CONFIG, "methods": methods, "tasks": ["t"], "seeds": [0, 1, 2]}
        config["budgets"] = budgets
        return {"config": config, "provenance": {"commit": commit}, "units": units}

    short = {"short": CONFIG["budgets"]["short"]}
    old = run(["tpe", "cosine-grid"], short, "1111111aaa")
    new = run(["fmd"], {**short, "long": 30.0}, "2222222bbb")
    with pytest.raises(SystemExit, match="tpe on t seed 0 has no result at budget 'long'"):
        merge_results([old, new])
    merged = merge_results([old, new], keep=["cosine-grid", "fmd"])
    assert merged["config"]["methods"] == ["cosine-grid", "fmd"]
    assert merged["config"]["budgets"] == {**short, "long": 30.0}
    grid = merged["units"][0]["methods"]["cosine-grid"]["best"]
    assert grid["long"] == grid["short"] and grid["long"]["value"] == pytest.approx(0.5)
    with pytest.raises(SystemExit, match="not in the runs' methods"):
        merge_results([old, new], keep=["random"])
    # or every method at the budgets they share only
    shared = merge_results([old, new], budgets=["short"])
    assert shared["config"]["budgets"] == short
    assert shared["config"]["methods"] == ["tpe", "cosine-grid", "fmd"]
    with pytest.raises(SystemExit, match="not among the last run's budgets"):
        merge_results([old, new], budgets=["first"])
