"""Checkpointed reverse mode vs forward mode: ms per inner step against N, and memory against T.

Speed: whole episodes (T steps, then the validation gradient and, for reverse mode, the backward
sweep) of plain training (``run_plain``), forward mode (``run_forward``) and checkpointed reverse
mode (``run_reverse``, default ``c = ceil(sqrt(T))``), divided by T, for N = 3, 9, 30, 100, 300
columns (lr / momentum / weight_decay with about N/3 windows each), on an MLP with 784-dim inputs,
batch 128. Median of interleaved repeats after a warm-up, all in one process. Forward mode's cost
grows with the active columns, so a forward episode that would run past ``--forward-cap`` seconds
is stopped there: its per-step times (timed through the progress callback) are fitted as
``a + b * n_active`` and the full episode is extrapolated from the fit (flagged in the JSON).

Memory: for T = 100, 1000, 10000, the states reverse mode stores (analytically, from its plan) and
the peak resident memory of a fresh subprocess during one episode above its resident memory just
before it (``VmHWM`` reset through ``/proc/self/clear_refs``), with plain training as the baseline.

    python benchmarks/engine_reverse.py     # writes benchmarks/results/engine_reverse_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import optuna_fmd as fmd
from optuna_fmd.engine import (
    HyperTable,
    InnerProblem,
    plan_checkpoints,
    run_forward,
    run_plain,
    run_reverse,
)
from optuna_fmd.engine._common import state_nbytes
from optuna_fmd.episode import build_episode

RESULTS = Path(__file__).parent / "results"
HYPERS = ("lr", "momentum", "weight_decay")
VALUES = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
#: lr of the memory episodes: 0.05 diverges within 10^4 steps at batch 16.
MEMORY_LR = 0.01


class _Stop(Exception):
    pass


def windows_for(n: int) -> dict[str, int]:
    """N columns split over lr / momentum / weight_decay as evenly as possible."""
    return {h: n // 3 + (i < n % 3) for i, h in enumerate(HYPERS)}


def episode(
    model: str, steps: int, n: int, batch_size: int, lr: float = VALUES["lr"]
) -> tuple[InnerProblem, HyperTable, list[torch.Tensor]]:
    task = fmd.tasks.Synthetic(
        model=model, shape=(784,), steps=steps, batch_size=batch_size, n_train=4096
    )
    values = {**VALUES, "lr": lr}
    sched = {h: [values[h]] * k for h, k in windows_for(n).items()}
    return build_episode(task, sched, seed=0)


def timed_forward(
    problem: InnerProblem, table: HyperTable, state0: list[torch.Tensor], cap_s: float
) -> dict[str, object]:
    """ms per step of a forward episode, stopped after ``cap_s`` seconds and extrapolated."""
    stamps: list[float] = []
    t0 = time.perf_counter()

    def progress(t: int, loss: float) -> None:
        stamps.append(time.perf_counter())
        if stamps[-1] - t0 > cap_s and t < problem.steps - 1:
            raise _Stop

    capped = False
    try:
        assert not run_forward(problem, table, state0, progress=progress).diverged
    except _Stop:
        capped = True
    total = time.perf_counter() - t0
    per_step = [1e3 * (b - a) for a, b in zip([t0, *stamps[:-1]], stamps, strict=True)]
    active = [table.n_active(t) for t in range(len(per_step))]
    # least squares ms = a + b * n_active over the measured steps (the first step excluded)
    xs, ys = (active[1:], per_step[1:]) if len(per_step) > 1 else (active, per_step)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    all_active = [table.n_active(t) for t in range(problem.steps)]
    if capped:
        ms = statistics.fmean(a + b * x for x in all_active)
    else:
        ms = 1e3 * total / problem.steps
    return {
        "ms": ms,
        "capped": capped,
        "steps_measured": len(per_step),
        "fit_ms_a": a,
        "fit_ms_per_active_column_b": b,
        "max_active_measured": max(active),
    }


def speed(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    for model in args.models:
        for n in args.n:
            problem, table, state0 = episode(model, args.steps, n, args.batch_size)
            assert table.n_columns == n
            params = sum(s.numel() for s in problem.unpack(state0)[0])
            # warm-up (a short forward episode: lazy initialisation of every code path)
            run_plain(problem, table, state0)
            run_reverse(problem, table, state0)
            timed_forward(problem, table, state0, 1.0)
            times: dict[str, list[float]] = {"plain": [], "reverse": [], "forward": []}
            fwd_info: list[dict[str, object]] = []
            for _ in range(args.repeats):  # interleaved
                t0 = time.perf_counter()
                assert not run_plain(problem, table, state0).diverged
                times["plain"].append(1e3 * (time.perf_counter() - t0) / args.steps)
                t0 = time.perf_counter()
                assert not run_reverse(problem, table, state0).diverged
                times["reverse"].append(1e3 * (time.perf_counter() - t0) / args.steps)
                info = timed_forward(problem, table, state0, args.forward_cap)
                times["forward"].append(float(info["ms"]))  # type: ignore[arg-type]
                fwd_info.append(info)
            med = {k: statistics.median(v) for k, v in times.items()}
            mid = sorted(fwd_info, key=lambda d: float(d["ms"]))[len(fwd_info) // 2]  # type: ignore[arg-type]
            row = {
                "model": model,
                "params": params,
                "N": n,
                "windows": windows_for(n),
                "T": args.steps,
                "plain_ms": round(med["plain"], 3),
                "forward_ms": round(med["forward"], 3),
                "reverse_ms": round(med["reverse"], 3),
                "forward_vs_plain": round(med["forward"] / med["plain"], 2),
                "reverse_vs_plain": round(med["reverse"] / med["plain"], 2),
                "forward_vs_reverse": round(med["forward"] / med["reverse"], 2),
                "forward_capped": bool(mid["capped"]),
                "forward_steps_measured": mid["steps_measured"],
                "forward_fit_ms": [
                    round(float(mid["fit_ms_a"]), 3),  # type: ignore[arg-type]
                    round(float(mid["fit_ms_per_active_column_b"]), 4),  # type: ignore[arg-type]
                ],
                "forward_max_active_measured": mid["max_active_measured"],
                "all_ms": {k: [round(x, 3) for x in v] for k, v in times.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the process's peak resident memory (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_memory(engine: str, steps: int, model: str, batch_size: int) -> None:
    """Run one episode in this (fresh) process; print its peak memory above the start."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    problem, table, state0 = episode(model, steps, 3, batch_size, lr=MEMORY_LR)
    short, stable, s0 = episode(model, 8, 3, batch_size, lr=MEMORY_LR)
    run_reverse(short, stable, s0, checkpoint_every=1)  # warm-up: allocator and lazy init
    run_plain(short, stable, s0)
    before = _rss_bytes()
    reset = _reset_peak()
    t0 = time.perf_counter()
    if engine == "plain":
        res = run_plain(problem, table, state0)
    else:
        res = run_reverse(problem, table, state0)
    seconds = time.perf_counter() - t0
    peak = _peak_bytes() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert not res.diverged, f"the memory episode diverged at step {res.steps_done}"
    out = {"peak_above_start": peak - before, "seconds": seconds, "peak_reset": reset}
    print(json.dumps(out))


def memory(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    model = args.models[0]
    for steps in args.memory_steps:
        _, _, state0 = episode(model, steps, 3, args.memory_batch_size)
        plan = plan_checkpoints(steps, state_nbytes(state0))
        row: dict[str, object] = {
            "model": model,
            "T": steps,
            "state_bytes": state_nbytes(state0),
            "checkpoint_every": plan.every,
            "checkpoints": plan.checkpoints,
            "stored_states": plan.stored_states,
            "stored_bytes": plan.stored_bytes,
            "recomputed_steps": plan.recomputed_steps,
            "store_everything_bytes": steps * state_nbytes(state0),
        }
        for engine in ("plain", "reverse"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    engine,
                    str(steps),
                    model,
                    str(args.memory_batch_size),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            row[f"{engine}_peak_rss_above_start"] = res["peak_above_start"]
            row[f"{engine}_seconds"] = round(res["seconds"], 2)
            row["peak_reset"] = res["peak_reset"]
        row["reverse_minus_plain_rss"] = (
            int(row["reverse_peak_rss_above_start"]) - int(row["plain_peak_rss_above_start"])  # type: ignore[call-overload]
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        engine, steps, model, batch = sys.argv[2:6]
        child_memory(engine, int(steps), model, int(batch))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp"])
    ap.add_argument("--n", type=int, nargs="*", default=[3, 9, 30, 100, 300])
    ap.add_argument("--steps", type=int, default=100, help="T of the speed episodes")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--forward-cap", type=float, default=8.0, help="seconds per forward episode")
    ap.add_argument("--memory-steps", type=int, nargs="*", default=[100, 1000, 10000])
    ap.add_argument("--memory-batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "engine_reverse_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["BENCH_THREADS"] = str(args.threads)
    started = time.time()
    speed_rows = speed(args) if args.n else []
    memory_rows = memory(args) if args.memory_steps else []
    report = {
        "command": "python " + " ".join([os.path.relpath(__file__), *sys.argv[1:]]),
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": "float32",
        "input_shape": [784],
        "batch_size": args.batch_size,
        "memory_batch_size": args.memory_batch_size,
        "seconds": round(time.time() - started, 1),
        "notes": (
            "ms per step = whole episode / T (forward-mode episodes past --forward-cap seconds "
            "are extrapolated from a per-step fit ms = a + b * n_active: forward_capped). "
            "reverse uses the default checkpoint_every = ceil(sqrt(T)). Memory: stored_bytes is "
            "analytic (checkpoints + one segment); *_peak_rss_above_start is the peak resident "
            "memory (VmHWM, reset just before the episode; ru_maxrss if it cannot be reset) of a "
            "fresh subprocess above its resident memory just before the episode; memory "
            f"episodes use lr={MEMORY_LR}, momentum 0.9, N=3."
        ),
        "speed": speed_rows,
        "memory": memory_rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
