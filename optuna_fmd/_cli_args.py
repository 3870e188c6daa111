"""The ``optuna-fmd`` command line's flags: the parser of every subcommand, and the defaults
its flags fall back on."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from . import compare, tasks
from ._cli_config import SPACE_KINDS, add_worker_args, default_hypers, default_init
from ._cli_console import HelpFormatter
from .outer import rule_names
from .space import DEFAULT_BOUNDS
from .tasks import MODELS

__all__ = ["DEFAULT_STORAGE", "POPULATION", "TASKS", "TASK_CHOICES", "build_parser"]

#: The embedded default storage: SQLite in the working directory.
DEFAULT_STORAGE = "sqlite:///optuna-fmd.db"
#: Seeds per outer iterate by default: on the comparison, schedules found on the mean of two
#: seeds did better on fresh seeds than those found on one (benchmarks/README.md, "Fresh seeds").
POPULATION = 2
#: ``--task`` names: every dataset task of :mod:`optuna_fmd.tasks` (``Custom`` takes the user's
#: own data, so it has no command-line form).
TASKS: dict[str, type[tasks.Task]] = {
    cls.name: cls
    for cls in (tasks.Digits, tasks.MNIST, tasks.FashionMNIST, tasks.CIFAR10, tasks.Synthetic)
}
#: ``--task`` values: "auto" (Fashion-MNIST when its data is on disk, else Digits) and TASKS.
TASK_CHOICES = ("auto", *TASKS)


def build_parser(
    description: str, handlers: Mapping[str, Callable[[argparse.Namespace], int]]
) -> argparse.ArgumentParser:
    """The parser of ``optuna-fmd``; each subcommand's ``func`` is its entry of ``handlers``
    (``run``, ``demo``, ``worker``, ``compare``, ``report``)."""
    parser = argparse.ArgumentParser(
        prog="optuna-fmd",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or continue an FMD study", formatter_class=HelpFormatter)
    _add_study_args(run, steps=1000, trials=10, windows=5)
    run.add_argument("--study", default="optuna-fmd", help="study name (continued if it exists)")
    run.set_defaults(func=handlers["run"])
    demo = sub.add_parser(
        "demo", help="a small FMD study (24 trials of 500 steps)", formatter_class=HelpFormatter
    )
    # The demo starts from a common but too timid schedule (lr 0.01, momentum 0.5), below the
    # good lr, where the hypergradient is the slope: the search climbs along it from the start.
    _add_study_args(demo, steps=500, trials=24, windows=5, lr_init=0.01, momentum_init=0.5)
    demo.add_argument("--study", default=None, help="study name (default: demo-<date-time>)")
    demo.set_defaults(func=handlers["demo"])
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
    worker.set_defaults(func=handlers["worker"])
    compare_p = sub.add_parser(
        "compare",
        help="FMD vs TPE, CMA-ES, random, TPE + Hyperband and a tuned cosine at equal budget",
    )
    compare.add_arguments(compare_p)
    compare_p.set_defaults(func=handlers["compare"])
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
    report.set_defaults(func=handlers["report"])
    return parser


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
        choices=rule_names(),
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
        choices=TASK_CHOICES,
        default="auto",
        help="auto: fashion-mnist when its data is present, otherwise digits; mnist, "
        "fashion-mnist and cifar10 read torchvision's files from disk (never downloaded)",
    )
    p.add_argument("--model", default="mlp", help=f"the network: {MODELS}")
    p.add_argument(
        "--optimizer",
        default="sgd",
        help="inner optimiser, one the package has a search space for: "
        + ", ".join(DEFAULT_BOUNDS),
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
        # with a default of its own, the formatter says it; else the optimiser's applies
        help="initial lr, the cosine's peak"
        + ("" if lr_init is not None else f" (default: the optimiser's, {_inits('lr')})"),
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
