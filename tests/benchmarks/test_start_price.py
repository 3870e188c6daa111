"""benchmarks/start_price.py: trial costs in plain episodes and the first iterate's end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_median_costs_and_the_first_iterate_ends_with_its_last_member(
    tmp_path: Path,
) -> None:
    trials = [
        {"hypergradient": True, "cost": 3.0, "iterate": 0, "end": 3.0},
        {"hypergradient": True, "cost": 2.5, "iterate": 0, "end": 5.5},
        {"hypergradient": False, "cost": 1.0, "iterate": 1, "end": 6.5},
    ]
    unit = {"methods": {"fmd-pop2": {"trials": trials}}}
    run = tmp_path / "run.jsonl"
    run.write_text(json.dumps({"header": {}}) + "\n" + json.dumps(unit) + "\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "start_price.py"), str(run)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == (
        "run.jsonl fmd-pop2: 1 units; a trial with hypergradient 2.75 PEE (2), "
        "without 1.00 PEE (1); first iterate ends at 5.50 PEE"
    )
