"""The ``optuna-fmd`` command line: ``run`` and ``demo`` studies on SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd import cli

TINY = [
    "--task",
    "digits",
    "--steps",
    "20",
    "--batch-size",
    "32",
    "--windows",
    "1",
    "--hypers",
    "lr,momentum",
]


def test_run_prints_each_outer_step_and_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["run", *TINY, "--trials", "2", "--storage", url, "--study", "s", "--no-progress"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "trial   0 init      val_loss" in out and "lr=[0.05] momentum=[0.9]" in out
    assert "trial   1 step" in out
    assert f"optuna-dashboard {url}" in out
    args[args.index("--trials") + 1] = "1"
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 earlier trials" in out and "trial   2 step" in out
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 3
    assert "hypergradient" in study.trials[2].user_attrs


def test_demo_uses_embedded_sqlite_and_prints_dashboard_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", *TINY, "--trials", "2"]) == 0  # with progress bars
    out = capsys.readouterr().out
    assert (tmp_path / "optuna-fmd.db").exists()
    assert f"optuna-dashboard sqlite:///{tmp_path / 'optuna-fmd.db'}" in out
    summaries = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'optuna-fmd.db'}")
    assert len(summaries) == 1 and summaries[0].study_name.startswith("demo-")
    assert summaries[0].n_trials == 2


def test_auto_task_prefers_fashion_mnist_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "fashion_mnist_available", lambda: False)
    assert isinstance(cli.make_task("auto", steps=10, batch_size=8), fmd.tasks.Digits)
    with pytest.raises(SystemExit, match="fashion-mnist"):
        cli.make_task("fashion-mnist", steps=10, batch_size=8)
    if hasattr(fmd.tasks, "FashionMNIST"):
        monkeypatch.setattr(cli, "fashion_mnist_available", lambda: True)
        task = cli.make_task("auto", steps=10, batch_size=8)
        assert type(task).__name__ == "FashionMNIST"


def test_space_and_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`--hypers` must be a comma-separated subset"):
        cli.make_space(["lr", "nesterov"], 2)
    with pytest.raises(SystemExit, match="--steps must be positive"):
        cli.main(
            [
                "run",
                "--task",
                "digits",
                "--steps",
                "0",
                "--storage",
                f"sqlite:///{tmp_path / 'x.db'}",
            ]
        )
    space = cli.make_space(["lr", "momentum", "weight_decay"], 3)
    assert space.param_names()[:3] == ["lr_0", "lr_1", "lr_2"]


def test_console_entry_point_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optuna_fmd.cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0
    assert "--outer" in proc.stdout and "--storage" in proc.stdout
