"""The ``optuna-fmd`` command line: run an FMD study (hypergradient steps on shared schedules).

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS 2021).

Example:
    optuna-fmd run --task digits --steps 300 --trials 8 --study digits-sign
    optuna-fmd demo
    optuna-fmd compare --quick --out-dir compare
    optuna-fmd report --study digits-sign --out report
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState
from tqdm.auto import tqdm

from . import compare, tasks
from ._cli_args import DEFAULT_STORAGE, POPULATION, TASK_CHOICES, TASKS, build_parser
from ._cli_config import (
    ARTIFACT_DIR,
    CONFIG_FLAGS,
    CONFIG_KEY,
    SPACE_KINDS,
    artifact_dir,
    check_config,
    check_worker_flags,
    dashboard_argv,
    dashboard_command,
    make_space,
    open_cli_storage,
    report_argv,
    resolve_defaults,
    stored_flags,
    stored_space,
)
from ._cli_console import (
    best_words,
    describe_setup,
    describe_trial,
    legend,
    next_steps,
    print_best,
    progress_wanted,
    search_lines,
    wrap,
)
from ._cli_settings import RunSettings, StudyFiles, StudySettings, settings_from_args
from .objective import HypergradientObjective
from .sampler import FMDSampler
from .space import ScheduleSpace
from .visualization import DashboardCallback, save_best_note, write_report

__all__ = [
    "DEFAULT_STORAGE",
    "SPACE_KINDS",
    "describe_trial",
    "main",
    "make_space",
    "make_task",
    "progress_wanted",
]

#: Tasks whose ``subset`` option ``--subset`` sets.
_SUBSETTASK_CHOICES = ("mnist", "fashion-mnist", "cifar10")


def fashion_mnist_available() -> bool:
    """Whether ``optuna_fmd.tasks.FashionMNIST`` exists and its data is on disk (no download)."""
    try:
        tasks.FashionMNIST().find_root()
        return True
    except Exception:  # torchvision missing or data absent
        return False


def make_task(
    name: str,
    *,
    model: str = "mlp",
    steps: int,
    batch_size: int,
    subset: int | None = None,
    optimizer: str = "sgd",
) -> tasks.Task:
    """The task named ``name`` (one of :data:`TASKS`; ``"auto"``: Fashion-MNIST when its data is
    present, otherwise Digits), every setting checked and its dataset found on disk before any
    training.

    Raises:
        ValueError: An unknown name, a setting the task refuses (an unknown ``model`` or
            ``optimizer``, a ``batch_size`` larger than the training split, ...), or ``subset``
            for a task without that option.
        SystemExit: The dataset is not on disk (nothing is downloaded): says what to install or
            pass, and which tasks work offline.
    """
    if name not in TASK_CHOICES:
        raise ValueError(f"`--task` must be one of {TASK_CHOICES}, but got {name!r}.")
    if name == "auto":
        name = "fashion-mnist" if fashion_mnist_available() else "digits"
    if subset is not None and name not in _SUBSETTASK_CHOICES:
        raise ValueError(
            f"`--subset` applies to the tasks {_SUBSETTASK_CHOICES}, but got --task {name!r}."
        )
    kwargs: dict[str, Any] = {} if subset is None else {"subset": subset}
    task = TASKS[name](
        model=model, steps=steps, batch_size=batch_size, optimizer=optimizer, **kwargs
    )
    task.check_batch_size()  # from the split's size, known without loading the data
    find_root = getattr(task, "find_root", None)
    if find_root is not None:  # a torchvision dataset: on disk, or a clear message now
        try:
            find_root()
        except tasks.DatasetNotFoundError as err:
            raise SystemExit(
                f"error: --task {name}: {err} From the command line, put the files under "
                "$OPTUNA_FMD_DATA or ./data; --task digits and --task synthetic need no files."
            ) from None
    return task


def run_study(
    task: tasks.Task,
    space: ScheduleSpace,
    settings: StudySettings,
    *,
    out: Any = None,
    opened: Any = None,
) -> optuna.Study:
    """Run (or continue) an FMD study: ``settings.run.trials`` more outer steps, one line
    printed per step (on ``out``, default stdout).

    ``settings.location.storage`` is the URL (printed); ``opened``, the storage already opened
    from it, if any.
    """
    out = out or sys.stdout
    where, run = settings.location, settings.run
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = FMDSampler(space, outer=run.outer, seed=run.seed, population=run.population)
    if opened is None:
        opened = open_cli_storage(where.storage, heartbeat=where.heartbeat)
    study = optuna.create_study(
        storage=opened, study_name=where.name, sampler=sampler, load_if_exists=True
    )
    if settings.config is not None:
        check_config(study, settings.config, space)
    objective = _objective(task, space, run, settings.files)
    header = f"study {where.name!r} ({len(study.trials)} earlier trials) on {where.storage}"
    print(wrap(header, indent="  "), file=out)
    setup = describe_setup(task, space, run.outer, run.population)
    print(wrap(setup, indent="  ", first="  "), file=out)
    if run.trials or run.total is not None:
        print(legend(run.population), file=out, flush=True)
    # the progress bar is on stderr
    bar = tqdm(total=run.trials, desc=where.name, unit="trial", disable=not run.progress)
    report = _reporter(sampler, space, run.population, bar, out)
    func, callbacks = _with_callbacks(objective, report, settings.files.artifact_dir, run.total)
    try:
        if run.total is None or _n_done(study) < run.total:
            study.optimize(
                func,
                n_trials=run.trials if run.total is None else None,
                callbacks=callbacks,
                catch=(RuntimeError,),
            )
    finally:
        bar.close()
    save_best_note(study)  # where optuna-dashboard's study page shows it
    print_best(sampler, study, space, out)
    return study


def _reporter(
    sampler: FMDSampler, space: ScheduleSpace, population: int | None, bar: Any, out: Any
) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """The callback that prints a line per finished trial and moves the progress bar."""

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        bar.update(1)
        best = sampler.best_iterate(study)
        bar.set_postfix(best="-" if best is None else f"{best.value:.4f}")
        for line in search_lines(study, trial):
            tqdm.write(line, file=out)
        tqdm.write(describe_trial(trial, space, population, best_words(best)), file=out)

    return report


def _with_callbacks(
    objective: HypergradientObjective,
    report: Callable[[optuna.Study, optuna.trial.FrozenTrial], None],
    artifact_dir: str | None,
    total: int | None,
) -> tuple[Any, list[Any]]:
    """What ``study.optimize`` runs, and its callbacks: ``report``, optuna-dashboard's figures
    (with ``artifact_dir``), a stop once the study holds ``total`` finished trials (workers)."""
    callbacks: list[Any] = [report]
    func: Any = objective
    if artifact_dir is not None:
        dashboard = DashboardCallback(artifact_dir)
        func = dashboard.wrap(objective)
        callbacks.append(dashboard)
    if total is not None:

        def finished_enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if _n_done(study) >= total:
                study.stop()

        callbacks.append(finished_enough)
    return func, callbacks


def _objective(
    task: tasks.Task, space: ScheduleSpace, run: RunSettings, files: StudyFiles
) -> HypergradientObjective:
    """The study's objective; with ``files.checkpoint_every``, its snapshots go to an artifact
    store in ``files.checkpoint_dir`` (default :data:`ARTIFACT_DIR`)."""
    store = None
    if files.checkpoint_every is not None:
        os.makedirs(files.checkpoint_dir or ARTIFACT_DIR, exist_ok=True)
        store = FileSystemArtifactStore(files.checkpoint_dir or ARTIFACT_DIR)
    return HypergradientObjective(
        task,
        space,
        seed=run.episode_seed,
        progress=run.progress,
        checkpoint_every=files.checkpoint_every,
        artifact_store=store,
    )


def _n_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _check_flags(args: argparse.Namespace) -> tuple[tasks.Task, ScheduleSpace]:
    """The task and space the flags name, every flag checked; a bad one exits with one
    ``error: ...`` line before any study is created or data is trained on."""
    if args.trials < 0:
        raise SystemExit(f"error: --trials must be >= 0, but got {args.trials}")
    for arg in ("steps", "windows", "batch_size", "population"):
        if getattr(args, arg) is not None and getattr(args, arg) < 1:
            raise SystemExit(
                f"error: --{arg.replace('_', '-')} must be positive, but got {getattr(args, arg)}"
            )
    if args.seed < 0:
        raise SystemExit(f"error: --seed must be >= 0, but got {args.seed}")
    check_worker_flags(args)
    try:
        task = make_task(
            args.task,
            model=args.model,
            steps=args.steps,
            batch_size=args.batch_size,
            subset=args.subset,
            optimizer=args.optimizer,
        )
        space = make_space(
            [h.strip() for h in args.hypers.split(",") if h.strip()],
            args.windows,
            lr_init=args.lr_init,
            momentum_init=args.momentum_init,
            weight_decay_init=args.weight_decay_init,
            kind=args.space,
            optimizer=args.optimizer,
        )
        if args.windows > args.steps:
            raise ValueError(
                f"`--windows` must be at most --steps={args.steps}, but got {args.windows}."
            )
    except (ValueError, TypeError) as err:
        raise SystemExit("error: " + _in_flag_words(" ".join(str(err).split()))) from None
    return task, space


#: Task arguments that a flag of the same name sets.
_TASK_FLAGS = ("model", "optimizer", "steps", "batch_size", "subset")


def _in_flag_words(message: str) -> str:
    """A task's error in the command line's words: `batch_size` becomes `--batch-size`."""
    for arg in _TASK_FLAGS:
        message = message.replace(f"`{arg}`", f"`--{arg.replace('_', '-')}`")
    return message


def _study_from_args(
    args: argparse.Namespace, study_name: str, *, total: int | None = None, opened: Any = None
) -> optuna.Study:
    if args.task == "auto":  # stored resolved, so every worker trains the same task
        args.task = "fashion-mnist" if fashion_mnist_available() else "digits"
    if getattr(args, "optimizer", None) is None:  # a study stored before --optimizer existed
        args.optimizer = "sgd"
    resolve_defaults(args)
    task, space = _check_flags(args)
    if opened is None:  # a bad URL fails here, before any study is created
        opened = open_cli_storage(args.storage, heartbeat=args.heartbeat)
    if args.population is None:  # a study being continued keeps its own
        args.population = stored_flags(opened, study_name).get("population") or POPULATION
    settings = settings_from_args(args, study_name, total=total)
    return run_study(task, space, settings, opened=opened)


def _worker(args: argparse.Namespace) -> int:
    """Join a study made by ``optuna-fmd run``: its flags are read from storage."""
    check_worker_flags(args)
    storage = open_cli_storage(args.storage, heartbeat=args.heartbeat)
    try:
        storage.get_study_id_from_name(args.study)
    except KeyError:
        names = optuna.get_all_study_names(storage=storage)
        raise SystemExit(
            f"error: --study: no study {args.study!r} in {args.storage}; it has {names}. "
            "Start it with `optuna-fmd run --study NAME ...` first."
        ) from None
    config = stored_flags(storage, args.study)
    if any(k not in config for k in CONFIG_FLAGS):
        raise SystemExit(
            f"error: study {args.study!r} was not made by `optuna-fmd run` (it has no "
            f"{CONFIG_KEY!r} attribute); run its workers with study.optimize in Python."
        )
    if args.total is not None and args.total < 1:
        raise SystemExit(f"error: --total must be positive, but got {args.total}")
    ns = argparse.Namespace(**config)
    ns.trials, ns.storage, ns.no_progress = 1, args.storage, args.no_progress
    ns.heartbeat, ns.checkpoint_every = args.heartbeat, args.checkpoint_every
    ns.artifact_dir, ns.no_artifacts = args.artifact_dir, args.no_artifacts
    _study_from_args(ns, args.study, total=args.total, opened=storage)
    return 0


def _run(args: argparse.Namespace) -> int:
    _study_from_args(args, args.study)
    _print_next_steps(args, args.study)
    return 0


def _demo(args: argparse.Namespace) -> int:
    name = args.study or "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    _study_from_args(args, name)
    _print_next_steps(args, name)
    return 0


def _print_next_steps(args: argparse.Namespace, study_name: str) -> None:
    """The report and optuna-dashboard commands of the study just run, with its name and
    storage, as the last lines."""
    report, dashboard = report_argv(args.storage, study_name), dashboard_argv(args.storage)
    if artifact_dir(args) is not None:
        dashboard = dashboard_argv(args.storage, artifact_dir(args))
    print(next_steps(report, dashboard, _report_dir(study_name)))


def _report_dir(study_name: str) -> str:
    """Where ``optuna-fmd report`` writes without ``--out``."""
    return f"report-{study_name}"


def _compare(args: argparse.Namespace) -> int:
    code = compare.cli_main(args)
    if args.storage:
        print(f"view them: {dashboard_command(args.storage)}")
    return code


def _report(args: argparse.Namespace) -> int:
    """Write ``<out>/report.html`` and PNGs of ``--study`` (and the ``--vs`` studies)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_cli_storage(args.storage)
    names = optuna.get_all_study_names(storage=storage)
    missing = [n for n in [args.study, *args.vs] if n not in names]
    if missing:
        raise SystemExit(
            f"error: --study/--vs: no study {missing} in {args.storage}; it has {names}."
        )
    study, *vs = (optuna.load_study(study_name=n, storage=storage) for n in [args.study, *args.vs])
    path = write_report(
        study, args.out or _report_dir(args.study), vs=vs, space=stored_space(storage, args.study)
    )
    print(f"report: {path}")
    for png in sorted(path.parent.glob("*.png")):
        print(f"figure: {png}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-fmd`` console script."""
    handlers = {
        "run": _run,
        "demo": _demo,
        "worker": _worker,
        "compare": _compare,
        "report": _report,
    }
    args = build_parser(__doc__ or "", handlers).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
