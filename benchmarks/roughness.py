"""How rough one seed's validation loss is at the scale of the search rule's last steps.

Reads the FMD run of the comparison (``results/compare_v3_fmd.jsonl``, every trial with its
params and value) and, per (task, seed), finds the pair of trials whose params all differ by less
than ``1e-4`` relatively (but not 0) with the largest difference in validation loss. Such pairs
are the line search's shortest probes around the same incumbent.

    python benchmarks/roughness.py     # writes results/roughness.json, prints a summary
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from optuna_fmd.compare import read_units

RESULTS = Path(__file__).resolve().parent / "results"
CLOSE = 1e-4


def main() -> None:
    _, units = read_units(RESULTS / "compare_v3_fmd.jsonl")
    rows = []
    for u in units:
        trials = [t for t in u["methods"]["fmd"]["trials"] if t["value"] is not None]
        best = None
        for i, a in enumerate(trials):
            for b in trials[i + 1 :]:
                rel = max(
                    abs(a["params"][k] - b["params"][k]) / max(abs(a["params"][k]), 1e-3)
                    for k in a["params"]
                )
                gap = abs(a["value"] - b["value"])
                if 0 < rel < CLOSE and (best is None or gap > best["value_gap"]):
                    best = {"trials": [a["number"], b["number"]], "max_rel_param_diff": rel,
                            "value_gap": gap}  # fmt: skip
        rows.append({"task": u["task"], "seed": u["seed"], "pair": best})
    gaps = [r["pair"]["value_gap"] for r in rows if r["pair"]]
    out = {
        "source": "results/compare_v3_fmd.jsonl",
        "close": CLOSE,
        "units_with_a_pair": len(gaps),
        "value_gap_median": statistics.median(gaps),
        "value_gap_max": max(gaps),
        "units": rows,
    }
    (RESULTS / "roughness.json").write_text(json.dumps(out, indent=1))
    print(
        f"{len(gaps)} of {len(rows)} units have trials whose params differ by < {CLOSE:g} "
        f"(relative); their validation losses differ by up to {max(gaps):.4f} "
        f"(median of the per-unit largest: {statistics.median(gaps):.4f})"
    )


if __name__ == "__main__":
    main()
