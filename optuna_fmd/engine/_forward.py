"""Forward-mode hypergradients: tangents of the whole training state carried through every step.

At step t, the tangents ``Z = d state / d columns`` of the active columns are pushed through the
functional step with ``torch.func.jvp``, batched over columns with ``torch.func.vmap`` (optionally
in chunks, to bound memory). The tangent of the hyperparameter vector itself is one-hot: column (h,
k) moves hyperparameter h while its window k is the current one. Columns whose window has not
started are exactly zero and are not stored or computed. Memory is constant in the horizon T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ._problem import HyperTable, InnerProblem
from ._snapshot import Snapshots

if TYPE_CHECKING:
    from ._compiled import CompileOptions

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
            val_t, acc_t = problem.val_loss(state)
        return EngineResult(
            state, float(val_t), float(acc_t), None, steps_done, diverged, train_loss
        )
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
    snapshots: Snapshots | None = None,
    validate_every: int | None = None,
    on_validation: Callable[[int, float], None] | None = None,
) -> EngineResult:
    """Train without hypergradient (the same functional step), then evaluate.

    Bitwise the same trajectory as ``problem.step`` under ``problem.rng``, but the gradient is
    taken by plain ``torch.autograd.grad`` (``torch.func.grad`` costs ~0.5 ms more per step on a
    small CPU model) and, when everything is on the CPU, only the CPU generator is seeded.
    With ``snapshots``, a :class:`~optuna_fmd.engine.Snapshot` is saved every ``every`` steps and
    a run resumes from ``snapshots.resume``, bitwise as if never interrupted.
    With ``validate_every``, ``on_validation(steps_done, val_loss)`` receives the validation loss
    after every this many steps (before the last); an exception it raises stops training (e.g.
    Optuna's ``TrialPruned``). The trajectory is the same with or without it.
    """
    state = [s.detach() for s in state0]
    loss_value = float("nan")
    t = first = 0
    snap = None
    if snapshots is not None:
        snap = snapshots.restore("plain", state, table.n_columns, problem.steps)
    if snap is not None:
        first, state, loss_value = snap.step, snap.state, snap.train_loss
    cpu_only = all(s.device.type == "cpu" for s in state)
    with torch.no_grad():
        for t in range(first, problem.steps):
            h = table.values_at(t, state[0])
            batch = problem.batch_at(t)
            if cpu_only:  # what problem.rng(t) does to the CPU generator, without the rest
                torch.default_generator.manual_seed((problem.seed * 1_000_003 + t) % (2**63))
                state, loss = problem.step_plain(state, h, t, batch)
            else:
                with problem.rng(t):
                    state, loss = problem.step_plain(state, h, t, batch)
            loss_value = float(loss)
            if progress is not None:
                progress(t, loss_value)
            if loss_value != loss_value or abs(loss_value) == float("inf"):
                return _finish(problem, state, None, t + 1, True, loss_value, table.n_columns)
            if snapshots is not None and t + 1 < problem.steps and snapshots.due(t, t + 1):
                snapshots.take("plain", t + 1, state, loss_value, table.n_columns)
            due = validate_every and (t + 1) % validate_every == 0 and t + 1 < problem.steps
            if on_validation is not None and due:
                on_validation(t + 1, float(problem.val_loss(state)[0]))
    return _finish(problem, state, None, problem.steps, False, loss_value, table.n_columns)


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
            :class:`CompileOptions` sets it up); ``None``: on when the state lives on a CUDA
            device, ``method`` is not ``"hvp"`` and no snapshots are taken.
    """
    if method not in ("auto", "jvp", "hvp"):
        raise ValueError(f"`method` must be 'auto', 'jvp' or 'hvp', but got {method!r}.")
    from ._compiled import run_compiled, use_compiled

    if use_compiled(compile, state0, method, resumable=snapshots is not None):
        return run_compiled(
            problem, table, state0, chunk_size=chunk_size, options=compile, progress=progress
        )
    hvp_ok = not problem.model.stat_names and problem.optimizer.elementwise
    if method == "hvp" and not hvp_ok:
        raise ValueError(
            "method='hvp' needs a model without BatchNorm running statistics and an elementwise "
            "optimiser; use method='jvp'."
        )
    push = _push_hvp if method == "hvp" or (method == "auto" and hvp_ok) else _push_jvp
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
        n_active = table.n_active(t)
        tangents = _grow(tangents, n_active)
        h = table.values_at(t, state[0])
        batch = problem.batch_at(t)
        with problem.rng(t):
            if n_active == 0:
                state, loss = problem.step_plain(state, h, t, batch)
            else:
                state, loss, tangents = push(
                    problem, state, h, t, batch, tangents, table, n_active, chunk_size
                )
        loss_value = float(loss)
        if progress is not None:
            progress(t, loss_value)
        if loss_value != loss_value or abs(loss_value) == float("inf"):
            return _finish(problem, state, None, t + 1, True, loss_value, table.n_columns)
        if snapshots is not None and t + 1 < problem.steps and snapshots.due(t, t + 1):
            snapshots.take("forward", t + 1, state, loss_value, table.n_columns, tangents=tangents)
    tangents = _grow(tangents, table.n_columns)
    return _finish(problem, state, tangents, problem.steps, False, loss_value, table.n_columns)


Step = Callable[[list[Tensor], Tensor], tuple[list[Tensor], Tensor]]


def _batched_jvp(
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

    batched = _batched_jvp(step, state, h)
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
        loss, _ = problem.model.train_loss(leaves, [], batch)
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        dgrads = _batched_hvp(grads, leaves, tangents[:n_p], chunk_size)
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
    names = problem.optimizer.hypers
    n_p = len(params)
    slots = len(opt_state) // n_p
    n_state = 2 + slots
    sizes = [p.numel() for p in params]
    clip = problem.grad_clip
    probe = problem.optimizer.constant_jacobian and clip is None

    def flat(xs: Sequence[Tensor]) -> Tensor:
        return torch.cat([x.reshape(-1) for x in xs])

    def update(
        p: Tensor, g: Tensor, s: tuple[Tensor, ...], hv: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        if clip is not None:
            g = g.clamp(-clip, clip)
        hyper = {n: hv[:, i : i + 1] for i, n in enumerate(names)}
        return problem.optimizer.update([p], [g], list(s), hyper, t)

    inputs = [flat(params), flat(grads)] + [
        flat(opt_state[k * n_p : (k + 1) * n_p]) for k in range(slots)
    ]

    def jvp_rows(
        xs: list[Tensor], row_of_input: Sequence[int | None], hyper_of_row: Sequence[int | None]
    ) -> Any:
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

    # Rows of the one-hot hyper tangent: column j moves hyper i at this step.
    hyper_cols = [(int(j), int(i)) for j, i in zip(*torch.nonzero(dh, as_tuple=True), strict=True)]
    # 1. Blocks d(out)/d(input) for the state inputs.
    _, (jp, js) = jvp_rows(
        [x[:1] for x in inputs] if probe else inputs, range(n_state), [None] * n_state
    )
    # 2. d(out)/d(hyper) for each hyper with an active column, and the primal outputs.
    hyper_rows: list[int | None] = [hi for _, hi in hyper_cols] or [None]
    (new_p, new_s), (hp, hs) = jvp_rows(inputs, [None] * n_state, hyper_rows)

    def unflat(x: Tensor) -> list[Tensor]:
        if x.shape[0] == 1 and probe:
            return [x.reshape(()) for _ in params]
        return [v.view(p.shape) for v, p in zip(x.split(sizes), params, strict=True)]

    def combine(jac: Tensor, hjac: Tensor) -> list[Tensor]:
        blocks = [unflat(jac[r]) for r in range(n_state)]
        hblocks = [unflat(hjac[r]) for r in range(len(hyper_cols))]
        out = []
        for i in range(n_p):
            o = dp[i] * blocks[0][i]
            o.addcmul_(dg[i], blocks[1][i])
            for k in range(slots):
                o.addcmul_(ds[k * n_p + i], blocks[2 + k][i])
            for r, (j, _) in enumerate(hyper_cols):
                o[j] += hblocks[r][i]
            out.append(o)
        return out

    d_p = combine(jp[0], hp[0])
    d_s = [d for jac, hjac in zip(js, hs, strict=True) for d in combine(jac, hjac)]
    new_params = [v.view(p.shape) for v, p in zip(new_p[0][0].split(sizes), params, strict=True)]
    new_state = [
        v.view(p.shape) for x in new_s for v, p in zip(x[0].split(sizes), params, strict=True)
    ]
    return new_params, new_state, d_p, d_s


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
