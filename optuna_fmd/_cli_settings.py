"""The settings of a study the command line runs (:class:`StudySettings`), grouped as the flags
set them: where the study lives, how it runs, where its files go. The flags are checked where
they enter (the command line's checks); these records hold the checked values."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ._cli_config import CONFIG_FLAGS, artifact_dir, default_artifact_dir
from ._cli_console import progress_wanted

__all__ = ["RunSettings", "StudyFiles", "StudyLocation", "StudySettings", "settings_from_args"]


@dataclass(frozen=True)
class StudyLocation:
    """Where a study lives: the storage URL (as printed), the study's name, and the seconds
    between heartbeats of a running trial (``None``: none; RDB storages)."""

    storage: str
    name: str
    heartbeat: float | None = None


@dataclass(frozen=True)
class RunSettings:
    """How a study runs.

    Args:
        trials: Outer steps to run now (with ``total``, ignored).
        total: Stop once the study holds this many COMPLETE trials (``None``: after ``trials``).
        outer: The outer rule's name (:func:`~optuna_fmd.outer.rule_names`).
        seed: The episodes' and the sampler's seed.
        population: Seeds per outer iterate (``None``: the sampler's default).
        fresh_split: Seed each episode with its trial's number instead of ``seed``.
        progress: Show progress bars.
    """

    trials: int
    total: int | None = None
    outer: str = "search"
    seed: int = 0
    population: int | None = None
    fresh_split: bool = False
    progress: bool = True

    @property
    def episode_seed(self) -> int | str:
        """The objective's seed: ``"trial"`` with ``fresh_split``, else ``seed``."""
        return "trial" if self.fresh_split else self.seed


@dataclass(frozen=True)
class StudyFiles:
    """Where a study's files go: optuna-dashboard's figures in ``artifact_dir`` (``None``:
    none), and a snapshot of each episode every ``checkpoint_every`` inner steps (``None``:
    none) in ``checkpoint_dir`` (``None``: ``optuna-fmd-artifacts`` in the working
    directory)."""

    artifact_dir: str | None = None
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class StudySettings:
    """A study's settings, passed whole to :func:`optuna_fmd.cli.run_study`.

    Args:
        location: Where the study lives.
        run: How it runs.
        files: Where its files go (default: no figures, no checkpoints).
        config: The flags stored with a new study and compared with an existing one's
            (``None``: neither).

    Example:
        >>> settings = StudySettings(StudyLocation("sqlite:///fmd.db", "digits"), RunSettings(8))
    """

    location: StudyLocation
    run: RunSettings
    files: StudyFiles = field(default_factory=StudyFiles)
    config: dict[str, Any] | None = None


def settings_from_args(
    args: argparse.Namespace, study_name: str, *, total: int | None = None
) -> StudySettings:
    """The settings that checked flags ``args`` give study ``study_name`` (``total``: a
    worker's ``--total``)."""
    return StudySettings(
        location=StudyLocation(args.storage, study_name, heartbeat=args.heartbeat),
        run=RunSettings(
            trials=args.trials,
            total=total,
            outer=args.outer,
            seed=args.seed,
            population=args.population,
            fresh_split=args.fresh_split,
            progress=progress_wanted(args.no_progress),
        ),
        files=StudyFiles(
            artifact_dir=artifact_dir(args),
            checkpoint_every=args.checkpoint_every,
            checkpoint_dir=args.artifact_dir or default_artifact_dir(args.storage),
        ),
        config={k: getattr(args, k) for k in CONFIG_FLAGS},
    )
