"""One method's fresh-seed figures in two comparison runs, paired by seed.

For a method rerun after a change (the same protocol, seeds and fresh seeds): each budget's mean
fresh-seed validation loss and test accuracy in both runs (95% t intervals), the per-seed
difference new - old with its interval, on how many seeds the new run is lower, and the new
run's dead runs (diverged, or at chance).

    python benchmarks/paired_fresh.py NEW.jsonl OLD.jsonl [METHOD [OLD_METHOD]]

METHOD defaults to fmd-pop2; OLD_METHOD (default: METHOD) is the old run's method, so a search
can be set beside another one run separately on the same seeds (e.g. its ablation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from optuna_fmd.compare import _stats


def _bests(path: Path, method: str, budget: str) -> dict[int, dict[str, Any]]:
    out = {}
    for line in path.read_text().splitlines():
        unit = json.loads(line)
        if method in unit.get("methods", {}):
            out[int(unit["seed"])] = unit["methods"][method]["best"].get(budget) or {}
    return out


def _ci(values: list[float], scale: float = 1.0) -> str:
    mean, lo, hi = _stats.mean_ci(values)
    return f"{scale * mean:.4g} [{scale * lo:.4g}, {scale * hi:.4g}]"


def main(argv: list[str]) -> int:
    new, old = Path(argv[0]), Path(argv[1])
    method = argv[2] if len(argv) > 2 else "fmd-pop2"
    old_method = argv[3] if len(argv) > 3 else method
    for budget in ("short", "long"):
        a, b = _bests(new, method, budget), _bests(old, old_method, budget)
        seeds = sorted(
            s for s in set(a) & set(b) if a[s].get("fresh_val") and b[s].get("fresh_val")
        )
        if not seeds:  # a budget one of the runs did not have
            continue
        diff = [a[s]["fresh_val"] - b[s]["fresh_val"] for s in seeds]
        print(
            f"{method} (new) against {old_method} (old), {budget} budget, {len(seeds)} seeds: "
            "fresh val new "
            f"{_ci([a[s]['fresh_val'] for s in seeds])}, "
            f"old {_ci([b[s]['fresh_val'] for s in seeds])}; new - old {_ci(diff)}, new lower on "
            f"{sum(d < 0 for d in diff)}/{len(diff)} (equal on {sum(d == 0 for d in diff)}); "
            f"test acc new "
            f"{_ci([a[s]['test_accuracy'] for s in seeds], 100)}%, old "
            f"{_ci([b[s]['test_accuracy'] for s in seeds], 100)}%; dead runs of the new "
            f"{sum(a[s].get('dead_fresh', 0) for s in seeds)} fresh, "
            f"{sum(a[s].get('dead_retrain', 0) for s in seeds)} retrained"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
