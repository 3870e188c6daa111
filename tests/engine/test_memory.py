"""Forward mode's memory does not grow with the horizon T: the peak resident memory an episode
adds over the memory before it (measured in this process) is the same at T = 100 and 2,000."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import run_forward
from optuna_fmd.episode import build_episode

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
#: Allowed difference in peak growth between the two horizons (allocator noise is ~1-3 MB);
#: keeping every state would add ~75 MB at T = 2,000 here (38 kB per state).
SLACK_MB = 12.0


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_growth_mb(fn: Callable[[], object]) -> float:
    """Peak resident memory during ``fn()`` above the resident memory just before it, in MB."""
    gc.collect()
    _CLEAR_REFS.write_text("5")  # reset the peak (VmHWM) to the current resident size
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def _growth(steps: int) -> float:
    task = fmd.tasks.Digits(steps=steps, batch_size=32)
    sched = {"lr": [0.1], "momentum": [0.9], "weight_decay": [1e-4]}
    problem, table, state0 = build_episode(task, sched)
    run_forward(problem, table, state0)  # warm-up: allocator pools, lazy imports
    return peak_growth_mb(lambda: run_forward(problem, table, state0))


@pytest.mark.skipif(
    not (_CLEAR_REFS.exists() and _STATUS.exists()), reason="needs Linux /proc peak resets"
)
def test_forward_mode_peak_memory_growth_is_flat_in_the_horizon() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        short, long = _growth(100), _growth(2000)
    finally:
        torch.set_num_threads(before)
    assert long - short <= SLACK_MB, (short, long)
