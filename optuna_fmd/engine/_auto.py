"""Choosing the engine of an episode: eager or compiled forward mode, or reverse mode.

Cost model, in units of one plain (eager) training step of the same model and batch, per step:

- forward mode, eager: ``FORWARD_BASE + FORWARD_PER_COLUMN * active`` where ``active`` is the
  mean over the run of the number of columns whose window has started (about N/2 for equal
  windows);
- forward mode, compiled (:mod:`._compiled`): ``COMPILED_BASE[device] +
  COMPILED_PER_COLUMN[device] * active``, used only where this run can compile (see
  :func:`~optuna_fmd.engine._compiled.use_compiled`: CUDA by default, never with snapshots or
  ``method="hvp"``, or ``compile=False``);
- reverse mode: ``REVERSE + RECOMPUTE * recomputed steps / T``: the forward sweep and one vjp
  per step, plus the steps run again from checkpoints. Every state is kept (no recomputation)
  when the states fit in ``MEMORY_FRACTION`` of the available memory and no snapshots are taken
  (snapshots keep ``ceil(sqrt(T))``-step segments, so that a run resumes with the same plan);
  that budget is handed to reverse mode, which then also keeps every step's record (its
  gradient's graph) when those fit, so that no step runs twice.

The constants are fitted to measured runs (benchmarks/README.md, section engine="auto" against
the better engine; benchmarks/results/engine_auto_cpu.json, hypergradient_cost_cpu.json).
``REVERSE`` is reverse mode that keeps states and records each step on the way back; keeping
every step's record from the forward sweep is cheaper still, which the model leaves out (it
only favours reverse mode).
Memory decides otherwise when the time-preferred engine's memory does not fit the budget but the
other's does (forward mode: ``2 N + 2`` state-sized tensors; reverse mode: its stored states).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._common import available_bytes as _available_bytes
from ._common import state_nbytes
from ._compiled import use_compiled
from ._options import ENGINES, EngineOptions
from ._problem import HyperTable
from ._reverse import CheckpointPlan, plan_checkpoints

__all__ = ["ENGINES", "PLAIN", "Choice", "choose_engine", "mean_active_columns"]

# CPU fits (benchmarks/results/engine_auto_cpu.json, hypergradient_cost_cpu.json).
FORWARD_BASE = 4.0
FORWARD_PER_COLUMN = 0.7
REVERSE = 3.5
RECOMPUTE = 1.0
# Compiled forward mode, per device type. CPU: fitted to benchmarks/results/
# gpu_step_cpu_torch2.14.1_cpu-mlp-N{9,30}.json. CUDA: the GPU path's targets, not a fit (no
# GPU run is recorded yet).
COMPILED_BASE = {"cpu": 0.0, "cuda": 1.0}
COMPILED_PER_COLUMN = {"cpu": 0.6, "cuda": 0.05}
#: Fraction of the available memory an engine may plan to hold.
MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class Choice:
    """The chosen engine and the figures that chose it (costs in plain steps per step).

    Attributes:
        engine: ``"forward"``, ``"reverse"``, ``"bptt"``, ``"fds"``, or ``"plain"`` (no
            hypergradient: :data:`PLAIN`).
        compiled: Forward mode runs the compiled path.
        predicted_forward: Forward mode's cost (compiled if ``compiled`` could be on).
        predicted_reverse: Reverse mode's cost under ``plan``.
        forward_bytes: Forward mode's tangents and state.
        reverse_bytes: Reverse mode's stored states under ``plan``.
        memory_budget: The budget reverse mode plans its checkpoints by (``None``: the
            caller's ``checkpoint_every`` / ``memory_budget``, or ``ceil(sqrt(T))`` segments).
    """

    engine: str
    predicted_forward: float
    predicted_reverse: float
    forward_bytes: int
    reverse_bytes: int
    compiled: bool = False
    memory_budget: float | None = None


#: The choice of an episode without hypergradient: plain training.
PLAIN = Choice("plain", 0.0, 0.0, 0, 0)


def mean_active_columns(table: HyperTable) -> float:
    """Mean over the run's steps of the number of columns whose window has started."""
    total = sum(table.steps - start for start in table.starts)
    return total / table.steps


def forward_cost(active: float, device: torch.device, compiled: bool) -> float:
    """Forward mode's cost per step, in plain eager steps, at ``active`` mean active columns."""
    if not compiled:
        return FORWARD_BASE + FORWARD_PER_COLUMN * active
    kind = device.type if device.type in COMPILED_BASE else "cuda"
    return COMPILED_BASE[kind] + COMPILED_PER_COLUMN[kind] * active


def reverse_cost(plan: CheckpointPlan, steps: int) -> float:
    """Reverse mode's cost per step, in plain eager steps, under ``plan``."""
    return REVERSE + RECOMPUTE * plan.recomputed_steps / steps


def choose_engine(
    table: HyperTable,
    state: Sequence[Tensor],
    options: EngineOptions | None = None,
    *,
    snapshots: bool = False,
    available_bytes: int | None = None,
) -> Choice:
    """Pick the engine of one episode, and how it runs, by the cost model above.

    Args:
        table: The run's columns and horizon.
        state: The initial flat state (its bytes and device).
        options: The engine and its options, checked where they were made (default: ``"auto"``,
            every default). ``engine="auto"`` chooses; any other engine of :data:`ENGINES` is
            kept (the figures are still filled in). ``forward.compile``: as in
            :func:`~optuna_fmd.engine.run_forward`, whether forward mode may run compiled
            (``None``: where :func:`~optuna_fmd.engine._compiled.use_compiled` says);
            ``forward.method``: its tangent method (``"hvp"`` cannot run compiled);
            ``reverse.checkpoint_every`` and ``reverse.memory_budget``: reverse mode's segment
            length or budget for stored states, if the caller fixes them; ``discount``: the run's
            discounted tangents (below 1: no compiled path).
        snapshots: The run takes or resumes snapshots (no compiled path; reverse mode keeps
            ``ceil(sqrt(T))``-step segments unless told otherwise).
        available_bytes: Memory available (default: measured on the state's device).
    """
    options = options or EngineOptions()
    engine, discount = options.engine, options.discount
    compile, method = options.forward.compile, options.forward.method
    checkpoint_every = options.reverse.checkpoint_every
    memory_budget = options.reverse.memory_budget
    device = state[0].device if state else torch.device("cpu")
    if available_bytes is None:
        available_bytes = _available_bytes(device)
    budget = math.inf if available_bytes is None else MEMORY_FRACTION * available_bytes
    state_bytes = state_nbytes(state)
    own_budget = None
    if checkpoint_every is None and memory_budget is None and not snapshots:
        everything = plan_checkpoints(table.steps, state_bytes, checkpoint_every=1)
        if everything.stored_bytes <= budget:
            # the whole budget: reverse mode then also keeps every step's record if they fit
            own_budget = max(budget, everything.stored_bytes, 1)
    plan = plan_checkpoints(
        table.steps,
        state_bytes,
        checkpoint_every=checkpoint_every,
        memory_budget=own_budget if own_budget is not None else memory_budget,
    )
    compiled = False
    if engine == "forward":  # an impossible compile request raises, as in run_forward
        compiled = use_compiled(compile, state, method, snapshots, discount)
    elif engine == "auto":  # ... but only rules forward mode out of the choice here
        try:
            compiled = use_compiled(compile, state, method, snapshots, discount)
        except ValueError:
            compiled = False
    fwd = forward_cost(mean_active_columns(table), device, compiled)
    rev = reverse_cost(plan, table.steps)
    forward_bytes = (2 * table.n_columns + 2) * state_bytes
    if engine == "auto":
        engine = "forward" if fwd <= rev else "reverse"
        if engine == "reverse" and plan.stored_bytes > budget and forward_bytes <= budget:
            engine = "forward"
        elif engine == "forward" and forward_bytes > budget and plan.stored_bytes <= budget:
            engine = "reverse"
    return Choice(
        engine=engine,
        predicted_forward=round(fwd, 2),
        predicted_reverse=round(rev, 2),
        forward_bytes=forward_bytes,
        reverse_bytes=plan.stored_bytes,
        compiled=compiled and engine == "forward",
        memory_budget=own_budget,
    )
