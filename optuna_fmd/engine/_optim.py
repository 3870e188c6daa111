"""Functional inner optimisers whose hyperparameters are tensors, so tangents flow through them.

Each optimiser is an ``init`` / ``update`` pair over flat lists of tensors. ``update`` receives the
current value of every hyperparameter as a 0-d tensor (the engine looks it up from the window
schedule), so forward- and reverse-mode differentiation see the hyperparameters as ordinary inputs.
The update rules follow ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["SGD", "Adam", "InnerOptimizer", "make_optimizer"]

Hypers = Mapping[str, Tensor]


@dataclass(frozen=True)
class InnerOptimizer:
    """Base of the functional optimisers: names of hyperparameters and their defaults."""

    defaults: Mapping[str, float] = field(default_factory=dict)
    #: The update of each coordinate depends on that coordinate's (param, grad, state) only.
    elementwise: ClassVar[bool] = True
    #: The update is affine in (param, grad, state) with coefficients set by the hypers alone.
    constant_jacobian: ClassVar[bool] = False

    @property
    def hypers(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        raise NotImplementedError


@dataclass(frozen=True)
class SGD(InnerOptimizer):
    """SGD with heavy-ball or Nesterov momentum and L2 weight decay (``torch.optim.SGD``, no
    dampening).

    ``v <- momentum * v + g + weight_decay * p``; ``p <- p - lr * v`` (Nesterov:
    ``p <- p - lr * (g + weight_decay * p + momentum * v)``).
    """

    constant_jacobian: ClassVar[bool] = True
    nesterov: bool = False
    defaults: Mapping[str, float] = field(
        default_factory=lambda: {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    )

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        return [torch.zeros_like(p) for p in params]

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        lr, mom, wd = hypers["lr"], hypers["momentum"], hypers["weight_decay"]
        new_params, new_state = [], []
        for p, g, v in zip(params, grads, state, strict=True):
            d = g + wd * p
            v = mom * v + d
            direction = d + mom * v if self.nesterov else v
            new_params.append(p - lr * direction)
            new_state.append(v)
        return new_params, new_state


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt with zero (not NaN) derivatives where x == 0, in forward and reverse mode."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


@dataclass(frozen=True)
class Adam(InnerOptimizer):
    """Adam (L2 weight decay) or AdamW (``decoupled=True``), as ``torch.optim.Adam`` / ``AdamW``.

    Bias corrections use the current beta values: ``1 - beta1 ** (t + 1)``.
    """

    decoupled: bool = False
    eps: float = 1e-8
    defaults: Mapping[str, float] = field(
        default_factory=lambda: {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0}
    )

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        return [torch.zeros_like(p) for p in params] + [torch.zeros_like(p) for p in params]

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        lr, b1, b2, wd = hypers["lr"], hypers["beta1"], hypers["beta2"], hypers["weight_decay"]
        n = len(params)
        ms, vs = state[:n], state[n:]
        c1 = 1 - b1 ** (step + 1)
        c2 = 1 - b2 ** (step + 1)
        new_params, new_m, new_v = [], [], []
        for p, g, m, v in zip(params, grads, ms, vs, strict=True):
            if self.decoupled:
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * (g * g)
            denom = _safe_sqrt(v / c2) + self.eps
            new_params.append(p - lr * (m / c1) / denom)
            new_m.append(m)
            new_v.append(v)
        return new_params, new_m + new_v


def make_optimizer(name: str, *, nesterov: bool = False) -> InnerOptimizer:
    """The inner optimiser called ``name``: ``"sgd"``, ``"adam"`` or ``"adamw"``."""
    if not isinstance(name, str) or name.lower() not in ("sgd", "adam", "adamw"):
        raise ValueError(f"`optimizer` must be one of 'sgd', 'adam', 'adamw', but got {name!r}.")
    name = name.lower()
    if nesterov and name != "sgd":
        raise ValueError(f"`nesterov=True` needs optimizer='sgd', but got optimizer={name!r}.")
    if name == "sgd":
        return SGD(nesterov=nesterov)
    return Adam(decoupled=name == "adamw")
