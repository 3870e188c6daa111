"""The compiled forward-mode step: ``vmap(jvp(step))`` of a fixed-width chunk of tangent columns.

On a GPU a small network's training step is launch-bound, so most of the eager forward-mode step
is the Python and dispatch overhead of ``torch.func`` (one pass through the transforms per op).
This path removes it:

- **Traced once.** ``vmap(jvp(step))`` over a chunk of ``width`` tangent columns is traced once by
  ``make_fx`` into one graph of plain tensor ops (the transforms, the optimiser's hyperparameter
  tangents and BatchNorm statistics included) with static shapes, then compiled with
  ``torch.compile`` (``mode="reduce-overhead"``: CUDA graphs, on CUDA only). The step number and
  the hyperparameter vector are tensor inputs, so one graph serves every step of the episode.
- **Active prefix without recompiling.** The tangents live in chunks of a fixed width (the last
  chunk padded with zero columns). The columns whose window has not started are a suffix; chunks
  holding only such columns are skipped, and within a partly active chunk the inactive columns
  are zero with a zero hyperparameter tangent, so they stay exactly zero. Only the number of calls
  changes with the window, never a shape: no recompilation.
- **Layout.** One tensor per state tensor and chunk, ``(width, *shape)``, contiguous: each call
  reads and writes whole tensors.
- **Precision.** ``"fp32"`` runs matmuls and convolutions in full fp32 (TF32 off), ``"tf32"``
  allows TF32 for them, ``"bf16"`` also stores the tangents in bfloat16 between steps (arithmetic
  still in the state's dtype). Both reduced modes are opt-in; benchmarks/gpu_step.py measures
  their hypergradient against the fp32 eager result.
- **Memory.** Only one chunk's activations are alive at a time, so the chunk width bounds the
  memory of the step; the tangents themselves take ``2 N + 2`` state-sized tensors (fewer with
  bf16 storage), constant in the horizon T.
- **Compile cost** (tracing + compiling + the first call) is measured and returned with the
  result (:class:`CompiledResult`), so it can be read against the episode's time.

The graph computes exactly what :func:`~optuna_fmd.engine.run_forward` with ``method="jvp"``
computes (``tests/engine/test_compiled.py``), with random ops (dropout) taken from the same global
generator seeded per step (``fallback_random``), so the trajectories agree.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._common import EngineResult, Progress, batched_jvp, finish
from ._problem import HyperTable, InnerProblem, seed_global

__all__ = [
    "CompileOptions",
    "CompiledResult",
    "CompiledStep",
    "choose_width",
    "compile_plain_step",
    "run_compiled",
    "use_compiled",
]

logger = logging.getLogger("optuna_fmd.engine")

#: Cost of one compiled call beyond its columns, in columns (a call costs ``overhead + width``).
#: CPU: a compiled plain step costs about one column (benchmarks/README.md, the compiled step's
#: table); CUDA: a launch-bound step, where a call's fixed cost is that of several columns (an
#: estimate until a GPU run is recorded).
CALL_OVERHEAD_COLUMNS = {"cpu": 1.0, "cuda": 8.0}
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class CompileOptions:
    """How the compiled forward-mode path runs.

    Attributes:
        chunk_size: Largest number of tangent columns per compiled call (bounds memory); the
            width actually used is chosen up to it by :func:`choose_width`. ``None``: no bound.
        width: Force this chunk width (overrides the choice; at most the number of columns).
        cuda_graphs: Replay the compiled step as CUDA graphs (``mode="reduce-overhead"``);
            ``None``: on when the state lives on a CUDA device. Ignored on the CPU.
        precision: ``"fp32"`` (TF32 off), ``"tf32"`` (TF32 matmuls and convolutions) or
            ``"bf16"`` (TF32, and tangents stored in bfloat16 between steps).
        backend: ``torch.compile`` backend (``"inductor"``; ``"eager"`` / ``"aot_eager"`` or a
            callable for tests).
        sync_every: Check the training loss for divergence every this many steps (each check
            waits for the device; on the CPU every step is checked). With a ``progress``
            callback every step is checked.
    """

    chunk_size: int | None = None
    width: int | None = None
    cuda_graphs: bool | None = None
    precision: str = "fp32"
    backend: str | Callable[..., Any] = "inductor"
    sync_every: int = 32

    def __post_init__(self) -> None:
        for name in ("chunk_size", "width"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"`{name}` must be a positive int or None, but got {v!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"`precision` must be one of {PRECISIONS}, but got {self.precision!r}."
            )
        if isinstance(self.sync_every, bool) or self.sync_every < 1:
            raise ValueError(f"`sync_every` must be a positive int, but got {self.sync_every!r}.")


@dataclass
class CompiledResult(EngineResult):
    """:class:`EngineResult` of the compiled path, with its compile cost.

    Attributes:
        compile_seconds: Tracing, compiling and the first call of the compiled step.
        run_seconds: Wall-clock seconds of the whole episode, compile included.
        width: Tangent columns per compiled call.
        calls: Compiled calls made (chunks run, summed over steps).
        recompiles: Graphs compiled beyond the first during the episode (0 expected).
    """

    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    width: int = 0
    calls: int = 0
    recompiles: int = 0


def use_compiled(
    compile: bool | CompileOptions | None,
    state: Sequence[Tensor],
    method: str,
    resumable: bool = False,
    discount: float = 1.0,
) -> bool:
    """Whether :func:`run_forward` takes the compiled path.

    ``None`` (auto): on when the state lives on a CUDA device and ``method`` is ``"auto"`` or
    ``"jvp"`` (the compiled step is ``vmap(jvp(step))``), no snapshots are taken and the
    tangents are exact (``discount`` 1).
    """
    if discount != 1.0:
        if compile not in (None, False):
            raise ValueError("the compiled path carries exact tangents; pass compile=False.")
        return False
    if compile is None:
        on_cuda = bool(state) and state[0].device.type == "cuda"
        return on_cuda and method in ("auto", "jvp") and not resumable
    if compile is False:
        return False
    if method == "hvp":
        raise ValueError(
            "the compiled path pushes tangents by vmap(jvp(step)); use method='jvp' or 'auto' "
            "with `compile`, or compile=False with method='hvp'."
        )
    if resumable:
        raise ValueError("the compiled path takes no snapshots; pass compile=False to resume.")
    return True


def _active_counts(table: HyperTable) -> list[tuple[int, int]]:
    """``(active columns, number of steps)`` for each stretch of steps with the same count."""
    cuts = sorted({0, *(s for s in table.starts if s < table.steps), table.steps})
    return [(table.n_active(a), b - a) for a, b in itertools.pairwise(cuts)]


def choose_width(table: HyperTable, overhead: float, cap: int | None = None) -> int:
    """Chunk width minimising ``sum_t ceil(active_t / w) * (overhead + w)`` over the episode.

    Wide chunks pay for inactive (zero) columns early in the run; narrow ones pay the fixed cost
    of each call (``overhead``, in columns) more often. ``cap`` bounds the width (memory).
    """
    n = table.n_columns
    top = n if cap is None else max(1, min(cap, n))
    counts = _active_counts(table)
    best, best_cost = top, math.inf
    for w in range(top, 0, -1):  # ties go to the wider chunk (fewer calls)
        cost = sum(math.ceil(a / w) * (overhead + w) * steps for a, steps in counts if a)
        if cost < best_cost - 1e-9:
            best, best_cost = w, cost
    return best


@contextlib.contextmanager
def _precision(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 for matmuls and convolutions on or off while the compiled path compiles and runs."""
    if device.type != "cuda":
        yield
        return
    tf32 = precision != "fp32"
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile(
    fn: Callable[..., Any], backend: str | Callable[..., Any], cuda_graphs: bool
) -> Callable[..., Any]:
    if backend == "inductor":
        # Random ops (dropout) from the global generator, as in the eager engines.
        options: dict[str, Any] = {"fallback_random": True}
        if cuda_graphs:
            options["triton.cudagraphs"] = True
        return torch.compile(fn, backend="inductor", dynamic=False, options=options)
    return torch.compile(fn, backend=backend, dynamic=False)


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompiledStep:
    """``vmap(jvp(step))`` of a chunk of ``width`` tangent columns, traced once and compiled.

    Call as ``step(state, h, t, dh, zs, x, y) -> (new_state, loss, new_zs)`` with ``t`` a 0-d
    tensor (the step number), ``dh`` the ``(width, H)`` hyperparameter tangent and ``zs`` the
    chunk's tangents, one ``(width, *shape)`` tensor per state tensor (in ``tangent_dtype``).
    The inner optimiser receives the step number as that 0-d tensor.
    """

    def __init__(
        self,
        problem: InnerProblem,
        state: Sequence[Tensor],
        h: Tensor,
        batch: tuple[Tensor, Tensor],
        width: int,
        *,
        tangent_dtype: torch.dtype | None = None,
        backend: str | Callable[..., Any] = "inductor",
        cuda_graphs: bool = False,
    ) -> None:
        from torch.fx.experimental.proxy_tensor import make_fx

        self.width = width
        self.tangent_dtype = tangent_dtype or state[0].dtype
        self.cuda_graphs = cuda_graphs
        dtypes = [s.dtype for s in state]
        low = self.tangent_dtype

        def chunk(
            s: list[Tensor],
            hv: Tensor,
            t: Tensor,
            dh: Tensor,
            zs: list[Tensor],
            x: Tensor,
            y: Tensor,
        ) -> tuple[list[Tensor], Tensor, list[Tensor]]:
            def step(st: list[Tensor], hh: Tensor) -> tuple[list[Tensor], Tensor]:
                return problem.step(st, hh, t, (x, y))  # type: ignore[arg-type]

            full = [z.to(dt) for z, dt in zip(zs, dtypes, strict=True)]
            out, loss, dout = batched_jvp(step, s, hv)(full, dh)
            return list(out), loss, [d.to(low) for d in dout]

        t0 = torch.zeros((), dtype=h.dtype, device=h.device)
        dh0 = h.new_zeros((width, h.shape[0]))
        zs0 = [s.new_zeros((width, *s.shape), dtype=low) for s in state]
        with torch.no_grad():
            self.graph = make_fx(chunk, tracing_mode="fake")(list(state), h, t0, dh0, zs0, *batch)
        self.random = any(
            isinstance(n.target, torch._ops.OpOverload)
            and torch.Tag.nondeterministic_seeded in n.target.tags
            for n in self.graph.graph.nodes
        )
        self._fn = _compile(self.graph, backend, cuda_graphs)

    def __call__(
        self,
        state: list[Tensor],
        h: Tensor,
        t: Tensor,
        dh: Tensor,
        zs: list[Tensor],
        x: Tensor,
        y: Tensor,
    ) -> tuple[list[Tensor], Tensor, list[Tensor]]:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            out, loss, dout = self._fn(state, h, t, dh, zs, x, y)
        if self.cuda_graphs:  # outputs live in the graph's pool until the next replay
            out, loss, dout = [o.clone() for o in out], loss.clone(), [d.clone() for d in dout]
        return _unaliased(out), loss, _unaliased(dout)


def _unaliased(xs: Sequence[Tensor]) -> list[Tensor]:
    """``xs`` with every repeat of a tensor object cloned. A compiled graph may return one
    buffer for outputs that compute the same value (an optimiser's per-group scalars, kept once
    per tensor); fed back as the next step's inputs, repeats would fail dynamo's guard against
    duplicate inputs and compile the step again."""
    seen: set[int] = set()
    out = []
    for x in xs:
        out.append(x.clone() if id(x) in seen else x)
        seen.add(id(x))
    return out


def compile_plain_step(
    problem: InnerProblem,
    state: Sequence[Tensor],
    h: Tensor,
    batch: tuple[Tensor, Tensor],
    *,
    backend: str | Callable[..., Any] = "inductor",
    cuda_graphs: bool = False,
) -> Callable[[list[Tensor], Tensor, Tensor, Tensor, Tensor], tuple[list[Tensor], Tensor]]:
    """The plain training step (no tangents) traced and compiled the same way as
    :class:`CompiledStep`: ``step(state, h, t, x, y) -> (new_state, loss)`` (a baseline)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def plain(
        s: list[Tensor], hv: Tensor, t: Tensor, x: Tensor, y: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        return problem.step(s, hv, t, (x, y))  # type: ignore[arg-type]

    t0 = torch.zeros((), dtype=h.dtype, device=h.device)
    with torch.no_grad():
        graph = make_fx(plain, tracing_mode="fake")(list(state), h, t0, *batch)
    fn = _compile(graph, backend, cuda_graphs)

    def call(
        s: list[Tensor], hv: Tensor, t: Tensor, x: Tensor, y: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            out, loss = fn(s, hv, t, x, y)
        if cuda_graphs:
            out, loss = [o.clone() for o in out], loss.clone()
        return _unaliased(out), loss

    return call


def run_compiled(
    problem: InnerProblem,
    table: HyperTable,
    state0: Sequence[Tensor],
    *,
    chunk_size: int | None = None,
    options: CompileOptions | bool | None = None,
    progress: Progress | None = None,
) -> CompiledResult:
    """Forward-mode hypergradients through the compiled chunk step (see the module docstring).

    Args:
        problem: The inner problem.
        table: Hyperparameter values and the differentiated columns.
        state0: Initial flat state.
        chunk_size: Largest number of tangent columns per call (``options.chunk_size`` wins
            when both are given).
        options: :class:`CompileOptions` (``True``/``None``: the defaults).
        progress: Called as ``progress(t, train_loss)`` after each step.
    """
    opts = options if isinstance(options, CompileOptions) else CompileOptions()
    run = _CompiledRun(problem, table, state0, opts, chunk_size, progress)
    with _precision(opts.precision, run.device), torch.no_grad():
        for t in range(problem.steps):
            run.step(t)
            if len(run.pending) >= run.sync_every or t == problem.steps - 1:
                bad = run.check()
                if bad is not None:
                    return run.finish(None, bad + 1, True)
        tangents = run.tangents()
    return run.finish(tangents, problem.steps, False)


class _CompiledRun:
    """The state of one :func:`run_compiled` episode: training state, tangent chunks, the
    compiled step (built at the first step with an active column) and the losses not yet
    checked for divergence."""

    def __init__(
        self,
        problem: InnerProblem,
        table: HyperTable,
        state0: Sequence[Tensor],
        opts: CompileOptions,
        chunk_size: int | None,
        progress: Progress | None,
    ) -> None:
        self.start = time.perf_counter()
        self.problem, self.table, self.opts, self.progress = problem, table, opts, progress
        self.state = [s.detach() for s in state0]
        self.device = self.state[0].device
        n = table.n_columns
        cap = opts.chunk_size if opts.chunk_size is not None else chunk_size
        if opts.width is not None:
            width = max(1, min(opts.width, n))
        else:
            overhead = CALL_OVERHEAD_COLUMNS.get(self.device.type, CALL_OVERHEAD_COLUMNS["cuda"])
            width = choose_width(table, overhead, cap)
        self.width = max(1, width)  # (no columns: nothing to compile, every step is plain)
        self.cuda_graphs = self.device.type == "cuda" and opts.cuda_graphs is not False
        self.low = torch.bfloat16 if opts.precision == "bf16" else None
        self.n_chunks = math.ceil(n / self.width)
        zero = [s.new_zeros((self.width, *s.shape), dtype=self.low or s.dtype) for s in self.state]
        self.chunks: list[list[Tensor]] = [list(zero) for _ in range(self.n_chunks)]
        on_cpu = self.device.type == "cpu"
        self.sync_every = 1 if on_cpu or progress is not None else opts.sync_every
        self.cache: dict[tuple[int, ...], tuple[Tensor, list[Tensor]]] = {}
        self.step_fn: CompiledStep | None = None
        self.compile_seconds = self.compile_start = 0.0
        self.calls = 0
        self.graphs_before = _unique_graphs()
        self.pending: list[tuple[int, Tensor]] = []
        self.step_numbers = torch.arange(
            problem.steps, dtype=self.state[0].dtype, device=self.device
        )
        self.loss_value = float("nan")

    def inputs_at(self, t: int, n_active: int) -> tuple[Tensor, list[Tensor]]:
        """The hyper vector and the chunks of the hyper tangent at step ``t`` (cached: they
        change only at window boundaries)."""
        table, width = self.table, self.width
        key = (*(table.window(name, t) for name in table.names), n_active)
        if key not in self.cache:
            h = table.values_at(t, self.state[0])
            dh = table.hyper_tangent(t, n_active, h)
            dh = torch.cat([dh, dh.new_zeros((self.n_chunks * width - n_active, dh.shape[1]))])
            self.cache[key] = (h, [d.clone() for d in dh.split(width)])  # own storage each
        return self.cache[key]

    def step(self, t: int) -> None:
        """Step ``t``: plain while no column is active, else one compiled call per active chunk."""
        problem = self.problem
        n_active = self.table.n_active(t)
        batch = problem.batch_at(t)
        h, dh = self.inputs_at(t, n_active)
        if n_active == 0:
            with problem.rng(t):
                self.state, loss = problem.step_plain(self.state, h, t, batch)
        else:
            step_fn = self.compiled(h, batch)
            tt = self.step_numbers[t]  # a view on the device: no host-device copy
            outs = []
            for c in range(math.ceil(n_active / self.width)):
                if step_fn.random:  # every chunk sees the same dropout masks
                    seed_global(problem.step_seed(t))
                first_call = self.calls == 0
                out, loss_c, self.chunks[c] = step_fn(
                    self.state, h, tt, dh[c], self.chunks[c], *batch
                )
                self.calls += 1
                if first_call:
                    _sync(self.device)
                    self.compile_seconds = time.perf_counter() - self.compile_start
                outs.append((out, loss_c))
            self.state, loss = outs[0]
        self.pending.append((t, loss))
        if self.progress is not None:
            self.progress(t, float(loss))

    def compiled(self, h: Tensor, batch: tuple[Tensor, Tensor]) -> CompiledStep:
        """The compiled step, traced and compiled at its first use."""
        if self.step_fn is None:
            self.compile_start = time.perf_counter()  # compile_seconds: until the first call
            self.step_fn = CompiledStep(
                self.problem,
                self.state,
                h,
                batch,
                self.width,
                tangent_dtype=self.low,
                backend=self.opts.backend,
                cuda_graphs=self.cuda_graphs,
            )
        return self.step_fn

    def check(self) -> int | None:
        """Index of the first diverged step among the pending losses, if any."""
        if not self.pending:
            return None
        losses = torch.stack([x for _, x in self.pending]).float().cpu()
        finite = torch.isfinite(losses)
        steps = [t for t, _ in self.pending]
        self.pending.clear()
        if bool(finite.all()):
            self.loss_value = float(losses[-1])
            return None
        bad = int((~finite).nonzero()[0, 0])
        self.loss_value = float(losses[bad])
        return steps[bad]

    def tangents(self) -> list[Tensor]:
        """The tangents of every column, one ``(N, *shape)`` tensor per state tensor."""
        n = self.table.n_columns
        return [
            torch.cat([chunk[i] for chunk in self.chunks])[:n].to(s.dtype)
            for i, s in enumerate(self.state)
        ]

    def finish(self, tangents: list[Tensor] | None, steps_done: int, bad: bool) -> CompiledResult:
        n = self.table.n_columns
        base = finish(self.problem, self.state, tangents, steps_done, bad, self.loss_value, n)
        recompiles = max(0, _unique_graphs() - self.graphs_before - 1)
        seconds = time.perf_counter() - self.start
        logger.info(
            "compiled forward mode: %d steps in %.1f s, of which compile %.1f s; width %d, "
            "%d calls, %d recompiles",
            steps_done,
            seconds,
            self.compile_seconds,
            self.width,
            self.calls,
            recompiles,
        )
        if recompiles:
            logger.warning("the compiled forward-mode step was recompiled %d times", recompiles)
        return CompiledResult(
            **vars(base),
            compile_seconds=self.compile_seconds,
            run_seconds=seconds,
            width=self.width,
            calls=self.calls,
            recompiles=recompiles,
        )
