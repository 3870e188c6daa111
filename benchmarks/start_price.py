"""What a search's hypergradients cost in a comparison run, read from its trial records.

For each method of each JSON-lines results file: the median cost of its trials with and without a
hypergradient, in plain-episode equivalents (each trial's ``cost`` as the comparison counted it
against its budget), and the median PEE at which its first outer iterate (every member) ended.

    python benchmarks/start_price.py RUN.jsonl [RUN.jsonl ...] [--methods fmd-pop2,pattern-pop2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--methods", default="fmd-pop2,pattern-pop2")
    args = parser.parse_args()
    for path in args.runs:
        for method in args.methods.split(","):
            with_hg: list[float] = []
            plain: list[float] = []
            first: list[float] = []
            for line in path.read_text().splitlines():
                unit = json.loads(line)
                if method not in unit.get("methods", {}):
                    continue
                trials = unit["methods"][method]["trials"]
                for t in trials:
                    (with_hg if t["hypergradient"] else plain).append(t["cost"])
                ends = [t["end"] for t in trials if t.get("iterate") == 0]
                if ends:
                    first.append(max(ends))
            if first:
                print(
                    f"{path.name} {method}: {len(first)} units; a trial with hypergradient "
                    f"{_median(with_hg)} PEE ({len(with_hg)}), without {_median(plain)} PEE "
                    f"({len(plain)}); first iterate ends at {_median(first)} PEE"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
