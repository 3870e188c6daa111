"""One entry for a hypergradient episode: its options grouped by engine (:class:`EngineOptions`),
the engine chosen (:func:`~._auto.choose_engine`), then run with the plan the choice was made
for."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ._auto import PLAIN, Choice, choose_engine
from ._common import EngineResult, Progress
from ._compiled import CompileOptions
from ._forward import run_forward, run_plain
from ._options import EngineOptions
from ._problem import HyperTable, InnerProblem
from ._reference import run_bptt, run_fds
from ._reverse import run_reverse
from ._snapshot import Snapshots

__all__ = ["PLAIN", "run_hypergradient"]


def run_hypergradient(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    options: EngineOptions | None = None,
    *,
    choice: Choice | None = None,
    progress: Progress | None = None,
    snapshots: Snapshots | None = None,
) -> EngineResult:
    """Train with the engine ``options`` name and return the hypergradient per column; a
    ``choice`` of :data:`~._auto.PLAIN` trains without it (:func:`~._forward.run_plain`).

    Args:
        problem, table, state0: The episode, as for :func:`~optuna_fmd.engine.run_forward`.
        options: The engine and its options (default: ``"auto"``, every default).
        choice: A :class:`~._auto.Choice` of :func:`~._auto.choose_engine` (``options.engine``
            then ignored).
        progress: Called as ``progress(t, train_loss)`` after each step.
        snapshots: Take and resume snapshots (forward and reverse mode and plain training).
    """
    options = options or EngineOptions()
    if choice is None:
        choice = choose_engine(table, state0, options, snapshots=snapshots is not None)
    if choice.engine == "plain":
        plain = options.plain
        return run_plain(
            problem,
            table,
            state0,
            progress=progress,
            snapshots=snapshots,
            validate_every=plain.validate_every,
            on_validation=plain.on_validation,
        )
    discount = options.discount
    if choice.engine == "forward":
        fwd = options.forward
        on = fwd.compile if isinstance(fwd.compile, CompileOptions) else choice.compiled
        return run_forward(
            problem,
            table,
            state0,
            chunk_size=fwd.chunk_size,
            method=fwd.method,
            progress=progress,
            snapshots=snapshots,
            compile=on,
            discount=discount,
        )
    if choice.engine == "reverse":
        rev = options.reverse
        budget = rev.memory_budget if choice.memory_budget is None else choice.memory_budget
        return run_reverse(
            problem,
            table,
            state0,
            checkpoint_every=rev.checkpoint_every,
            memory_budget=budget,
            progress=progress,
            snapshots=snapshots,
            discount=discount,
        )
    return _reference(problem, table, state0, choice.engine, progress, snapshots, discount)


def _reference(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    engine: str,
    progress: Progress | None,
    snapshots: Snapshots | None,
    discount: float,
) -> EngineResult:
    """The reference engines, ``"bptt"`` and ``"fds"`` (no snapshots; FDS: exact only)."""
    if snapshots is not None:
        raise ValueError(
            "snapshots need engine 'forward' or 'reverse' (or no hypergradient), "
            f"but got engine={engine!r}."
        )
    if engine == "bptt":
        return run_bptt(problem, table, state0, progress=progress, discount=discount)
    if discount != 1.0:
        raise ValueError("the FDS recurrence is exact only: use discount=1 with engine='fds'.")
    return run_fds(problem, table, state0, progress=progress)
