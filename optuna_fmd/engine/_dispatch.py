"""One entry for a hypergradient episode: choose the engine (:func:`~._auto.choose_engine`), then
run it with the plan the choice was made for."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from ._auto import PLAIN, Choice, choose_engine
from ._common import EngineResult, Progress
from ._compiled import CompileOptions
from ._forward import run_forward, run_plain
from ._problem import HyperTable, InnerProblem
from ._reference import run_bptt, run_fds
from ._reverse import run_reverse
from ._snapshot import Snapshots

__all__ = ["PLAIN", "run_hypergradient"]


def run_hypergradient(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    engine: str = "auto",
    choice: Choice | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    compile: bool | CompileOptions | None = None,
    checkpoint_every: int | None = None,
    memory_budget: int | float | None = None,
    progress: Progress | None = None,
    snapshots: Snapshots | None = None,
    validate_every: int | None = None,
    on_validation: Callable[[int, float], None] | None = None,
    discount: float = 1.0,
) -> EngineResult:
    """Train with the engine ``engine`` names (``"auto"``: the fastest by the cost model of
    :mod:`._auto`) and return the hypergradient per column; a ``choice`` of
    :data:`~._auto.PLAIN` trains without it (:func:`~._forward.run_plain`).

    Args:
        problem, table, state0: The episode, as for :func:`~optuna_fmd.engine.run_forward`.
        engine: One of :data:`~._auto.ENGINES`.
        choice: A :class:`~._auto.Choice` of :func:`~._auto.choose_engine` (``engine`` ignored).
        method, chunk_size, compile: Forward mode's (:func:`~optuna_fmd.engine.run_forward`).
        checkpoint_every, memory_budget: Reverse mode's (:func:`~optuna_fmd.engine.run_reverse`).
        progress: Called as ``progress(t, train_loss)`` after each step.
        snapshots: Take and resume snapshots (forward and reverse mode and plain training).
        validate_every, on_validation: Plain training's (:func:`~optuna_fmd.engine.run_plain`).
        discount: Discounted tangents (forward, reverse, BPTT; 1: exact; plain: unused).
    """
    if choice is None:
        choice = choose_engine(
            table,
            state0,
            engine=engine,
            compile=compile,
            method=method,
            snapshots=snapshots is not None,
            checkpoint_every=checkpoint_every,
            memory_budget=memory_budget,
            discount=discount,
        )
    if choice.engine == "plain":
        return run_plain(
            problem,
            table,
            state0,
            progress=progress,
            snapshots=snapshots,
            validate_every=validate_every,
            on_validation=on_validation,
        )
    if choice.engine == "forward":
        on = compile if isinstance(compile, CompileOptions) else choice.compiled
        return run_forward(
            problem,
            table,
            state0,
            chunk_size=chunk_size,
            method=method,
            progress=progress,
            snapshots=snapshots,
            compile=on,
            discount=discount,
        )
    if choice.engine == "reverse":
        return run_reverse(
            problem,
            table,
            state0,
            checkpoint_every=checkpoint_every,
            memory_budget=memory_budget if choice.memory_budget is None else choice.memory_budget,
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
            f"snapshots need engine 'forward' or 'reverse', but got engine={engine!r}."
        )
    if engine == "bptt":
        return run_bptt(problem, table, state0, progress=progress, discount=discount)
    if discount != 1.0:
        raise ValueError("the FDS recurrence is exact only: use discount=1 with engine='fds'.")
    return run_fds(problem, table, state0, progress=progress)
