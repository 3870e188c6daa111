"""What refining the tuned cosine buys on seeds the search never saw: the ceiling of the task.

For each unit (task, seed 0-9) of the v3 comparison, the schedule that TPE over the cosine
family chose at 60 PEE (on its own seed's validation loss; ``results/compare_v2_rescored.jsonl``)
becomes FMD's start (``FMDSampler(start=...)``) on FMD's default space: that cosine times 10
per-window lr corrections, momentum (or beta1) and weight decay constants. FMD refines it with
the search rule on the mean of ``--population`` seeds per iterate (seeds ``s ... s + P - 1``)
for ``--budget`` plain-episode equivalents, more than the comparison gives any method, and its
best iterate is scored on the unit's 5 fresh seeds exactly as the comparison scores a best
schedule (a plain episode's validation loss per fresh seed; a retraining on train+val scored on
the test set), paired with the tuned cosine scored again on the same fresh seeds in the same
process.

A large gain would say the cosine family leaves something on the table that a good refinement
finds; a small one bounds what any method that starts from the family can win on this task.

    python benchmarks/refine.py                  # 20 units (about 20 minutes on 2 cores)
    python benchmarks/refine.py --analyse-only   # rebuild refine.{json,md} from the runs
    python benchmarks/refine.py --no-hypergradients --name refine_pattern   # the ablation
    python benchmarks/refine.py --analyse-only --versus refine_pattern      # the two, paired

Costs: a plain trial costs 1 PEE; a hypergradient trial its CPU time over the median CPU time
of the unit's plain trials (the same process, around the same time). Writes
``results/refine.jsonl`` (a record per unit; an interrupted run resumes),
``results/refine.json`` and ``results/refine.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SOURCE = RESULTS / "compare_v2_rescored.jsonl"
BASELINE = "tpe-cosine"
BUDGET_NAME = "long"


def _baselines() -> dict[tuple[str, int], dict[str, Any]]:
    """Per unit: the tuned cosine's chosen params, its own-seed value and its fresh figures."""
    out = {}
    for line in SOURCE.read_text().splitlines():
        unit = json.loads(line)
        if "methods" not in unit:
            continue
        record = unit["methods"][BASELINE]
        best = record["best"][BUDGET_NAME]
        params = next(t["params"] for t in record["trials"] if t["number"] == best["trial"])
        out[(unit["task"], int(unit["seed"]))] = {"params": params, **best}
    return out


def _start(params: dict[str, float], names: list[str]) -> dict[str, float]:
    """The family baseline's params in FMD's default space (``lr_peak``, ``lr_warmup``, ...)."""
    lr, *others = names
    return {
        f"{lr}_peak": params["peak_lr"],
        f"{lr}_warmup": params["warmup"],
        f"{lr}_final": 0.0,
        **{f"{h}_value": params[h] for h in others},
    }


def run_unit(args: tuple[str, int, int, float, bool, dict[str, Any]]) -> dict[str, Any]:
    task_name, seed, population, budget, hypergradients, base = args
    import torch

    torch.set_num_threads(1)
    import optuna

    from optuna_fmd import FMDSampler, HypergradientObjective
    from optuna_fmd.compare import TASKS, CompareConfig
    from optuna_fmd.compare._methods import family_space
    from optuna_fmd.compare._provenance import provenance
    from optuna_fmd.compare._retrain import fresh_seed_figures
    from optuna_fmd.outer import search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = TASKS[task_name]
    task, window_space = spec.make_task(), spec.make_space()
    space = family_space(window_space)
    start = _start(base["params"], list(window_space))
    rule = search(hypergradients=hypergradients)
    sampler = FMDSampler(space, outer=rule, seed=seed, population=population, start=start)
    study = optuna.create_study(sampler=sampler)
    objective = HypergradientObjective(task, space, seed=seed)
    plain: list[float] = []
    charged: list[tuple[float, bool]] = []  # (seconds, hypergradient)
    trials = []
    used = last = 0.0
    t0 = time.perf_counter()
    while not sampler.is_converged(study):
        if plain and used + last > budget:  # the next trial would overrun: it is not started
            break
        c0 = time.process_time()
        study.optimize(objective, n_trials=1)
        seconds = time.process_time() - c0
        t = study.trials[-1]
        hyper = "hypergradient" in t.user_attrs
        if not hyper and t.state == optuna.trial.TrialState.COMPLETE:
            plain.append(seconds)
        charged.append((seconds, hyper))
        unit = statistics.median(plain) if plain else seconds
        costs = [1.0 if not h else s / unit for s, h in charged]
        used, last = math.fsum(costs), costs[-1]
        trials.append(
            {
                "number": t.number,
                "value": t.value,
                "hypergradient": hyper,
                "iterate": t.user_attrs.get("iterate"),
                "end": used,
            }
        )
    best = sampler.best_iterate(study)
    assert best is not None
    value, params, numbers = best
    schedule = space.from_params(params)
    start_members = [t["value"] for t in trials[:population]]
    fresh = fresh_seed_figures(task, schedule, base["retrain_seeds"])
    # the tuned cosine scored again here: the same host and code path as the refinement (a
    # rescoring elsewhere differs by float rounding that training amplifies)
    tuned = fresh_seed_figures(task, base["schedule"], base["retrain_seeds"])
    return {
        "task": task_name,
        "seed": seed,
        "population": population,
        "budget": budget,
        "hypergradients": hypergradients,
        "provenance": provenance(CompareConfig(jobs=1), sys.argv),
        "start": start,
        "start_mean": math.fsum(start_members) / len(start_members),
        "best_mean": value,
        "best_params": params,
        "best_trials": numbers,
        "schedule": schedule,
        "used": used,
        "n_trials": len(trials),
        "n_hypergradient": sum(t["hypergradient"] for t in trials),
        "hypergradient_pee": statistics.median(
            [s / statistics.median(plain) for s, h in charged if h] or [math.nan]
        ),
        "wall_seconds": time.perf_counter() - t0,
        "trials": trials,
        "baseline": {"value": base["value"], "params": base["params"], **tuned},
        "baseline_recorded": {k: base[k] for k in ("fresh_val", "fresh_vals", "test_accuracy")},
        **fresh,
    }


def _read(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[(r["task"], r["seed"])] = r
    return out


def _settings(records: list[dict[str, Any]]) -> str:
    r = records[0]
    commits = sorted({x["provenance"]["commit"][:7] for x in records})
    rule = "search rule" if r.get("hypergradients", True) else "search rule, pattern steps only"
    return (
        f"population {r['population']}, {r['budget']:g} PEE, {rule}; commit {', '.join(commits)}"
    )


def analyse(
    records: list[dict[str, Any]], versus: tuple[str, list[dict[str, Any]]] | None = None
) -> tuple[dict[str, Any], str]:
    from optuna_fmd.compare._stats import mean_ci, paired_difference, wilcoxon_less

    summary: dict[str, Any] = {}
    lines = [
        "# Refining the tuned cosine: what is left on fresh seeds",
        "",
        f"Generated by `python benchmarks/refine.py` ({_settings(records)}; the module "
        "docstring has the protocol). Per task, 10 seeds; differences are refined minus the "
        "tuned cosine, paired by seed (negative: refinement lower); p: one-sided Wilcoxon that "
        "the refinement is lower (higher for accuracy), no correction (one question per task "
        "and figure).",
        "",
        "| task | searched seeds: start -> refined (mean) | fresh val: tuned cosine | fresh val: "
        "refined | refined - tuned [95% CI] | lower on | p | test acc: tuned | test acc: "
        "refined | refined - tuned, points [95% CI] | higher on | p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in sorted({r["task"] for r in records}):
        rs = sorted((r for r in records if r["task"] == task), key=lambda r: r["seed"])
        base_val = [r["baseline"]["fresh_val"] for r in rs]
        ref_val = [r["fresh_val"] for r in rs]
        base_acc = [r["baseline"]["test_accuracy"] for r in rs]
        ref_acc = [r["test_accuracy"] for r in rs]
        dv = paired_difference(ref_val, base_val)
        da = paired_difference(ref_acc, base_acc)
        da["p"] = wilcoxon_less(base_acc, ref_acc)  # that the refinement is higher
        summary[task] = {
            "seeds": [r["seed"] for r in rs],
            "start_mean": mean_ci([r["start_mean"] for r in rs]),
            "best_mean": mean_ci([r["best_mean"] for r in rs]),
            "fresh_val": {"tuned": mean_ci(base_val), "refined": mean_ci(ref_val), "diff": dv},
            "test_accuracy": {"tuned": mean_ci(base_acc), "refined": mean_ci(ref_acc), "diff": da},
            "trials": statistics.median(r["n_trials"] for r in rs),
            "hypergradient_trials": statistics.median(r["n_hypergradient"] for r in rs),
            "used": statistics.median(r["used"] for r in rs),
        }
        s = summary[task]
        lines.append(
            f"| {task} | {s['start_mean'][0]:.4f} -> {s['best_mean'][0]:.4f} | "
            f"{s['fresh_val']['tuned'][0]:.4f} | {s['fresh_val']['refined'][0]:.4f} | "
            f"{_diff(dv, 1)} | {dv['lower_on']}/{len(rs)} | {dv['p']:.3g} | "
            f"{100 * s['test_accuracy']['tuned'][0]:.2f}% | "
            f"{100 * s['test_accuracy']['refined'][0]:.2f}% | {_diff(da, 100, 2)} | "
            f"{da['higher_on']}/{len(rs)} | {da['p']:.3g} |"
        )
    if versus is not None:
        name, others = versus
        theirs = {(r["task"], r["seed"]): r for r in others}
        lines += [
            "",
            f"Against `{name}` ({_settings(others)}), paired by seed: this run minus it.",
            "",
            "| task | fresh val: this run | fresh val: other | difference [95% CI] | lower on "
            "| p | test acc: difference, points [95% CI] | higher on |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for task in summary:
            pairs = [
                (r, theirs[(task, r["seed"])])
                for r in sorted(records, key=lambda r: r["seed"])
                if r["task"] == task and (task, r["seed"]) in theirs
            ]
            mine = [a["fresh_val"] for a, _ in pairs]
            other = [b["fresh_val"] for _, b in pairs]
            dv = paired_difference(mine, other)
            da = paired_difference(
                [a["test_accuracy"] for a, _ in pairs], [b["test_accuracy"] for _, b in pairs]
            )
            summary[task][f"versus {name}"] = {"fresh_val": dv, "test_accuracy": da}
            lines.append(
                f"| {task} | {mean_ci(mine)[0]:.4f} | {mean_ci(other)[0]:.4f} | {_diff(dv, 1)} | "
                f"{dv['lower_on']}/{len(pairs)} | {dv['p']:.3g} | {_diff(da, 100, 2)} | "
                f"{da['higher_on']}/{len(pairs)} |"
            )
    return summary, "\n".join(lines) + "\n"


def _diff(d: dict[str, Any], scale: float, digits: int = 4) -> str:
    m, (lo, hi) = scale * d["mean_difference"], (scale * c for c in d["ci"])
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["fashion-sgd", "fashion-adamw"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--budget", type=float, default=100.0)
    parser.add_argument(
        "--no-hypergradients",
        action="store_true",
        help="the same refinement with pattern steps only (no hypergradient)",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="refine")
    parser.add_argument("--analyse-only", action="store_true")
    parser.add_argument(
        "--versus", metavar="NAME", help="add a paired table against the run results/NAME.jsonl"
    )
    args = parser.parse_args()
    out = RESULTS / f"{args.name}.jsonl"
    done = _read(out)
    if not args.analyse_only:
        bases = _baselines()
        todo = [
            (t, s, args.population, args.budget, not args.no_hypergradients, bases[(t, s)])
            for t in args.tasks
            for s in args.seeds
            if (t, s) not in done
        ]
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.jobs) as pool, out.open("a") as f:
            for r in pool.imap_unordered(run_unit, todo):
                r["provenance"]["processes"] = args.jobs  # a worker sees only itself
                f.write(json.dumps(r) + "\n")
                f.flush()
                done[(r["task"], r["seed"])] = r
                print(
                    f"{r['task']} s{r['seed']}: searched {r['start_mean']:.4f} -> "
                    f"{r['best_mean']:.4f}; fresh {r['baseline']['fresh_val']:.4f} -> "
                    f"{r['fresh_val']:.4f} ({r['n_trials']} trials, {r['wall_seconds']:.0f} s)",
                    flush=True,
                )
    versus = None
    if args.versus:
        versus = (args.versus, list(_read(RESULTS / f"{args.versus}.jsonl").values()))
    summary, md = analyse(list(done.values()), versus)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
