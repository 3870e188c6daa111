"""What every engine shares: the result type, the divergence test, the final hypergradient, the
batched jvp of a step, the memory figures the engines are planned by.

The engine modules import this one (and :mod:`._problem`), never each other in a circle:
``_common <- _forward, _reverse, _compiled, _reference, _options <- _auto <- _dispatch``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._problem import InnerProblem

__all__ = [
    "EngineResult",
    "Progress",
    "Step",
    "available_bytes",
    "batched_jvp",
    "check_discount",
    "discounted",
    "diverged",
    "final_hypergradient",
    "finish",
    "grow",
    "state_nbytes",
]

#: ``progress(t, train_loss)``, called after each training step.
Progress = Callable[[int, float], None]
#: A training step as a pure function: ``(state, hyper vector) -> (next state, train loss)``.
Step = Callable[[list[Tensor], Tensor], tuple[list[Tensor], Tensor]]


@dataclass
class EngineResult:
    """What an engine returns: the final state, validation figures and hypergradient per column."""

    state: list[Tensor]
    val_loss: float
    val_accuracy: float
    hypergradient: Tensor | None
    steps_done: int
    diverged: bool
    train_loss: float


def diverged(loss: float) -> bool:
    """Whether a training loss means the run diverged (NaN or infinite): every engine stops."""
    return not math.isfinite(loss)


def finish(
    problem: InnerProblem,
    state: list[Tensor],
    tangents: Sequence[Tensor] | None,
    steps_done: int,
    is_diverged: bool,
    train_loss: float,
    n_columns: int,
) -> EngineResult:
    """The :class:`EngineResult` of a run that ends at ``state``; with forward-mode
    ``tangents`` (and no divergence), the hypergradient ``grad_state L_val . Z_T`` too."""
    if tangents is None or is_diverged:
        with torch.no_grad():
            val_t, acc_t = problem.val_loss(state)
        return EngineResult(
            state, float(val_t), float(acc_t), None, steps_done, is_diverged, train_loss
        )
    val, acc, hg = final_hypergradient(problem, state, tangents, n_columns)
    return EngineResult(state, val, acc, hg, steps_done, is_diverged, train_loss)


def final_hypergradient(
    problem: InnerProblem, state: Sequence[Tensor], tangents: Sequence[Tensor], n_columns: int
) -> tuple[float, float, Tensor]:
    """Validation loss, accuracy and ``grad_state L_val . Z_T`` for every column."""
    leaves = [s.detach().requires_grad_(s.is_floating_point()) for s in state]
    val, acc = problem.val_loss(leaves)
    grads = torch.autograd.grad(val, leaves, allow_unused=True)
    hg = leaves[0].new_zeros(n_columns)
    for g, z in zip(grads, tangents, strict=True):
        if g is not None and z.shape[0]:
            hg[: z.shape[0]] += (z.reshape(z.shape[0], -1) @ g.reshape(-1)).to(hg.dtype)
    return float(val.detach()), float(acc), hg


def check_discount(discount: float) -> float:
    """``discount`` as a float in (0, 1], else ``ValueError``."""
    if isinstance(discount, bool) or not isinstance(discount, (int, float)):
        raise ValueError(f"`discount` must be a number in (0, 1], but got {discount!r}.")
    if not 0.0 < float(discount) <= 1.0:
        raise ValueError(f"`discount` must be in (0, 1], but got {discount!r}.")
    return float(discount)


def discounted(xs: list[Tensor], discount: float) -> list[Tensor]:
    """Every tensor of ``xs`` times ``discount`` (the same list at 1: the exact hypergradient is
    untouched to the bit).

    Discounted tangents (as in MARTHE, Donini et al., ICLR 2020) carry
    ``Z_{t+1} = A_t (discount Z_t) + B_t`` instead of ``Z_{t+1} = A_t Z_t + B_t`` (``A_t``: the
    step's Jacobian in the state, ``B_t``: in the hyperparameters): the term of step ``t`` reaches
    the hypergradient through ``k`` later steps times ``discount ** k``. Forward mode scales the
    tangents before each step; reverse mode scales the adjoint after each step's vjp.
    """
    if discount == 1.0:
        return xs
    return [discount * x for x in xs]


def grow(tangents: list[Tensor], n: int) -> list[Tensor]:
    """Append zero columns so that every tangent has ``n`` columns."""
    have = tangents[0].shape[0]
    if n <= have:
        return tangents
    return [torch.cat([z, z.new_zeros((n - have, *z.shape[1:]))]) for z in tangents]


def batched_jvp(
    step: Step, state: list[Tensor], h: Tensor
) -> Callable[[list[Tensor], Tensor], tuple[list[Tensor], Tensor, list[Tensor]]]:
    """``(tangent columns, hyper tangents) -> (next state, loss, next tangent columns)``: ``jvp``
    of ``step`` at ``(state, h)``, vmapped over columns (state and loss are not batched; every
    column sees the same random numbers)."""

    def push(zs: list[Tensor], dhv: Tensor) -> tuple[list[Tensor], Tensor, list[Tensor]]:
        (out, loss), (dout, _) = torch.func.jvp(step, (state, h), (zs, dhv))  # type: ignore[misc]
        return out, loss, dout

    return torch.func.vmap(
        push,
        in_dims=(0, 0),
        out_dims=(None, None, 0),  # type: ignore[arg-type]  # None: not batched
        randomness="same",
    )


def state_nbytes(state: Sequence[Tensor]) -> int:
    """Bytes of a flat state: the sum of ``numel * element_size`` of its tensors."""
    return sum(s.numel() * s.element_size() for s in state)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (CUDA: free device memory; CPU: ``MemAvailable``), if known."""
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
