"""Forward-mode hypergradients: tangents of the whole training state carried through every step.

At step t, the tangents ``Z = d state / d columns`` of the active columns are pushed through the
functional step with ``torch.func.jvp``, batched over columns with ``torch.func.vmap`` (optionally
in chunks, to bound memory). The tangent of the hyperparameter vector itself is one-hot: column (h,
k) moves hyperparameter h while its window k is the current one. Columns whose window has not
started are exactly zero and are not stored or computed. Memory is constant in the horizon T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ._common import (
    EngineResult,
    Progress,
    batched_jvp,
    check_discount,
    discounted,
    diverged,
    finish,
    grow,
)
from ._compiled import CompileOptions, run_compiled, use_compiled
from ._problem import HyperTable, InnerProblem
from ._snapshot import Snapshot, Snapshots

__all__ = ["TANGENT_METHODS", "run_forward", "run_plain", "tangent_method", "tangent_step"]

#: How forward mode pushes tangents across the model (see :func:`run_forward`).
TANGENT_METHODS = ("auto", "jvp", "hvp")


def run_plain(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    progress: Progress | None = None,
    snapshots: Snapshots | None = None,
    validate_every: int | None = None,
    on_validation: Callable[[int, float], None] | None = None,
) -> EngineResult:
    """Train without hypergradient (the same functional step), then evaluate.

    Bitwise the same trajectory as ``problem.step`` under ``problem.rng``, but the gradient is
    taken by plain ``torch.autograd.grad`` (``torch.func.grad`` costs ~0.5 ms more per step on a
    small CPU model).
    With ``snapshots``, a :class:`~optuna_fmd.engine.Snapshot` is saved every ``every`` steps and
    a run resumes from ``snapshots.resume``, bitwise as if never interrupted.
    With ``validate_every``, ``on_validation(steps_done, val_loss)`` receives the validation loss
    after every this many steps (before the last); an exception it raises stops training (e.g.
    Optuna's ``TrialPruned``). The trajectory is the same with or without it.
    """
    state = [s.detach() for s in state0]
    loss_value = float("nan")
    first = 0
    snap = None
    if snapshots is not None:
        snap = snapshots.restore("plain", state, table.n_columns, problem.steps)
    if snap is not None:
        first, state, loss_value = snap.step, snap.state, snap.train_loss
    with torch.no_grad():
        for t in range(first, problem.steps):
            h = table.values_at(t, state[0])
            batch = problem.batch_at(t)
            with problem.rng(t):
                state, loss = problem.step_plain(state, h, t, batch)
            loss_value = float(loss)
            if progress is not None:
                progress(t, loss_value)
            if diverged(loss_value):
                return finish(problem, state, None, t + 1, True, loss_value, table.n_columns)
            if snapshots is not None and t + 1 < problem.steps and snapshots.due(t, t + 1):
                snapshots.take(Snapshot("plain", t + 1, state, loss_value, table.n_columns))
            due = validate_every and (t + 1) % validate_every == 0 and t + 1 < problem.steps
            if on_validation is not None and due:
                on_validation(t + 1, float(problem.val_loss(state)[0]))
    return finish(problem, state, None, problem.steps, False, loss_value, table.n_columns)


def tangent_method(problem: InnerProblem, method: str = "auto") -> str:
    """``"hvp"`` or ``"jvp"``: how forward mode pushes tangents for ``method`` on ``problem``.

    ``"auto"`` is ``"hvp"`` where it applies (a model without running statistics and an
    elementwise optimiser: the faster on CPUs), else ``"jvp"``.
    """
    if method not in TANGENT_METHODS:
        raise ValueError(f"`method` must be one of {TANGENT_METHODS}, but got {method!r}.")
    hvp_ok = not problem.model.stat_names and problem.optimizer.elementwise
    if method == "hvp" and not hvp_ok:
        raise ValueError(
            "method='hvp' needs a model without BatchNorm running statistics and an elementwise "
            "optimiser; use method='jvp'."
        )
    if method == "auto":
        return "hvp" if hvp_ok else "jvp"
    return method


def tangent_step(
    problem: InnerProblem,
    table: HyperTable,
    state: list[Tensor],
    tangents: list[Tensor],
    t: int,
    *,
    method: str = "auto",
    chunk_size: int | None = None,
) -> tuple[list[Tensor], Tensor, list[Tensor]]:
    """One forward-mode step: ``(state_t, Z_t) -> (state_{t+1}, train loss, Z_{t+1})``.

    ``tangents`` hold one column per active hyperparameter column (``tangents[i].shape[0]``
    columns, a prefix of ``table.columns``); step ``t`` draws its minibatch and random numbers
    as every engine does. ``method`` and ``chunk_size`` as in :func:`run_forward`.
    """
    push = _push_hvp if tangent_method(problem, method) == "hvp" else _push_jvp
    n_active = tangents[0].shape[0] if tangents else 0
    h = table.values_at(t, state[0])
    batch = problem.batch_at(t)
    with problem.rng(t):
        if n_active == 0:
            new_state, loss = problem.step_plain(state, h, t, batch)
            return new_state, loss, tangents
        return push(problem, state, h, t, batch, tangents, table, n_active, chunk_size)


def run_forward(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    chunk_size: int | None = None,
    method: str = "auto",
    progress: Progress | None = None,
    snapshots: Snapshots | None = None,
    compile: bool | CompileOptions | None = None,
    discount: float = 1.0,
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
        snapshots: Save a :class:`~optuna_fmd.engine.Snapshot` (state and tangents) every
            ``snapshots.every`` steps, and resume from ``snapshots.resume`` if set: the result is
            bitwise that of an uninterrupted run with the same ``method`` and ``chunk_size``.
        compile: Run the compiled ``vmap(jvp(step))`` path (:mod:`._compiled`; a
            :class:`CompileOptions` sets it up); ``None``: as
            :func:`~optuna_fmd.engine._compiled.use_compiled` decides (on when the state lives on
            a CUDA device, ``method`` is not ``"hvp"`` and no snapshots are taken).
        discount: Discounted tangents (:func:`~._common.discounted`; 1: exact; the compiled path
            carries exact ones only).
    """
    if method not in TANGENT_METHODS:
        raise ValueError(f"`method` must be one of {TANGENT_METHODS}, but got {method!r}.")
    discount = check_discount(discount)
    if use_compiled(compile, state0, method, resumable=snapshots is not None, discount=discount):
        return run_compiled(
            problem, table, state0, chunk_size=chunk_size, options=compile, progress=progress
        )
    method = tangent_method(problem, method)
    state = [s.detach() for s in state0]
    tangents = [s.new_zeros((0, *s.shape)) for s in state]
    loss_value = float("nan")
    first = 0
    snap = None
    if snapshots is not None:
        snap = snapshots.restore("forward", state, table.n_columns, problem.steps)
    if snap is not None and snap.tangents is not None:
        first, state, tangents, loss_value = snap.step, snap.state, snap.tangents, snap.train_loss
    for t in range(first, problem.steps):
        tangents = grow(discounted(tangents, discount), table.n_active(t))
        state, loss, tangents = tangent_step(
            problem, table, state, tangents, t, method=method, chunk_size=chunk_size
        )
        loss_value = float(loss)
        if progress is not None:
            progress(t, loss_value)
        if diverged(loss_value):
            return finish(problem, state, None, t + 1, True, loss_value, table.n_columns)
        if snapshots is not None and t + 1 < problem.steps and snapshots.due(t, t + 1):
            taken = Snapshot(
                "forward", t + 1, state, loss_value, table.n_columns, tangents=tangents
            )
            snapshots.take(taken)
    tangents = grow(tangents, table.n_columns)
    return finish(problem, state, tangents, problem.steps, False, loss_value, table.n_columns)


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

    batched = batched_jvp(step, state, h)
    size = n_active if chunk_size is None else chunk_size
    parts: list[Any] = []
    with torch.no_grad():
        for lo in range(0, n_active, size):
            with problem.rng(t):  # every chunk sees the same dropout masks
                parts.append(batched([z[lo : lo + size] for z in tangents], dh[lo : lo + size]))
    new_state, loss, new_tangents = parts[0]
    if len(parts) > 1:
        new_tangents = [torch.cat(cols) for cols in zip(*(p[2] for p in parts), strict=True)]
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
        if problem.loss_side is None:
            loss, _ = problem.train_loss(leaves, [], batch, h)
            grads = torch.autograd.grad(loss, leaves, create_graph=True)
            dgrads = _batched_hvp(grads, leaves, tangents[:n_p], chunk_size)
        else:  # d grad = H dp + d(grad)/dh dh = grad_p(<grad_p L, dp> + <grad_h L, dh>)
            hl = h.detach().requires_grad_()
            loss, _ = problem.train_loss(leaves, [], batch, hl)
            both = torch.autograd.grad(loss, [*leaves, hl], create_graph=True)
            grads = both[:-1]
            dgrads = _batched_hvp(both, leaves, [*tangents[:n_p], dh], chunk_size)
    with torch.no_grad():
        new_p, new_s, d_p, d_s = _update_tangents_by_partition(
            problem,
            params,
            [g.detach() for g in grads],
            opt_state,
            h,
            t,
            tangents[:n_p],
            dgrads,
            tangents[n_p:],
            dh,
        )
    return [*new_p, *new_s], loss.detach(), [*d_p, *d_s]


def _update_tangents_by_partition(
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
    """:func:`_update_tangents` for each group of parameters that shares its hyperparameters."""
    if problem.partitions is None:
        return _update_tangents(problem, params, grads, opt_state, h, t, dp, dg, ds, dh)
    n_p = len(params)
    slots = len(opt_state) // n_p
    new_p, new_s = list(params), list(opt_state)
    d_p, d_s = list(dp), list(ds)
    for part in problem.partitions:
        idx = part.params
        in_state = [k * n_p + i for k in range(slots) for i in idx]
        sel = torch.tensor(part.hypers, device=h.device)
        out = _update_tangents(
            problem,
            [params[i] for i in idx],
            [grads[i] for i in idx],
            [opt_state[j] for j in in_state],
            h[sel],
            t,
            [dp[i] for i in idx],
            [dg[i] for i in idx],
            [ds[j] for j in in_state],
            dh[:, sel],
        )
        for pos, i in enumerate(idx):
            new_p[i], d_p[i] = out[0][pos], out[2][pos]
        for pos, j in enumerate(in_state):
            new_s[j], d_s[j] = out[1][pos], out[3][pos]
    return new_p, new_s, d_p, d_s


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
    the hyperparameters, so its Jacobian is a small block per coordinate, found by ``jvp`` of the
    update over the flattened inputs replicated once per input direction. When the optimiser says
    its Jacobian does not depend on the coordinates (SGD: an affine update), the blocks come from
    a single probe coordinate. The n tangent columns then cost one multiply-add per (output,
    input) pair, and each scheduled hyperparameter adds its derivative (one ``jvp`` direction) to
    the one column it is active in (``dh`` is one-hot) instead of to all n.
    """
    n_p = len(params)
    slots = len(opt_state) // n_p
    n_state = 2 + slots
    sizes = [p.numel() for p in params]
    probe = problem.optimizer.constant_jacobian and problem.grad_clip is None
    update = _flat_update(problem, t)
    inputs = [_flat(params), _flat(grads)] + [
        _flat(opt_state[k * n_p : (k + 1) * n_p]) for k in range(slots)
    ]
    # Rows of the one-hot hyper tangent: column j moves hyper i at this step.
    hyper_cols = [(int(j), int(i)) for j, i in zip(*torch.nonzero(dh, as_tuple=True), strict=True)]
    # 1. Blocks d(out)/d(input) for the state inputs.
    probed = [x[:1] for x in inputs] if probe else inputs
    _, (jp, js) = _jvp_rows(update, probed, h, range(n_state), [None] * n_state)
    # 2. d(out)/d(hyper) for each hyper with an active column, and the primal outputs.
    hyper_rows: list[int | None] = [hi for _, hi in hyper_cols] or [None]
    (new_p, new_s), (hp, hs) = _jvp_rows(update, inputs, h, [None] * n_state, hyper_rows)

    def split(x: Tensor) -> list[Tensor]:
        return [v.view(p.shape) for v, p in zip(x.split(sizes), params, strict=True)]

    def unflat(x: Tensor) -> list[Tensor]:
        return [x.reshape(()) for _ in params] if x.shape[0] == 1 and probe else split(x)

    def combine(jac: Tensor, hjac: Tensor) -> list[Tensor]:
        blocks = [unflat(jac[r]) for r in range(n_state)]
        hblocks = [unflat(hjac[r]) for r in range(len(hyper_cols))]
        ins = [dp, dg, *(ds[k * n_p : (k + 1) * n_p] for k in range(slots))]
        return [_column_sum(i, ins, blocks, hblocks, hyper_cols) for i in range(n_p)]

    d_p = combine(jp[0], hp[0])
    d_s = [d for jac, hjac in zip(js, hs, strict=True) for d in combine(jac, hjac)]
    new_params = split(new_p[0][0])
    new_state = [v for x in new_s for v in split(x[0])]
    return new_params, new_state, d_p, d_s


def _flat(xs: Sequence[Tensor]) -> Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


def _flat_update(problem: InnerProblem, t: int) -> Callable[..., Any]:
    """The optimiser's update of flattened rows ``(p, g, state slots, hyper rows)``."""
    names = problem.optimizer.hypers
    clip = problem.grad_clip

    def update(
        p: Tensor, g: Tensor, s: tuple[Tensor, ...], hv: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        if clip is not None:
            g = g.clamp(-clip, clip)
        hyper = {n: hv[:, i : i + 1] for i, n in enumerate(names)}
        return problem.optimizer.update([p], [g], list(s), hyper, t)

    return update


def _jvp_rows(
    update: Callable[..., Any],
    xs: list[Tensor],
    h: Tensor,
    row_of_input: Sequence[int | None],
    hyper_of_row: Sequence[int | None],
) -> Any:
    """``jvp`` of ``update`` on ``len(hyper_of_row)`` replicated rows of the flat inputs ``xs``:
    row r moves input ``idx`` where ``row_of_input[idx] == r`` and hyper ``hyper_of_row[r]``."""
    n_rows = len(hyper_of_row)
    reps, tans = [], []
    for idx, x in enumerate(xs):
        reps.append(x.expand(n_rows, -1).contiguous())
        e = x.new_zeros((n_rows, x.shape[0]))
        if row_of_input[idx] is not None:
            e[row_of_input[idx]] = 1.0
        tans.append(e)
    th = h.new_zeros((n_rows, h.shape[0]))
    for r, hi in enumerate(hyper_of_row):
        if hi is not None:
            th[r, hi] = 1.0
    hv = h.expand(n_rows, -1).contiguous()
    return torch.func.jvp(
        update,
        (reps[0], reps[1], tuple(reps[2:]), hv),
        (tans[0], tans[1], tuple(tans[2:]), th),
    )


def _column_sum(
    i: int,
    ins: Sequence[Sequence[Tensor]],
    blocks: Sequence[Sequence[Tensor]],
    hblocks: Sequence[Sequence[Tensor]],
    hyper_cols: Sequence[tuple[int, int]],
) -> Tensor:
    """Output tangent of parameter ``i``: ``sum_inputs dX_in * block`` plus the one-hot hyper
    derivatives in their columns."""
    o = ins[0][i] * blocks[0][i]
    for k in range(1, len(ins)):
        o.addcmul_(ins[k][i], blocks[k][i])
    for r, (j, _) in enumerate(hyper_cols):
        o[j] += hblocks[r][i]
    return o


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
