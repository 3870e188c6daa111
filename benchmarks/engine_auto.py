"""engine="auto" against the better of forward and reverse mode, whole episodes (same run).

For each number of scheduled columns N = 1 ... 300, runs episodes with engine="forward",
"reverse" and plain training (interleaved, median of repeats; 1 thread), and reports the engine
auto chose over the better of the two (target: within 10% at every N) and each engine's episode
in plain episodes (what the cost model's constants are read from). Results:
benchmarks/results/engine_auto_cpu.json.

    python benchmarks/engine_auto.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import optuna_fmd as fmd
from optuna_fmd.engine._auto import mean_active_columns
from optuna_fmd.episode import build_episode

RESULTS = Path(__file__).parent / "results"
CASES = {  # N -> schedules (K windows per hyper)
    1: {"lr": 1},
    2: {"lr": 1, "momentum": 1},
    3: {"lr": 1, "momentum": 1, "weight_decay": 1},
    9: {"lr": 3, "momentum": 3, "weight_decay": 3},
    30: {"lr": 10, "momentum": 10, "weight_decay": 10},
    100: {"lr": 34, "momentum": 33, "weight_decay": 33},
    300: {"lr": 100, "momentum": 100, "weight_decay": 100},
}
VALUES = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "engine_auto_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = fmd.tasks.Synthetic(shape=(784,), steps=args.steps, batch_size=128)
    rows = []
    for n, windows in CASES.items():
        sched = {h: [VALUES[h]] * k for h, k in windows.items()}
        times: dict[str, list[float]] = {"plain": [], "forward": [], "reverse": []}
        chosen = fmd.run_episode(task, sched).engine  # warm-up, and what auto picks
        _, table, _ = build_episode(task, sched)
        for _ in range(args.repeats):
            for engine in times:
                t0 = time.perf_counter()
                if engine == "plain":
                    fmd.run_episode(task, sched, hypergradient=False)
                else:
                    fmd.run_episode(task, sched, options=fmd.EngineOptions(engine))
                times[engine].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        best = min(med["forward"], med["reverse"])
        row = {
            "N": n,
            "mean_active_columns": round(mean_active_columns(table), 2),
            "auto_chose": chosen,
            **{f"{k}_s": round(v, 3) for k, v in med.items()},
            "forward_over_plain": round(med["forward"] / med["plain"], 2),
            "reverse_over_plain": round(med["reverse"] / med["plain"], 2),
            # the chosen engine's own median over the better one's: what the choice costs
            # (auto runs exactly that engine)
            "chosen_vs_best": round(med[chosen] / best, 3),
        }
        rows.append(row)
        print(json.dumps(row))
    report = {
        "command": " ".join(["python benchmarks/engine_auto.py", *sys.argv[1:]]),
        "machine": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": "mlp 784-64-10 (Synthetic 784-dim data), batch 128",
        "steps": args.steps,
        "rows": rows,
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "worst_chosen_vs_best": max(r["chosen_vs_best"] for r in rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
