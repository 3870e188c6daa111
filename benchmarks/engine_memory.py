"""Peak memory of a forward-mode episode against its horizon T (it must not grow with T).

Each horizon runs in a fresh process: a short warm-up episode loads every kernel, then the measured
episode runs and the process reports its peak resident set (ru_maxrss) and the growth of that peak
over the resident set just before the episode. Reverse mode through the unrolled loop (BPTT) is
measured the same way for contrast: it stores every step. Results:
benchmarks/results/engine_memory_cpu.json.

    python benchmarks/engine_memory.py                        # T = 100 and 2000, N = 30
    python benchmarks/engine_memory.py --steps 100 1000 --windows 1 --out -
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

_CHILD = r"""
import json, resource, sys, torch
import optuna_fmd as fmd
torch.set_num_threads(2)
steps, windows, engine, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def task(t):
    if name == "digits":
        return fmd.tasks.Digits(steps=t, batch_size=32)
    return fmd.tasks.Synthetic(shape=(784,), steps=t, batch_size=128, n_train=4096)
sched = lambda k: {"lr": [0.05] * k, "momentum": [0.9] * k, "weight_decay": [1e-4] * k}
options = fmd.EngineOptions(engine)
fmd.run_episode(task(max(windows, 20)), sched(windows), options=options)   # warm-up
def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
before = rss_kb()
res = fmd.run_episode(task(steps), sched(windows), options=options)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"steps": steps, "N": 3 * windows, "engine": engine, "peak_rss_mb": peak / 1024,
                  "growth_mb": max(peak - before, 0) / 1024, "seconds": res.seconds}))
"""


def measure(steps: int, windows: int, engine: str, task: str = "synthetic") -> dict[str, float]:
    """Peak memory of one episode of ``steps`` steps, measured in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(steps), str(windows), engine, task],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 2000])
    ap.add_argument("--windows", type=int, default=10, help="K per hyper; N = 3K")
    ap.add_argument("--bptt-steps", type=int, nargs="*", default=[100, 400])
    ap.add_argument("--out", default=str(RESULTS / "engine_memory_cpu.json"))
    args = ap.parse_args()
    rows = [measure(t, args.windows, "forward") for t in args.steps]
    rows += [measure(t, args.windows, "bptt") for t in args.bptt_steps]
    for row in rows:
        print(json.dumps(row), file=sys.stderr)
    fwd = [r for r in rows if r["engine"] == "forward"]
    import torch

    report = {
        "command": "python benchmarks/engine_memory.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "model": "mlp 784-64-10, batch 128",
        "rows": rows,
        "forward_peak_ratio_longest_vs_shortest": fwd[-1]["peak_rss_mb"] / fwd[0]["peak_rss_mb"],
    }
    text = json.dumps(report, indent=2)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
