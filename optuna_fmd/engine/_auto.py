"""Choosing between the two exact engines: forward mode and checkpointed reverse mode.

Cost model, in units of one plain training step of the same model and batch (measured on a 2-core
x86_64 CPU, MLPs of 51k and 204k parameters, N = 3 ... 300; benchmarks/results/
engine_reverse_cpu.json):

- forward mode: ``FORWARD_BASE + FORWARD_PER_COLUMN * mean active columns`` per step
  (the mean over the run of the number of columns whose window has started, about N/2 for
  equal windows); measured 5-12 plain steps at 3 columns, +0.7-1.1 per column;
- reverse mode: ``REVERSE`` per step (forward step, recomputation, one vjp), flat in N;
  measured 6-8 plain steps, 5.7-6.2 since the forward sweep and recomputation run the plain step
  and the vjp rebuilds the step with ordinary autograd (MLP 784-64-10, batch 128, T = 300,
  median of 7 interleaved runs).

So reverse mode is the faster from about 3 active columns on. Memory decides otherwise when
reverse mode's ``~2 sqrt(T)`` stored states do not fit the memory available but forward mode's
``2 N + 2`` state-sized tensors do.

On a CUDA device forward mode runs compiled (:mod:`._compiled`): a small network's step is
launch-bound there, and the compiled tangent step adds little per column, while reverse mode runs
eager. Its constants (``FORWARD_CUDA_*``, in plain eager steps) are the GPU path's targets (at most
4 compiled plain steps, about 2 eager ones, at 30 columns), not measurements: with them forward
mode is chosen on CUDA up to about 120 mean active columns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._problem import HyperTable
from ._reverse import plan_checkpoints, state_nbytes

__all__ = ["Choice", "choose_engine"]

FORWARD_BASE = 5.0
FORWARD_PER_COLUMN = 0.8
REVERSE = 6.0
FORWARD_CUDA_BASE = 1.0
FORWARD_CUDA_PER_COLUMN = 0.05
#: Fraction of the available memory an engine may plan to hold.
MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class Choice:
    """The chosen engine and the figures that chose it (costs in plain steps per step)."""

    engine: str
    predicted_forward: float
    predicted_reverse: float
    forward_bytes: int
    reverse_bytes: int


def _available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
    return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else None


def mean_active_columns(table: HyperTable) -> float:
    """Mean over the run's steps of the number of columns whose window has started."""
    total = sum(table.steps - start for start in table.starts)
    return total / table.steps


def choose_engine(
    table: HyperTable, state: Sequence[Tensor], *, available_bytes: int | None = None
) -> Choice:
    """Pick ``"forward"`` or ``"reverse"`` for one episode by the cost model above."""
    state_bytes = state_nbytes(state)
    active = mean_active_columns(table)
    device = state[0].device if state else torch.device("cpu")
    if device.type == "cuda":  # forward mode runs compiled there
        forward_cost = FORWARD_CUDA_BASE + FORWARD_CUDA_PER_COLUMN * active
    else:
        forward_cost = FORWARD_BASE + FORWARD_PER_COLUMN * active
    plan = plan_checkpoints(table.steps, state_bytes)
    forward_bytes = (2 * table.n_columns + 2) * state_bytes
    if available_bytes is None:
        available_bytes = _available_bytes(device)
    budget = math.inf if available_bytes is None else MEMORY_FRACTION * available_bytes
    engine = "forward" if forward_cost <= REVERSE else "reverse"
    if engine == "reverse" and plan.stored_bytes > budget and forward_bytes <= budget:
        engine = "forward"
    elif engine == "forward" and forward_bytes > budget and plan.stored_bytes <= budget:
        engine = "reverse"
    return Choice(
        engine=engine,
        predicted_forward=round(forward_cost, 2),
        predicted_reverse=REVERSE,
        forward_bytes=forward_bytes,
        reverse_bytes=plan.stored_bytes,
    )
