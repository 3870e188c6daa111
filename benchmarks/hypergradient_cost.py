"""A hypergradient episode in plain episodes: run_episode with the default engine against
run_episode(hypergradient=False), same task and schedules, interleaved, median of repeats.

MLP 784-64-10, batch 128, N = 3 x windows columns (lr, momentum, weight decay); the engine is the
one ``engine="auto"`` picks (recorded). Also reverse mode with ``ceil(sqrt(T))``-step segments
(``checkpoint_every``), the plan used when memory is short or snapshots are taken.

    python benchmarks/hypergradient_cost.py  # -> benchmarks/results/hypergradient_cost_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import optuna_fmd as fmd

RESULTS = Path(__file__).parent / "results"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--windows", type=int, default=10, help="per hyper (N = 3 x windows)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "hypergradient_cost_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    k = args.windows
    sched = {"lr": [0.05] * k, "momentum": [0.9] * k, "weight_decay": [5e-4] * k}
    rows = []
    for steps in args.steps:
        task = fmd.tasks.Synthetic(model="mlp", steps=steps, batch_size=128)
        segments = math.isqrt(steps - 1) + 1
        kinds = {
            "plain": {"hypergradient": False},
            "default": {},
            "reverse_sqrt": {
                "options": fmd.EngineOptions(
                    "reverse", reverse=fmd.ReverseOptions(checkpoint_every=segments)
                )
            },
        }
        engine = fmd.run_episode(task, sched).engine  # warm-up, and the default engine
        fmd.run_episode(task, sched, hypergradient=False)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind, kw in kinds.items():
                t0 = time.perf_counter()
                fmd.run_episode(task, sched, **kw)  # type: ignore[arg-type]
                times[kind].append(time.perf_counter() - t0)
        med = {kind: statistics.median(v) for kind, v in times.items()}
        row = {
            "steps": steps,
            "columns": 3 * k,
            "default_engine": engine,
            "median_seconds": {kind: round(v, 4) for kind, v in med.items()},
            "default_over_plain": round(med["default"] / med["plain"], 3),
            "reverse_sqrt_over_plain": round(med["reverse_sqrt"] / med["plain"], 3),
            "seconds": times,
        }
        rows.append(row)
        print(json.dumps({key: v for key, v in row.items() if key != "seconds"}), flush=True)
    report = {
        "command": " ".join(["python benchmarks/hypergradient_cost.py", *sys.argv[1:]]),
        "commit": commit(),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, "
        f"{torch.get_num_threads()} thread(s) of {os.cpu_count()} cores",
        "torch": torch.__version__,
        "model": "mlp 784-64-10 (Synthetic 784-dim data), batch 128",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
