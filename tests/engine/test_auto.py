"""engine="auto": the choice follows the cost model, knows when forward mode can compile, keeps
every state when memory allows, and lets memory overrule time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import (
    EngineOptions,
    ForwardOptions,
    HyperTable,
    ReverseOptions,
    _auto,
    choose_engine,
    plan_checkpoints,
)
from optuna_fmd.engine._auto import forward_cost, mean_active_columns

STATE = [torch.zeros(1000), torch.zeros(1000)]
PLENTY = 10**12


def table(k: int, hypers: int = 3, steps: int = 100) -> HyperTable:
    names = ["lr", "momentum", "weight_decay"][:hypers]
    values = {"lr": [0.1] * k, "momentum": [0.9] * k, "weight_decay": [0.0] * k}
    return HyperTable(values, names, steps)


CUDA = torch.device("cuda", 0)


@dataclass
class _FakeCuda:
    """Stands for a CUDA tensor where only its device and size are read."""

    n: int = 1000
    device: torch.device = CUDA

    def numel(self) -> int:
        return self.n

    def element_size(self) -> int:
        return 4


def every(steps: int) -> EngineOptions:
    """Options with reverse mode's segment length fixed at ``steps``."""
    return EngineOptions(reverse=ReverseOptions(checkpoint_every=steps))


def compiling(engine: str) -> EngineOptions:
    """Options of ``engine`` that ask for forward mode's compiled path."""
    return EngineOptions(engine, forward=ForwardOptions(compile=True))


def test_mean_active_columns() -> None:
    assert mean_active_columns(table(1)) == 3.0
    # 10 windows of 10 steps for 3 hypers: 3 * (10 + 9 + ... + 1) * 10 / 100
    assert mean_active_columns(table(10)) == 16.5


@pytest.mark.parametrize("per_column", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_choice_follows_the_cost_model(
    monkeypatch: pytest.MonkeyPatch, per_column: float, k: int
) -> None:
    monkeypatch.setattr(_auto, "FORWARD_BASE", 2.0)
    monkeypatch.setattr(_auto, "FORWARD_PER_COLUMN", per_column)
    monkeypatch.setattr(_auto, "REVERSE", 5.0)
    tab = table(k)
    c = choose_engine(tab, STATE, available_bytes=PLENTY)
    fwd = 2.0 + per_column * mean_active_columns(tab)
    assert c.predicted_forward == round(fwd, 2)
    assert c.predicted_reverse == 5.0  # every state kept: no recomputation
    assert c.engine == ("forward" if fwd <= 5.0 else "reverse")
    assert not c.compiled


def test_reverse_keeps_every_state_when_it_fits_and_recomputes_otherwise() -> None:
    tab = table(10, steps=400)
    everything = plan_checkpoints(400, 8000, checkpoint_every=1).stored_bytes
    roomy = choose_engine(tab, STATE, EngineOptions("reverse"), available_bytes=4 * everything)
    assert roomy.memory_budget is not None and roomy.reverse_bytes == everything
    assert roomy.predicted_reverse == _auto.REVERSE
    tight = choose_engine(tab, STATE, EngineOptions("reverse"), available_bytes=everything)
    sqrt_plan = plan_checkpoints(400, 8000)
    assert tight.memory_budget is None and tight.reverse_bytes == sqrt_plan.stored_bytes
    extra = _auto.RECOMPUTE * sqrt_plan.recomputed_steps / 400
    assert tight.predicted_reverse == round(_auto.REVERSE + extra, 2)
    # snapshots keep sqrt(T) segments (a resumed run must find the same plan)
    snap = choose_engine(
        tab, STATE, EngineOptions("reverse"), snapshots=True, available_bytes=PLENTY
    )
    assert snap.memory_budget is None and snap.reverse_bytes == sqrt_plan.stored_bytes
    # so do the caller's own settings
    own = choose_engine(tab, STATE, every(7), available_bytes=PLENTY)
    assert own.memory_budget is None
    assert own.reverse_bytes == plan_checkpoints(400, 8000, checkpoint_every=7).stored_bytes


def test_forward_costs_are_compiled_only_where_this_run_compiles() -> None:
    cuda = [_FakeCuda(), _FakeCuda()]
    tab = table(10)
    active = mean_active_columns(tab)
    on = choose_engine(tab, cuda, available_bytes=PLENTY)  # type: ignore[arg-type]
    compiled = forward_cost(active, torch.device("cuda"), compiled=True)
    eager = forward_cost(active, torch.device("cuda"), compiled=False)
    assert compiled < eager
    assert on.predicted_forward == round(compiled, 2)
    assert on.engine == "forward" and on.compiled
    for kwargs in ({"compile": False}, {"snapshots": True}, {"method": "hvp"}):
        snapshots = bool(kwargs.pop("snapshots", False))
        options = EngineOptions(forward=ForwardOptions(**kwargs))  # type: ignore[arg-type]
        off = choose_engine(tab, cuda, options, snapshots=snapshots, available_bytes=PLENTY)  # type: ignore[arg-type]
        assert off.predicted_forward == round(eager, 2), kwargs
        assert not off.compiled and off.engine == "reverse", kwargs
    # on the CPU compiling is off unless asked for
    cpu = choose_engine(tab, STATE, available_bytes=PLENTY)
    assert cpu.predicted_forward == round(eager, 2) and not cpu.compiled
    asked = choose_engine(tab, STATE, compiling("forward"), available_bytes=PLENTY)
    assert asked.compiled
    assert asked.predicted_forward == round(forward_cost(active, STATE[0].device, True), 2)


def test_an_impossible_compile_request_raises_for_forward_only() -> None:
    with pytest.raises(ValueError, match="takes no snapshots"):
        choose_engine(table(3), STATE, compiling("forward"), snapshots=True)
    auto = choose_engine(
        table(3), STATE, compiling("auto"), snapshots=True, available_bytes=PLENTY
    )
    assert not auto.compiled


def test_memory_overrides_the_time_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_auto, "FORWARD_BASE", 2.0)
    monkeypatch.setattr(_auto, "FORWARD_PER_COLUMN", 1.0)
    monkeypatch.setattr(_auto, "REVERSE", 5.0)
    # time says reverse (30 columns), but only forward's 2N + 2 states fit -> forward
    many = table(10, steps=10_000)
    c = choose_engine(many, STATE, every(100), available_bytes=PLENTY)
    assert c.engine == "reverse" and c.reverse_bytes > c.forward_bytes
    small = 2 * c.forward_bytes + 16
    tight = choose_engine(many, STATE, every(100), available_bytes=small)
    assert tight.engine == "forward"
    # time says forward (1 column), but only reverse's checkpoints fit -> reverse
    short = table(1, hypers=1, steps=4)
    f = choose_engine(short, STATE, every(2), available_bytes=PLENTY)
    assert f.engine == "forward" and f.forward_bytes > f.reverse_bytes
    fits = 2 * f.reverse_bytes + 16
    tight = choose_engine(short, STATE, every(2), available_bytes=fits)
    assert tight.engine == "reverse"


def test_run_episode_runs_the_chosen_engine_and_agrees() -> None:
    task = fmd.tasks.Digits(steps=30, batch_size=16, dtype=torch.float64)
    sched = {"lr": [0.1] * 3, "momentum": [0.9] * 3}
    _, tab, state0 = fmd.episode.build_episode(task, sched)
    expected = choose_engine(tab, state0).engine
    auto = fmd.run_episode(task, sched)
    fwd = fmd.run_episode(task, sched, options=fmd.EngineOptions("forward"))
    every_7 = fmd.ReverseOptions(checkpoint_every=7)
    rev = fmd.run_episode(task, sched, options=fmd.EngineOptions("reverse", reverse=every_7))
    assert (auto.engine, fwd.engine, rev.engine) == (expected, "forward", "reverse")
    assert auto.hypergradient is not None and fwd.hypergradient is not None
    assert rev.hypergradient is not None
    for name, values in fwd.hypergradient.items():
        for a, b, c in zip(values, auto.hypergradient[name], rev.hypergradient[name], strict=True):
            assert abs(a - b) <= 1e-9 * max(abs(a), 1.0)
            assert abs(a - c) <= 1e-9 * max(abs(a), 1.0)
