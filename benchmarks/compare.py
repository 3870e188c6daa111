"""FMD against black-box search at equal budget: the v2 protocol (see benchmarks/README.md).

Two Fashion-MNIST tasks (MLP 784-64-10 with SGD, T = 800; MLP 784-256-128-10 with AdamW,
T = 400), 10 seeds, budgets of 15 and 60 plain-episode equivalents, every method from the same
start and in lock-step per (task, seed). Results go to benchmarks/results/compare_v2*.{json,jsonl,
md,png}; an interrupted run resumes from its .jsonl (same commit and settings).

    python benchmarks/compare.py                  # the v2 protocol (about 2 hours on 2 cores)
    python benchmarks/compare.py --quick          # Digits, a few minutes
    python benchmarks/compare.py --from-results benchmarks/results/compare_v2.jsonl
    python benchmarks/compare.py --methods fmd --name compare_v3_fmd  # one method, then merge:
    python benchmarks/compare.py --from-results benchmarks/results/compare_v2.jsonl \
        benchmarks/results/compare_v3_fmd.jsonl --rename fmd=fmd-windows --name compare_v3

This script is ``optuna-fmd compare`` with ``--out-dir benchmarks/results``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna_fmd.cli

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    extra = [] if any(a.startswith("--out-dir") for a in argv) else ["--out-dir", str(RESULTS)]
    return optuna_fmd.cli.main(["compare", *argv, *extra])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
