"""Checkpointed reverse mode: exact hypergradients whose cost per step does not grow with N.

Forward mode (:func:`~optuna_fmd.engine.run_forward`) carries one tangent per hyperparameter
column, so its cost per step grows with the number of columns N. Reverse mode carries one adjoint
(the size of the training state) backwards instead, whatever N is; its price is memory, because
every step's state is needed again on the way back. Checkpointing (one level of Griewank &
Walther's idea) trades that memory for recomputation:

1. Train forwards, keeping the flat state every ``c`` steps (the checkpoints) and the states of the
   current segment of ``c`` steps.
2. Take the gradient of the validation loss with respect to the final state: the adjoint.
3. Walk the segments backwards. Recompute a segment from its checkpoint (the states of the last
   segment are still held from step 1), with the very same minibatches (``problem.batch_at(t)``)
   and dropout seeds (``problem.rng(t)``), then carry the adjoint back through each step: record
   the step (:meth:`~._problem.InnerProblem.record_step`: its gradient taken with
   ``create_graph=True``), then :meth:`~._problem.InnerProblem.step_vjp`: the vjp of the
   optimiser's update (SGD's in closed form), and one reverse pass through the recorded gradient,
   a Hessian-vector product with the adjoint. The cotangent of the step's hyperparameter vector
   belongs to the window active at that step; all steps are scattered into their columns at the
   end with one ``index_add_`` per hyperparameter.

When every state fits the memory budget and so do the records of every step (measured on the
first one: minibatch, gradients and the tensors their graph saved), step 1 records every step
instead of keeping its state, and step 3 only runs the reverse passes: no step is run twice.

Memory: ``ceil(T / c)`` checkpoints plus ``c - 1`` segment states, least (about ``2 sqrt(T)``
states) at the default ``c = ceil(sqrt(T))``; or T records. Compute per step, independent of N:
the forward step, about one recomputed step, the recorded step and its reverse pass; with
records kept, the recorded step (the forward step) and its reverse pass only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._common import (
    EngineResult,
    Progress,
    check_discount,
    discounted,
    diverged,
    state_nbytes,
)
from ._problem import HyperTable, InnerProblem, StepRecord
from ._snapshot import Snapshot, Snapshots

__all__ = ["CheckpointPlan", "plan_checkpoints", "run_reverse"]


@dataclass(frozen=True)
class CheckpointPlan:
    """How :func:`run_reverse` splits a run into segments, and what that costs.

    Attributes:
        every: Segment length c: a checkpoint is kept at steps 0, c, 2c, ...
        checkpoints: Number of checkpoints, ``ceil(T / c)`` (the initial state included).
        stored_states: States held at the peak: checkpoints plus ``min(c, T) - 1`` segment states.
        stored_bytes: ``stored_states`` times the bytes of one flat state.
        recomputed_steps: Training steps run a second time on the way back.
    """

    every: int
    checkpoints: int
    stored_states: int
    stored_bytes: int
    recomputed_steps: int


def _plan(steps: int, every: int, state_bytes: int) -> CheckpointPlan:
    c = min(every, steps)
    n = -(-steps // c)
    stored = n + c - 1
    # every segment but the last is recomputed (its first state is the checkpoint itself)
    return CheckpointPlan(c, n, stored, stored * state_bytes, (n - 1) * (c - 1))


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int or None, but got {value!r}.")
    return value


def plan_checkpoints(
    steps: int,
    state_bytes: int,
    *,
    checkpoint_every: int | None = None,
    memory_budget: int | float | None = None,
) -> CheckpointPlan:
    """Choose the segment length of :func:`run_reverse` for a ``steps``-long run.

    Args:
        steps: Horizon T.
        state_bytes: Bytes of one flat training state (params + optimiser state + statistics).
        checkpoint_every: Segment length c, used as given (values above T mean one segment).
        memory_budget: Bytes the stored states (checkpoints and one segment's states) may take;
            the plan that fits with the least recomputation is chosen. The working set on top of
            it (the current state, its adjoint and one step's autograd graph) is not counted.

    Returns:
        The :class:`CheckpointPlan`. With neither argument, ``c = ceil(sqrt(T))``: the least
        memory, about ``2 sqrt(T)`` states.

    Example:
        >>> plan_checkpoints(100, 1000).every, plan_checkpoints(100, 1000).stored_states
        (10, 19)
        >>> plan_checkpoints(100, 1000, memory_budget=10**6).every  # everything fits: no recompute
        1
    """
    steps = _positive_int("steps", steps)
    if isinstance(state_bytes, bool) or not isinstance(state_bytes, int) or state_bytes < 0:
        raise ValueError(f"`state_bytes` must be a non-negative int, but got {state_bytes!r}.")
    if checkpoint_every is not None and memory_budget is not None:
        raise ValueError(
            "pass at most one of `checkpoint_every` and `memory_budget`, but got "
            f"checkpoint_every={checkpoint_every!r} and memory_budget={memory_budget!r}."
        )
    if checkpoint_every is not None:
        return _plan(steps, _positive_int("checkpoint_every", checkpoint_every), state_bytes)
    if memory_budget is None:
        return _plan(steps, math.isqrt(steps - 1) + 1, state_bytes)
    if (
        isinstance(memory_budget, bool)
        or not isinstance(memory_budget, (int, float))
        or not memory_budget > 0
        or math.isnan(memory_budget)
    ):
        raise ValueError(
            "`memory_budget` must be a positive number of bytes or None, "
            f"but got {memory_budget!r}."
        )
    plans = [_plan(steps, c, state_bytes) for c in range(1, steps + 1)]
    fitting = [p for p in plans if p.stored_bytes <= memory_budget]
    if not fitting:
        least = min(plans, key=lambda p: (p.stored_bytes, p.recomputed_steps))
        raise ValueError(
            f"`memory_budget` must be at least {least.stored_bytes} bytes for T={steps} steps "
            f"(the fewest stored states, {least.stored_states} of {state_bytes} bytes each, at "
            f"checkpoint_every={least.every}), but got {memory_budget!r}."
        )
    return min(fitting, key=lambda p: (p.recomputed_steps, p.stored_bytes, p.every))


def run_reverse(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    checkpoint_every: int | None = None,
    memory_budget: int | float | None = None,
    progress: Progress | None = None,
    snapshots: Snapshots | None = None,
    discount: float = 1.0,
) -> EngineResult:
    """Train, then return the exact hypergradient per column by checkpointed reverse mode.

    The cost per step does not depend on the number of columns N (one vjp of the training step
    and about one recomputed step), and memory is ``ceil(T / c) + c - 1`` flat states
    (:func:`plan_checkpoints`), not forward mode's ``N + 1``. The result equals
    :func:`~optuna_fmd.engine.run_forward`'s and :func:`~optuna_fmd.engine.run_bptt`'s up to
    rounding, for any ``checkpoint_every``.

    Args:
        problem: The inner problem (model, optimiser, data).
        table: Hyperparameter values and the differentiated columns.
        state0: Initial flat state (see :class:`InnerProblem`).
        checkpoint_every: Keep a checkpoint every this many steps (``1`` or T and above: every
            state is kept, nothing recomputed).
        memory_budget: Instead of ``checkpoint_every``: bytes the stored states may take (the
            segment length that fits with the least recomputation; when the records of every
            step fit too, without snapshots, no step is run again).
        progress: Called as ``progress(t, train_loss)`` after each step of the forward pass.
        snapshots: Save a :class:`~optuna_fmd.engine.Snapshot` at segment boundaries about every
            ``snapshots.every`` steps of either sweep, and resume from ``snapshots.resume``,
            bitwise as if never interrupted (with the snapshot's segment length).
        discount: Discounted tangents (:func:`~._common.discounted`; 1: exact).

    Returns:
        An :class:`EngineResult`: ``hypergradient`` has one entry per column of ``table``
        (``None`` if a NaN or infinite training loss stopped the run, as in forward mode).

    Example:
        >>> import optuna_fmd as fmd
        >>> from optuna_fmd.episode import build_episode
        >>> task = fmd.tasks.Digits(steps=20, batch_size=16)
        >>> problem, table, state0 = build_episode(task, {"lr": [0.1, 0.05]})
        >>> run_reverse(problem, table, state0, checkpoint_every=5).hypergradient.shape
        torch.Size([2])
    """
    steps = problem.steps
    discount = check_discount(discount)
    state = [s.detach() for s in state0]
    plan = plan_checkpoints(
        steps,
        state_nbytes(state),
        checkpoint_every=checkpoint_every,
        memory_budget=memory_budget,
    )
    snap = None
    if snapshots is not None:
        snap = snapshots.restore(
            "reverse", state, table.n_columns, steps, checkpoint_every=plan.every
        )
    sweep = _ForwardSweep(problem, table, plan.every, snapshots)
    if snap is not None and snap.phase == "backward":
        return _backward_sweep(problem, table, plan, snap, snapshots, discount)
    if snap is not None:
        sweep.resume(snap)
    else:
        sweep.state = state
        if snapshots is None and _may_record(table, state, plan, memory_budget):
            sweep.record_budget = memory_budget
    result = sweep.run(progress)
    if result is not None:  # diverged
        return result
    # 2. The adjoint of the final state: the gradient of the validation loss.
    val_loss, val_acc, adjoint = _final_adjoint(problem, sweep.state)
    if sweep.records is not None:  # every step recorded: back through the records
        return _back_through_records(problem, table, sweep, adjoint, discount, (val_loss, val_acc))
    end = sweep.end(adjoint, val_loss, val_acc)
    return _backward_sweep(
        problem, table, plan, end, snapshots, discount, segment=sweep.segment, seen=sweep.seen
    )


def _may_record(
    table: HyperTable,
    state: Sequence[Tensor],
    plan: CheckpointPlan,
    memory_budget: int | float | None,
) -> bool:
    """Whether the forward sweep may keep every step's record within ``memory_budget``: a budget
    that holds every state (no step recomputed), columns to differentiate, a float state."""
    return (
        memory_budget is not None
        and plan.recomputed_steps == 0
        and table.n_columns > 0
        and all(s.is_floating_point() for s in state)
    )


def _back_through_records(
    problem: InnerProblem,
    table: HyperTable,
    sweep: _ForwardSweep,
    adjoint: list[Tensor],
    discount: float,
    validation: tuple[float, float],
) -> EngineResult:
    """The backward sweep when the forward sweep kept every step's record: one vjp per step,
    latest first, nothing run again; ``validation``: the loss and accuracy."""
    steps = problem.steps
    h_bar = sweep.state[0].new_zeros((steps, len(table.names)))
    records = sweep.records
    assert records is not None
    for t in range(steps - 1, -1, -1):
        adjoint, h_bar[t] = problem.step_vjp(records.pop(), adjoint)
        adjoint = discounted(adjoint, discount)
    hg = _scatter_columns(table, h_bar)
    return EngineResult(sweep.state, *validation, hg, steps, False, sweep.loss_value)


class _ForwardSweep:
    """Step 1 of :func:`run_reverse`: train forwards, keeping the state every ``c`` steps (the
    checkpoints) and the states of the current segment of ``c`` steps."""

    def __init__(
        self, problem: InnerProblem, table: HyperTable, c: int, snapshots: Snapshots | None
    ) -> None:
        self.problem, self.table, self.c, self.snapshots = problem, table, c, snapshots
        self.state: list[Tensor] = []
        self.checkpoints: list[list[Tensor]] = []
        self.segment: list[list[Tensor]] = []
        self.loss_value = float("nan")
        self.first = self.seen = 0  # seen: progress (both sweeps) at the last segment boundary
        #: Record every step (:meth:`InnerProblem.record_step`) if they fit this many bytes.
        self.record_budget: int | float | None = None
        self.records: list[StepRecord] | None = None

    def resume(self, snap: Snapshot) -> None:
        self.first = self.seen = snap.step
        self.state, self.loss_value, self.checkpoints = (
            snap.state,
            snap.train_loss,
            snap.checkpoints,
        )

    def end(self, adjoint: list[Tensor], val_loss: float, val_acc: float) -> Snapshot:
        """The episode at the end of this sweep, as the backward sweep starts from it."""
        return Snapshot(
            engine="reverse",
            step=self.problem.steps,
            state=self.state,
            train_loss=self.loss_value,
            n_columns=self.table.n_columns,
            fingerprint="",
            phase="backward",
            checkpoints=self.checkpoints,
            checkpoint_every=self.c,
            adjoint=adjoint,
            h_bar=None,
            val_loss=val_loss,
            val_accuracy=val_acc,
        )

    def run(self, progress: Progress | None) -> EngineResult | None:
        """Train to the end; an :class:`EngineResult` without hypergradient if it diverged."""
        problem, table, c = self.problem, self.table, self.c
        with torch.no_grad():
            for t in range(self.first, problem.steps):
                if self.records is None:
                    if t % c == 0:
                        self._boundary(t)
                    else:
                        self.segment.append(self.state)
                h = table.values_at(t, self.state[0])
                batch = problem.batch_at(t)
                if self.records is not None or (t == 0 and self.record_budget is not None):
                    with problem.rng(t):
                        record, loss = problem.record_step(self.state, h, t, batch)
                    self.state = record.new_state
                    if self.records is not None:
                        self.records.append(record)
                    elif self._records_fit(record):
                        self.records, self.checkpoints, self.segment = [record], [], []
                else:
                    with problem.rng(t):
                        self.state, loss = problem.step_plain(self.state, h, t, batch)
                self.loss_value = float(loss)
                if progress is not None:
                    progress(t, self.loss_value)
                if diverged(self.loss_value):
                    val, acc = problem.val_loss(self.state)
                    return EngineResult(
                        self.state, float(val), float(acc), None, t + 1, True, self.loss_value
                    )
        return None

    def _records_fit(self, record: StepRecord) -> bool:
        """Whether a record like ``record`` for every step fits :attr:`record_budget`."""
        assert self.record_budget is not None
        per_step = state_nbytes(record.state) + record_nbytes(record)
        return self.problem.steps * per_step <= self.record_budget

    def _boundary(self, t: int) -> None:
        """A segment starts at step ``t``: maybe a snapshot, then a new checkpoint."""
        snapshots = self.snapshots
        if snapshots is not None and t > self.first and snapshots.due(self.seen, t):
            snapshots.take(
                Snapshot(
                    "reverse",
                    t,
                    self.state,
                    self.loss_value,
                    self.table.n_columns,
                    checkpoints=self.checkpoints,
                    checkpoint_every=self.c,
                )
            )
        self.seen = t
        self.checkpoints.append(self.state)
        self.segment = [self.state]


def _backward_sweep(
    problem: InnerProblem,
    table: HyperTable,
    plan: CheckpointPlan,
    at: Snapshot,
    snapshots: Snapshots | None,
    discount: float,
    segment: list[list[Tensor]] | None = None,
    seen: int | None = None,
) -> EngineResult:
    """Step 3 of :func:`run_reverse`: walk the segments backwards from ``at`` (the end of the
    forward sweep, or a backward-phase snapshot), one vjp per step; ``segment``: the states of
    the last segment, still held from the forward sweep; ``seen``: the progress (steps of both
    sweeps) at the last snapshot boundary."""
    steps, c = problem.steps, plan.every
    result_state, loss_value = at.state, at.train_loss
    val_loss, val_acc = at.val_loss, at.val_accuracy
    if table.n_columns == 0:
        hg = result_state[0].new_zeros(0)
        return EngineResult(result_state, val_loss, val_acc, hg, steps, False, loss_value)
    assert at.adjoint is not None
    adjoint = list(at.adjoint)
    checkpoints = list(at.checkpoints)
    float_idx = [i for i, s in enumerate(result_state) if s.is_floating_point()]
    h_bar = (
        at.h_bar if at.h_bar is not None else result_state[0].new_zeros((steps, len(table.names)))
    )
    last = len(checkpoints) - 1 if at.step == steps else at.step // c - 1
    seen = 2 * steps - at.step if seen is None else seen
    step_vjp = _make_step_vjp(problem, float_idx, len(result_state))
    for index in range(last, -1, -1):
        start = index * c
        stop = min(start + c, steps)
        if segment is None or index < plan.checkpoints - 1:
            segment = _recompute(problem, table, checkpoints[index], start, stop)
        checkpoints[index] = []
        for t in range(stop - 1, start - 1, -1):
            s_t = segment.pop()
            adjoint, h_bar[t] = step_vjp(s_t, table.values_at(t, s_t[0]), t, adjoint)
            adjoint = discounted(adjoint, discount)
        segment = None
        if snapshots is not None and start > 0 and snapshots.due(seen, 2 * steps - start):
            snapshots.take(
                Snapshot(
                    "reverse",
                    start,
                    result_state,
                    loss_value,
                    table.n_columns,
                    phase="backward",
                    checkpoints=checkpoints[:index],
                    checkpoint_every=c,
                    adjoint=adjoint,
                    h_bar=h_bar,
                    val_loss=val_loss,
                    val_accuracy=val_acc,
                )
            )
        seen = 2 * steps - start
    hg = _scatter_columns(table, h_bar)
    return EngineResult(result_state, val_loss, val_acc, hg, steps, False, loss_value)


def _final_adjoint(
    problem: InnerProblem, state: list[Tensor]
) -> tuple[float, float, list[Tensor]]:
    """Validation loss, accuracy and their gradient with respect to the floating state entries."""
    float_idx = [i for i, s in enumerate(state) if s.is_floating_point()]
    leaves = [s.detach().requires_grad_(s.is_floating_point()) for s in state]
    with torch.enable_grad():
        val, acc = problem.val_loss(leaves)
        grads = torch.autograd.grad(val, [leaves[i] for i in float_idx], allow_unused=True)
    adjoint = [
        g if g is not None else torch.zeros_like(leaves[i])
        for g, i in zip(grads, float_idx, strict=True)
    ]
    return float(val.detach()), float(acc), adjoint


def _recompute(
    problem: InnerProblem, table: HyperTable, checkpoint: list[Tensor], start: int, stop: int
) -> list[list[Tensor]]:
    """The states at steps ``start .. stop - 1``, retrained from the checkpoint at ``start``."""
    states = [checkpoint]
    state = checkpoint
    with torch.no_grad():
        for t in range(start, stop - 1):
            h = table.values_at(t, state[0])
            batch = problem.batch_at(t)
            with problem.rng(t):
                state, _ = problem.step_plain(state, h, t, batch)
            states.append(state)
    return states


StepVjp = Callable[[list[Tensor], Tensor, int, list[Tensor]], tuple[list[Tensor], Tensor]]


def _make_step_vjp(problem: InnerProblem, float_idx: list[int], n_state: int) -> StepVjp:
    """``(state_t, h_t, t, adjoint of state_{t+1}) -> (adjoint of state_t, cotangent of h_t)``.

    The step is recorded (:meth:`InnerProblem.record_step`: its gradient taken with
    ``create_graph=True``), then :meth:`InnerProblem.step_vjp` gives both cotangents: the
    optimiser's update by its closed form, the rest by one reverse pass. A state with entries
    that are not floating (held constant) is differentiated through the whole step instead,
    ``problem.step_graph``, by one reverse pass.
    """

    def step_vjp(
        state: list[Tensor], h: Tensor, t: int, adjoint: list[Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        batch = problem.batch_at(t)
        with problem.rng(t):
            record, _ = problem.record_step(state, h, t, batch)
        return problem.step_vjp(record, adjoint)

    def step_vjp_graph(
        state: list[Tensor], h: Tensor, t: int, adjoint: list[Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        batch = problem.batch_at(t)
        full = list(state)
        for i in float_idx:
            full[i] = state[i].detach().requires_grad_()
        hv = h.detach().requires_grad_()
        inputs = [*(full[i] for i in float_idx), hv]
        with torch.enable_grad(), problem.rng(t):
            new = problem.step_graph(full, hv, t, batch)
            grads = torch.autograd.grad(
                [new[i] for i in float_idx],
                inputs,
                grad_outputs=adjoint,
                allow_unused=True,
                materialize_grads=True,
            )
        return list(grads[:-1]), grads[-1]

    return step_vjp if len(float_idx) == n_state else step_vjp_graph


def record_nbytes(record: StepRecord) -> int:
    """Bytes a :class:`StepRecord` holds beyond its two states: the tensors its autograd graph
    saved (minibatch, activations, ...) and its gradients and statistics, each storage once."""
    held = {
        x.untyped_storage().data_ptr() for x in (*record.state, *record.new_state) if x.numel()
    }
    seen: set[int] = set()
    total = 0

    def count(x: object) -> None:
        nonlocal total
        if isinstance(x, (list, tuple)):
            for y in x:
                count(y)
            return
        if not isinstance(x, Tensor) or x.numel() == 0:
            return
        storage = x.untyped_storage()
        key = storage.data_ptr()
        if key not in held and key not in seen:
            seen.add(key)
            total += storage.nbytes()

    nodes = [x.grad_fn for x in (*record.grads, *record.new_stats) if x.grad_fn is not None]
    visited: set[int] = set()
    while nodes:
        node = nodes.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        for name in dir(node):
            if name.startswith("_saved_"):
                with contextlib.suppress(RuntimeError):  # a saved tensor already freed
                    count(getattr(node, name))
        nodes.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    count([*record.grads, *record.new_stats])
    return total


def _scatter_columns(table: HyperTable, h_bar: Tensor) -> Tensor:
    """Sum the per-step cotangents ``h_bar`` (T, H) into the column of each step's window."""
    steps = h_bar.shape[0]
    col = {c: j for j, c in enumerate(table.columns)}
    hg = h_bar.new_zeros(table.n_columns)
    t = torch.arange(steps, device=h_bar.device)
    for i, name in enumerate(table.names):
        if name not in table.scheduled:
            continue
        k = len(table.values[name])
        cols = torch.tensor([col[(name, w)] for w in range(k)], device=h_bar.device)
        hg.index_add_(0, cols[(t * k) // steps], h_bar[:, i])
    return hg
