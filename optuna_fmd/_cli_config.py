"""What the command line keeps with a study: the flags it was created with (and the space they
name), checked when it is opened again, and where its storage and artifacts live."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import FloatDistribution

from ._storage import StorageError, open_storage
from .space import DEFAULT_BOUNDS, ScheduleSpace, default_family_space, default_space

__all__ = [
    "ADDED_FLAGS",
    "ARTIFACT_DIR",
    "CONFIG_FLAGS",
    "CONFIG_KEY",
    "SPACE_KINDS",
    "absolute_storage",
    "add_worker_args",
    "artifact_dir",
    "check_config",
    "check_worker_flags",
    "dashboard_argv",
    "dashboard_command",
    "default_artifact_dir",
    "default_hypers",
    "default_init",
    "make_space",
    "open_cli_storage",
    "report_argv",
    "resolve_defaults",
    "stored_flags",
    "stored_space",
]


def open_cli_storage(url: str, *, heartbeat: float | None = None) -> Any:
    try:
        return open_storage(url, heartbeat=heartbeat)
    except StorageError as err:
        raise SystemExit(f"error: --storage: {err}") from None


def make_space(
    hypers: Sequence[str],
    windows: int,
    *,
    lr_init: float | None = None,
    momentum_init: float = 0.9,
    weight_decay_init: float | None = None,
    kind: str = "family",
    optimizer: str = "sgd",
) -> ScheduleSpace:
    """The search space of ``optimizer`` over ``hypers``, bounds and starts from
    :data:`optuna_fmd.space.DEFAULT_BOUNDS` (SGD: lr in [1e-3, 1] (log), momentum in [0, 0.99],
    weight decay in [0, 1e-2]); ``lr_init``, ``momentum_init`` and ``weight_decay_init``
    replace the starts of the hypers the space has (``None``: the optimiser's default).

    ``kind="family"`` (the default): the lr as a cosine with warm-up times ``windows``
    per-window corrections, every other hyper as one constant
    (:func:`optuna_fmd.space.default_family_space`); ``kind="windows"``: ``windows`` free
    values per hyper (:func:`optuna_fmd.space.default_space`).
    """
    if optimizer not in DEFAULT_BOUNDS:
        raise ValueError(
            f"`--optimizer` must be one with a default search space, {list(DEFAULT_BOUNDS)}, "
            f"but got {optimizer!r}; from Python, give FMDSampler a ScheduleSpace of your own."
        )
    known = list(DEFAULT_BOUNDS[optimizer])
    unknown = [h for h in hypers if h not in known]
    if unknown or not hypers:
        raise ValueError(
            f"`--hypers` must be a comma-separated subset of {known} (--optimizer {optimizer}), "
            f"but got {','.join(hypers)!r}."
        )
    if kind not in SPACE_KINDS:
        raise ValueError(f"`--space` must be one of {SPACE_KINDS}, but got {kind!r}.")
    given = {"lr": lr_init, "momentum": momentum_init, "weight_decay": weight_decay_init}
    init = {h: v for h, v in given.items() if h in hypers and v is not None}
    for hyper, value in init.items():
        low, high = DEFAULT_BOUNDS[optimizer][hyper][:2]
        if not low <= value <= high:
            raise ValueError(
                f"`--{hyper.replace('_', '-')}-init` must lie in [{low:g}, {high:g}] (the "
                f"search range of {hyper} for --optimizer {optimizer}), but got {value:g}."
            )
    build = default_space if kind == "windows" else default_family_space
    return build(optimizer, windows, hypers=list(hypers), init=init)


def default_hypers(optimizer: str) -> str:
    """``--hypers`` when it is not given: every hyperparameter of ``optimizer``'s default space
    (``"lr,momentum,weight_decay"`` for SGD)."""
    return ",".join(DEFAULT_BOUNDS.get(optimizer, {}))


def default_init(optimizer: str, hyper: str) -> float | None:
    """The start of ``hyper`` in ``optimizer``'s default space (``None``: it has none)."""
    bounds = DEFAULT_BOUNDS.get(optimizer, {}).get(hyper)
    return None if bounds is None else bounds[3]


#: What ``--space`` may name.
SPACE_KINDS = ("family", "windows")

#: Study system attribute holding the flags an ``optuna-fmd run`` study was created with.
CONFIG_KEY = "fmd:config"
CONFIG_FLAGS = (
    "task",
    "model",
    "optimizer",
    "steps",
    "batch_size",
    "subset",
    "windows",
    "hypers",
    "lr_init",
    "momentum_init",
    "weight_decay_init",
    "space",
    "outer",
    "seed",
    "fresh_split",
    "population",
)


#: The value of a flag added since a study was stored, as such a study ran with it.
ADDED_FLAGS = {"optimizer": "sgd"}


def stored_flags(storage: Any, study_name: str) -> dict[str, Any]:
    """The flags an existing ``optuna-fmd run`` study was created with (``{}``: none); a flag
    added since it was stored has the value the study ran with (:data:`ADDED_FLAGS`)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return {}
    stored = storage.get_study_system_attrs(study_id).get(CONFIG_KEY)
    return {**ADDED_FLAGS, **stored} if isinstance(stored, dict) else {}


def check_config(study: optuna.Study, config: dict[str, Any], space: ScheduleSpace) -> None:
    """Store the flags on a new study; refuse flags that disagree with an existing one."""
    stored = stored_flags(study._storage, study.study_name)
    if stored:
        differ = [k for k in CONFIG_FLAGS if stored.get(k) != config.get(k)]
        if differ:
            was = ", ".join(f"--{k.replace('_', '-')} {stored.get(k)!r}" for k in differ)
            now = ", ".join(f"--{k.replace('_', '-')} {config.get(k)!r}" for k in differ)
            raise SystemExit(
                f"error: study {study.study_name!r} was created with {was}, but these flags say "
                f"{now}; its trials would not be comparable. Use the same flags (or "
                "`optuna-fmd worker`, which reads them from the study), or another --study."
            )
        return
    dists = space_distributions(space)
    for trial in study.get_trials(deepcopy=False):
        clash = [n for n, d in trial.distributions.items() if n in dists and d != dists[n]]
        missing = [n for n in dists if trial.params and n not in trial.params]
        if clash or missing:
            raise SystemExit(
                f"error: study {study.study_name!r} holds trials searched over another space "
                f"(trial {trial.number}: {'different ranges for ' if clash else 'no '}"
                f"{(clash or missing)[:4]}); use another --study."
            )
    study._storage.set_study_system_attr(study._study_id, CONFIG_KEY, config)


def space_distributions(space: ScheduleSpace) -> dict[str, Any]:
    """The Optuna distribution of every trial param of ``space``."""
    return {
        name: FloatDistribution(lo, hi, log=log)
        for name, (lo, hi, log) in space.distributions().items()
    }


def absolute_storage(storage: str) -> str:
    """``storage`` as it reads from any directory: a relative SQLite path made absolute."""
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not storage.startswith(prefix + "/"):
        return prefix + os.path.abspath(storage[len(prefix) :])
    return storage


def dashboard_argv(storage: str, artifact_dir: str | None = None) -> list[str]:
    """The optuna-dashboard command that shows ``storage`` (and its schedule images)."""
    argv = ["optuna-dashboard", absolute_storage(storage)]
    return (
        argv if artifact_dir is None else [*argv, "--artifact-dir", os.path.abspath(artifact_dir)]
    )


def report_argv(storage: str, study_name: str) -> list[str]:
    """The ``optuna-fmd report`` command of study ``study_name`` in ``storage``."""
    return ["optuna-fmd", "report", "--storage", absolute_storage(storage), "--study", study_name]


def dashboard_command(storage: str, artifact_dir: str | None = None) -> str:
    return shlex.join(dashboard_argv(storage, artifact_dir))


#: Directory of the schedule images (optuna-dashboard artifacts), next to a SQLite file.
ARTIFACT_DIR = "optuna-fmd-artifacts"


def default_artifact_dir(storage: str) -> str:
    """``optuna-fmd-artifacts`` next to a SQLite or journal file, else in the working directory."""
    for prefix in ("sqlite:///", "journal:"):
        path = storage[len(prefix) :].split("?")[0] if storage.startswith(prefix) else ""
        if path and path != ":memory:":
            return os.path.join(os.path.dirname(os.path.abspath(path)), ARTIFACT_DIR)
    return os.path.abspath(ARTIFACT_DIR)


def artifact_dir(args: argparse.Namespace) -> str | None:
    if getattr(args, "no_artifacts", False):
        return None
    return getattr(args, "artifact_dir", None) or default_artifact_dir(args.storage)


def add_worker_args(p: argparse.ArgumentParser) -> None:
    """The flags of artifacts, mid-episode checkpoints and heartbeats (``run`` and ``worker``)."""
    p.add_argument(
        "--artifact-dir",
        default=None,
        help=f"where each trial's schedule image goes, for optuna-dashboard (default: "
        f"{ARTIFACT_DIR}/ next to a SQLite or journal file, else in the working directory)",
    )
    p.add_argument(
        "--no-artifacts",
        action="store_true",
        help="no schedule images or dashboard figures",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="snapshot each episode every this many inner steps into the artifact dir (shared "
        "by all workers), so a retried trial resumes mid-episode",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="seconds between heartbeats of a running trial (RDB storages): a killed worker's "
        "trial is failed and its slot run again",
    )


def check_worker_flags(args: argparse.Namespace) -> None:
    """Refuse a non-positive ``--heartbeat`` or ``--checkpoint-every`` before any work."""
    if args.heartbeat is not None and not args.heartbeat > 0:
        raise SystemExit(f"error: --heartbeat must be positive, but got {args.heartbeat}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise SystemExit(
            f"error: --checkpoint-every must be positive, but got {args.checkpoint_every}"
        )


def resolve_defaults(args: argparse.Namespace) -> None:
    """Fill in the flags whose default depends on ``--optimizer`` (``--hypers``, ``--lr-init``,
    ``--weight-decay-init``), so that a study stores the values it ran with."""
    if args.hypers is None:
        args.hypers = default_hypers(args.optimizer)
    if args.lr_init is None:
        args.lr_init = default_init(args.optimizer, "lr")
    if args.weight_decay_init is None:
        args.weight_decay_init = default_init(args.optimizer, "weight_decay")


def stored_space(storage: Any, study_name: str) -> ScheduleSpace | None:
    """The space of a study made by ``optuna-fmd run``, from its stored flags (``None``: not
    such a study, or flags that no longer make a space)."""
    config = stored_flags(storage, study_name)
    try:
        return make_space(
            [h.strip() for h in str(config["hypers"]).split(",") if h.strip()],
            int(config["windows"]),
            lr_init=float(config["lr_init"]),
            momentum_init=float(config["momentum_init"]),
            weight_decay_init=float(config["weight_decay_init"]),
            kind=str(config["space"]),
            optimizer=str(config["optimizer"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
