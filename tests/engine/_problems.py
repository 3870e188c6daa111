"""Shared small problems for the engine tests (float64)."""

from __future__ import annotations

import torch
from torch import nn

from optuna_fmd.engine import FunctionalModel, HyperTable, InnerProblem, make_optimizer

F64 = torch.float64
#: Every inner optimiser the exactness tests run, as ``(optimizer, nesterov)``.
OPTIMIZERS = [
    ("sgd", False),
    ("sgd", True),
    ("adam", False),
    ("adamw", False),
    ("sf-adamw", False),
    ("sf-sgd", False),
]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error ``|a - b| / |b|``."""
    return float((a - b).norm() / b.norm())


def schedules(optimizer: str, k: int) -> dict[str, list[float]]:
    """K-window schedules of every hyperparameter of ``optimizer``, ramping across windows."""
    ramp = [1.0 + 0.5 * i / max(k - 1, 1) for i in range(k)]
    if optimizer == "sgd":
        return {
            "lr": [0.05 * r for r in ramp],
            "momentum": [0.9 / r for r in ramp],
            "weight_decay": [1e-3 * r for r in ramp],
        }
    if optimizer == "sf-sgd":
        return {
            "lr": [0.05 * r for r in ramp],
            "momentum": [0.9 / r for r in ramp],
            "weight_decay": [1e-3 * r for r in ramp],
            "warmup": [7.5 * r for r in ramp],
        }
    if optimizer == "sf-adamw":
        return {
            "lr": [3e-3 * r for r in ramp],
            "beta1": [0.9 / r for r in ramp],
            "beta2": [0.999] * k,
            "weight_decay": [1e-2 * r for r in ramp],
            "warmup": [7.5 * r for r in ramp],
        }
    return {
        "lr": [3e-3 * r for r in ramp],
        "beta1": [0.9 / r for r in ramp],
        "beta2": [0.999] * k,
        "weight_decay": [1e-2 * r for r in ramp],
    }


def bn_dropout_problem(
    optimizer: str, steps: int, batch: int = 16
) -> tuple[InnerProblem, list[torch.Tensor]]:
    """A Linear-BatchNorm-Tanh-Dropout-Linear network on random data, as an inner problem."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g, dtype=F64)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Tanh(), nn.Dropout(0.2), nn.Linear(12, 3)
    ).to(F64)
    model = FunctionalModel(net)

    def batch_at(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = (t * batch) % 192  # 192 is a multiple of the batch sizes used
        return x[i : i + batch], y[i : i + batch]

    problem = InnerProblem(
        model, make_optimizer(optimizer), batch_at, [(x[192:], y[192:])], steps, seed=5
    )
    params, stats = model.initial_state(net)
    return problem, problem.initial_state(params, stats)


def bn_table(problem: InnerProblem, optimizer: str) -> HyperTable:
    """Three lr windows and three momentum (SGD) or beta1 (Adam) windows."""
    defaults = {**problem.optimizer.defaults, "lr": 0.1 if optimizer == "sgd" else 1e-2}
    return HyperTable(
        {n: [v] * 3 if n in ("lr", "momentum", "beta1") else [v] for n, v in defaults.items()},
        ["lr", "momentum"] if optimizer == "sgd" else ["lr", "beta1"],
        problem.steps,
    )
