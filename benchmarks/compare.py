"""FMD against TPE, random, CMA-ES, GP and a tuned cosine schedule at equal compute.

One task, the 30-dim schedule space (lr, momentum, weight decay x 10 windows), the same budget
per study (CPU seconds of the worker by default, everything the method does counted: sampler,
storage, episodes, hypergradients), several seeds; TPE also searches 3 constants and a cosine
schedule with warm-up. Every study goes into one SQLite file (optuna-dashboard shows them side by
side); the JSON has every trial's time and value, each method's best schedule retrained by
``evaluate_schedule`` and the statistics; the PNG has the regret curves of the first seed.
This script is ``optuna-fmd compare`` with the paths below filled in.

    python benchmarks/compare.py                 # Fashion-MNIST MLP, T = 2000, 5 seeds (~1 h)
    python benchmarks/compare.py --quick         # Digits, a few minutes
    python benchmarks/compare.py --gpu           # one GPU, a few minutes
    optuna-dashboard sqlite:///benchmarks/results/compare_cpu.db

Results: benchmarks/results/compare_<cpu|quick|gpu>.{json,png,db}; see benchmarks/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna_fmd.cli

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    kind = "quick" if "--quick" in argv else "gpu" if "--gpu" in argv else "cpu"
    defaults = {
        "--out": str(RESULTS / f"compare_{kind}.json"),
        "--plot": str(RESULTS / f"compare_{kind}.png"),
        "--storage": f"sqlite:///{RESULTS / f'compare_{kind}.db'}",
        "--prefix": kind,
        # two studies at a time on a 2-core CPU, one torch thread each; one on a GPU
        "--jobs": "1" if kind == "gpu" else "2",
    }
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    extra = [x for flag, value in defaults.items() if flag not in given for x in (flag, value)]
    RESULTS.mkdir(exist_ok=True)
    return optuna_fmd.cli.main(["compare", *argv, *extra])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
