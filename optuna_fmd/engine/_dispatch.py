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
) -> EngineResult:
    """Train and return the exact hypergradient per column with the engine ``engine`` names, or
    (``"auto"``) the one the cost model of :mod:`._auto` predicts to be the fastest; a
    ``choice`` of :data:`~._auto.PLAIN` trains without hypergradient
    (:func:`~._forward.run_plain`).

    Args:
        problem, table, state0: The episode, as for :func:`~optuna_fmd.engine.run_forward`.
        engine: One of :data:`~._auto.ENGINES`.
        choice: A :class:`~._auto.Choice` made beforehand by :func:`~._auto.choose_engine` with
            the same arguments (``engine`` is then ignored).
        method, chunk_size, compile: Forward mode's (:func:`~optuna_fmd.engine.run_forward`).
        checkpoint_every, memory_budget: Reverse mode's (:func:`~optuna_fmd.engine.run_reverse`);
            with neither (and no snapshots), reverse mode keeps every state when they fit the
            memory budget of the cost model.
        progress: Called as ``progress(t, train_loss)`` after each step.
        snapshots: Take and resume snapshots (forward and reverse mode and plain training).
        validate_every, on_validation: Plain training's intermediate validation losses
            (:func:`~optuna_fmd.engine.run_plain`).
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
        )
    return _reference(problem, table, state0, choice.engine, progress, snapshots)


def _reference(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    engine: str,
    progress: Progress | None,
    snapshots: Snapshots | None,
) -> EngineResult:
    """The reference engines, ``"bptt"`` and ``"fds"`` (no snapshots)."""
    if snapshots is not None:
        raise ValueError(
            f"snapshots need engine 'forward' or 'reverse', but got engine={engine!r}."
        )
    run = run_bptt if engine == "bptt" else run_fds
    return run(problem, table, state0, progress=progress)
