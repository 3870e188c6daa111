"""FMD from a bad start: how many plain-episode equivalents to come within 2% of a tuned cosine.

The comparison's SGD task (Fashion-MNIST, MLP 784-64-10, T = 800), the default FMD (the family
space and the search rule), started from a cosine with peak lr 0.2 (too high) and 0.005 (too
low) instead of 0.05, 20 PEE each, the comparison's 10 seeds and its budget accounting. The
reference is the grid-searched cosine of the v2 run on the same task and seed (8 plain
episodes; ``benchmarks/results/compare_v2.jsonl``): the target is a best validation loss at
most 1.02 times its best.

    python benchmarks/bad_start.py                 # both starts (about 10 minutes on 2 cores)
    python benchmarks/bad_start.py --analyse-only  # rebuild bad_start.{json,md} from the runs

Writes ``benchmarks/results/bad_start_<lr>.jsonl`` (every trial) and ``bad_start.json`` /
``bad_start.md`` (per seed: the PEE at which the target was reached).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import optuna_fmd.cli
from optuna_fmd.compare import read_units

RESULTS = Path(__file__).resolve().parent / "results"
STARTS = (0.2, 0.005)
BUDGET = 20.0
TOLERANCE = 0.02


def _reference() -> dict[int, float]:
    _, units = read_units(RESULTS / "compare_v2.jsonl")
    return {
        int(u["seed"]): float(u["methods"]["cosine-grid"]["best"]["long"]["value"])
        for u in units
        if u["task"] == "fashion-sgd"
    }


def _reached(trials: list[dict[str, Any]], target: float) -> float | None:
    """The budget (PEE) at which the best value so far first fell to ``target``."""
    best = float("inf")
    for t in sorted(trials, key=lambda t: t["end"]):
        if t["state"] == "COMPLETE" and t["value"] is not None and t["counted"]:
            best = min(best, t["value"])
            if best <= target:
                return float(t["end"])
    return None


def analyse() -> dict[str, Any]:
    ref = _reference()
    out: dict[str, Any] = {"budget_pee": BUDGET, "tolerance": TOLERANCE, "starts": {}}
    for lr in STARTS:
        header, units = read_units(RESULTS / f"bad_start_{lr:g}.jsonl")
        rows = []
        for u in sorted(units, key=lambda u: int(u["seed"])):
            seed = int(u["seed"])
            trials = u["methods"]["fmd"]["trials"]
            target = (1 + TOLERANCE) * ref[seed]
            at = _reached(trials, target)
            best = min(t["value"] for t in trials if t["value"] is not None and t["counted"])
            rows.append(
                {"seed": seed, "grid_best": ref[seed], "fmd_best": best, "reached_at_pee": at}
            )
        hits = [r["reached_at_pee"] for r in rows if r["reached_at_pee"] is not None]
        out["starts"][f"{lr:g}"] = {
            "commit": header["provenance"]["commit"] if header else None,
            "seeds": rows,
            "reached": f"{len(hits)}/{len(rows)}",
            "median_pee_when_reached": statistics.median(hits) if hits else None,
            "mean_ratio_to_grid": statistics.fmean(r["fmd_best"] / r["grid_best"] for r in rows),
        }
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"FMD (defaults) from a bad start on fashion-sgd: PEE until the best validation loss is "
        f"within {res['tolerance']:.0%} of the grid-searched cosine's (v2 run), budget "
        f"{res['budget_pee']:g} PEE.",
        "",
        "| start peak lr | seeds within 2% | median PEE when reached "
        "| FMD best / grid best, mean |",
        "|---|---|---|---|",
    ]
    for lr, s in res["starts"].items():
        med = s["median_pee_when_reached"]
        lines.append(
            f"| {lr} | {s['reached']} | {'-' if med is None else f'{med:.1f}'} | "
            f"{s['mean_ratio_to_grid']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if "--analyse-only" not in argv:
        for lr in STARTS:
            args = ["compare", "--tasks", "fashion-sgd", "--methods", "fmd"]
            args += ["--lr-start", f"{lr:g}", "--short", "10", "--long", f"{BUDGET:g}"]
            args += ["--no-retrain", "--out-dir", str(RESULTS), "--name", f"bad_start_{lr:g}"]
            optuna_fmd.cli.main([*args, *argv])
    res = analyse()
    (RESULTS / "bad_start.json").write_text(json.dumps(res, indent=1))
    (RESULTS / "bad_start.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
