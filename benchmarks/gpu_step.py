"""The GPU check of the compiled forward-mode path (run by benchmarks/gpu.sh).

Parts, in order of priority (each one's results are written as soon as it ends; a part that would
start after ``--budget-s`` seconds is skipped and listed under ``skipped``):

1. ``step``: ms per inner step at N columns, all active, same model, batch and state: plain step
   eager and compiled (traced and compiled the same way as ours), our forward mode eager
   (``vmap(jvp(step))``) and compiled, and the FDS-style python loop of double-backward HVPs.
2. ``agreement``: one short episode's hypergradient by the compiled path (fp32, and TF32 unless
   ``--no-tf32``) against the fp32 eager forward mode (TF32 off), relative error.
3. ``memory``: peak device memory of compiled episodes at two horizons T (flat in T).
4. ``paper``: minutes per outer step at the paper's CIFAR-10 setting (WRN-16-1, batch 256,
   9,250 steps, 7 lr + 1 momentum + 1 weight decay windows), extrapolated from per-step times
   measured at that batch: the compiled forward mode and the FDS-style loop.

    python benchmarks/gpu_step.py                 # GPU: WRN-16-1, batch 128, N = 30
    python benchmarks/gpu_step.py --tiny          # CPU, tiny sizes (what the test runs)

Imports only torch and the engine, the tasks and the episode builder (no Optuna), so the script
runs where only torch is installed. Results: ``gpu_step_<device>_torch<version>_<command>.json``
in ``--out-dir`` (default ``$OUT``, else benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _import_engine() -> None:
    """Make ``optuna_fmd``'s engine, tasks and episode importable without Optuna installed: the
    package's ``__init__`` imports the sampler (Optuna); its submodules used here do not."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        import optuna  # noqa: F401
    except ImportError:
        if "optuna_fmd" in sys.modules:
            return
        pkg = types.ModuleType("optuna_fmd")
        pkg.__path__ = [str(ROOT / "optuna_fmd")]
        sys.modules["optuna_fmd"] = pkg


_import_engine()

from optuna_fmd.engine import (  # noqa: E402
    CompileOptions,
    HyperTable,
    InnerProblem,
    run_forward,
)
from optuna_fmd.engine._compiled import (  # noqa: E402
    CALL_OVERHEAD_COLUMNS,
    CompiledStep,
    _active_counts,
    choose_width,
    compile_plain_step,
    run_compiled,
)
from optuna_fmd.engine._forward import tangent_step  # noqa: E402
from optuna_fmd.episode import build_episode  # noqa: E402
from optuna_fmd.tasks import Synthetic  # noqa: E402

SIZES = {
    # model, input shape, batch, windows per hyper (N = 3K), paper batch, paper steps, n_train
    "full": ("wrn-16-1", (3, 32, 32), 128, 10, 256, 9250, 4096),
    "tiny": ("mlp", (3, 4, 4), 8, 2, 16, 200, 256),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(
    fns: dict[str, Callable[[], object]], repeats: int, device: str
) -> dict[str, float]:
    """Median ms of each function over interleaved repeats, after two warm-up calls each."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: round(statistics.median(v), 4) for k, v in times.items()}


def _tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def _schedules(windows: int) -> dict[str, list[float]]:
    return {"lr": [0.05] * windows, "momentum": [0.9] * windows, "weight_decay": [5e-4] * windows}


def _task(args: argparse.Namespace, batch: int, steps: int) -> Synthetic:
    return Synthetic(
        model=args.model,
        shape=tuple(args.shape),
        steps=steps,
        batch_size=batch,
        device=args.device,
        n_train=args.n_train,
        val_batch_size=500,
    )


def fds_loop_step(
    problem: InnerProblem,
    table: HyperTable,
    t: int,
    state: list[torch.Tensor],
    z: list[torch.Tensor],
    c: list[torch.Tensor],
) -> list[torch.Tensor]:
    """One step of the FDS recurrence (SGD + momentum + weight decay) with a python loop of
    double-backward HVPs over the active columns, as the public FDS code does; BatchNorm batch
    statistics are used and the running statistics are not differentiated (as there). Writes
    the new tangents into scratch copies, so that repeated calls see the same inputs."""
    params, velocity, stats = problem.unpack(state)
    names = table.names
    h = table.values_at(t, params[0])
    alpha, beta, xi = (h[names.index(n)] for n in ("lr", "momentum", "weight_decay"))
    theta = [p.detach().requires_grad_() for p in params]
    with torch.enable_grad():
        loss, _ = problem.model.train_loss(theta, stats, problem.batch_at(t))
        g = torch.autograd.grad(loss, theta, create_graph=True)
    new_c = [torch.empty_like(x) for x in c]
    new_z = [torch.empty_like(x) for x in z]
    for j in range(table.n_active(t)):
        hz = torch.autograd.grad(g, theta, grad_outputs=[zi[j] for zi in z], retain_graph=True)
        with torch.no_grad():
            for i in range(len(params)):
                new_c[i][j] = beta * c[i][j] + hz[i] + xi * z[i][j]
                new_z[i][j] = z[i][j] - alpha * new_c[i][j]
    with torch.no_grad():
        new_v = [beta * v + gi + xi * p for p, v, gi in zip(params, velocity, g, strict=True)]
        return [p - alpha * v for p, v in zip(params, new_v, strict=True)]


def part_step(args: argparse.Namespace, report: dict[str, Any]) -> None:
    task = _task(args, args.batch_size, max(3 * args.windows, 30))
    problem, table, state = build_episode(task, _schedules(args.windows))
    n = table.n_columns
    t = task.steps - 1
    assert table.n_active(t) == n
    gen = torch.Generator().manual_seed(0)
    tangents = [1e-3 * torch.randn((n, *s.shape), generator=gen).to(s) for s in state]
    h = table.values_at(t, state[0])
    batch = problem.batch_at(t)
    dh = table.hyper_tangent(t, n, h)
    width = min(args.chunk_size or n, n)
    chunks = math.ceil(n / width)
    cuda_graphs = args.device.startswith("cuda") and not args.no_cuda_graphs
    n_p = len(problem.model.param_names)
    z = [x[:, :].clone() for x in tangents[:n_p]]
    c = [x.clone() for x in tangents[n_p : 2 * n_p]]
    tt = torch.tensor(float(t), dtype=h.dtype, device=h.device)

    c0 = time.perf_counter()
    plain_c = compile_plain_step(
        problem, state, h, batch, backend=args.backend, cuda_graphs=cuda_graphs
    )
    plain_c(state, h, tt, *batch)
    _sync(args.device)
    plain_compile_s = time.perf_counter() - c0
    c0 = time.perf_counter()
    step_c = CompiledStep(
        problem, state, h, batch, width, backend=args.backend, cuda_graphs=cuda_graphs
    )
    pad = chunks * width - n
    zc = [
        [y.clone() for y in torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]).split(width)]
        for x in tangents
    ]
    zchunks = [[zs[k] for zs in zc] for k in range(chunks)]
    dhc = [d.clone() for d in torch.cat([dh, dh.new_zeros((pad, dh.shape[1]))]).split(width)]

    def forward_compiled() -> None:
        for k in range(chunks):
            step_c(state, h, tt, dhc[k], zchunks[k], *batch)

    forward_compiled()
    _sync(args.device)
    forward_compile_s = time.perf_counter() - c0

    def plain_eager() -> object:
        with torch.no_grad():
            return problem.step_plain(state, h, t, batch)

    fns: dict[str, Callable[[], object]] = {
        "plain_eager": plain_eager,
        "plain_compiled": lambda: plain_c(state, h, tt, *batch),
        "forward_compiled": forward_compiled,
        "forward_eager": lambda: tangent_step(
            problem, table, state, tangents, t, method="jvp", chunk_size=args.chunk_size
        ),
        "fds_loop": lambda: fds_loop_step(problem, table, t, state, z, c),
    }
    if not problem.model.stat_names:  # the eager engine's default on CPUs, where it applies
        fns["forward_eager_hvp"] = lambda: tangent_step(
            problem, table, state, tangents, t, method="hvp", chunk_size=args.chunk_size
        )
    ms = _median_ms(fns, args.repeats, args.device)
    row: dict[str, Any] = {f"{k}_ms": v for k, v in ms.items()}
    row.update(
        N=n,
        width=width,
        calls_per_step=chunks,
        cuda_graphs=cuda_graphs,
        plain_compile_s=round(plain_compile_s, 2),
        forward_compile_s=round(forward_compile_s, 2),
        forward_compiled_vs_plain_compiled=round(ms["forward_compiled"] / ms["plain_compiled"], 2),
        fds_loop_vs_forward_compiled=round(ms["fds_loop"] / ms["forward_compiled"], 2),
        forward_eager_vs_forward_compiled=round(ms["forward_eager"] / ms["forward_compiled"], 2),
        targets={
            "forward_compiled_vs_plain_compiled": "<= 4",
            "fds_loop_vs_forward_compiled": ">= 10",
        },
    )
    report["step"] = row


def part_agreement(args: argparse.Namespace, report: dict[str, Any]) -> None:
    task = _task(args, args.batch_size, args.agreement_steps)
    problem, table, state = build_episode(task, _schedules(args.windows))
    _tf32(False)
    eager = run_forward(
        problem, table, state, method="jvp", chunk_size=args.chunk_size, compile=False
    )
    assert eager.hypergradient is not None
    ref = eager.hypergradient
    out: dict[str, Any] = {"steps": args.agreement_steps, "N": table.n_columns}
    precisions = (
        ["fp32"] if args.no_tf32 or not args.device.startswith("cuda") else ["fp32", "tf32"]
    )
    for precision in precisions:
        res = run_compiled(problem, table, state, options=_options(args, precision))
        assert res.hypergradient is not None
        err = float((res.hypergradient - ref).norm() / ref.norm())
        out[precision] = {
            "rel_error_vs_fp32_eager": err,
            "compile_s": round(res.compile_seconds, 2),
            "episode_s": round(res.run_seconds, 2),
            "recompiles": res.recompiles,
            "within_1e-3": err <= 1e-3,
        }
    report["agreement"] = out


def _options(args: argparse.Namespace, precision: str = "fp32") -> CompileOptions:
    return CompileOptions(
        chunk_size=args.chunk_size,
        width=args.chunk_size,
        precision=precision,
        backend=args.backend,
        cuda_graphs=False if args.no_cuda_graphs else None,
    )


def _peak_episode(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    task = _task(args, args.batch_size, steps)
    problem, table, state = build_episode(task, _schedules(args.windows))
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    res = run_compiled(problem, table, state, options=_options(args))
    row: dict[str, Any] = {
        "T": steps,
        "episode_s": round(res.run_seconds, 2),
        "compile_s": round(res.compile_seconds, 2),
        "recompiles": res.recompiles,
    }
    if cuda:
        row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
        row["before_gb"] = round(base / 1e9, 3)
    return row


def part_memory(args: argparse.Namespace, report: dict[str, Any]) -> None:
    rows = [_peak_episode(args, s) for s in args.memory_steps]
    out: dict[str, Any] = {"rows": rows}
    if "peak_gb" in rows[0]:
        out["peak_ratio_long_vs_short"] = round(rows[-1]["peak_gb"] / rows[0]["peak_gb"], 3)
        out["peak_gb_max"] = max(r["peak_gb"] for r in rows)
        out["target"] = "peak <= 4 GB at N = 30 (WRN-16-1, batch 128); flat in T"
    report["memory"] = out


def part_paper(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Minutes per outer step at the paper's setting, from per-step times at its batch size."""
    steps = args.paper_steps
    task = _task(args, args.paper_batch, steps)
    schedules = {"lr": [0.05] * 7, "momentum": [0.9], "weight_decay": [5e-4]}
    problem, table, state = build_episode(task, schedules)
    n = table.n_columns
    t = steps - 1
    device = args.device.split(":")[0]
    width = choose_width(table, CALL_OVERHEAD_COLUMNS.get(device, 8.0), args.chunk_size)
    cuda_graphs = args.device.startswith("cuda") and not args.no_cuda_graphs
    h = table.values_at(t, state[0])
    batch = problem.batch_at(t)
    tt = torch.tensor(float(t), dtype=h.dtype, device=h.device)
    gen = torch.Generator().manual_seed(0)
    zs = [1e-3 * torch.randn((width, *s.shape), generator=gen).to(s) for s in state]
    dh = table.hyper_tangent(t, n, h)[:width]
    c0 = time.perf_counter()
    step_c = CompiledStep(
        problem, state, h, batch, width, backend=args.backend, cuda_graphs=cuda_graphs
    )
    step_c(state, h, tt, dh, zs, *batch)
    _sync(args.device)
    compile_s = time.perf_counter() - c0
    n_p = len(problem.model.param_names)
    tangents = [1e-3 * torch.randn((n, *s.shape), generator=gen).to(s) for s in state]
    z = [x.clone() for x in tangents[:n_p]]
    c = [x.clone() for x in tangents[n_p : 2 * n_p]]

    def plain_eager() -> object:
        with torch.no_grad():
            return problem.step_plain(state, h, t, batch)

    ms = _median_ms(
        {
            "chunk_compiled": lambda: step_c(state, h, tt, dh, zs, *batch),
            "plain_eager": plain_eager,
            "fds_loop_all_active": lambda: fds_loop_step(problem, table, t, state, z, c),
        },
        args.repeats,
        args.device,
    )
    per_column = max(ms["fds_loop_all_active"] - ms["plain_eager"], 0.0) / n
    counts = _active_counts(table)  # (active columns, steps)
    ours_ms = sum(math.ceil(a / width) * ms["chunk_compiled"] * k for a, k in counts)
    fds_ms = sum((ms["plain_eager"] + a * per_column) * k for a, k in counts)
    report["paper"] = {
        "setting": f"{args.model}, batch {args.paper_batch}, {steps} steps, 7 + 1 + 1 windows",
        "N": n,
        "width": width,
        **{f"{k}_ms": v for k, v in ms.items()},
        "compile_s": round(compile_s, 2),
        "ours_minutes_per_outer_step": round((ours_ms / 1e3 + compile_s) / 60, 3),
        "ours_minutes_without_compile": round(ours_ms / 6e4, 3),
        "fds_loop_minutes_per_outer_step": round(fds_ms / 6e4, 3),
        "note": "extrapolated: per-step times at the last step (all columns active) times the "
        "calls each step makes; validation passes not counted",
        "target": "<= 2 minutes on an H100",
    }


PARTS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], None]] = {
    "step": part_step,
    "agreement": part_agreement,
    "memory": part_memory,
    "paper": part_paper,
}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (for the test)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--model", default=None)
    ap.add_argument("--shape", type=int, nargs="+", default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--windows", type=int, default=None, help="K per hyper; N = 3K")
    ap.add_argument("--chunk-size", type=int, default=None, help="tangent columns per call")
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--no-cuda-graphs", action="store_true")
    ap.add_argument("--no-tf32", action="store_true", help="agreement: fp32 only")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--agreement-steps", type=int, default=None)
    ap.add_argument("--memory-steps", type=int, nargs=2, default=None)
    ap.add_argument("--paper-steps", type=int, default=None)
    ap.add_argument("--paper-batch", type=int, default=None)
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--budget-s", type=float, default=480.0, help="start no part after this")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--tag", default=None, help="end of the file name (default: tiny / full)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = "tiny" if args.tiny else "full"
    model, shape, batch, windows, paper_batch, paper_steps, n_train = SIZES[size]
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    args.model = args.model or model
    args.shape = args.shape or list(shape)
    args.batch_size = args.batch_size or batch
    args.windows = args.windows or windows
    args.n_train = n_train
    args.paper_batch = args.paper_batch or paper_batch
    args.paper_steps = args.paper_steps or paper_steps
    args.repeats = args.repeats or (3 if args.tiny else 10)
    args.agreement_steps = args.agreement_steps or (6 if args.tiny else 60)
    args.memory_steps = args.memory_steps or ([6, 12] if args.tiny else [30, 120])
    if args.chunk_size is None and not args.tiny:
        args.chunk_size = 10  # 3 calls at N = 30: bounds the activations alive at once

    command = " ".join(
        ["python benchmarks/gpu_step.py", *(argv if argv is not None else sys.argv[1:])]
    )
    name = "gpu_step_{}_torch{}_{}.json".format(
        _slug(_device_name(args.device) if args.device.startswith("cuda") else "cpu"),
        _slug(torch.__version__.split("+")[0]),
        _slug(args.tag or ("tiny" if args.tiny else "full")),
    )
    out_dir = Path(args.out_dir or os.environ.get("OUT") or RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    report: dict[str, Any] = {
        "command": command,
        "device": args.device,
        "device_name": _device_name(args.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "model": args.model,
        "input_shape": args.shape,
        "batch_size": args.batch_size,
        "backend": args.backend,
        "dtype": "float32",
        "tf32_during_timings": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "skipped": [],
        "errors": {},
    }
    start = time.perf_counter()
    for part in args.parts:
        if time.perf_counter() - start > args.budget_s:
            report["skipped"].append(part)
            continue
        t0 = time.perf_counter()
        try:
            PARTS[part](args, report)
        except Exception as err:  # keep the other parts' figures
            report["errors"][part] = f"{type(err).__name__}: {err}"
        report.setdefault("part_seconds", {})[part] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({part: report.get(part, report["errors"].get(part))}), flush=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
