"""The comparison's command line: presets, then the options that override them."""

from __future__ import annotations

import argparse

import pytest

from optuna_fmd.compare import CompareConfig
from optuna_fmd.compare._cli import add_arguments, config_from_args


def _config(*argv: str):  # type: ignore[no-untyped-def]
    p = argparse.ArgumentParser()
    add_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def test_the_anchor_table_runs_the_searchers_against_what_users_run_instead() -> None:
    cfg = _config("--preset", "v6-sf")
    assert cfg.tasks == ("fashion-deep-sf",) and cfg.primary == "fmd-pop2"
    assert cfg.budgets == {"first": 5.0, "short": 15.0, "long": 60.0}
    anchors = {"sf-adamw", "sf-adamw-grid", "sf-sgd-grid", "adamw-cosine-grid", "prodigy"}
    assert anchors <= set(cfg.methods)
    assert {"fmd-pop2", "pattern-pop2", "tpe", "cmaes", "random"} <= set(cfg.methods)


def test_budgets_replace_the_presets_and_short_and_long_still_change_theirs() -> None:
    cfg = _config("--preset", "v6-sf", "--budgets", "first=5", "short=15")
    assert cfg.budgets == {"first": 5.0, "short": 15.0}
    cfg = _config("--budgets", "a=2", "short=3", "--short", "4")
    assert cfg.budgets == {"a": 2.0, "short": 4.0}


@pytest.mark.parametrize("word", ["short", "short=", "=5", "short=x"])
def test_a_malformed_budget_is_refused_by_name(word: str) -> None:
    with pytest.raises(SystemExit, match="NAME=PEE"):
        _config("--budgets", word)


def test_a_run_of_baselines_alone_names_the_primary_it_will_be_merged_with() -> None:
    cfg = _config("--preset", "v6-sf", "--methods", "prodigy")
    assert cfg.methods == ("prodigy",) and cfg.primary == "fmd-pop2"
    assert _config("--preset", "v6-sf", "--methods", "tpe,fmd").primary == "fmd"
    with pytest.raises(ValueError, match="`primary` must be an FMD method"):
        CompareConfig(methods=("tpe", "fmd"), primary="tpe").validate()
