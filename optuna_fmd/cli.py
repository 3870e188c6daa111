"""The ``optuna-fmd`` command line: run an FMD study (hypergradient steps on shared schedules).

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS 2021).

Example:
    optuna-fmd run --task digits --steps 300 --trials 8 --study digits-sign
    optuna-fmd demo
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    import optuna_fmd as fmd

__all__ = ["DEFAULT_STORAGE", "main"]

#: The embedded default storage: SQLite in the working directory.
DEFAULT_STORAGE = "sqlite:///optuna-fmd.db"
_TASKS = ("auto", "digits", "fashion-mnist")
_HYPERS = ("lr", "momentum", "weight_decay")


def fashion_mnist_available() -> bool:
    """Whether ``optuna_fmd.tasks.FashionMNIST`` exists and its data is on disk (no download)."""
    try:
        from optuna_fmd.tasks import FashionMNIST

        finder = getattr(FashionMNIST(), "find_root", None)
        if finder is not None:
            finder()
        return True
    except Exception:  # no such task yet, torchvision missing or data absent
        return False


def make_task(
    name: str, *, model: str = "mlp", steps: int, batch_size: int, subset: int | None = None
) -> fmd.tasks.Task:
    """The task named ``name`` (``"auto"``: Fashion-MNIST when present, otherwise Digits)."""
    import optuna_fmd as fmd

    if name not in _TASKS:
        raise ValueError(f"`--task` must be one of {_TASKS}, but got {name!r}.")
    if name == "auto":
        name = "fashion-mnist" if fashion_mnist_available() else "digits"
    if name == "fashion-mnist":
        if not fashion_mnist_available():
            raise SystemExit(
                "error: --task fashion-mnist: optuna_fmd.tasks.FashionMNIST or its data is not "
                "available (apt-get install dataset-fashion-mnist); use --task digits."
            )
        kwargs: dict[str, Any] = {} if subset is None else {"subset": subset}
        return fmd.tasks.FashionMNIST(model=model, steps=steps, batch_size=batch_size, **kwargs)
    return fmd.tasks.Digits(model=model, steps=steps, batch_size=batch_size)


def make_space(
    hypers: Sequence[str],
    windows: int,
    *,
    lr_init: float = 0.05,
    momentum_init: float = 0.9,
    weight_decay_init: float = 5e-4,
) -> fmd.ScheduleSpace:
    """The DESIGN space: lr in [1e-3, 1] (log, init 0.05), momentum in [0, 0.99] (init 0.9),
    weight decay in [0, 1e-2] (init 5e-4), ``windows`` values each."""
    import optuna_fmd as fmd

    defaults = {
        "lr": fmd.Schedule(windows=windows, low=1e-3, high=1.0, log=True, init=lr_init),
        "momentum": fmd.Schedule(windows=windows, low=0.0, high=0.99, init=momentum_init),
        "weight_decay": fmd.Schedule(windows=windows, low=0.0, high=1e-2, init=weight_decay_init),
    }
    unknown = [h for h in hypers if h not in defaults]
    if unknown or not hypers:
        raise ValueError(
            f"`--hypers` must be a comma-separated subset of {list(defaults)}, but got "
            f"{list(hypers)}."
        )
    return fmd.ScheduleSpace({h: defaults[h] for h in hypers})


def _fmt(values: Sequence[float]) -> str:
    return "[" + " ".join(f"{v:.3g}" for v in values) + "]"


def describe_trial(trial: optuna.trial.FrozenTrial, space: fmd.ScheduleSpace) -> str:
    """One line per outer step: trial number, how it was proposed, value, schedules."""
    from optuna_fmd.sampler import STATE_KEY

    state = trial.system_attrs.get(STATE_KEY)
    origin = state.get("origin", "") if isinstance(state, dict) else "other"
    value = "failed" if trial.value is None else f"{trial.value:.4f}"
    acc = trial.user_attrs.get("val_accuracy")
    acc_s = f" acc {acc:.3f}" if isinstance(acc, float) else ""
    secs = trial.user_attrs.get("seconds")
    secs_s = f" {secs:.1f}s" if isinstance(secs, float) else ""
    scheds = []
    for name, s in space.items():
        vals = [trial.params.get(f"{name}_{k}") for k in range(s.windows)]
        if all(isinstance(v, float) for v in vals):
            scheds.append(f"{name}={_fmt(vals)}")  # type: ignore[arg-type]
    return f"trial {trial.number:3d} {origin:9s} val_loss {value}{acc_s}{secs_s}  " + " ".join(
        scheds
    )


def run_study(
    task: fmd.tasks.Task,
    space: fmd.ScheduleSpace,
    *,
    trials: int,
    storage: str,
    study_name: str,
    outer: str = "sign",
    seed: int = 0,
    fresh_split: bool = False,
    progress: bool = True,
    out: Any = None,
) -> optuna.Study:
    """Run (or continue) an FMD study: ``trials`` more outer steps, one line printed per step."""
    import optuna
    from tqdm.auto import tqdm

    import optuna_fmd as fmd

    out = out or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = fmd.FMDSampler(space, outer=outer, seed=seed)
    study = optuna.create_study(
        storage=storage, study_name=study_name, sampler=sampler, load_if_exists=True
    )
    objective = fmd.HypergradientObjective(
        task, space, seed="trial" if fresh_split else seed, progress=progress
    )
    print(
        f"study {study_name!r} on {storage}: {type(task).__name__} {task.model}, "
        f"{task.steps} steps, batch {task.batch_size}, outer rule {outer!r}, "
        f"{space.n_params} hyperparameters "
        f"({', '.join(f'{n} x {s.windows}' for n, s in space.items())} windows), "
        f"{len(study.trials)} earlier trials",
        file=out,
        flush=True,
    )
    bar = tqdm(total=trials, desc=study_name, unit="trial", disable=not progress)  # on stderr

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        bar.update(1)
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        bar.set_postfix(best=best)
        tqdm.write(describe_trial(trial, space) + f"  (best {best})", file=out)

    try:
        study.optimize(objective, n_trials=trials, callbacks=[report], catch=(RuntimeError,))
    finally:
        bar.close()
    try:
        best_trial = study.best_trial
        print(f"best: trial {best_trial.number}, validation loss {best_trial.value:.4f}", file=out)
        for name, values in space.from_params(best_trial.params).items():
            print(f"  {name}: {_fmt(values)}", file=out)
    except ValueError:
        print("no completed trial yet", file=out)
    if sampler.is_converged(study):
        print("the outer loop reported convergence (step sizes exhausted)", file=out)
    return study


def _dashboard_command(storage: str) -> str:
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not storage.startswith(prefix + "/"):
        storage = prefix + os.path.abspath(storage[len(prefix) :])
    return f"optuna-dashboard {storage}"


def _add_study_args(
    p: argparse.ArgumentParser,
    *,
    steps: int,
    trials: int,
    windows: int,
    lr_init: float = 0.05,
    momentum_init: float = 0.9,
) -> None:
    p.add_argument(
        "--task",
        choices=_TASKS,
        default="auto",
        help="auto: fashion-mnist when its data is present, otherwise digits",
    )
    p.add_argument("--model", default="mlp", help="model name (mlp, lenet, wrn-16-1, ...)")
    p.add_argument("--steps", type=int, default=steps, help="inner steps T per episode")
    p.add_argument("--batch-size", type=int, default=128, help="training minibatch size")
    p.add_argument(
        "--subset", type=int, default=None, help="Fashion-MNIST: train on this many examples only"
    )
    p.add_argument("--windows", type=int, default=windows, help="windows K per schedule")
    p.add_argument(
        "--hypers", default=",".join(_HYPERS), help="comma-separated scheduled hyperparameters"
    )
    p.add_argument("--lr-init", type=float, default=lr_init, help="initial lr (every window)")
    p.add_argument("--momentum-init", type=float, default=momentum_init, help="initial momentum")
    p.add_argument("--weight-decay-init", type=float, default=5e-4, help="initial weight decay")
    p.add_argument("--trials", type=int, default=trials, help="outer steps (trials) to run")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage URL")
    p.add_argument("--outer", choices=("sign", "adam"), default="sign", help="outer rule")
    p.add_argument("--seed", type=int, default=0, help="episode and sampler seed")
    p.add_argument(
        "--fresh-split",
        action="store_true",
        help="seed each episode with the trial number (fresh split, as in FDS)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _study_from_args(args: argparse.Namespace, study_name: str) -> optuna.Study:
    for arg in ("steps", "trials", "windows", "batch_size"):
        if getattr(args, arg) < 1:
            raise SystemExit(
                f"error: --{arg.replace('_', '-')} must be positive, but got {getattr(args, arg)}"
            )
    task = make_task(
        args.task,
        model=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        subset=args.subset,
    )
    space = make_space(
        [h.strip() for h in args.hypers.split(",") if h.strip()],
        args.windows,
        lr_init=args.lr_init,
        momentum_init=args.momentum_init,
        weight_decay_init=args.weight_decay_init,
    )
    return run_study(
        task,
        space,
        trials=args.trials,
        storage=args.storage,
        study_name=study_name,
        outer=args.outer,
        seed=args.seed,
        fresh_split=args.fresh_split,
        progress=not args.no_progress,
    )


def _run(args: argparse.Namespace) -> int:
    _study_from_args(args, args.study)
    print(f"view it: {_dashboard_command(args.storage)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    name = args.study or "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    _study_from_args(args, name)
    print(f"view it: {_dashboard_command(args.storage)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-fmd`` console script."""
    parser = argparse.ArgumentParser(
        prog="optuna-fmd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or continue an FMD study")
    _add_study_args(run, steps=1000, trials=10, windows=5)
    run.add_argument("--study", default="optuna-fmd", help="study name (continued if it exists)")
    run.set_defaults(func=_run)
    demo = sub.add_parser("demo", help="a small FMD study (a few minutes on 2 CPU cores)")
    # The demo starts from a common but too timid schedule (lr 0.01, momentum 0.5), so the
    # outer steps have something visible to fix within a few trials.
    _add_study_args(demo, steps=1000, trials=10, windows=5, lr_init=0.01, momentum_init=0.5)
    demo.add_argument("--study", default=None, help="study name (default: demo-<date-time>)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
