"""One training episode under given schedules: validation loss and exact hypergradient."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .engine import (
    ENGINES,
    LOSS_HYPERS,
    PLAIN,
    Choice,
    EngineOptions,
    EngineResult,
    FunctionalModel,
    HyperTable,
    InnerProblem,
    Snapshot,
    Snapshots,
    choose_engine,
    make_loss_side,
    make_partitions,
    run_hypergradient,
    split_groups,
)
from .tasks import Task

__all__ = [
    "ENGINES",
    "EpisodeResult",
    "Minibatches",
    "SnapshotOptions",
    "build_episode",
    "check_schedules",
    "check_seed",
    "class_accuracy",
    "run_episode",
]

Batch = tuple[Tensor, Tensor]
Groups = Mapping[str, tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class EpisodeResult:
    """The outcome of :func:`run_episode`.

    Attributes:
        val_loss: Mean validation loss after the last step (``inf`` if training diverged).
        val_accuracy: Validation accuracy after the last step.
        hypergradient: ``{hyper: [dL_val/d value_k for each window k]}`` in each value's own units,
            or ``None`` when not computed (or training diverged).
        steps: Inner steps run (fewer than the task's ``steps`` if training diverged).
        seconds: Wall-clock seconds of the episode.
        seed: The episode's seed.
        train_loss: Training loss of the last step.
        diverged: Whether the training loss became NaN or infinite (the episode then stops).
        engine: The engine that computed the hypergradient (``"forward"``, ``"reverse"``, ...;
            ``"none"`` without hypergradient).
        val_class_accuracy: Validation accuracy of each class, where classes matter (an
            imbalanced task, or class weights or label smoothing scheduled); else ``None``.

    On an imbalanced task (``task.imbalance``) ``val_loss`` and ``val_accuracy`` are balanced:
    the means over classes of each class's mean loss and accuracy.
    """

    val_loss: float
    val_accuracy: float
    hypergradient: dict[str, list[float]] | None
    steps: int
    seconds: float
    seed: int
    train_loss: float
    diverged: bool
    engine: str
    val_class_accuracy: tuple[float, ...] | None = None


def class_accuracy(problem: InnerProblem, state: Sequence[Tensor]) -> tuple[float, ...] | None:
    """Each class's accuracy on ``problem``'s validation batches where classes matter (a balanced
    score, class weights or label smoothing), else ``None``."""
    if not problem.balanced and problem.loss_side is None:
        return None
    return tuple(problem.class_accuracy(state))


def check_seed(seed: object) -> int:
    """``seed`` if it is a non-negative int (not a bool); otherwise one clear ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, but got {seed!r}.")
    return seed


def check_schedules(
    task: Task, schedules: Mapping[str, Sequence[float]], groups: Groups | None = None
) -> dict[str, list[float]]:
    """``schedules`` as ``{name: [float, ...]}`` after checking them against ``task``.

    Every name must be a hyperparameter of the task's optimiser, a loss-side one
    (``class_weight``, ``label_smoothing``) or a group of ``groups``, with between 1 and
    ``task.steps`` finite values; anything else raises one clear error naming the schedule, the
    rule and the value.
    """
    if not isinstance(schedules, Mapping):
        raise TypeError(
            f"`schedules` must map hyper name -> list of values, but got {schedules!r}."
        )
    hypers = [*task.inner_optimizer().hypers, *LOSS_HYPERS]
    out: dict[str, list[float]] = {}
    groups = groups or {}
    if not isinstance(groups, Mapping):
        raise TypeError(f"`groups` must map name -> (hyper, globs), but got {groups!r}.")
    for name in groups:
        if name not in schedules:
            raise ValueError(f"group `{name}` has no schedule; schedules name {list(schedules)}.")
        if name in hypers:
            raise ValueError(
                f"group `{name}` must not be named like a hyperparameter of the optimiser "
                f"({list(hypers)}); name it e.g. `{name}_head`."
            )
    for name, values in schedules.items():
        if name not in hypers and name not in groups:
            raise ValueError(
                f"schedule `{name}` is not a hyperparameter of optimizer={task.optimizer!r} "
                f"or of the loss; they are {list(hypers)}. If `{name}` is a per-layer group's "
                "schedule (e.g. from `space.from_params`), pass the space it came from: "
                "`evaluate_schedule(task, params, space=space)`, or its groups: "
                "`groups=space.groups()`."
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"schedule `{name}` must be a list of floats, but got {values!r}.")
        if not 1 <= len(values) <= task.steps:
            raise ValueError(
                f"schedule `{name}` must have between 1 and steps={task.steps} windows, "
                f"but got {len(values)}."
            )
        vals = []
        for k, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(
                    f"schedule `{name}` value {k} must be a finite float, but got {v!r}."
                )
            vals.append(float(v))
        out[name] = vals
    return out


class Minibatches:
    """Deterministic minibatches of ``(x, y)``: ``batches(t)`` is step t's batch.

    Epoch e is a permutation drawn from (seed, e), cut into ``task.batch_size`` batches (the
    last partial one dropped); the task's augmentation, if any, is drawn from (seed, t). Both
    :func:`run_episode` and :func:`~optuna_fmd.evaluate_schedule` train on these.
    """

    def __init__(self, task: Task, x: Tensor, y: Tensor, seed: int) -> None:
        self.task, self.x, self.y, self.seed = task, x, y, seed
        self.per_epoch = x.shape[0] // task.batch_size
        if self.per_epoch < 1:
            raise ValueError(
                f"`batch_size` must not exceed the training split ({x.shape[0]} examples), "
                f"but got {task.batch_size}."
            )
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 1:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 1)
            self._perms[epoch] = torch.randperm(self.x.shape[0], generator=g).to(self.x.device)
        return self._perms[epoch]

    def __call__(self, t: int) -> Batch:
        epoch, i = divmod(t, self.per_epoch)
        b = self.task.batch_size
        idx = self._perm(epoch)[i * b : (i + 1) * b]
        x = self.x[idx]
        if self.task.augmentation:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7 * t + 3)
            x = self.task.augment(x, g)
        return x, self.y[idx]


def build_episode(
    task: Task,
    schedules: Mapping[str, Sequence[float]],
    *,
    seed: int = 0,
    steps: int | None = None,
    groups: Groups | None = None,
) -> tuple[InnerProblem, HyperTable, list[Tensor]]:
    """The engine's view of an episode: (inner problem, hyperparameter table, initial state)."""
    seed = check_seed(seed)
    checked = check_schedules(task, schedules, groups)
    horizon = task.steps if steps is None else steps
    data = task.data()
    train_idx, val_idx = task.split(seed)
    train_idx, val_idx = train_idx.to(data.train_x.device), val_idx.to(data.train_x.device)
    tx, ty = data.train_x[train_idx], data.train_y[train_idx]
    vx, vy = data.train_x[val_idx], data.train_y[val_idx]
    return make_problem(task, checked, (tx, ty), (vx, vy), seed=seed, steps=horizon, groups=groups)


def make_problem(
    task: Task,
    checked: Mapping[str, list[float]],
    train: tuple[Tensor, Tensor],
    scored: tuple[Tensor, Tensor],
    *,
    seed: int,
    steps: int,
    groups: Groups | None = None,
) -> tuple[InnerProblem, HyperTable, list[Tensor]]:
    """The inner problem that trains on ``train`` and scores on ``scored`` (the validation split
    of an episode, the test set of a final evaluation), its hyperparameter table (checked
    schedules, the task's fixed values elsewhere) and its initial state."""
    vx, vy = scored
    vb = task.val_batch_size
    val_batches = [(vx[i : i + vb], vy[i : i + vb]) for i in range(0, vx.shape[0], vb)]
    module = task.make_model(seed)
    model = FunctionalModel(module, task.make_loss())
    optimizer = task.inner_optimizer()
    loss_names = [n for n in LOSS_HYPERS if n in checked]
    names = [*optimizer.hypers, *loss_names, *(groups or {})]
    param_groups, class_groups = split_groups(groups)
    partitions = None
    if param_groups:
        partitions = make_partitions(model.param_names, optimizer.hypers, names, param_groups)
    loss_side = make_loss_side(names, class_groups, task.data().n_classes)
    if loss_side is not None and getattr(task, "loss", None) is not None:
        raise ValueError(
            "class weights and label smoothing weight the cross-entropy loss, but this task "
            "has a loss of its own (`loss=`); drop one or the other."
        )
    problem = InnerProblem(
        model=model,
        optimizer=optimizer,
        batch_at=Minibatches(task, train[0], train[1], seed),
        val_batches=val_batches,
        steps=steps,
        seed=seed,
        grad_clip=task.grad_clip,
        partitions=partitions,
        loss_side=loss_side,
        balanced=task.imbalance is not None,
    )
    values: dict[str, list[float]] = {n: [v] for n, v in task.fixed_hypers().items()}
    values.update(checked)
    table = HyperTable({n: values[n] for n in names}, list(checked), steps)
    params, stats = model.initial_state(module)
    return problem, table, problem.initial_state(params, stats)


def run_episode(
    task: Task,
    schedules: Mapping[str, Sequence[float]],
    *,
    seed: int = 0,
    hypergradient: bool = True,
    options: EngineOptions | None = None,
    groups: Groups | None = None,
    progress: bool = False,
    snapshots: SnapshotOptions | None = None,
) -> EpisodeResult:
    """Train ``task`` for ``task.steps`` steps under ``schedules``; return an
    :class:`EpisodeResult`: the validation loss and its exact hypergradient per window value.

    Args:
        task: The training problem (data, model, inner optimiser, horizon).
        schedules: ``{hyper: [K window values]}``; step t of T uses window ``floor(t * K / T)``.
            Hyperparameters not given keep the task's fixed values; each group of ``groups`` is
            named here with its own values.
        seed: Seeds initial weights, validation split, minibatch order and dropout.
        hypergradient, progress: Compute the hypergradient (else train only); show a progress bar.
        options: How the engine runs (default: ``EngineOptions()``): ``engine`` is
            ``"forward"`` (cost growing with the number of columns), ``"reverse"`` (cost flat in
            it), ``"auto"`` (the cheaper by the cost model), or the references ``"bptt"`` and
            ``"fds"`` (their functions in :mod:`optuna_fmd.engine` say how each runs);
            ``forward`` (:class:`~optuna_fmd.engine.ForwardOptions`: ``chunk_size``, at most this
            many tangent columns at once; ``compile``, one compiled graph, ``None``: on CUDA
            without snapshots); ``reverse`` (:class:`~optuna_fmd.engine.ReverseOptions`: a
            checkpoint every ``checkpoint_every`` steps, or checkpoints within ``memory_budget``
            bytes; neither: every state when they fit); ``plain``
            (:class:`~optuna_fmd.engine.PlainOptions`, plain training only: hand
            ``(steps_done, val_loss)`` to ``on_validation`` every ``validate_every`` steps; raise
            ``optuna.TrialPruned`` there to prune); ``discount``, 1 (exact) or discounted
            tangents: a step's term times ``discount**k`` k steps on.
        groups: Per-layer-group schedules ``{name: (hyper, globs)}`` (``ScheduleSpace.groups()``).
        snapshots: Take and resume snapshots (:class:`SnapshotOptions`): hand a
            :class:`~optuna_fmd.engine.Snapshot` to ``on_snapshot`` about every ``every`` steps
            (keep ``snapshot.to_bytes()`` somewhere durable; raising there stops the episode);
            continue from ``resume``, a snapshot of this episode (or its bytes), bit for bit
            (same ``chunk_size`` and ``checkpoint_every``; ``"auto"`` takes the snapshot's
            engine); one of another episode (its task, schedules, seed, engine, hypergradient
            flag, groups or discount differ) raises ``ValueError`` before any training step.

    Example:
        >>> import optuna_fmd as fmd
        >>> task = fmd.tasks.Digits(steps=20, batch_size=32)
        >>> res = fmd.run_episode(task, {"lr": [0.1, 0.05]})
        >>> sorted(res.hypergradient)
        ['lr']
    """
    opts = _Options(
        hypergradient=hypergradient,
        engine=options or EngineOptions(),
        snapshots=snapshots or SnapshotOptions(),
    )
    start = time.perf_counter()
    problem, table, state0 = build_episode(task, schedules, seed=seed, groups=groups)
    choice = opts.choose(table, state0)
    kept = None
    if opts.resumable:
        fingerprint = _fingerprint(task, schedules, seed, choice.engine, opts, groups)
        kept = opts.kept(fingerprint, problem.steps)
    bar = _progress(problem.steps, opts.resume, progress)
    with bar as callback, torch.random.fork_rng(devices=[]):
        result = opts.run(problem, table, state0, choice, callback, kept)
    return _episode_result(problem, table, result, choice, seed, time.perf_counter() - start)


def _episode_result(
    problem: InnerProblem,
    table: HyperTable,
    result: EngineResult,
    choice: Choice,
    seed: int,
    seconds: float,
) -> EpisodeResult:
    """What :func:`run_episode` returns, from the engine's result."""
    return EpisodeResult(
        val_loss=result.val_loss if not result.diverged else float("inf"),
        val_accuracy=result.val_accuracy,
        hypergradient=None if result.hypergradient is None else table.split(result.hypergradient),
        steps=result.steps_done,
        seconds=seconds,
        seed=seed,
        train_loss=result.train_loss,
        diverged=result.diverged,
        engine="none" if choice is PLAIN else choice.engine,
        val_class_accuracy=None if result.diverged else class_accuracy(problem, result.state),
    )


@dataclass(frozen=True)
class SnapshotOptions:
    """An episode's snapshots (:func:`run_episode`'s ``snapshots``), checked when made.

    Args:
        every: Hand a :class:`~optuna_fmd.engine.Snapshot` to ``on_snapshot`` about every this
            many inner steps (``None``: take none; given with ``on_snapshot`` or not at all).
        on_snapshot: Called with each snapshot; keep ``snapshot.to_bytes()`` somewhere durable
            (raising there stops the episode).
        resume: A snapshot of the episode (or its bytes, read here) to continue from.

    Example:
        >>> saved = []
        >>> every_100 = SnapshotOptions(every=100, on_snapshot=saved.append)
        >>> # after a crash: run_episode(..., snapshots=SnapshotOptions(resume=saved[-1]))
    """

    every: int | None = None
    on_snapshot: Callable[[Snapshot], None] | None = None
    resume: Snapshot | bytes | None = None

    def __post_init__(self) -> None:
        every = self.every
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ValueError(f"`every` must be a positive int or None, but got {every!r}.")
        if (every is None) != (self.on_snapshot is None):
            raise ValueError(
                "`every` and `on_snapshot` must be given together, but got "
                f"every={every!r} and on_snapshot={self.on_snapshot!r}."
            )
        object.__setattr__(self, "resume", _as_snapshot(self.resume))

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot to resume from (``resume``, read from its bytes if need be)."""
        return self.resume if isinstance(self.resume, Snapshot) else None


@dataclass(frozen=True)
class _Options:
    """:func:`run_episode`'s options, checked once, before any data is loaded: the engine's
    (:class:`~optuna_fmd.engine.EngineOptions`) and the episode's own (snapshots)."""

    hypergradient: bool
    engine: EngineOptions
    snapshots: SnapshotOptions

    def __post_init__(self) -> None:
        if self.engine.plain.validate_every is not None and self.hypergradient:
            raise ValueError(
                "`validate_every` needs plain training (hypergradient=False): intermediate "
                "validation losses are for multi-fidelity baselines, not hypergradient episodes."
            )

    @property
    def resume(self) -> Snapshot | None:
        """The snapshot the episode resumes from, if any."""
        return self.snapshots.snapshot

    @property
    def resumable(self) -> bool:
        """The episode takes or resumes snapshots."""
        return self.snapshots.every is not None or self.resume is not None

    def choose(self, table: HyperTable, state0: Sequence[Tensor]) -> Choice:
        """The engine of the episode: :data:`~optuna_fmd.engine.PLAIN` without hypergradient
        (or with nothing scheduled), a resumed episode's own engine under ``"auto"``, else
        :func:`~optuna_fmd.engine.choose_engine`'s."""
        if not (self.hypergradient and table.n_columns):
            return PLAIN
        options = self.engine
        resumed = self.resume.engine if self.resume is not None else None
        if options.engine == "auto" and resumed in ("forward", "reverse"):
            # a resumed episode goes on with the engine it started with
            options = replace(options, engine=str(resumed))
        return choose_engine(table, state0, options, snapshots=self.resumable)

    def run(
        self,
        problem: InnerProblem,
        table: HyperTable,
        state0: Sequence[Tensor],
        choice: Choice,
        progress: Callable[[int, float], None] | None,
        snapshots: Snapshots | None,
    ) -> EngineResult:
        """Run the episode with the engine of ``choice`` under these options."""
        return run_hypergradient(
            problem,
            table,
            state0,
            self.engine,
            choice=choice,
            progress=progress,
            snapshots=snapshots,
        )

    def kept(self, fingerprint: str, steps: int) -> Snapshots:
        """Where the episode's snapshots go, stamped with ``fingerprint``, and the one it resumes
        from (the engine refuses one of another engine or fingerprint before its first step)."""
        return Snapshots(
            every=2 * steps if self.snapshots.every is None else self.snapshots.every,  # never
            save=self.snapshots.on_snapshot or _discard,
            resume=self.resume,
            fingerprint=fingerprint,
        )


@contextlib.contextmanager
def _progress(
    steps: int, resume: Snapshot | None, show: bool
) -> Iterator[Callable[[int, float], None] | None]:
    """A progress bar over the inner steps (``None``: no bar), closed however the run ends."""
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="episode", unit="step", leave=False)
    if resume is not None:
        bar.update(steps if resume.phase == "backward" else resume.step)

    def callback(t: int, loss: float) -> None:
        bar.update(1)
        if t % 50 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        yield callback
    finally:
        bar.close()


def _as_snapshot(resume: Snapshot | bytes | None) -> Snapshot | None:
    if resume is None or isinstance(resume, Snapshot):
        return resume
    if isinstance(resume, (bytes, bytearray, memoryview)):
        return Snapshot.from_bytes(bytes(resume))
    raise TypeError(
        f"`resume` must be a Snapshot, its bytes or None, but got {type(resume).__name__}."
    )


def _discard(snapshot: Snapshot) -> None:
    pass


def _fingerprint(
    task: Task,
    schedules: Mapping[str, Sequence[float]],
    seed: int,
    engine: str,
    opts: _Options,
    groups: Groups | None,
) -> str:
    """SHA-1 of what makes an episode: task (its dataset location aside), schedules, seed, engine
    actually used, hypergradient flag, groups and (when not 1) the discount."""
    if dataclasses.is_dataclass(task):
        shown = [f for f in dataclasses.fields(task) if f.repr and f.name != "root"]
        described = ", ".join(f"{f.name}={getattr(task, f.name)!r}" for f in shown)
        task_repr = f"{type(task).__name__}({described})"
    else:
        task_repr = repr(task)
    spec = {
        "task": task_repr,
        "schedules": {n: [float(v) for v in vals] for n, vals in schedules.items()},
        "seed": seed,
        "engine": engine,
        "hypergradient": bool(opts.hypergradient),
        "groups": {n: [h, list(globs)] for n, (h, globs) in (groups or {}).items()},
    }
    if opts.engine.discount != 1.0:
        spec["discount"] = opts.engine.discount
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()
