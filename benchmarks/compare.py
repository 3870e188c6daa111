"""FMD against black-box search at equal budget: protocol v3 (see benchmarks/README.md).

Two Fashion-MNIST tasks (MLP 784-64-10 with SGD, T = 800; MLP 784-256-128-10 with AdamW,
T = 400), 10 seeds, budgets of 15 and 60 plain-episode equivalents, every method from the same
start and in lock-step per (task, seed), every best schedule scored on 5 fresh seeds. Results go
to benchmarks/results/<name>.{json,jsonl,md,png}; an interrupted run resumes from its .jsonl
(same commit and settings).

    python benchmarks/compare.py                  # every method (about 2 hours on 2 cores)
    python benchmarks/compare.py --quick          # Digits, a few minutes
    python benchmarks/compare.py --methods fmd-pop2 --name compare_v3_pop2  # one method
    python benchmarks/compare.py --rescore benchmarks/results/compare_v2.jsonl  # fresh seeds
    python benchmarks/compare.py --from-results benchmarks/results/compare_v2_rescored.jsonl \
        benchmarks/results/compare_v3_pop2.jsonl --rename fmd=fmd-windows --name merged

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
