"""What the command line keeps with a study: the flags it was created with, checked when it is
opened again, and where its storage and artifacts live."""

from __future__ import annotations

import argparse
import os
from typing import Any

import optuna
from optuna.distributions import FloatDistribution

from ._storage import StorageError, open_storage
from .space import ScheduleSpace

__all__ = [
    "ARTIFACT_DIR",
    "CONFIG_FLAGS",
    "CONFIG_KEY",
    "add_worker_args",
    "artifact_dir",
    "check_config",
    "check_worker_flags",
    "dashboard_command",
    "default_artifact_dir",
    "open_cli_storage",
    "stored_flags",
]


def open_cli_storage(url: str, *, heartbeat: float | None = None) -> Any:
    try:
        return open_storage(url, heartbeat=heartbeat)
    except StorageError as err:
        raise SystemExit(f"error: --storage: {err}") from None


#: Study system attribute holding the flags an ``optuna-fmd run`` study was created with.
CONFIG_KEY = "fmd:config"
CONFIG_FLAGS = (
    "task",
    "model",
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


def stored_flags(storage: Any, study_name: str) -> dict[str, Any]:
    """The flags an existing ``optuna-fmd run`` study was created with (``{}``: none)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return {}
    stored = storage.get_study_system_attrs(study_id).get(CONFIG_KEY)
    return stored if isinstance(stored, dict) else {}


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


def dashboard_command(storage: str, artifact_dir: str | None = None) -> str:
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not storage.startswith(prefix + "/"):
        storage = prefix + os.path.abspath(storage[len(prefix) :])
    if artifact_dir is None:
        return f"optuna-dashboard {storage}"
    return f"optuna-dashboard {storage} --artifact-dir {os.path.abspath(artifact_dir)}"


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
