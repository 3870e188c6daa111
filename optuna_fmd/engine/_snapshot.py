"""Snapshots of a running engine, so that a long run can continue after a crash, bitwise.

Every engine draws its minibatch (``problem.batch_at(t)``) and its randomness (``problem.rng(t)``)
from the step index alone, so the state of a run between two steps is small and explicit: the
training state, forward mode's tangents, and reverse mode's checkpoints (plus, in its backward
sweep, the adjoint and the per-step cotangents gathered so far). A :class:`Snapshot` holds exactly
that; resuming from it replays the remaining steps with the same inputs in the same order, so the
result equals the uninterrupted run's bit for bit.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Snapshot", "Snapshots"]

_ENGINES = ("plain", "forward", "reverse")
_PHASES = ("forward", "backward")
_FORMAT = 1


def _cpu(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().to("cpu", copy=True) for t in tensors]


@dataclass
class Snapshot:
    """Everything an engine needs to continue a run from between two of its steps.

    Tensors are held on the CPU (copies, so the run may go on changing its own); an engine that
    resumes moves them to the device of its initial state.

    Attributes:
        engine: ``"plain"``, ``"forward"`` or ``"reverse"``.
        step: Forward sweep: inner steps already done, i.e. the next step to run. Backward sweep
            of reverse mode: the step whose state ``adjoint`` belongs to (steps ``step .. T - 1``
            have been carried back; a segment boundary, ``step // checkpoint_every`` segments
            remain).
        state: The flat training state after ``step`` steps (backward sweep: the final state).
        train_loss: Training loss of the last step run (``nan`` before the first).
        n_columns: Number of hyperparameter columns of the run.
        fingerprint: Whatever the caller ties the run to (see :class:`Snapshots`).
        phase: ``"forward"`` (training) or ``"backward"`` (reverse mode's backward sweep).
        tangents: Forward mode: ``d state / d column`` of the columns active so far, one tensor
            ``(n_active, *shape)`` per state entry.
        checkpoints: Reverse mode: the states kept at steps ``0, c, 2c, ...`` below ``step``.
        checkpoint_every: Reverse mode: the segment length c (``0`` for the other engines).
        adjoint: Backward sweep: gradient of the validation loss with respect to the floating
            entries of the state at ``step``.
        h_bar: Backward sweep: cotangents of the hyperparameter vector of every step, ``(T, H)``;
            rows below ``step`` are still zero. The hypergradient is their sum per column.
        val_loss: Backward sweep: validation loss of the final state.
        val_accuracy: Backward sweep: validation accuracy of the final state.
    """

    engine: str
    step: int
    state: list[Tensor]
    train_loss: float
    n_columns: int
    fingerprint: str = ""
    phase: str = "forward"
    tangents: list[Tensor] | None = None
    checkpoints: list[list[Tensor]] = field(default_factory=list)
    checkpoint_every: int = 0
    adjoint: list[Tensor] | None = None
    h_bar: Tensor | None = None
    val_loss: float = math.nan
    val_accuracy: float = math.nan

    @property
    def progress(self) -> int:
        """Inner steps of the run's work done: ``step`` in the forward sweep; in reverse mode's
        backward sweep, the ``T`` forward steps plus the ``T - step`` carried back. Unlike
        ``step``, it only grows as a run goes on, so of two snapshots the larger is the later."""
        if self.phase == "backward" and self.h_bar is not None:
            return 2 * int(self.h_bar.shape[0]) - int(self.step)
        return int(self.step)

    def to_bytes(self) -> bytes:
        """Serialise with ``torch.save`` (tensors, lists, str, int, float and None only)."""
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "engine": self.engine,
            "step": int(self.step),
            "state": _cpu(self.state),
            "train_loss": float(self.train_loss),
            "n_columns": int(self.n_columns),
            "fingerprint": str(self.fingerprint),
            "phase": self.phase,
            "tangents": None if self.tangents is None else _cpu(self.tangents),
            "checkpoints": [_cpu(c) for c in self.checkpoints],
            "checkpoint_every": int(self.checkpoint_every),
            "adjoint": None if self.adjoint is None else _cpu(self.adjoint),
            "h_bar": None if self.h_bar is None else self.h_bar.detach().cpu(),
            "val_loss": float(self.val_loss),
            "val_accuracy": float(self.val_accuracy),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Read what :meth:`to_bytes` wrote (``torch.load`` with ``weights_only=True``)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"`data` must be bytes, but got {type(data).__name__}.")
        try:
            payload = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"`data` is not a snapshot: {err}") from err
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"`data` must be a snapshot of format {_FORMAT}, but got {got!r}.")
        fields = {k: v for k, v in payload.items() if k != "format"}
        return cls(**fields)


@dataclass
class Snapshots:
    """When an engine takes snapshots, where they go, and where a run resumes.

    Progress is counted in inner steps: plain and forward mode snapshot after every ``every``
    steps; reverse mode counts its forward sweep (steps 0 to T) and its backward sweep (T more)
    and snapshots at the first segment boundary at or after each multiple of ``every``. No
    snapshot is taken at the very end of a run (the result follows at once) nor after a step whose
    training loss diverged.

    Args:
        every: Take a snapshot after every this many inner steps.
        save: Called with each :class:`Snapshot` (e.g. write ``snapshot.to_bytes()`` somewhere
            durable). An exception raised here stops the run.
        resume: Continue from this snapshot instead of step 0. It must come from the same engine
            and the same ``fingerprint``, with the same shapes, else ``ValueError``.
        fingerprint: A string identifying the run (its task, schedules, seed, ...), written into
            every snapshot and compared with ``resume.fingerprint``.

    Example:
        >>> saved = []
        >>> snapshots = Snapshots(every=100, save=lambda s: saved.append(s.to_bytes()))
        >>> # after a crash: Snapshots(every=100, save=..., resume=Snapshot.from_bytes(saved[-1]))
    """

    every: int
    save: Callable[[Snapshot], None]
    resume: Snapshot | None = None
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"`every` must be a positive int, but got {self.every!r}.")
        if not callable(self.save):
            raise TypeError(f"`save` must be callable, but got {self.save!r}.")
        if self.resume is not None and not isinstance(self.resume, Snapshot):
            raise TypeError(
                f"`resume` must be a Snapshot or None, but got {type(self.resume).__name__}."
            )
        if not isinstance(self.fingerprint, str):
            raise TypeError(f"`fingerprint` must be a str, but got {self.fingerprint!r}.")

    def due(self, before: int, after: int) -> bool:
        """Whether progress from ``before`` to ``after`` steps passed a multiple of ``every``."""
        return after // self.every > before // self.every

    def take(self, snapshot: Snapshot) -> None:
        """Copy ``snapshot``'s tensors to the CPU, stamp it with :attr:`fingerprint` and hand
        it to ``save``."""
        snap = snapshot
        self.save(
            Snapshot(
                engine=snap.engine,
                step=snap.step,
                state=_cpu(snap.state),
                train_loss=snap.train_loss,
                n_columns=snap.n_columns,
                fingerprint=self.fingerprint,
                phase=snap.phase,
                tangents=None if snap.tangents is None else _cpu(snap.tangents),
                checkpoints=[_cpu(c) for c in snap.checkpoints],
                checkpoint_every=snap.checkpoint_every,
                adjoint=None if snap.adjoint is None else _cpu(snap.adjoint),
                h_bar=None if snap.h_bar is None else snap.h_bar.detach().to("cpu", copy=True),
                val_loss=snap.val_loss,
                val_accuracy=snap.val_accuracy,
            )
        )

    def restore(
        self,
        engine: str,
        state0: Sequence[Tensor],
        n_columns: int,
        steps: int,
        checkpoint_every: int = 0,
    ) -> Snapshot | None:
        """The resume snapshot, checked against this run, with its tensors on the run's devices.

        Raises:
            ValueError: The snapshot is for another engine, fingerprint, number of columns,
                segment length or state layout, or its step is out of range.
        """
        snap = self.resume
        if snap is None:
            return None
        _check(snap, engine, self.fingerprint, state0, n_columns, steps, checkpoint_every)

        def put(xs: Sequence[Tensor], like: Sequence[Tensor]) -> list[Tensor]:
            return [x.to(y.device, copy=True) for x, y in zip(xs, like, strict=True)]

        floats = [s for s in state0 if s.is_floating_point()]
        return Snapshot(
            engine=snap.engine,
            step=snap.step,
            state=put(snap.state, state0),
            train_loss=snap.train_loss,
            n_columns=snap.n_columns,
            fingerprint=snap.fingerprint,
            phase=snap.phase,
            tangents=None if snap.tangents is None else put(snap.tangents, state0),
            checkpoints=[put(c, state0) for c in snap.checkpoints],
            checkpoint_every=snap.checkpoint_every,
            adjoint=None if snap.adjoint is None else put(snap.adjoint, floats),
            h_bar=None if snap.h_bar is None else snap.h_bar.to(state0[0].device, copy=True),
            val_loss=snap.val_loss,
            val_accuracy=snap.val_accuracy,
        )


def _layout(tensors: Sequence[Tensor]) -> list[tuple[tuple[int, ...], torch.dtype]]:
    return [(tuple(t.shape), t.dtype) for t in tensors]


def _check(
    snap: Snapshot,
    engine: str,
    fingerprint: str,
    state0: Sequence[Tensor],
    n_columns: int,
    steps: int,
    checkpoint_every: int,
) -> None:
    def refuse(what: str, got: object, want: object) -> None:
        raise ValueError(
            f"cannot resume from this snapshot: its {what} is {got!r}, but this run's is {want!r}."
        )

    if snap.engine not in _ENGINES:
        raise ValueError(f"snapshot `engine` must be one of {_ENGINES}, but got {snap.engine!r}.")
    if snap.phase not in _PHASES or (snap.phase == "backward" and snap.engine != "reverse"):
        raise ValueError(f"snapshot `phase` {snap.phase!r} does not fit engine {snap.engine!r}.")
    if snap.engine != engine:
        refuse("engine", snap.engine, engine)
    if snap.fingerprint != fingerprint:
        raise ValueError(
            "cannot resume from this snapshot: it belongs to another run, whose task, schedules, "
            "seed, hypergradient, groups or discount differ (its fingerprint is "
            f"{snap.fingerprint!r}, but this run's is {fingerprint!r})."
        )
    if snap.n_columns != n_columns:
        refuse("number of columns", snap.n_columns, n_columns)
    if snap.checkpoint_every != checkpoint_every:
        refuse("segment length `checkpoint_every`", snap.checkpoint_every, checkpoint_every)
    if not 0 <= snap.step <= steps:
        raise ValueError(
            f"cannot resume from this snapshot: its step must be in [0, {steps}], "
            f"but got {snap.step}."
        )
    want = _layout(state0)
    if _layout(snap.state) != want:
        refuse("state layout (shape, dtype)", _layout(snap.state), want)
    if engine == "forward":
        if snap.tangents is None:
            raise ValueError("cannot resume from this snapshot: it has no tangents.")
        n = snap.tangents[0].shape[0] if snap.tangents else 0
        tangent_want = [((n, *s), d) for s, d in want]
        if _layout(snap.tangents) != tangent_want or n > n_columns:
            refuse("tangent layout (shape, dtype)", _layout(snap.tangents), tangent_want)
    if engine == "reverse":
        c = checkpoint_every
        if snap.step % c or snap.step == steps:
            refuse("step", snap.step, f"a multiple of {c} below {steps}")
        if len(snap.checkpoints) != snap.step // c:
            refuse("number of checkpoints", len(snap.checkpoints), snap.step // c)
        for i, kept in enumerate(snap.checkpoints):
            if _layout(kept) != want:
                refuse(f"checkpoint {i} layout (shape, dtype)", _layout(kept), want)
        if snap.phase == "backward":
            floats = [s for s in state0 if s.is_floating_point()]
            if snap.adjoint is None or _layout(snap.adjoint) != _layout(floats):
                got = None if snap.adjoint is None else _layout(snap.adjoint)
                refuse("adjoint layout (shape, dtype)", got, _layout(floats))
            if snap.h_bar is None or snap.h_bar.dim() != 2 or snap.h_bar.shape[0] != steps:
                shape = None if snap.h_bar is None else tuple(snap.h_bar.shape)
                refuse("shape of `h_bar`", shape, f"({steps}, H)")
