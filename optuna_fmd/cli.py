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
from ._cli_config import (
    ARTIFACT_DIR,
    CONFIG_FLAGS,
    CONFIG_KEY,
    SPACE_KINDS,
    add_worker_args,
    artifact_dir,
    check_config,
    check_worker_flags,
    dashboard_command,
    default_artifact_dir,
    default_hypers,
    default_init,
    make_space,
    open_cli_storage,
    resolve_defaults,
    stored_flags,
    stored_space,
)
from ._cli_console import (
    HelpFormatter,
    best_words,
    describe_setup,
    describe_trial,
    legend,
    print_best,
    progress_wanted,
    search_lines,
)
from .objective import HypergradientObjective
from .sampler import FMDSampler
from .space import DEFAULT_BOUNDS, ScheduleSpace
from .tasks import MODELS
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

#: The embedded default storage: SQLite in the working directory.
DEFAULT_STORAGE = "sqlite:///optuna-fmd.db"
#: ``--task`` names: every dataset task of :mod:`optuna_fmd.tasks` (``Custom`` takes the user's
#: own data, so it has no command-line form).
TASKS: dict[str, type[tasks.Task]] = {
    cls.name: cls
    for cls in (tasks.Digits, tasks.MNIST, tasks.FashionMNIST, tasks.CIFAR10, tasks.Synthetic)
}
_TASKS = ("auto", *TASKS)
#: Tasks whose ``subset`` option ``--subset`` sets.
_SUBSET_TASKS = ("mnist", "fashion-mnist", "cifar10")


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
            ``optimizer``, ...), or ``subset`` for a task without that option.
        SystemExit: The dataset is not on disk (nothing is downloaded): says what to install or
            pass, and which tasks work offline.
    """
    if name not in _TASKS:
        raise ValueError(f"`--task` must be one of {_TASKS}, but got {name!r}.")
    if name == "auto":
        name = "fashion-mnist" if fashion_mnist_available() else "digits"
    if subset is not None and name not in _SUBSET_TASKS:
        raise ValueError(
            f"`--subset` applies to the tasks {_SUBSET_TASKS}, but got --task {name!r}."
        )
    kwargs: dict[str, Any] = {} if subset is None else {"subset": subset}
    task = TASKS[name](
        model=model, steps=steps, batch_size=batch_size, optimizer=optimizer, **kwargs
    )
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


#: Seeds per outer iterate by default: on the comparison, schedules found on the mean of two
#: seeds did better on fresh seeds than those found on one (benchmarks/README.md, "Fresh seeds").
POPULATION = 2


def run_study(
    task: tasks.Task,
    space: ScheduleSpace,
    *,
    trials: int,
    storage: str,
    study_name: str,
    outer: str = "search",
    seed: int = 0,
    fresh_split: bool = False,
    progress: bool = True,
    out: Any = None,
    population: int | None = None,
    config: dict[str, Any] | None = None,
    total: int | None = None,
    heartbeat: float | None = None,
    artifact_dir: str | None = None,
    checkpoint_every: int | None = None,
    checkpoint_dir: str | None = None,
    opened: Any = None,
) -> optuna.Study:
    """Run (or continue) an FMD study: ``trials`` more outer steps, one line printed per step.

    ``storage`` is the URL (printed); ``opened``, the storage already opened from it, if any.
    """
    out = out or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = FMDSampler(space, outer=outer, seed=seed, population=population)
    study = optuna.create_study(
        storage=opened if opened is not None else open_cli_storage(storage, heartbeat=heartbeat),
        study_name=study_name,
        sampler=sampler,
        load_if_exists=True,
    )
    if config is not None:
        check_config(study, config, space)
    objective = _objective(
        task,
        space,
        seed="trial" if fresh_split else seed,
        progress=progress,
        checkpoint_every=checkpoint_every,
        checkpoint_dir=checkpoint_dir,
    )
    print(
        f"study {study_name!r} on {storage}: {describe_setup(task, space, outer, population)}, "
        f"{len(study.trials)} earlier trials",
        file=out,
        flush=True,
    )
    if trials or total is not None:
        print(legend(population), file=out, flush=True)
    bar = tqdm(total=trials, desc=study_name, unit="trial", disable=not progress)  # on stderr
    report = _reporter(sampler, space, population, bar, out)
    func, callbacks = _with_callbacks(objective, report, artifact_dir, total)
    try:
        if total is None or _n_done(study) < total:
            study.optimize(
                func,
                n_trials=trials if total is None else None,
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
        point = sampler.best_iterate(study)
        bar.set_postfix(best="-" if point is None else f"{point[0]:.4f}")
        for line in search_lines(study, trial):
            tqdm.write(line, file=out)
        tqdm.write(describe_trial(trial, space, population) + f"  ({best_words(point)})", file=out)

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
    task: tasks.Task,
    space: ScheduleSpace,
    *,
    seed: int | str,
    progress: bool,
    checkpoint_every: int | None,
    checkpoint_dir: str | None,
) -> HypergradientObjective:
    """The study's objective; with ``checkpoint_every``, its snapshots go to an artifact store
    in ``checkpoint_dir`` (default :data:`ARTIFACT_DIR`)."""
    store = None
    if checkpoint_every is not None:
        os.makedirs(checkpoint_dir or ARTIFACT_DIR, exist_ok=True)
        store = FileSystemArtifactStore(checkpoint_dir or ARTIFACT_DIR)
    return HypergradientObjective(
        task,
        space,
        seed=seed,
        progress=progress,
        checkpoint_every=checkpoint_every,
        artifact_store=store,
    )


def _n_done(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _add_study_args(
    p: argparse.ArgumentParser,
    *,
    steps: int,
    trials: int,
    windows: int,
    lr_init: float | None = None,
    momentum_init: float = 0.9,
) -> None:
    _add_task_args(p, steps)
    _add_space_args(p, windows, lr_init, momentum_init)
    p.add_argument(
        "--trials",
        type=int,
        default=trials,
        help="trials to run (0: only create the study, for `optuna-fmd worker`s)",
    )
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    p.add_argument(
        "--outer",
        choices=("search", "sign", "adam"),
        default="search",
        help="outer rule (search: a climb along the hypergradient while it is the slope, "
        "then plain probes)",
    )
    p.add_argument("--seed", type=int, default=0, help="episode and sampler seed")
    p.add_argument(
        "--fresh-split",
        action="store_true",
        help="seed each episode with the trial number (fresh split, as in FDS)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (there are none when stderr is not a terminal)",
    )
    add_worker_args(p)
    p.add_argument(
        "--population",
        type=int,
        default=None,
        help=f"seeds per outer iterate (default: {POPULATION} for a new study, the study's own "
        "for one being continued): iterates are compared by their members' mean validation "
        "loss and their hypergradients averaged",
    )


def _add_task_args(p: argparse.ArgumentParser, steps: int) -> None:
    """The flags that name the task: data, model, inner optimiser, horizon."""
    p.add_argument(
        "--task",
        choices=_TASKS,
        default="auto",
        help="auto: fashion-mnist when its data is present, otherwise digits; mnist, "
        "fashion-mnist and cifar10 read torchvision's files from disk (never downloaded)",
    )
    p.add_argument("--model", default="mlp", help=f"the network: {MODELS}")
    p.add_argument(
        "--optimizer",
        default="sgd",
        help=f"inner optimiser, one with a default search space: {', '.join(DEFAULT_BOUNDS)}",
    )
    p.add_argument("--steps", type=int, default=steps, help="inner steps T per episode")
    p.add_argument("--batch-size", type=int, default=128, help="training minibatch size")
    p.add_argument(
        "--subset",
        type=int,
        default=None,
        help="mnist, fashion-mnist, cifar10: train on this many examples only",
    )


def _inits(hyper: str) -> str:
    """Each optimiser's default start of ``hyper``, for a flag's help."""
    return ", ".join(f"{default_init(opt, hyper):g} for {opt}" for opt in DEFAULT_BOUNDS)


def _add_space_args(
    p: argparse.ArgumentParser, windows: int, lr_init: float | None, momentum_init: float
) -> None:
    """The flags that set the search space and its start."""
    p.add_argument("--windows", type=int, default=windows, help="windows K per schedule")
    p.add_argument(
        "--hypers",
        default=None,
        help="comma-separated scheduled hyperparameters (default: all of the optimiser's: "
        + "; ".join(f"{opt}: {default_hypers(opt)}" for opt in DEFAULT_BOUNDS)
        + ")",
    )
    p.add_argument(
        "--lr-init",
        type=float,
        default=lr_init,
        help=f"initial lr, the cosine's peak (default: the optimiser's, {_inits('lr')})",
    )
    p.add_argument(
        "--momentum-init", type=float, default=momentum_init, help="initial momentum (SGD)"
    )
    p.add_argument(
        "--weight-decay-init",
        type=float,
        default=None,
        help=f"initial weight decay (default: the optimiser's, {_inits('weight_decay')})",
    )
    p.add_argument(
        "--space",
        choices=SPACE_KINDS,
        default="family",
        help="family: a cosine lr with per-window corrections and constant other hypers; "
        "windows: --windows free values per hyper",
    )


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
        raise SystemExit("error: " + " ".join(str(err).split())) from None
    return task, space


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
    return run_study(
        task,
        space,
        trials=args.trials,
        storage=args.storage,
        study_name=study_name,
        outer=args.outer,
        seed=args.seed,
        fresh_split=args.fresh_split,
        progress=progress_wanted(args.no_progress),
        population=args.population,
        config={k: getattr(args, k) for k in CONFIG_FLAGS},
        total=total,
        heartbeat=args.heartbeat,
        opened=opened,
        artifact_dir=artifact_dir(args),
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.artifact_dir or default_artifact_dir(args.storage),
    )


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
    print(f"view it: {dashboard_command(args.storage, artifact_dir(args))}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    name = args.study or "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    _study_from_args(args, name)
    print(f"view it: {dashboard_command(args.storage, artifact_dir(args))}")
    return 0


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
        study, args.out or f"report-{args.study}", vs=vs, space=stored_space(storage, args.study)
    )
    print(f"report: {path}")
    for png in sorted(path.parent.glob("*.png")):
        print(f"figure: {png}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-fmd`` console script."""
    parser = argparse.ArgumentParser(
        prog="optuna-fmd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or continue an FMD study", formatter_class=HelpFormatter)
    _add_study_args(run, steps=1000, trials=10, windows=5)
    run.add_argument("--study", default="optuna-fmd", help="study name (continued if it exists)")
    run.set_defaults(func=_run)
    demo = sub.add_parser(
        "demo", help="a small FMD study (24 trials of 500 steps)", formatter_class=HelpFormatter
    )
    # The demo starts from a common but too timid schedule (lr 0.01, momentum 0.5), below the
    # good lr, where the hypergradient is the slope: the search climbs along it from the start.
    _add_study_args(demo, steps=500, trials=24, windows=5, lr_init=0.01, momentum_init=0.5)
    demo.add_argument("--study", default=None, help="study name (default: demo-<date-time>)")
    demo.set_defaults(func=_demo)
    worker = sub.add_parser(
        "worker",
        help="join a study made by `optuna-fmd run` (many workers may share one)",
        formatter_class=HelpFormatter,
    )
    worker.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    worker.add_argument("--study", required=True, help="name of the study to work on")
    worker.add_argument(
        "--total",
        type=int,
        default=None,
        help="stop once the study holds this many COMPLETE trials (default: run until stopped)",
    )
    worker.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (there are none when stderr is not a terminal)",
    )
    add_worker_args(worker)
    worker.set_defaults(func=_worker)
    compare_p = sub.add_parser(
        "compare",
        help="FMD vs TPE, CMA-ES, random, TPE + Hyperband and a tuned cosine at equal budget",
    )
    compare.add_arguments(compare_p)
    compare_p.set_defaults(func=_compare)
    report = sub.add_parser(
        "report",
        help="write an HTML report (plots, table of outer steps) and PNGs of a study",
        formatter_class=HelpFormatter,
    )
    report.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    report.add_argument("--study", required=True, help="name of the FMD study")
    report.add_argument(
        "--vs", nargs="*", default=[], metavar="STUDY", help="studies to compare with"
    )
    report.add_argument("--out", default=None, help="output directory (default: report-<study>)")
    report.set_defaults(func=_report)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
