"""HypergradientObjective: an Optuna objective that trains an episode and stores its hypergradient.

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS 2021).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from ._checks import optional_positive_int
from ._imbalanced import COUNTS_ATTR
from .engine import LOSS_HYPERS, EngineOptions, make_loss_side, make_partitions, split_groups
from .episode import EpisodeResult, SnapshotOptions, run_episode
from .outer import STATE_KEY, StateView, read_view
from .space import ScheduleSpace
from .tasks import Task


def _note_class_counts(study: optuna.Study, task: Task) -> None:
    """Keep an imbalanced task's class counts on the study (the class-weight plot's legend)."""
    if COUNTS_ATTR not in study.user_attrs:
        study.set_user_attr(COUNTS_ATTR, task.class_counts(0))


__all__ = ["CHECKPOINT_KEY", "WORKER_KEY", "HypergradientObjective"]

#: Trial system attribute pointing at the trial's latest episode snapshot in the artifact store.
CHECKPOINT_KEY = "fmd:checkpoint"
#: Trial system attribute naming the process that runs the trial (host and pid).
WORKER_KEY = "fmd:worker"

SeedRule = int | str | Callable[["optuna.trial.BaseTrial"], int] | None


class HypergradientObjective:
    """An Optuna objective: train ``task`` under the trial's schedules, return the validation loss.

    Every param of the space is suggested with ``trial.suggest_float(name, low, high,
    log=...)``: one float per window of a window schedule (``lr_0`` ...), one per parameter of a
    family (``lr_peak``, ``momentum_value``), so every Optuna sampler (and the dashboard) sees
    them. The exact hypergradient ``dL_val / d(param)`` (through the whole run; a family's by
    the chain rule from its window values) is stored as ``trial.user_attrs["hypergradient"] =
    {param_name: float}`` when it was computed and is finite; :class:`~optuna_fmd.FMDSampler`
    reads it, and tells the objective (in its trial state) when a trial is a plain probe that
    needs no hypergradient. With families, ``user_attrs["schedules"]`` holds the window values
    the trial trained with. The episode's ``val_accuracy``,
    ``seconds``, ``steps``, ``seed``, ``train_loss``, ``diverged`` and ``engine`` are stored as
    user attributes too.

    A diverged episode (NaN or infinite training or validation loss; training stops at the
    first such step) returns ``float("inf")``:
    Optuna accepts infinite values for COMPLETE trials (only NaN is rejected), so the trial stays
    in the study, sorts last, and ``user_attrs["diverged"]`` is ``True`` with
    ``user_attrs["divergence"] = "training"``; no hypergradient is stored for it. An episode
    that trains fine but whose hypergradient is NaN or infinite keeps its value and is marked
    ``diverged`` with ``divergence = "hypergradient"``. :class:`~optuna_fmd.FMDSampler`
    backtracks from both with a shorter step.

    Seeds: by default (``seed=None``) every trial uses seed 0, so the objective is a
    deterministic function of the schedules (same schedules, same value; samplers compare on
    equal terms; a resumed study repeats exactly). ``seed="trial"`` uses ``trial.number``: fresh
    initial weights, minibatch order and validation split at every outer step, as in the FDS
    paper. An int fixes another seed; a callable maps the trial to a seed.

    Args:
        task: The training problem.
        space: The schedules; their names must be hyperparameters of the task's optimiser and
            their window counts at most ``task.steps``.
        hypergradient: Compute the hypergradient (``False``: plain training, for black-box
            samplers such as TPE; same parameters and value).
        seed: ``None`` (0 for every trial), an int, ``"trial"`` or a callable ``trial -> int``.
        engine: Hypergradient engine passed to :func:`~optuna_fmd.run_episode`.
        progress: Show a progress bar over each episode's inner steps.
        checkpoint_every: Snapshot the running episode (parameters, optimiser state, tangents or
            reverse-mode checkpoints, data position) every this many inner steps into
            ``artifact_store``, so that a trial retrying a killed one resumes mid-episode with
            exactly the result of an uninterrupted run (``None``: no snapshots).
        artifact_store: An Optuna artifact store (e.g.
            ``optuna.artifacts.FileSystemArtifactStore(dir)``) shared by all workers.

    Example:
        >>> import optuna, optuna_fmd as fmd
        >>> space = fmd.ScheduleSpace({"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0,
        ...                                               log=True, init=0.05)})
        >>> objective = fmd.HypergradientObjective(fmd.tasks.Digits(steps=20, batch_size=32),
        ...                                        space)
        >>> study = optuna.create_study()
        >>> study.optimize(objective, n_trials=1)
        >>> sorted(study.trials[0].user_attrs["hypergradient"])
        ['lr_0', 'lr_1']
    """

    def __init__(
        self,
        task: Task,
        space: ScheduleSpace,
        *,
        hypergradient: bool = True,
        seed: SeedRule = None,
        engine: str = "auto",
        progress: bool = False,
        checkpoint_every: int | None = None,
        artifact_store: Any = None,
    ) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"`task` must be an optuna_fmd Task, but got {type(task).__name__}.")
        if not isinstance(space, ScheduleSpace):
            raise TypeError(f"`space` must be a ScheduleSpace, but got {type(space).__name__}.")
        hypers = list(task.inner_optimizer().hypers)
        for name, schedule in space.items():
            hyper = schedule.hyper or name
            if hyper not in hypers and hyper not in LOSS_HYPERS:
                raise ValueError(
                    f"`space` schedules {hyper!r}, which is not a hyperparameter of "
                    f"optimizer={task.optimizer!r} or of the loss; they are "
                    f"{[*hypers, *LOSS_HYPERS]}."
                )
            if schedule.windows > task.steps:
                raise ValueError(
                    f"`space[{name!r}].windows` must be at most the task's steps={task.steps} "
                    f"(one step per window at least), but got {schedule.windows}."
                )
        self.groups = space.groups()
        param_groups, class_groups = split_groups(self.groups)
        if param_groups:  # every group must match some parameter of the task's model
            names = [n for n, _ in task.make_model(0).named_parameters()]
            make_partitions(names, hypers, [*hypers, *param_groups], param_groups)
        if class_groups:  # ... and every class group some class of its data
            make_loss_side(list(class_groups), class_groups, task.data().n_classes)
        if not isinstance(hypergradient, bool):
            raise TypeError(f"`hypergradient` must be a bool, but got {hypergradient!r}.")
        self.options = EngineOptions(engine=engine)  # checked here, before any trial runs
        if isinstance(seed, bool) or not (
            seed is None
            or seed == "trial"
            or (isinstance(seed, int) and seed >= 0)
            or (callable(seed) and not isinstance(seed, str))
        ):
            raise ValueError(
                "`seed` must be None, a non-negative int, 'trial' or a callable trial -> int, "
                f"but got {seed!r}."
            )
        optional_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint_every is not None and artifact_store is None:
            raise ValueError(
                "`checkpoint_every` needs an `artifact_store` to keep the snapshots in (e.g. "
                "optuna.artifacts.FileSystemArtifactStore('./artifacts')), but got None."
            )
        if artifact_store is not None and not all(
            callable(getattr(artifact_store, m, None)) for m in ("open_reader", "write", "remove")
        ):
            raise TypeError(
                "`artifact_store` must be an Optuna artifact store (open_reader, write, remove), "
                f"but got {type(artifact_store).__name__}."
            )
        self.checkpoint_every = checkpoint_every
        self.artifact_store = artifact_store
        self.task = task
        self.space = space
        self.hypergradient = hypergradient
        self.seed = seed
        self.engine = engine
        self.progress = progress

    def __repr__(self) -> str:
        return (
            f"HypergradientObjective(task={self.task!r}, space={self.space!r}, "
            f"hypergradient={self.hypergradient}, seed={self.seed!r}, engine={self.engine!r})"
        )

    def seed_for(self, trial: optuna.trial.BaseTrial) -> int:
        """The episode seed of ``trial`` under this objective's seed rule.

        With ``FMDSampler(population=M)``, member ``j`` of an outer iterate adds ``j`` to a fixed
        seed (``None`` or an int), so the M members train with M different seeds. A trial that
        retries a failed one (heartbeat) keeps the failed trial's seed.
        """
        attrs = _system_attrs(trial)
        view = read_view(attrs.get(STATE_KEY))
        member = view.member if view is not None and view.member is not None else 0
        if self.seed is None:
            return member
        if isinstance(self.seed, int):
            return self.seed + member
        if self.seed == "trial":
            number = attrs.get("failed_trial", getattr(trial, "number", 0))
            return int(number) if isinstance(number, int) and number >= 0 else 0
        assert callable(self.seed)
        out = self.seed(trial)
        if isinstance(out, bool) or not isinstance(out, int) or out < 0:
            raise ValueError(
                f"the `seed` callable must return a non-negative int, but got {out!r}."
            )
        return out

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, list[float]]:
        """Suggest every param of the space (window values, family parameters); return the
        window schedules they stand for."""
        params = {
            name: float(trial.suggest_float(name, lo, hi, log=log))
            for name, (lo, hi, log) in self.space.distributions().items()
        }
        return self.space.from_params(params)

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        schedules = self.suggest(trial)  # the sampler's claim is written by now
        study: Any = getattr(trial, "study", None)
        if self.task.imbalance is not None and study is not None:
            _note_class_counts(study, self.task)
        attrs = _system_attrs(trial)
        view = read_view(attrs.get(STATE_KEY))
        if view is not None and view.claim == "superseded":
            raise optuna.TrialPruned(
                f"trial {trial.number} retries trial {view.retry_of}, whose population "
                f"slot (iterate {view.iterate}, member {view.member}) another "
                "trial has already taken; it is not run twice."
            )
        # FMDSampler's plain probes (line search, scale search) need no hypergradient
        wants = self.hypergradient and (view is None or view.hypergradient)
        seed = self.seed_for(trial)
        storage, trial_id = getattr(trial, "storage", None), getattr(trial, "_trial_id", None)
        if storage is not None and isinstance(trial_id, int):
            storage.set_trial_system_attr(
                trial_id, WORKER_KEY, {"host": socket.gethostname(), "pid": os.getpid()}
            )
        checkpoints = _Checkpoints(self, trial, attrs, view)
        every = self.checkpoint_every if checkpoints.enabled else None
        save = checkpoints.save if checkpoints.enabled else None
        resume = checkpoints.latest()

        def episode(snapshot: bytes | None) -> EpisodeResult:
            return run_episode(
                self.task,
                schedules,
                seed=seed,
                hypergradient=wants,
                options=self.options,
                groups=self.groups or None,
                progress=self.progress,
                snapshots=SnapshotOptions(every=every, on_snapshot=save, resume=snapshot),
            )

        try:
            result = episode(None if resume is None else resume[1])
        except ValueError as err:
            if resume is None or "snapshot" not in str(err):
                raise
            warnings.warn(
                f"trial {trial.number}: the checkpoint of trial {resume[0]} does not belong to "
                f"this episode ({err}); training from the start.",
                UserWarning,
                stacklevel=2,
            )
            resume = None
            result = episode(None)
        if resume is not None:
            trial.set_user_attr("resumed_from_trial", resume[0])
            trial.set_user_attr("resumed_from_step", resume[2])
            trial.set_user_attr("resumed_from_progress", resume[3])
        checkpoints.discard()
        diverged = bool(result.diverged) or not math.isfinite(result.val_loss)
        for key, value in _figures(result, diverged).items():
            trial.set_user_attr(key, value)
        if self.space.has_families():  # the window values the family params stand for
            trial.set_user_attr("schedules", {n: list(v) for n, v in schedules.items()})
        if view is not None and view.iterate is not None:
            trial.set_user_attr("iterate", view.iterate)
            trial.set_user_attr("member", view.member or 0)
        if diverged:
            trial.set_user_attr("divergence", "training")
        else:
            hg = _flat_hypergradient(result, self.space, trial.params)
            if hg is not None:
                trial.set_user_attr("hypergradient", hg)
            elif result.hypergradient is not None:  # computed, but NaN or infinite
                trial.set_user_attr("diverged", True)
                trial.set_user_attr("divergence", "hypergradient")
        return float("inf") if diverged else float(result.val_loss)


class _Checkpoints:
    """Episode snapshots of one trial kept in an Optuna artifact store.

    The latest snapshot's artifact id is stored in the trial system attribute
    :data:`CHECKPOINT_KEY`; older ones are removed. A trial that retries a failed one (a copy made
    by ``RetryHeartbeatStaleTrialCallback``, or a population member claimed again by
    :class:`~optuna_fmd.FMDSampler`) resumes from the failed trial's latest snapshot. Storing
    never fails a trial: a store that does not work is reported by one warning.
    """

    def __init__(
        self,
        objective: HypergradientObjective,
        trial: optuna.trial.BaseTrial,
        attrs: dict[str, Any],
        view: StateView | None,
    ) -> None:
        self.store = objective.artifact_store
        self.trial = trial
        self.attrs = attrs
        self.resume = () if view is None else view.resume  # the failed trials of its slot
        self.storage = getattr(trial, "storage", None)
        self.trial_id = getattr(trial, "_trial_id", None)
        self.enabled = (
            objective.checkpoint_every is not None
            and self.store is not None
            and self.storage is not None
            and isinstance(self.trial_id, int)
        )
        self.written: list[str] = []
        self.failed = False

    def latest(self) -> tuple[int, bytes, int, int] | None:
        """(trial number, snapshot bytes, step, progress) of the most advanced usable snapshot
        to resume from (see :attr:`~optuna_fmd.engine.Snapshot.progress`: in reverse mode's
        backward sweep the step goes down while the run goes on)."""
        if self.store is None:
            return None
        pointers: list[tuple[int, dict[str, Any]]] = []
        own = self.attrs.get(CHECKPOINT_KEY)
        origin = self.attrs.get("failed_trial", getattr(self.trial, "number", -1))
        if isinstance(own, dict):
            pointers.append((int(origin) if isinstance(origin, int) else -1, own))
        study = getattr(self.trial, "study", None)
        if self.resume and study is not None:
            wanted = set(self.resume)
            for t in study.get_trials(deepcopy=False):
                pointer = t.system_attrs.get(CHECKPOINT_KEY)
                if t.number in wanted and isinstance(pointer, dict):
                    pointers.append((t.number, pointer))
        pointers.sort(key=lambda p: -_progress(p[1]))
        for number, pointer in pointers:
            artifact_id = pointer.get("artifact_id")
            if not isinstance(artifact_id, str):
                continue
            try:
                with self.store.open_reader(artifact_id) as reader:
                    data = reader.read()
            except Exception as err:  # removed or unreadable: try an older one
                warnings.warn(
                    f"trial {getattr(self.trial, 'number', '?')}: cannot read the checkpoint "
                    f"{artifact_id!r} of trial {number} ({type(err).__name__}: {err}).",
                    UserWarning,
                    stacklevel=3,
                )
                continue
            return number, data, int(pointer.get("step", 0) or 0), _progress(pointer)
        return None

    def save(self, snapshot: Any) -> None:
        if not self.enabled or self.failed:
            return
        assert self.storage is not None and isinstance(self.trial_id, int)
        try:
            data = snapshot.to_bytes()
            artifact_id = f"fmd-checkpoint-{uuid.uuid4().hex}"
            self.store.write(artifact_id, io.BytesIO(data))
            self.storage.set_trial_system_attr(
                self.trial_id,
                CHECKPOINT_KEY,
                {
                    "artifact_id": artifact_id,
                    "step": int(snapshot.step),
                    "progress": snapshot.progress,
                    "bytes": len(data),
                },
            )
        except Exception as err:
            self.failed = True
            warnings.warn(
                f"trial {getattr(self.trial, 'number', '?')}: checkpointing to the artifact "
                f"store failed ({type(err).__name__}: {err}); the episode goes on without "
                "checkpoints.",
                UserWarning,
                stacklevel=2,
            )
            return
        self.written.append(artifact_id)
        while len(self.written) > 1:
            self._remove(self.written.pop(0))

    def discard(self) -> None:
        """The episode is done: its snapshots are no longer needed."""
        for artifact_id in self.written:
            self._remove(artifact_id)
        if self.written and self.storage is not None and isinstance(self.trial_id, int):
            self.storage.set_trial_system_attr(self.trial_id, CHECKPOINT_KEY, None)
        self.written = []

    def _remove(self, artifact_id: str) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to free
            self.store.remove(artifact_id)


def _progress(pointer: dict[str, Any]) -> int:
    """A checkpoint pointer's progress (pointers written before it was stored: their step)."""
    value = pointer.get("progress", pointer.get("step", 0))
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _system_attrs(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """The trial's system attributes (read from storage for a running trial)."""
    attrs = getattr(trial, "system_attrs", None)  # FrozenTrial
    if isinstance(attrs, dict):
        return attrs
    storage, trial_id = getattr(trial, "storage", None), getattr(trial, "_trial_id", None)
    if storage is None or not isinstance(trial_id, int):
        return {}
    try:
        return dict(storage.get_trial_system_attrs(trial_id))
    except Exception:  # a storage that cannot say: no sampler state
        return {}


def _plain(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _figures(result: EpisodeResult, diverged: bool) -> dict[str, Any]:
    """The episode's figures as user attrs; ``val_class_accuracy`` (a list, one accuracy per
    class, ``None`` where not finite) only where the episode measured it."""
    out: dict[str, Any] = {
        "val_accuracy": _plain(result.val_accuracy),
        "seconds": float(result.seconds),
        "steps": int(result.steps),
        "seed": int(result.seed),
        "train_loss": _plain(result.train_loss),
        "diverged": diverged,
        "engine": str(result.engine),
    }
    if result.val_class_accuracy is not None:  # per class, on imbalanced tasks
        out["val_class_accuracy"] = [_plain(a) for a in result.val_class_accuracy]
    return out


def _flat_hypergradient(
    result: EpisodeResult, space: ScheduleSpace, params: dict[str, Any]
) -> dict[str, float] | None:
    """``{param: dL/d param}`` (chained through families), or None if absent or not finite."""
    if result.hypergradient is None:
        return None
    windows = {}
    for name, s in space.items():
        values = result.hypergradient.get(name)
        if values is None or len(values) != s.windows:
            return None
        windows[name] = [float(v) for v in values]
    out = space.chain(params, windows)
    return out if all(math.isfinite(v) for v in out.values()) else None
