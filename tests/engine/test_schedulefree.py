"""Schedule-free AdamW and SGD (Defazio et al., NeurIPS 2024): the engine's trajectory equals the
``schedulefree`` package's on the same minibatches, and its hypergradients, taken at ``y`` and
evaluated at ``x``, are exact in every engine (float64)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd.engine import (
    CompileOptions,
    HyperTable,
    InnerOptimizer,
    ScheduleFreeAdamW,
    ScheduleFreeSGD,
    make_optimizer,
    run_bptt,
    run_forward,
    run_plain,
    run_reverse,
)
from optuna_fmd.episode import build_episode

from ._problems import rel, schedules
from .test_snapshot import assert_same, bn_run, collect, resumed

F64 = torch.float64
GROUPS = {"lr_head": ("lr", ("3.*",))}

pytestmark = pytest.mark.usefixtures("one_thread")


def _package() -> Any:
    return pytest.importorskip(
        "schedulefree", reason="the `anchors` extra (pip install optuna-fmd[anchors])"
    )


#: (optimizer, engine schedules over 2 windows, package factory, name of beta in the package)
CASES = {
    "sf-adamw": (
        {
            "lr": [4e-3, 2e-3],
            "lr_head": [1e-2, 3e-3],
            "beta1": [0.9, 0.8],
            "beta2": [0.99],
            "weight_decay": [1e-2, 3e-2],
            "warmup": [5.0],
        },
        lambda groups, foreach: _package().AdamWScheduleFree(
            groups, warmup_steps=5, foreach=foreach
        ),
    ),
    "sf-sgd": (
        {
            "lr": [0.2, 0.1],
            "lr_head": [0.3, 0.05],
            "momentum": [0.9, 0.8],
            "weight_decay": [1e-3, 2e-3],
            "warmup": [5.0],
        },
        lambda groups, foreach: _package().SGDScheduleFree(
            groups, warmup_steps=5, foreach=foreach
        ),
    ),
}


def _set_group(group: dict[str, Any], values: dict[str, float], optimizer: str) -> None:
    """Write one step's hyperparameters into a package parameter group."""
    group["lr"] = values["lr"]
    group["weight_decay"] = values["weight_decay"]
    if optimizer == "sf-adamw":
        group["betas"] = (values["beta1"], values["beta2"])
    else:
        group["momentum"] = values["momentum"]


@pytest.mark.parametrize(
    "power,foreach", [((0.0, 2.0), True), ((1.0, 1.0), False)], ids=["default", "r1-power1"]
)
@pytest.mark.parametrize("optimizer", ["sf-adamw", "sf-sgd"])
def test_trajectory_equals_the_schedulefree_package(
    optimizer: str, power: tuple[float, float], foreach: bool
) -> None:
    """Per-layer groups, lr / beta / weight decay changing between windows, an integer
    warm-up: the package's ``train()`` steps (its foreach and per-tensor code) on the engine's
    minibatches, then its ``eval()`` parameters equal the engine's evaluated parameters, and so
    do the validation losses."""
    schedules, factory = CASES[optimizer]
    r, weight_lr_power = power
    steps = 12
    task = fmd.tasks.Digits(steps=steps, batch_size=16, dtype=F64, optimizer=optimizer)
    problem, table, state0 = build_episode(task, schedules, seed=2, groups=GROUPS)
    opt = dataclasses.replace(problem.optimizer, r=r, weight_lr_power=weight_lr_power)
    problem = dataclasses.replace(problem, optimizer=opt)
    ours = run_plain(problem, table, state0)

    net = task.make_model(2)
    named = dict(net.named_parameters())
    head = [p for n, p in named.items() if n.startswith("3.")]
    body = [p for n, p in named.items() if not n.startswith("3.")]
    ref = factory([{"params": body}, {"params": head}], foreach)
    for group in ref.param_groups:
        group["r"], group["weight_lr_power"] = r, weight_lr_power
    ref.train()
    for t in range(steps):
        h = dict(zip(table.names, table.values_at(t, state0[0]).tolist(), strict=True))
        _set_group(ref.param_groups[0], h, optimizer)
        _set_group(ref.param_groups[1], {**h, "lr": h["lr_head"]}, optimizer)
        x, y = problem.batch_at(t)
        ref.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        ref.step()
    ref.eval()

    params, _ = problem.evaluated(ours.state)
    for name, ours_p in zip(problem.model.param_names, params, strict=True):
        torch.testing.assert_close(ours_p, named[name].detach(), rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        vx = torch.cat([x for x, _ in problem.val_batches])
        vy = torch.cat([y for _, y in problem.val_batches])
        ref_loss = float(torch.nn.functional.cross_entropy(net(vx), vy))
    assert ours.val_loss == pytest.approx(ref_loss, rel=1e-10)
    # the training iterate y is not what is evaluated
    assert not torch.allclose(ours.state[0], params[0])


def _fd(problem: Any, table: HyperTable, state0: list, column: tuple[str, int]) -> float:
    """Central difference of the validation loss in one column (float64)."""
    name, k = column
    eps = 1e-6 * max(abs(table.values[name][k]), 1e-2)
    vals = []
    for sign in (1.0, -1.0):
        values = {n: list(v) for n, v in table.values.items()}
        values[name][k] += sign * eps
        vals.append(run_plain(problem, HyperTable(values, table.scheduled, table.steps), state0))
    return (vals[0].val_loss - vals[1].val_loss) / (2 * eps)


@pytest.mark.parametrize("optimizer", ["sf-adamw", "sf-sgd"])
def test_hypergradients_are_exact_with_groups_and_warmup(optimizer: str) -> None:
    """Forward mode (both tangent paths) and checkpointed reverse mode equal reverse mode
    through the unrolled loop; central differences confirm the columns where schedule-free
    differs from its base optimiser: the lr of the averaging weights, the warm-up inside its
    ramp, and the last window of beta, which sets the evaluated ``x`` directly."""
    schedules, _ = CASES[optimizer]
    schedules = {**schedules, "warmup": [7.5, 7.5]}  # inside the ramp: smooth in the warm-up
    beta = "beta1" if optimizer == "sf-adamw" else "momentum"
    task = fmd.tasks.Digits(steps=24, batch_size=16, dtype=F64, optimizer=optimizer)
    problem, table, state0 = build_episode(task, schedules, seed=1, groups=GROUPS)
    ref = run_bptt(problem, table, state0)
    assert ref.hypergradient is not None
    for res in (
        run_forward(problem, table, state0, method="jvp"),
        run_forward(problem, table, state0, method="jvp", chunk_size=3),
        run_reverse(problem, table, state0),
        run_reverse(problem, table, state0, checkpoint_every=5),
    ):
        assert res.hypergradient is not None
        assert rel(res.hypergradient, ref.hypergradient) <= 1e-9
        assert res.val_loss == pytest.approx(ref.val_loss, rel=1e-12)
    columns = [("lr", 0), ("lr_head", 1), ("warmup", 0), (beta, 1), ("weight_decay", 1)]
    for column in columns:
        hg = float(ref.hypergradient[table.columns.index(column)])
        fd = _fd(problem, table, state0, column)
        assert hg != 0.0, column
        assert abs(fd - hg) <= 1e-4 * abs(fd), (column, fd, hg)
    # the warm-up's later window starts after the ramp ended: no effect
    assert float(ref.hypergradient[table.columns.index(("warmup", 1))]) == 0.0


def test_the_compiled_forward_path_traces_the_step_once() -> None:
    """The compiled path passes the step number as a 0-d tensor: one graph, eager's result."""
    from torch._dynamo.testing import CompileCounter

    task = fmd.tasks.Digits(steps=12, batch_size=16, dtype=F64, optimizer="sf-adamw")
    problem, table, state0 = build_episode(task, schedules("sf-adamw", 3), seed=0)
    eager = run_forward(problem, table, state0, method="jvp")
    counter = CompileCounter()
    res = run_forward(problem, table, state0, compile=CompileOptions(width=4, backend=counter))
    assert eager.hypergradient is not None and res.hypergradient is not None
    assert rel(res.hypergradient, eager.hypergradient) <= 1e-12
    assert counter.frame_count == 1 and res.recompiles == 0


@pytest.mark.parametrize("r", [0.0, 1.0])
@pytest.mark.parametrize("optimizer", ["sf-adamw", "sf-sgd"])
@pytest.mark.parametrize("step", [0, 3, 9])
def test_closed_form_vjp_equals_autograd(optimizer: str, step: int, r: float) -> None:
    """Inside the warm-up (step 0, 3 of 6.5) and after it (9), on a state where lr_max came from
    an earlier, larger lr (step 9) or is the current one, with random cotangents everywhere."""
    opt = dataclasses.replace(make_optimizer(optimizer), r=r)
    g = torch.Generator().manual_seed(step)
    params = [torch.randn(4, 3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)]
    state = opt.init(params)
    h = {k: torch.tensor(v, dtype=F64) for k, v in opt.defaults.items()}
    h |= {"warmup": torch.tensor(6.5, dtype=F64), "weight_decay": torch.tensor(0.1, dtype=F64)}
    for t in range(step):  # a larger lr before: lr_max stays above the current lr at step 9
        grads = [torch.randn(p.shape, generator=g, dtype=F64) for p in params]
        params, state = opt.update(params, grads, state, {**h, "lr": h["lr"] * 3}, t)
    grads = [torch.randn(p.shape, generator=g, dtype=F64) for p in params]
    new_p, new_s = opt.update(params, grads, state, h, step)
    p_bar = [torch.randn(p.shape, generator=g, dtype=F64) for p in new_p]
    s_bar = [torch.randn(x.shape, generator=g, dtype=F64) for x in new_s]
    args = (params, grads, state, h, step, new_s, p_bar, s_bar)
    got = opt.update_vjp(*args)
    want = InnerOptimizer.update_vjp(opt, *args)
    for a, b in zip([*got[0], *got[1], *got[2]], [*want[0], *want[1], *want[2]], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for name in opt.hypers:
        torch.testing.assert_close(got[3][name], want[3][name], rtol=1e-10, atol=1e-12)
    assert float(got[3]["warmup"]) != 0.0 if step < 6 else float(got[3]["warmup"]) == 0.0


@pytest.mark.parametrize("engine", ["plain", "forward"])
def test_runs_resume_bitwise_from_snapshots(engine: str) -> None:
    """BatchNorm and dropout, sf-adamw: the scalars of the state resume with the rest."""
    run = bn_run(engine, "sf-adamw", 9, **({"method": "jvp"} if engine == "forward" else {}))
    whole = run()
    snaps = collect(run, every=4)
    assert [s.step for s in snaps] == [4, 8]
    for snap in snaps:
        assert_same(resumed(run, snap), whole)


def test_evaluation_reads_the_average_and_the_last_beta() -> None:
    """``eval_params`` is ``x = y + (1 - 1/beta)(z - y)`` with the beta of the last step, and
    is ``y`` itself before any step."""
    opt = ScheduleFreeSGD()
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 2, generator=g, dtype=F64), torch.randn(2, generator=g, dtype=F64)]
    state = opt.init(params)
    for a, b in zip(opt.eval_params(params, state), params, strict=True):
        assert torch.equal(a, b)
    h = {k: torch.tensor(v, dtype=F64) for k, v in opt.defaults.items()}
    for t, mom in enumerate((0.9, 0.5)):
        grads = [torch.randn(p.shape, generator=g, dtype=F64) for p in params]
        params, state = opt.update(params, grads, state, {**h, "momentum": torch.tensor(mom)}, t)
    z = state[:2]
    for x, y, zi in zip(opt.eval_params(params, state), params, z, strict=True):
        torch.testing.assert_close(x, y + (1 - 1 / 0.5) * (zi - y))


def test_registered_names_and_defaults() -> None:
    assert isinstance(make_optimizer("sf-adamw"), ScheduleFreeAdamW)
    assert isinstance(make_optimizer("SF-SGD"), ScheduleFreeSGD)
    assert make_optimizer("sf-adamw").defaults == {
        "lr": 0.0025,
        "beta1": 0.9,
        "beta2": 0.999,
        "weight_decay": 0.0,
        "warmup": 0.0,
    }
    assert not make_optimizer("sf-sgd").elementwise
    with pytest.raises(ValueError, match=r"`nesterov=True` needs optimizer='sgd'.*'sf-sgd'"):
        make_optimizer("sf-sgd", nesterov=True)
    task = fmd.tasks.Digits(steps=5, optimizer="sf-adamw", hypers={"warmup": 2})
    assert task.fixed_hypers()["warmup"] == 2.0
