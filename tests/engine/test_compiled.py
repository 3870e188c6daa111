"""The compiled forward-mode path equals the eager one, compiles once per episode whatever the
active prefix of window columns, and bounds its chunk width.

The fast tests trace and compile with a dynamo backend that runs the traced graph as it is (a few
seconds); the ``slow`` ones compile with inductor (tens of seconds per graph on a CPU).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch._dynamo.testing import CompileCounter

import optuna_fmd as fmd
from optuna_fmd.engine import (
    CompileOptions,
    HyperTable,
    choose_engine,
    run_forward,
)
from optuna_fmd.engine._compiled import (
    CALL_OVERHEAD_COLUMNS,
    CompiledResult,
    choose_width,
    use_compiled,
)
from optuna_fmd.episode import build_episode

from ._problems import bn_dropout_problem, bn_table, rel, schedules


def _calls(table: HyperTable, width: int) -> int:
    return sum(math.ceil(table.n_active(t) / width) for t in range(table.steps))


def test_compiled_equals_eager_with_one_compile() -> None:
    """BatchNorm + dropout network, 6 columns over 3 windows, chunks of 4 (the second chunk is
    skipped until the last window starts): bitwise the eager hypergradient, one graph."""
    problem, state0 = bn_dropout_problem("sgd", steps=12, batch=24)
    table = bn_table(problem, "sgd")
    eager = run_forward(problem, table, state0, method="jvp")
    counter = CompileCounter()
    res = run_forward(problem, table, state0, compile=CompileOptions(width=4, backend=counter))
    assert eager.hypergradient is not None and res.hypergradient is not None
    assert rel(res.hypergradient, eager.hypergradient) <= 1e-12
    assert res.val_loss == pytest.approx(eager.val_loss, rel=1e-12)
    assert counter.frame_count == 1  # one graph for every active prefix
    assert res.recompiles == 0
    assert res.width == 4
    assert res.calls == _calls(table, 4) < 2 * table.steps  # inactive chunks were skipped
    assert res.compile_seconds > 0


def test_choose_width() -> None:
    # 9 columns, as in the paper's CIFAR-10 setting: 7 lr windows, 1 momentum, 1 weight decay.
    table = HyperTable({"lr": [0.1] * 7, "momentum": [0.9], "weight_decay": [5e-4]},
                       ["lr", "momentum", "weight_decay"], 700)  # fmt: skip
    assert choose_width(table, overhead=0.0) == 1  # calls are free: never pay for zeros
    assert choose_width(table, overhead=1e6) == 9  # calls are dear: one call per step
    assert choose_width(table, overhead=1e6, cap=4) == 4  # the cap bounds memory
    assert choose_width(table, overhead=1.0) == 3  # 16 calls of 3 columns per 700 steps / 100


def test_auto_choice_and_errors() -> None:
    cpu = [torch.zeros(3)]
    assert not use_compiled(None, cpu, "auto")  # CPU: eager by default
    assert use_compiled(True, cpu, "jvp")
    assert not use_compiled(False, cpu, "jvp")
    with pytest.raises(ValueError, match="method='jvp'"):
        use_compiled(True, cpu, "hvp")
    with pytest.raises(ValueError, match="snapshots"):
        use_compiled(True, cpu, "auto", resumable=True)
    with pytest.raises(ValueError, match="precision"):
        CompileOptions(precision="fp8")
    with pytest.raises(ValueError, match="chunk_size"):
        CompileOptions(chunk_size=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer,k,dtype,tol",
    [
        ("sgd", 3, torch.float64, 1e-10),
        ("adam", 3, torch.float64, 1e-10),
        ("sf-adamw", 3, torch.float64, 1e-10),
        ("sgd", 1, torch.float64, 1e-10),
        ("sgd", 3, torch.float32, 1e-4),
        ("adam", 3, torch.float32, 1e-4),
    ],
)
def test_inductor_equals_eager(optimizer: str, k: int, dtype: torch.dtype, tol: float) -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16, dtype=dtype, optimizer=optimizer)
    problem, table, state0 = build_episode(task, schedules(optimizer, k), seed=1)
    eager = run_forward(problem, table, state0, method="jvp")
    res = run_forward(problem, table, state0, compile=CompileOptions(width=max(1, k - 1)))
    assert eager.hypergradient is not None and res.hypergradient is not None
    assert rel(res.hypergradient, eager.hypergradient) <= tol
    assert res.recompiles == 0


@pytest.mark.slow
def test_chunk_width_is_bounded_and_does_not_change_the_result() -> None:
    problem, state0 = bn_dropout_problem("adam", steps=12, batch=24)
    table = bn_table(problem, "adam")
    eager = run_forward(problem, table, state0, method="jvp", chunk_size=2)
    assert eager.hypergradient is not None
    for chunk_size in (1, 2, None):
        res = run_forward(
            problem,
            table,
            state0,
            chunk_size=chunk_size,
            compile=CompileOptions(backend="aot_eager"),
        )
        assert res.hypergradient is not None
        width = choose_width(table, CALL_OVERHEAD_COLUMNS["cpu"], chunk_size)
        assert res.width == width  # type: ignore[attr-defined]
        assert rel(res.hypergradient, eager.hypergradient) <= 1e-12


@pytest.mark.slow
def test_divergence_is_reported() -> None:
    task = fmd.tasks.Digits(steps=40, batch_size=16)
    task.data().train_x[::7] = float("nan")  # a forced NaN in some training batches
    problem, table, state0 = build_episode(task, {"lr": [0.1, 0.1]}, seed=0)
    eager = run_forward(problem, table, state0, method="jvp")
    res = run_forward(problem, table, state0, compile=CompileOptions(backend="eager"))
    assert eager.diverged and res.diverged
    assert res.steps_done == eager.steps_done < 40
    assert res.hypergradient is None


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_default_is_compiled_and_agrees() -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16, device="cuda", optimizer="sgd")
    problem, table, state0 = build_episode(task, schedules("sgd", 3), seed=1)
    assert use_compiled(None, state0, "auto")
    res = run_forward(problem, table, state0)
    assert isinstance(res, CompiledResult) and res.recompiles == 0
    eager = run_forward(problem, table, state0, compile=False)
    assert res.hypergradient is not None and eager.hypergradient is not None
    assert rel(res.hypergradient, eager.hypergradient) <= 1e-4


@cuda
def test_cuda_auto_engine_prefers_forward() -> None:
    table = HyperTable({"lr": [0.1] * 10, "momentum": [0.9] * 10, "weight_decay": [0.0] * 10},
                       ["lr", "momentum", "weight_decay"], 1000)  # fmt: skip
    state = [torch.zeros(1000, 100, device="cuda")]
    assert choose_engine(table, state).engine == "forward"


@pytest.mark.slow
def test_bf16_tangent_storage_stays_close() -> None:
    problem, state0 = bn_dropout_problem("sgd", steps=12, batch=24)
    table = bn_table(problem, "sgd")  # bf16 storage rounds the tangents between steps
    eager = run_forward(problem, table, state0, method="jvp")
    res = run_forward(
        problem, table, state0, compile=CompileOptions(precision="bf16", backend="eager")
    )
    assert eager.hypergradient is not None and res.hypergradient is not None
    assert 0 < rel(res.hypergradient, eager.hypergradient) <= 5e-2
