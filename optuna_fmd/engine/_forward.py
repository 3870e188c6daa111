"""Forward-mode hypergradients: tangents of the whole training state carried through every step.

At step t, the tangents ``Z = d state / d columns`` of the active columns are pushed through the
functional step with ``torch.func.jvp``, batched over columns with ``torch.func.vmap`` (optionally in
chunks, to bound memory). The tangent of the hyperparameter vector itself is one-hot: column (h, k)
moves hyperparameter h while its window k is the current one. Columns whose window has not started
are exactly zero and are not stored or computed. Memory is constant in the horizon T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._problem import HyperTable, InnerProblem

__all__ = ["EngineResult", "final_hypergradient", "run_forward", "run_plain"]

Progress = Callable[[int, float], None]


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


def _finish(
    problem: InnerProblem,
    state: list[Tensor],
    tangents: Sequence[Tensor] | None,
    steps_done: int,
    diverged: bool,
    train_loss: float,
    n_columns: int,
) -> EngineResult:
    if tangents is None or diverged:
        with torch.no_grad():
            val, acc = problem.val_loss(state)
        return EngineResult(state, float(val), float(acc), None, steps_done, diverged, train_loss)
    val, acc, hg = final_hypergradient(problem, state, tangents, n_columns)
    return EngineResult(state, val, acc, hg, steps_done, diverged, train_loss)


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


def _grow(tangents: list[Tensor], n: int) -> list[Tensor]:
    """Append zero columns so that every tangent has ``n`` columns."""
    have = tangents[0].shape[0]
    if n <= have:
        return tangents
    return [torch.cat([z, z.new_zeros((n - have, *z.shape[1:]))]) for z in tangents]


def run_plain(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    progress: Progress | None = None,
) -> EngineResult:
    """Train without hypergradient (the same functional step), then evaluate."""
    state = [s.detach() for s in state0]
    loss_value = float("nan")
    t = 0
    with torch.no_grad():
        for t in range(problem.steps):
            h = table.values_at(t, state[0])
            batch = problem.batch_at(t)
            with problem.rng(t):
                state, loss = problem.step(state, h, t, batch)
            loss_value = float(loss)
            if progress is not None:
                progress(t, loss_value)
            if loss_value != loss_value or abs(loss_value) == float("inf"):
                return _finish(problem, state, None, t + 1, True, loss_value, table.n_columns)
    return _finish(problem, state, None, problem.steps, False, loss_value, table.n_columns)


def run_forward(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    chunk_size: int | None = None,
    method: str = "auto",
    progress: Progress | None = None,
) -> EngineResult:
    """Train while carrying forward-mode tangents; return the exact hypergradient per column.

    Args:
        problem: The inner problem (model, optimiser, data).
        table: Hyperparameter values and the differentiated columns.
        state0: Initial flat state (see :class:`InnerProblem`).
        chunk_size: Push at most this many tangent columns at once through ``vmap`` (bounds memory;
            ``None`` pushes all active columns together).
        method: How tangents cross the model: ``"jvp"`` (``vmap(jvp(step))``, any model),
            ``"hvp"`` (Hessian-vector products by batched double backward, then ``vmap(jvp)`` of
            the optimiser update; needs a model without running statistics), or ``"auto"``
            (``"hvp"`` where it applies: it is the faster on CPUs).
        progress: Called as ``progress(t, train_loss)`` after each step.
    """
    if method not in ("auto", "jvp", "hvp"):
        raise ValueError(f"`method` must be 'auto', 'jvp' or 'hvp', but got {method!r}.")
    if method == "hvp" and problem.model.stat_names:
        raise ValueError("method='hvp' needs a model without BatchNorm running statistics.")
    push = _push_jvp if method == "jvp" or problem.model.stat_names else _push_hvp
    state = [s.detach() for s in state0]
    tangents = [s.new_zeros((0, *s.shape)) for s in state]
    loss_value = float("nan")
    for t in range(problem.steps):
        n_active = table.n_active(t)
        tangents = _grow(tangents, n_active)
        h = table.values_at(t, state[0])
        batch = problem.batch_at(t)
        with problem.rng(t):
            if n_active == 0:
                with torch.no_grad():
                    state, loss = problem.step(state, h, t, batch)
            else:
                state, loss, tangents = push(
                    problem, state, h, t, batch, tangents, table, n_active, chunk_size
                )
        loss_value = float(loss)
        if progress is not None:
            progress(t, loss_value)
        if loss_value != loss_value or abs(loss_value) == float("inf"):
            return _finish(problem, state, None, t + 1, True, loss_value, table.n_columns)
    tangents = _grow(tangents, table.n_columns)
    return _finish(problem, state, tangents, problem.steps, False, loss_value, table.n_columns)


def _push_jvp(
    problem: InnerProblem,
    state: list[Tensor],
    h: Tensor,
    t: int,
    batch: tuple[Tensor, Tensor],
    tangents: list[Tensor],
    table: HyperTable,
    n_active: int,
    chunk_size: int | None,
) -> tuple[list[Tensor], Tensor, list[Tensor]]:
    dh = table.hyper_tangent(t, n_active, h)

    def step(s: list[Tensor], hv: Tensor) -> tuple[list[Tensor], Tensor]:
        return problem.step(s, hv, t, batch)

    def push(zs: list[Tensor], dhv: Tensor) -> tuple[list[Tensor], Tensor, list[Tensor]]:
        (out, loss), (dout, _) = torch.func.jvp(step, (state, h), (zs, dhv))
        return out, loss, dout

    batched = torch.func.vmap(
        push, in_dims=(0, 0), out_dims=(None, None, 0), randomness="same", chunk_size=chunk_size
    )
    with torch.no_grad():
        new_state, loss, new_tangents = batched(tangents, dh)
    return list(new_state), loss, list(new_tangents)


def _push_hvp(
    problem: InnerProblem,
    state: list[Tensor],
    h: Tensor,
    t: int,
    batch: tuple[Tensor, Tensor],
    tangents: list[Tensor],
    table: HyperTable,
    n_active: int,
    chunk_size: int | None,
) -> tuple[list[Tensor], Tensor, list[Tensor]]:
    """Tangents through one step as ``H dp`` (batched double backward) + jvp of the update."""
    dh = table.hyper_tangent(t, n_active, h)
    params, opt_state, _ = problem.unpack(state)
    n_p = len(params)
    leaves = [p.detach().requires_grad_() for p in params]
    with torch.enable_grad():
        loss, _ = problem.model.train_loss(leaves, [], batch)
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        dgrads = _batched_hvp(grads, leaves, tangents[:n_p], chunk_size)
    grads = [g.detach() for g in grads]
    with torch.no_grad():
        new_p, new_s, d_p, d_s = _update_tangents(
            problem, params, grads, opt_state, h, t, tangents[:n_p], dgrads, tangents[n_p:], dh
        )
    return [*new_p, *new_s], loss.detach(), [*d_p, *d_s]


def _update_tangents(
    problem: InnerProblem,
    params: list[Tensor],
    grads: list[Tensor],
    opt_state: list[Tensor],
    h: Tensor,
    t: int,
    dp: list[Tensor],
    dg: list[Tensor],
    ds: list[Tensor],
    dh: Tensor,
) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
    """Tangents through an elementwise optimiser update from its per-coordinate Jacobian.

    The update of each coordinate depends only on that coordinate's (param, grad, state slots) and
    the hyperparameters, so its Jacobian is a small block per coordinate. One ``vmap(jvp)`` over
    the 2 + slots + H input directions gives every block; the n tangent columns then cost one
    multiply-add per (output, input) pair, and each hyperparameter adds its derivative to the one
    column it is active in (``dh`` is one-hot) instead of to all n.
    """
    names = problem.optimizer.hypers
    n_p = len(params)
    slots = len(opt_state) // n_p
    n_h = h.shape[0]
    n_dir = 2 + slots + n_h

    def update(
        p: list[Tensor], g: list[Tensor], s: list[Tensor], hv: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        if problem.grad_clip is not None:
            g = [gi.clamp(-problem.grad_clip, problem.grad_clip) for gi in g]
        return problem.optimizer.update(p, g, s, {n: hv[i] for i, n in enumerate(names)}, t)

    def direction(x: Tensor, row: int) -> Tensor:
        e = x.new_zeros((n_dir, *x.shape))
        e[row] = 1.0
        return e

    tp = [direction(p, 0) for p in params]
    tg = [direction(g, 1) for g in grads]
    ts = [direction(x, 2 + i // n_p) for i, x in enumerate(opt_state)]
    th = h.new_zeros((n_dir, n_h))
    th[2 + slots :] = torch.eye(n_h, dtype=h.dtype, device=h.device)

    def push(
        a: list[Tensor], b: list[Tensor], c: list[Tensor], d: Tensor
    ) -> tuple[tuple[list[Tensor], list[Tensor]], tuple[list[Tensor], list[Tensor]]]:
        return torch.func.jvp(update, (params, grads, opt_state, h), (a, b, c, d))

    batched = torch.func.vmap(push, out_dims=((None, None), (0, 0)))
    (new_p, new_s), (jac_p, jac_s) = batched(tp, tg, ts, th)
    # Rows of the one-hot hyper tangent: column j moves hyper i at this step.
    hyper_rows = [(int(j), i) for j, i in zip(*torch.nonzero(dh, as_tuple=True), strict=True)]

    def combine(jac: Tensor, k: int) -> Tensor:
        # output tensor k (within its kind) of param index k % n_p
        i = k % n_p
        out = jac[0] * dp[i]
        out.addcmul_(jac[1], dg[i])
        for slot in range(slots):
            out.addcmul_(jac[2 + slot], ds[slot * n_p + i])
        for j, hi in hyper_rows:
            out[j] += jac[2 + slots + hi]
        return out

    d_p = [combine(jac, k) for k, jac in enumerate(jac_p)]
    d_s = [combine(jac, k) for k, jac in enumerate(jac_s)]
    return list(new_p), list(new_s), d_p, d_s


def _batched_hvp(
    grads: Sequence[Tensor], leaves: Sequence[Tensor], dp: Sequence[Tensor], chunk: int | None
) -> list[Tensor]:
    """``H dp`` for every column of ``dp`` by one batched double backward (chunked if asked)."""
    n = dp[0].shape[0]
    size = n if chunk is None else chunk
    parts: list[tuple[Tensor, ...]] = []
    for lo in range(0, n, size):
        cols = [z[lo : lo + size] for z in dp]
        last = lo + size >= n
        parts.append(
            torch.autograd.grad(
                grads, leaves, grad_outputs=cols, is_grads_batched=True, retain_graph=not last
            )
        )
    if len(parts) == 1:
        return list(parts[0])
    return [torch.cat(col) for col in zip(*parts, strict=True)]
