"""The inner problem: a pure training step over a flat state, and the hyperparameter table.

State layout (a flat list of tensors): ``params + optimizer state + BatchNorm statistics``.
Hyperparameter columns (one per scheduled window value) are ordered by the step at which their
window starts, so the columns active at step t - those whose window has started - are always a
prefix.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._functional import Batch, FunctionalModel
from ._loss import LossSide
from ._optim import InnerOptimizer
from ._schedule import window_index, window_start

__all__ = [
    "HyperTable",
    "InnerProblem",
    "Partition",
    "StepRecord",
    "make_partitions",
    "seed_global",
]


class HyperTable:
    """Values of every hyperparameter of the inner optimiser over the windows of a ``steps`` run.

    Args:
        values: name -> list of K window values, for every hyperparameter of the optimiser.
        scheduled: names whose window values are differentiated (each window is a column).
        steps: the horizon T.
    """

    def __init__(
        self, values: Mapping[str, Sequence[float]], scheduled: Sequence[str], steps: int
    ) -> None:
        if steps < 1:
            raise ValueError(f"`steps` must be at least 1, but got {steps}.")
        self.names = tuple(values)
        self.values = {n: [float(v) for v in values[n]] for n in self.names}
        for n, vals in self.values.items():
            if not 1 <= len(vals) <= steps:
                raise ValueError(
                    f"schedule `{n}` must have between 1 and steps={steps} windows, "
                    f"but got {len(vals)}."
                )
        unknown = [n for n in scheduled if n not in self.values]
        if unknown:
            raise ValueError(f"scheduled hypers {unknown} are not in {list(self.names)}.")
        self.scheduled = tuple(n for n in self.names if n in scheduled)
        self.steps = steps
        cols = [
            (window_start(k, steps, len(self.values[n])), self.names.index(n), k)
            for n in self.scheduled
            for k in range(len(self.values[n]))
        ]
        cols.sort()
        self.columns: list[tuple[str, int]] = [(self.names[i], k) for _, i, k in cols]
        self.starts: list[int] = [s for s, _, _ in cols]
        self._col_index = {c: j for j, c in enumerate(self.columns)}

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def window(self, name: str, step: int) -> int:
        return window_index(step, self.steps, len(self.values[name]))

    def values_at(self, step: int, like: Tensor) -> Tensor:
        """The hyperparameter vector (one entry per name) used at ``step``."""
        vals = [self.values[n][self.window(n, step)] for n in self.names]
        return torch.tensor(vals, dtype=like.dtype, device=like.device)

    def n_active(self, step: int) -> int:
        """Number of columns whose window has started at ``step`` (a prefix of the columns)."""
        lo, hi = 0, len(self.starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.starts[mid] <= step:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def hyper_tangent(self, step: int, n_active: int, like: Tensor) -> Tensor:
        """d(hyper vector at ``step``)/d(column) for the first ``n_active`` columns: (n, H)."""
        out = torch.zeros(n_active, len(self.names), dtype=like.dtype, device=like.device)
        for i, n in enumerate(self.names):
            if n in self.scheduled:
                j = self._col_index[(n, self.window(n, step))]
                if j < n_active:
                    out[j, i] = 1.0
        return out

    def table(self, like: Tensor, requires_grad: bool = False) -> dict[str, Tensor]:
        """Window values as tensors (for reverse mode through the unrolled loop)."""
        return {
            n: torch.tensor(v, dtype=like.dtype, device=like.device).requires_grad_(
                requires_grad and n in self.scheduled
            )
            for n, v in self.values.items()
        }

    def lookup(self, table: Mapping[str, Tensor], step: int) -> Tensor:
        """The hyperparameter vector at ``step`` gathered from tensors (differentiable)."""
        return torch.stack([table[n][self.window(n, step)] for n in self.names])

    def split(self, column_values: Tensor) -> dict[str, list[float]]:
        """Per-column values (in column order) back to ``{name: [K values]}``."""
        out = {n: [0.0] * len(self.values[n]) for n in self.scheduled}
        for (n, k), v in zip(self.columns, column_values.tolist(), strict=True):
            out[n][k] = float(v)
        return out


@dataclass(frozen=True)
class Partition:
    """Parameters that share their hyperparameters: per-layer-group schedules split the model.

    Attributes:
        params: Indices of the parameters (in ``model.param_names`` order).
        hypers: For each optimiser hyperparameter, its index in the hyperparameter vector.
    """

    params: tuple[int, ...]
    hypers: tuple[int, ...]


def make_partitions(
    param_names: Sequence[str],
    optimizer_hypers: Sequence[str],
    table_names: Sequence[str],
    groups: Mapping[str, tuple[str, Sequence[str]]],
) -> list[Partition]:
    """Split parameters by which group schedule (``{name: (hyper, globs)}``) sets each hyper."""
    for name, (hyper, patterns) in groups.items():
        if hyper not in optimizer_hypers:
            raise ValueError(
                f"group schedule `{name}` sets `{hyper}`, which is not a hyperparameter of the "
                f"optimiser; it has {list(optimizer_hypers)}."
            )
        if not any(fnmatch.fnmatchcase(p, pat) for p in param_names for pat in patterns):
            raise ValueError(
                f"group schedule `{name}` matches no parameter with {list(patterns)}; parameter "
                f"names are like {list(param_names[:6])}."
            )
    keys: dict[tuple[int, ...], list[int]] = {}
    for i, pname in enumerate(param_names):
        key = []
        for hyper in optimizer_hypers:
            index = table_names.index(hyper)
            for name, (h, patterns) in groups.items():
                if h == hyper and any(fnmatch.fnmatchcase(pname, pat) for pat in patterns):
                    index = table_names.index(name)
            key.append(index)
        keys.setdefault(tuple(key), []).append(i)
    return [Partition(tuple(idx), key) for key, idx in keys.items()]


def seed_global(seed: int) -> None:
    """``torch.manual_seed(seed)``, without its cost where CUDA is not initialised.

    Until CUDA is initialised, ``torch.manual_seed`` queues the CUDA seeding and formats a stack
    trace for it on every call (~80 us, most of a small model's step on a CPU). No CUDA tensor
    exists then, so seeding the CPU generator alone draws the same random numbers.
    """
    if torch.cuda.is_initialized():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


@dataclass
class StepRecord:
    """One training step recorded for reverse mode (:meth:`InnerProblem.record_step`).

    Attributes:
        state: The flat state the step started from; its parameters and floating statistics
            are leaves of ``grads`` and ``new_stats``' autograd graph.
        hypers: The hyperparameter vector of the step.
        t: The step index.
        grads: The gradients the optimiser used (clipped, if clipping), with their graph.
        new_stats: The updated statistics, with their graph.
        new_state: The flat state after the step (detached).
    """

    state: list[Tensor]
    hypers: Tensor
    t: int
    grads: list[Tensor]
    new_stats: list[Tensor]
    new_state: list[Tensor]


@dataclass
class InnerProblem:
    """A training run as pure functions; the engine differentiates ``step`` through the run.

    Args:
        model: The network as pure functions.
        optimizer: The functional inner optimiser.
        batch_at: ``batch_at(t)`` -> the training minibatch of step t (deterministic).
        val_batches: The validation split, in batches.
        steps: Horizon T.
        seed: Seeds the randomness (dropout) of each step: step t draws from seed ``(seed, t)``.
        grad_clip: Clamp each gradient entry to ``[-grad_clip, grad_clip]``.
        partitions: Parameter groups with their own hyperparameters (per-layer-group schedules);
            ``None``: every parameter uses the optimiser's hyperparameters, in the first entries
            of the hyperparameter vector.
        loss_side: Where the training loss reads class weights and label smoothing in the
            hyperparameter vector (:mod:`._loss`); ``None``: the model's own loss.
        balanced: Score the validation loss and accuracy as the mean over classes of each
            class's mean (class labels only), not the mean over examples.
    """

    model: FunctionalModel
    optimizer: InnerOptimizer
    batch_at: Callable[[int], Batch]
    val_batches: Sequence[Batch]
    steps: int
    seed: int = 0
    grad_clip: float | None = None
    partitions: Sequence[Partition] | None = None
    loss_side: LossSide | None = None
    balanced: bool = False

    def train_loss(
        self, params: Sequence[Tensor], stats: Sequence[Tensor], batch: Batch, hypers: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """The model's training loss on ``batch`` under the step's hyperparameter vector (which
        sets the loss-side hyperparameters, if any) and the updated running statistics."""
        side = self.loss_side
        if side is None:
            return self.model.train_loss(params, stats, batch)
        return self.model.train_loss(params, stats, batch, lambda o, y: side.loss(o, y, hypers))

    def initial_state(self, params: Sequence[Tensor], stats: Sequence[Tensor]) -> list[Tensor]:
        """The flat state ``params + optimizer state + statistics`` at step 0."""
        return [*params, *self.optimizer.init(params), *stats]

    def unpack(self, state: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Split a flat state into (params, optimizer state, statistics)."""
        a = len(self.model.param_names)
        b = len(state) - len(self.model.stat_names)
        return list(state[:a]), list(state[a:b]), list(state[b:])

    def evaluated(self, state: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The (parameters, statistics) the model is evaluated at in ``state``: the optimiser's
        :meth:`~._optim.InnerOptimizer.eval_params` of the training parameters (schedule-free
        optimisers: their average ``x``), differentiable in the whole state."""
        params, opt_state, stats = self.unpack(state)
        return self.optimizer.eval_params(params, opt_state), stats

    def step_seed(self, step: int) -> int:
        """The seed of the random numbers (dropout) drawn at ``step``: one per (seed, step)."""
        return (self.seed * 1_000_003 + step) % (2**63)

    @contextlib.contextmanager
    def rng(self, step: int) -> Iterator[None]:
        """Seed the global generators for ``step`` (dropout), identically in every engine."""
        seed_global(self.step_seed(step))
        yield

    def step(
        self, state: Sequence[Tensor], hypers: Tensor, t: int, batch: Batch
    ) -> tuple[list[Tensor], Tensor]:
        """One step: ``(state_t, hyper vector, t, batch) -> (state_{t+1}, train loss)``."""
        params, opt_state, stats = self.unpack(state)

        def loss_of(p: list[Tensor]) -> tuple[Tensor, tuple[Tensor, list[Tensor]]]:
            loss, new_stats = self.train_loss(p, stats, batch, hypers)
            return loss, (loss, new_stats)

        grads, (loss, new_stats) = torch.func.grad(loss_of, has_aux=True)(params)
        return self.apply_update(params, grads, opt_state, new_stats, hypers, t), loss

    def step_graph(
        self, state: Sequence[Tensor], hypers: Tensor, t: int, batch: Batch
    ) -> list[Tensor]:
        """:meth:`step` recorded by ordinary autograd, the gradient taken with
        ``create_graph=True`` so that the new state can be differentiated again (reverse mode);
        bitwise the same values. Call it with gradients enabled."""
        params, opt_state, stats = self.unpack(state)
        loss, new_stats = self.train_loss(params, stats, batch, hypers)
        raw = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(raw, params, strict=True)]
        return self.apply_update(params, grads, opt_state, new_stats, hypers, t)

    def step_plain(
        self, state: Sequence[Tensor], hypers: Tensor, t: int, batch: Batch
    ) -> tuple[list[Tensor], Tensor]:
        """:meth:`step` without differentiating it: bitwise the same result, the gradient by
        ``torch.autograd.grad`` on detached leaves (``torch.func.grad`` costs ~0.5 ms more per step
        on a small CPU model)."""
        params, opt_state, stats = self.unpack(state)
        leaves = [p.detach().requires_grad_() for p in params]
        with torch.enable_grad():
            loss, new_stats = self.train_loss(leaves, stats, batch, hypers)
            raw = torch.autograd.grad(loss, leaves, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(raw, params, strict=True)]
        new_stats = [x.detach() for x in new_stats]
        return self.apply_update(params, grads, opt_state, new_stats, hypers, t), loss.detach()

    def record_step(
        self, state: Sequence[Tensor], hypers: Tensor, t: int, batch: Batch
    ) -> tuple[StepRecord, Tensor]:
        """:meth:`step`, keeping the graph of the gradient (taken with ``create_graph=True``)
        and of the statistics, for :meth:`step_vjp`; the optimiser's update runs without a graph.
        Returns the record (``record.new_state``: bitwise the state :meth:`step_plain` returns)
        and the training loss. Call it under ``torch.no_grad()`` or not: it enables gradients
        where it needs them."""
        params, opt_state, stats = self.unpack(state)
        leaves = [p.detach().requires_grad_() for p in params]
        stat_leaves = [s.detach().requires_grad_(s.is_floating_point()) for s in stats]
        if self.loss_side is not None:  # the gradient depends on the loss-side hypers too
            hypers = hypers.detach().requires_grad_()
        with torch.enable_grad():
            loss, new_stats = self.train_loss(leaves, stat_leaves, batch, hypers)
            raw = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for g, p in zip(raw, params, strict=True)
            ]
            if self.grad_clip is not None:
                grads = [g.clamp(-self.grad_clip, self.grad_clip) for g in grads]
        with torch.no_grad():
            new_p, new_o = self._optimizer_update(
                params, [g.detach() for g in grads], opt_state, hypers, t
            )
        new_state = [*new_p, *new_o, *(x.detach() for x in new_stats)]
        n = len(params)
        record = StepRecord(
            [*leaves, *state[n : n + len(opt_state)], *stat_leaves],
            hypers,
            t,
            grads,
            list(new_stats),
            new_state,
        )
        return record, loss.detach()

    def step_vjp(
        self, record: StepRecord, adjoint: Sequence[Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        """``(record of step t, adjoint of state_{t+1}) -> (adjoint of state_t, cotangent of the
        step's hyperparameter vector)``: the optimiser's update by its
        :meth:`~._optim.InnerOptimizer.update_vjp`, then one reverse pass through the recorded
        gradient (a Hessian-vector product) and statistics. ``adjoint`` has one entry per state
        tensor; every entry of the state must be floating."""
        params, opt_state, stats = self.unpack(record.state)
        n, m = len(params), len(opt_state)
        _, new_opt, _ = self.unpack(record.new_state)
        with torch.no_grad():
            p_bar, g_bar, o_bar, h_bar = self._optimizer_update_vjp(
                [p.detach() for p in params],
                [g.detach() for g in record.grads],
                opt_state,
                record.hypers,
                record.t,
                new_opt,
                adjoint[:n],
                adjoint[n : n + m],
            )
        outputs, cotangents = [], []
        for out, bar in zip(
            [*record.grads, *record.new_stats], [*g_bar, *adjoint[n + m :]], strict=True
        ):
            if out.requires_grad:
                outputs.append(out)
                cotangents.append(bar)
        inputs = [*params, *stats, record.hypers]
        if outputs:
            back = torch.autograd.grad(
                outputs,
                [x for x in inputs if x.requires_grad],
                grad_outputs=cotangents,
                allow_unused=True,
                materialize_grads=True,
            )
        else:
            back = ()
        got = iter(back)
        via = [next(got) if x.requires_grad else torch.zeros_like(x) for x in inputs]
        with torch.no_grad():
            state_bar = [a + b for a, b in zip(p_bar, via[:n], strict=True)]
            if record.hypers.requires_grad:  # the loss-side hypers' share, through the gradient
                h_bar = h_bar + via[-1]
        return [*state_bar, *o_bar, *via[n:-1]], h_bar

    def apply_update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        opt_state: Sequence[Tensor],
        new_stats: Sequence[Tensor],
        hypers: Tensor,
        t: int,
    ) -> list[Tensor]:
        """The optimiser's update (after gradient clipping) as the next flat state."""
        if self.grad_clip is not None:
            grads = [g.clamp(-self.grad_clip, self.grad_clip) for g in grads]
        new_params, new_opt = self._optimizer_update(params, grads, opt_state, hypers, t)
        return [*new_params, *new_opt, *new_stats]

    def _optimizer_update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        opt_state: Sequence[Tensor],
        hypers: Tensor,
        t: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """The optimiser's update of (params, optimizer state), partition by partition."""
        names = self.optimizer.hypers
        if self.partitions is None:
            hyper_map = {n: hypers[i] for i, n in enumerate(names)}
            return self.optimizer.update(params, grads, opt_state, hyper_map, t)
        n_p = len(params)
        slots = len(opt_state) // n_p
        out_p: list[Tensor] = list(params)
        out_s: list[Tensor] = list(opt_state)
        for part in self.partitions:
            idx = part.params
            sub_s = [opt_state[k * n_p + i] for k in range(slots) for i in idx]
            hyper_map = {n: hypers[j] for n, j in zip(names, part.hypers, strict=True)}
            new_p, new_s = self.optimizer.update(
                [params[i] for i in idx], [grads[i] for i in idx], sub_s, hyper_map, t
            )
            for pos, i in enumerate(idx):
                out_p[i] = new_p[pos]
                for k in range(slots):
                    out_s[k * n_p + i] = new_s[k * len(idx) + pos]
        return out_p, out_s

    def _optimizer_update_vjp(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        opt_state: Sequence[Tensor],
        hypers: Tensor,
        t: int,
        new_opt: Sequence[Tensor],
        params_bar: Sequence[Tensor],
        opt_bar: Sequence[Tensor],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
        """The vjp of :meth:`_optimizer_update`: cotangents of (params, grads, optimizer state,
        hyperparameter vector)."""
        names = self.optimizer.hypers
        if self.partitions is None:
            hyper_map = {n: hypers[i] for i, n in enumerate(names)}
            p_bar, g_bar, o_bar, bars = self.optimizer.update_vjp(
                params, grads, opt_state, hyper_map, t, new_opt, params_bar, opt_bar
            )
            h_bar = torch.stack([bars[n] for n in names])
            if h_bar.shape[0] < hypers.shape[0]:
                h_bar = torch.cat([h_bar, hypers.new_zeros(hypers.shape[0] - h_bar.shape[0])])
            return p_bar, g_bar, o_bar, h_bar.to(hypers.dtype)
        n_p = len(params)
        slots = len(opt_state) // n_p
        out_p: list[Tensor] = list(params)
        out_g: list[Tensor] = list(grads)
        out_o: list[Tensor] = list(opt_state)
        h_list = [hypers.new_zeros(()) for _ in range(hypers.shape[0])]
        for part in self.partitions:
            idx = part.params
            sub = [k * n_p + i for k in range(slots) for i in idx]
            hyper_map = {n: hypers[j] for n, j in zip(names, part.hypers, strict=True)}
            p_bar, g_bar, o_bar, bars = self.optimizer.update_vjp(
                [params[i] for i in idx],
                [grads[i] for i in idx],
                [opt_state[k] for k in sub],
                hyper_map,
                t,
                [new_opt[k] for k in sub],
                [params_bar[i] for i in idx],
                [opt_bar[k] for k in sub],
            )
            for pos, i in enumerate(idx):
                out_p[i], out_g[i] = p_bar[pos], g_bar[pos]
            for pos, k in enumerate(sub):
                out_o[k] = o_bar[pos]
            for n, j in zip(names, part.hypers, strict=True):
                h_list[j] = h_list[j] + bars[n]
        return out_p, out_g, out_o, torch.stack(h_list).to(hypers.dtype)

    def val_loss(self, state: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Validation loss and accuracy over the whole validation split (eval mode, at the
        parameters of :meth:`evaluated`): the means over examples, or with ``balanced`` the means
        over classes of each class's mean."""
        if self.balanced:
            losses, correct, counts = self._per_class(state)
            seen = counts > 0
            acc = (correct[seen].double() / counts[seen]).mean()
            return (losses[seen] / counts[seen]).mean(), acc
        params, stats = self.evaluated(state)
        total = 0
        loss_sum: Tensor | None = None
        correct_sum: Tensor | None = None
        for x, y in self.val_batches:
            out = self.model.eval_output(params, stats, x)
            part = self.model.loss(out, y) * y.shape[0]
            loss_sum = part if loss_sum is None else loss_sum + part
            if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
                c = (out.argmax(dim=1) == y).sum()
                correct_sum = c if correct_sum is None else correct_sum + c
            total += y.shape[0]
        if loss_sum is None or total == 0:
            raise ValueError("the validation split is empty.")
        if correct_sum is None:
            return loss_sum / total, torch.tensor(float("nan"))
        return loss_sum / total, correct_sum.double() / total

    def class_accuracy(self, state: Sequence[Tensor]) -> list[float]:
        """Accuracy of each class on the validation split (``nan`` for a class it lacks)."""
        with torch.no_grad():
            _, correct, counts = self._per_class(state)
        pairs = zip(correct.tolist(), counts.tolist(), strict=True)
        return [c / n if n else float("nan") for c, n in pairs]

    def _per_class(self, state: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Per class: the sum of the validation loss, the correct predictions, the examples."""
        params, stats = self.evaluated(state)
        losses: list[Tensor] = []
        correct: Tensor | None = None
        counts: Tensor | None = None
        for x, y in self.val_batches:
            out = self.model.eval_output(params, stats, x)
            if out.dim() != 2 or y.dim() != 1 or y.is_floating_point():
                raise ValueError(
                    "a balanced validation loss and per-class accuracy need class labels, but "
                    f"the model outputs shape {tuple(out.shape)} for targets {tuple(y.shape)}."
                )
            n_classes = out.shape[1]
            if correct is None or counts is None:
                correct = y.new_zeros(n_classes)
                counts = y.new_zeros(n_classes)
                losses = [out.new_zeros(()) for _ in range(n_classes)]
            hit = (out.argmax(dim=1) == y).long()
            correct = correct.index_add(0, y, hit)
            counts = counts.index_add(0, y, torch.ones_like(y))
            for c in torch.unique(y).tolist():
                mask = y == c
                losses[c] = losses[c] + self.model.loss(out[mask], y[mask]) * int(mask.sum())
        if correct is None or counts is None:
            raise ValueError("the validation split is empty.")
        return torch.stack(losses), correct, counts.to(losses[0].dtype)
