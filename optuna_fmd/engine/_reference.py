"""Reference hypergradients, for tests and as benchmark baselines.

- :func:`run_bptt`: reverse mode through the unrolled loop (stores every step: memory O(T)).
- :func:`run_fds`: the FDS hand recurrence for SGD + momentum + L2 weight decay, with Hessian-
  vector products by double backward in a python loop over active columns (the public FDS code's
  method; Micaelli & Storkey, NeurIPS 2021).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import EngineResult, Progress, check_discount, final_hypergradient
from ._optim import SGD
from ._problem import HyperTable, InnerProblem

__all__ = ["run_bptt", "run_fds"]


def run_bptt(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    progress: Progress | None = None,
    discount: float = 1.0,
) -> EngineResult:
    """Hypergradient by reverse mode through the whole unrolled training loop.

    With ``discount < 1``, the discounted hypergradient of :func:`~._common.discounted` by its
    definition: each step's input state passes its gradient on times ``discount`` (its value
    unchanged to the bit), so the term of step ``t`` reaches the hypergradient through ``k``
    later steps times ``discount ** k``.
    """
    discount = check_discount(discount)
    values = table.table(state0[0], requires_grad=True)
    state = [s.detach() for s in state0]
    loss = state[0].new_zeros(())
    for t in range(problem.steps):
        if discount < 1.0 and t > 0:
            state = [_scale_gradient(s, discount) for s in state]
        h = table.lookup(values, t)
        with problem.rng(t):
            state, loss = problem.step(state, h, t, problem.batch_at(t))
        if progress is not None:
            progress(t, float(loss.detach()))
    val, acc = problem.val_loss(state)
    leaves = [values[n] for n in table.scheduled]
    grads = torch.autograd.grad(val, leaves, allow_unused=True)
    by_name = {
        n: (g if g is not None else torch.zeros_like(values[n]))
        for n, g in zip(table.scheduled, grads, strict=True)
    }
    hg = torch.stack([by_name[n][k] for n, k in table.columns]).detach()
    final = [s.detach() for s in state]
    return EngineResult(
        final, float(val.detach()), float(acc), hg, problem.steps, False, float(loss.detach())
    )


def _scale_gradient(x: Tensor, factor: float) -> Tensor:
    """``x`` in value (bitwise: ``x + factor * 0``); ``factor`` times its gradient."""
    if not x.is_floating_point():
        return x
    frozen = x.detach()
    return frozen + factor * (x - frozen)


def run_fds(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    progress: Progress | None = None,
) -> EngineResult:
    """The FDS recurrence for SGD + momentum + weight decay with a python loop of HVPs.

    ``C <- beta C + H Z + xi Z + [mom col] v + [wd col] theta``;
    ``Z <- Z - alpha C - [lr col] v_{t+1}``; hypergradient ``grad L_val . Z_T``.
    """
    opt = problem.optimizer
    if not isinstance(opt, SGD) or opt.nesterov:
        raise ValueError("the FDS recurrence is defined for SGD with heavy-ball momentum only.")
    if problem.partitions is not None:
        raise ValueError("the FDS recurrence has one schedule per hyperparameter (no groups).")
    if problem.model.stat_names:
        raise ValueError("the FDS recurrence does not carry BatchNorm running statistics.")
    if problem.grad_clip is not None:
        raise ValueError("the FDS reference is exact only without gradient clipping.")
    if problem.loss_side is not None:
        raise ValueError("the FDS recurrence has no class weights or label smoothing.")
    params, velocity, _ = problem.unpack([s.detach() for s in state0])
    n_cols = table.n_columns
    z = [p.new_zeros((n_cols, *p.shape)) for p in params]
    c = [p.new_zeros((n_cols, *p.shape)) for p in params]
    loss_value = float("nan")
    for t in range(problem.steps):
        with problem.rng(t):
            params, velocity, loss = fds_step(problem, table, t, params, velocity, z, c)
        loss_value = float(loss)
        if progress is not None:
            progress(t, loss_value)
    state = [*params, *velocity]
    tangents = [*z, *(torch.zeros_like(zi) for zi in z)]
    val, acc, hg = final_hypergradient(problem, state, tangents, n_cols)
    return EngineResult(state, val, acc, hg, problem.steps, False, loss_value)


def fds_step(
    problem: InnerProblem,
    table: HyperTable,
    t: int,
    params: list[Tensor],
    velocity: list[Tensor],
    z: list[Tensor],
    c: list[Tensor],
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """One step of the FDS recurrence; updates the tangents ``z`` and ``c`` in place."""
    names = table.names
    h = table.values_at(t, params[0])
    alpha, beta, xi = (h[names.index(n)] for n in ("lr", "momentum", "weight_decay"))
    active = table.n_active(t)
    current = {n: (n, table.window(n, t)) for n in table.scheduled}
    theta = [p.detach().requires_grad_() for p in params]
    with torch.enable_grad():
        loss, _ = problem.model.train_loss(theta, [], problem.batch_at(t))
        g = torch.autograd.grad(loss, theta, create_graph=True)
    for j in range(active):
        hz = torch.autograd.grad(g, theta, grad_outputs=[zi[j] for zi in z], retain_graph=True)
        for i in range(len(params)):
            cj = beta * c[i][j] + hz[i] + xi * z[i][j]
            if table.columns[j] == current.get("momentum"):
                cj = cj + velocity[i]
            if table.columns[j] == current.get("weight_decay"):
                cj = cj + params[i]
            c[i][j] = cj.detach()
    with torch.no_grad():
        velocity = [beta * v + gi + xi * p for v, gi, p in zip(velocity, g, params, strict=True)]
        for j in range(active):
            for i in range(len(params)):
                zj = z[i][j] - alpha * c[i][j]
                if table.columns[j] == current.get("lr"):
                    zj = zj - velocity[i]
                z[i][j] = zj
        params = [p - alpha * v for p, v in zip(params, velocity, strict=True)]
    return params, velocity, loss.detach()
