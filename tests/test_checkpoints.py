"""HypergradientObjective(checkpoint_every=...): episode snapshots in the artifact store, and a
retried trial that resumes mid-episode with exactly the result of an uninterrupted one."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

import optuna_fmd as fmd
from optuna_fmd.engine import Snapshot
from optuna_fmd.objective import CHECKPOINT_KEY, WORKER_KEY, _Checkpoints
from optuna_fmd.sampler import STATE_KEY

optuna.logging.set_verbosity(optuna.logging.WARNING)
TASK = fmd.tasks.Digits(steps=40, batch_size=32)
SPACE = fmd.ScheduleSpace(
    {
        "lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.05),
        "momentum": fmd.Schedule(windows=2, low=0.0, high=0.99, init=0.9),
    }
)


class Killed(BaseException):
    """What a SIGKILL looks like from inside: the trial stops mid-episode, nothing is caught."""


class DyingStore(FileSystemArtifactStore):
    """A file store whose process dies right after writing its ``kill_at``-th snapshot."""

    def __init__(self, base: Path) -> None:
        super().__init__(str(base))
        self.kill_at: int | None = None
        self.writes = 0

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        super().write(artifact_id, content_body)
        self.writes += 1
        if self.writes == self.kill_at:
            self.kill_at = None
            raise Killed


def objective(store: FileSystemArtifactStore, **kw: object) -> fmd.HypergradientObjective:
    return fmd.HypergradientObjective(TASK, SPACE, checkpoint_every=10, artifact_store=store, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("engine", "population"), [("forward", None), ("reverse", 2)])
def test_killed_trial_is_retried_and_resumes_with_the_same_result(
    tmp_path: Path, engine: str, population: int | None
) -> None:
    plain = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign", population=population))
    plain.optimize(fmd.HypergradientObjective(TASK, SPACE, engine=engine), n_trials=3)

    store = DyingStore(tmp_path)
    obj = objective(store, engine=engine)
    study = optuna.create_study(
        sampler=fmd.FMDSampler(SPACE, outer="sign", population=population),
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    study.optimize(obj, n_trials=1)
    store.kill_at = store.writes + 2  # trial 1 dies right after its 2nd snapshot
    with pytest.raises(Killed):
        study.optimize(obj, n_trials=1)
    dead = study.trials[1]
    assert dead.state == TrialState.RUNNING  # as a killed worker leaves it
    pointer = dead.system_attrs[CHECKPOINT_KEY]
    assert pointer["step"] > 0 and (tmp_path / pointer["artifact_id"]).exists()
    assert dead.system_attrs[WORKER_KEY]["pid"] == os.getpid()
    # the heartbeat fails it; Optuna's retry callback (with a population: the sampler) reruns it
    study._storage.set_trial_state_values(dead._trial_id, TrialState.FAIL)
    if population is None:
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[1])
    study.optimize(obj, n_trials=2)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    resumed = [t for t in done if "resumed_from_step" in t.user_attrs]
    assert len(resumed) == 1
    assert resumed[0].user_attrs["resumed_from_trial"] == 1
    assert resumed[0].user_attrs["resumed_from_step"] == pointer["step"]
    assert resumed[0].user_attrs["resumed_from_progress"] == pointer["progress"]
    ref = plain.get_trials(states=(TrialState.COMPLETE,))
    assert [t.value for t in done] == [t.value for t in ref]
    assert [t.user_attrs["hypergradient"] for t in done] == [
        t.user_attrs["hypergradient"] for t in ref
    ]
    assert [t.system_attrs[STATE_KEY]["x"] for t in done] == [
        t.system_attrs[STATE_KEY]["x"] for t in ref
    ]
    # finished episodes leave no snapshot behind (the dead trial's last one stays until removed)
    assert all(t.system_attrs.get(CHECKPOINT_KEY) is None for t in done)


def test_checkpointing_does_not_change_the_result_and_cleans_up(tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path))
    a = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    a.optimize(objective(store), n_trials=2)
    b = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    b.optimize(fmd.HypergradientObjective(TASK, SPACE), n_trials=2)
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert list(tmp_path.iterdir()) == []


class BrokenStore(FileSystemArtifactStore):
    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        raise OSError("disk full")


def test_a_broken_store_never_fails_the_trial(tmp_path: Path) -> None:
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    with pytest.warns(UserWarning, match="checkpointing to the artifact store failed"):
        study.optimize(objective(BrokenStore(str(tmp_path))), n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE


def test_checkpoint_of_another_episode_is_not_used(tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path))
    other = fmd.tasks.Digits(steps=40, batch_size=16)
    snaps: list[bytes] = []
    fmd.run_episode(
        other,
        {"lr": [0.05, 0.05], "momentum": [0.9, 0.9]},
        snapshots=fmd.SnapshotOptions(every=10, on_snapshot=lambda s: snaps.append(s.to_bytes())),
    )
    store.write("foreign", io.BytesIO(snaps[1]))
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="sign"))
    study.enqueue_trial(
        {"lr_0": 0.05, "lr_1": 0.05, "momentum_0": 0.9, "momentum_1": 0.9},
    )
    trial = study.ask()
    study._storage.set_trial_system_attr(
        trial._trial_id, CHECKPOINT_KEY, {"artifact_id": "foreign", "step": 20}
    )
    study._storage.set_trial_system_attr(trial._trial_id, "failed_trial", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = objective(store)(trial)
    assert any("does not belong to this episode" in str(w.message) for w in caught)
    assert value == pytest.approx(
        fmd.run_episode(TASK, {"lr": [0.05, 0.05], "momentum": [0.9, 0.9]}).val_loss, abs=0
    )


def test_a_retry_resumes_from_the_most_advanced_snapshot_not_the_largest_step(
    tmp_path: Path,
) -> None:
    # in reverse mode's backward sweep the step goes down: step 10 there is later than step 20
    store = FileSystemArtifactStore(str(tmp_path))
    snaps: list[Snapshot] = []
    fmd.run_episode(
        TASK,
        {"lr": [0.05, 0.05], "momentum": [0.9, 0.9]},
        options=fmd.EngineOptions("reverse"),
        snapshots=fmd.SnapshotOptions(every=10, on_snapshot=snaps.append),
    )
    early = next(s for s in snaps if s.phase == "forward" and s.step >= 20)
    late = next(s for s in snaps if s.phase == "backward" and s.step < early.step)
    assert late.progress > early.progress
    failed = []
    for number, snap in ((1, early), (2, late)):
        store.write(f"snap-{number}", io.BytesIO(snap.to_bytes()))
        pointer = {"artifact_id": f"snap-{number}", "step": snap.step, "progress": snap.progress}
        failed.append(SimpleNamespace(number=number, system_attrs={CHECKPOINT_KEY: pointer}))
    study = SimpleNamespace(get_trials=lambda deepcopy: failed)
    trial = SimpleNamespace(number=3, study=study)
    owner = SimpleNamespace(artifact_store=store, checkpoint_every=10)
    found = _Checkpoints(owner, trial, {}, SimpleNamespace(resume=(1, 2))).latest()  # type: ignore[arg-type]
    assert found is not None
    assert (found[0], found[2], found[3]) == (2, late.step, late.progress)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"checkpoint_every": 0}, "`checkpoint_every` must be a positive int"),
        ({"checkpoint_every": 10}, "needs an `artifact_store`"),
        ({"artifact_store": object()}, "must be an Optuna artifact store"),
    ],
)
def test_bad_checkpoint_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        fmd.HypergradientObjective(TASK, SPACE, **kwargs)
