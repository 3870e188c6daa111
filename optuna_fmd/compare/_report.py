"""From unit records to what a reader checks: the summary (per task and budget: each method's
best validation loss and retrained test accuracy per seed, Holm-corrected one-sided tests of the
primary FMD method against each baseline, effect sizes with confidence intervals, time to
reach), Markdown tables and the regret plots. Everything here reads the results JSON alone."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import _stats
from ._config import TASKS
from ._methods import METHODS, describe_space

__all__ = ["format_markdown", "plot_results", "summarize"]


def _population(method: str) -> int | None:
    """Members per outer iterate of a method (``None``: one trial per point)."""
    m = METHODS.get(method)
    return m.population if m is not None else None


def _budgets(config: Mapping[str, Any]) -> list[tuple[str, float]]:
    return sorted(((k, float(v)) for k, v in config["budgets"].items()), key=lambda kv: kv[1])


def _worst_filled(values: Sequence[float | None]) -> list[float]:
    """Seeds without a finite best count as worse than every finite value (a loss)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    worst = (max(finite) + 1.0) if finite else 1.0
    return [v if v is not None and math.isfinite(v) else worst for v in values]


def summarize(
    units: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """The machine-readable summary (``compare_v2_summary.json``).

    ``{"commit", "dirty", "seeds", "runs": [{"task", "budget", "budget_plain_episodes",
    "methods": {name: {"best_val": [per seed], "test_acc": [per seed]}}, "primary",
    "holm_p": {baseline: p}, "time_to_reach_ratio": {baseline: ratio or None}, "detail"}]}``.
    ``holm_p`` is the one-sided Wilcoxon signed-rank p of the primary method's best validation
    loss being lower, Holm-corrected over the baselines of that task and budget;
    ``fresh_holm_p`` the same for the mean validation loss of the best schedules on fresh seeds;
    ``time_to_reach_ratio`` the median over seeds of the primary's cost to reach the baseline's
    final best over the baseline's cost to reach it (``None`` unless reached on every seed).
    """
    primary = str(config["primary"])
    tasks = [t for t in config["tasks"] if any(u["task"] == t for u in units)]
    seeds = sorted({int(u["seed"]) for u in units})
    runs = []
    for task in tasks:
        by_seed = {int(u["seed"]): u for u in units if u["task"] == task}
        ks = sorted(by_seed)
        names = [m for m in config["methods"] if all(m in by_seed[k]["methods"] for k in ks)]
        for bname, budget in _budgets(config):
            runs.append(_run_summary(task, bname, budget, by_seed, ks, names, primary))
    return {
        "protocol": "compare-v2",
        "commit": provenance.get("commit"),
        "dirty": provenance.get("dirty"),
        "seeds": seeds,
        "runs": runs,
    }


def _reach_ratio(
    methods: Mapping[str, Any], primary: str, other: str, bname: str, budget: float
) -> float | None:
    """The budget ``primary`` took to reach ``other``'s best at budget ``bname`` over the
    budget ``other`` took to find it, on one seed (``None``: never reached, or no best)."""
    base = methods[other]["best"].get(bname)
    if base is None:
        return None
    records = _stats.iterate_records(methods[primary]["trials"], _population(primary))
    t = _stats.time_to_reach(records, base["value"], budget)
    return None if t is None or base["end"] <= 0 else t / base["end"]


def _run_summary(
    task: str,
    bname: str,
    budget: float,
    by_seed: Mapping[int, Mapping[str, Any]],
    ks: Sequence[int],
    names: Sequence[str],
    primary: str,
) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    for m in names:
        bests = [by_seed[k]["methods"][m]["best"].get(bname) for k in ks]
        vals = [b["value"] if b else None for b in bests]
        accs = [b.get("test_accuracy") if b else None for b in bests]
        fresh = [b.get("fresh_val") if b else None for b in bests]
        losses = [b.get("test_loss") if b else None for b in bests]
        methods[m] = {"best_val": vals, "test_acc": accs, "fresh_val": fresh, "test_loss": losses}
        filled = _worst_filled(vals)
        acc_f = [a for a in accs if a is not None and math.isfinite(a)]
        scored = [b for b in bests if b and b.get("test_accuracy") is not None]
        within = [
            [t for t in by_seed[k]["methods"][m]["trials"] if t["end"] <= budget] for k in ks
        ]
        detail[m] = {
            "best_val_mean_ci": list(_stats.mean_ci(filled)),
            "test_acc_mean_ci": list(_stats.mean_ci(acc_f)) if acc_f else None,
            "fresh_seeds": min((len(b.get("test_accuracies") or [1]) for b in scored), default=0),
            "fresh_val_mean_ci": _mean_ci(fresh, worst=True),
            "test_loss_mean_ci": _mean_ci(losses, worst=True),
            "trials_median": statistics.median(len(ts) for ts in within),
            "hypergradient_trials_median": statistics.median(
                sum(1 for t in ts if t.get("hypergradient")) for ts in within
            ),
            "failed_seeds": sum(v is None for v in vals),
            "dead_fresh": _dead(bests, "dead_fresh", "fresh_vals"),
            "dead_retrain": _dead(bests, "dead_retrain", "test_losses"),
        }
    holm_raw: dict[str, float] = {}
    fresh_raw: dict[str, float] = {}
    reach: dict[str, float | None] = {}
    if primary in methods:
        for b in names:
            if b == primary:
                continue
            n = len(ks)  # one worst value for both sides: a failed seed loses the pair
            filled = _worst_filled(methods[primary]["best_val"] + methods[b]["best_val"])
            fa, fb = filled[:n], filled[n:]
            effect = _stats.paired_difference(fa, fb)
            detail[b]["vs_primary"] = effect
            holm_raw[b] = effect["p"]
            effect_fresh = _difference(
                methods[primary]["fresh_val"], methods[b]["fresh_val"], worst=True
            )
            detail[b]["fresh_val_vs_primary"] = effect_fresh
            if effect_fresh is not None:
                fresh_raw[b] = effect_fresh["p"]
            detail[b]["test_acc_vs_primary"] = _difference(
                methods[primary]["test_acc"], methods[b]["test_acc"], worst=False
            )
            ratios = [_reach_ratio(by_seed[k]["methods"], primary, b, bname, budget) for k in ks]
            detail[b]["time_to_reach_ratios"] = ratios
            reach[b] = (
                statistics.median([r for r in ratios if r is not None])
                if all(r is not None for r in ratios)
                else None
            )
    return {
        "task": task,
        "budget": bname,
        "budget_plain_episodes": budget,
        "methods": methods,
        "primary": primary,
        "holm_p": _stats.holm(holm_raw) if holm_raw else {},
        "fresh_holm_p": _stats.holm(fresh_raw) if fresh_raw else {},
        "time_to_reach_ratio": reach,
        "detail": detail,
    }


def _dead(bests: Sequence[Mapping[str, Any] | None], key: str, runs: str) -> list[int]:
    """``[runs that died, runs]`` over the units' best schedules (:func:`_stats.dead`); a
    record scored before the count existed counts its diverged runs only."""
    died = total = 0
    for b in bests:
        if not b or runs not in b:
            continue
        total += len(b[runs])
        died += b[key] if key in b else sum(v is None for v in b[runs])
    return [died, total]


def _mean_ci(values: Sequence[float | None], *, worst: bool) -> list[float] | None:
    """Mean and t interval over seeds; with ``worst`` a diverged seed counts as a loss worse
    than every finite one (a loss), otherwise it is left out. ``None`` when nothing was scored."""
    if all(v is None for v in values):
        return None
    xs = _worst_filled(values) if worst else [v for v in values if v is not None]
    return list(_stats.mean_ci(xs))


def _difference(
    a: Sequence[float | None], b: Sequence[float | None], *, worst: bool
) -> dict[str, Any] | None:
    """:func:`_stats.paired_difference` of ``a - b`` over the seeds scored for both; with
    ``worst``, a diverged seed counts as the worst loss on either side instead."""
    n = len(a)
    if worst:
        if all(v is None for v in a) or all(v is None for v in b):
            return None
        filled = _worst_filled([*a, *b])
        x, y = filled[:n], filled[n:]
    else:
        pairs = [(u, v) for u, v in zip(a, b, strict=True) if u is not None and v is not None]
        x, y = [u for u, _ in pairs], [v for _, v in pairs]
    return _stats.paired_difference(x, y) if x else None


def _f(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _ci(ci: Sequence[float] | None, scale: float = 1.0, spec: str = ".4f", unit: str = "") -> str:
    if not ci:
        return "-"
    mean, lo, hi = (scale * v for v in ci)
    return f"{mean:{spec}}{unit} [{lo:{spec}}, {hi:{spec}}]"


def _diff(d: Mapping[str, Any] | None, scale: float = 1.0, spec: str = "+.4f") -> str:
    if not d:
        return "-"
    return (
        f"{scale * d['mean_difference']:{spec}} "
        f"[{scale * d['ci'][0]:{spec}}, {scale * d['ci'][1]:{spec}}]"
    )


def format_markdown(summary: Mapping[str, Any]) -> str:
    """Two tables per task and budget (the benchmarks/README.md format): the search's best
    validation loss on the unit's own seed, then the best schedules scored on fresh seeds."""
    lines: list[str] = []
    for run in summary["runs"]:
        p = run["primary"]
        lines += [
            f"**{run['task']}, {run['budget']} budget ({run['budget_plain_episodes']:g} PEE), "
            f"{len(summary['seeds'])} seeds**",
            "",
            f"| method | space | trials | best val loss, mean [95% CI] | {p} − method, val loss "
            f"[95% CI] | {p} lower on | Holm p | {p}'s time to reach / method's |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m, d in run["detail"].items():
            vs = d.get("vs_primary")
            lower = f"{vs['lower_on']}/{vs['n']}" if vs else ""
            hp = run["holm_p"].get(m)
            ratio = run["time_to_reach_ratio"].get(m)
            ratio_s = "" if m == p else ("not on every seed" if ratio is None else f"{ratio:.2f}")
            trials = f"{d['trials_median']:g}"
            if d["hypergradient_trials_median"]:
                trials += f" ({d['hypergradient_trials_median']:g} hypergradient)"
            spec = TASKS.get(run["task"])
            layers, classes = spec is not None and spec.layers, spec is not None and spec.imbalance
            sf = spec is not None and spec.optimizer.startswith("sf-")
            space = (
                describe_space(METHODS[m], layers, bool(classes), schedule_free=sf)
                if m in METHODS
                else ""
            )
            lines.append(
                f"| {m} | {space} | {trials} | {_ci(d['best_val_mean_ci'])} | "
                f"{_diff(vs) if vs else '(primary)'} | {lower} | {_f(hp, '.3g')} | {ratio_s} |"
            )
        seeds = max((d.get("fresh_seeds", 1) for d in run["detail"].values()), default=1)
        spec = TASKS.get(run["task"])
        lt = spec is not None and spec.imbalance is not None
        scored = (
            "balanced validation split; test: retrained on the long-tailed training split, "
            "balanced loss and accuracy on the test set"
            if lt
            else "validation split; test: retrained on train+val"
        )
        acc = "balanced test acc" if lt else "test acc"
        lines += [
            "",
            f"Best schedules on {seeds} fresh seed{'s' * (seeds > 1)} per unit (validation: a "
            f"plain episode scored on the seed's own {scored}; dead runs: diverged, or a loss "
            f"within {_stats.CHANCE_TOL} of chance, ln of the class count):",
            "",
            f"| method | fresh-seed val loss, mean [95% CI] | {p} − method [95% CI] | {p} "
            f"lower on | Holm p | {acc}, mean [95% CI] | {p} − method, points [95% CI] | "
            f"{p} higher on | test loss, mean [95% CI] | dead runs, fresh / retrained |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m, d in run["detail"].items():
            fv, ta = d.get("fresh_val_vs_primary"), d.get("test_acc_vs_primary")
            if m == p:
                cells = ["(primary)", "", "-", "(primary)", ""]
            else:
                cells = [
                    _diff(fv),
                    f"{fv['lower_on']}/{fv['n']}" if fv else "",
                    _f(run.get("fresh_holm_p", {}).get(m), ".3g"),
                    _diff(ta, 100, "+.2f"),
                    f"{ta['higher_on']}/{ta['n']}" if ta else "",
                ]
            lines.append(
                f"| {m} | {_ci(d.get('fresh_val_mean_ci'))} | {cells[0]} | {cells[1]} | "
                f"{cells[2]} | {_ci(d['test_acc_mean_ci'], 100, '.2f', '%')} | {cells[3]} | "
                f"{cells[4]} | {_ci(d.get('test_loss_mean_ci'))} | {_deaths(d)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _deaths(d: Mapping[str, Any]) -> str:
    """``"0/50 / 1/50"``: fresh-seed runs and retrainings that diverged or ended at chance."""
    cells = [d.get(k) for k in ("dead_fresh", "dead_retrain")]
    return " / ".join("" if c is None else f"{c[0]}/{c[1]}" for c in cells)


def _median_curve(units: list[Any], method: str, grid: Any, longest: float) -> tuple[Any, ...]:
    """The median and quartiles over seeds of ``method``'s best validation loss so far, at the
    budgets ``grid``; ``nan`` until every seed has a first result (a median over the seeds that
    happen to have one would start wherever the quickest seed did)."""
    import numpy as np

    curves = []
    for u in units:
        records = _stats.iterate_records(u["methods"][method]["trials"], _population(method))
        ys = np.full(grid.shape, np.nan)
        for x, y in _stats.best_curve(records, longest):
            ys[grid >= x] = y
        curves.append(ys)
    arr = np.array(curves)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no trial yet
        med = np.nanmedian(arr, axis=0)
        q1, q3 = np.nanpercentile(arr, 25, axis=0), np.nanpercentile(arr, 75, axis=0)
    partial = ~np.isfinite(arr).all(axis=0)
    med[partial], q1[partial], q3[partial] = np.nan, np.nan, np.nan
    return med, q1, q3


def plot_results(results: Mapping[str, Any], path_for: Any) -> list[str]:
    """One PNG per task (``path_for(task)`` names it): the median best validation loss so far
    over seeds against the budget in plain-episode equivalents (interquartile band), and each
    seed's best at the longest budget. Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    config = results["config"]
    budgets = _budgets(config)
    longest = budgets[-1][1]
    grid = np.linspace(0.0, longest, 401)
    written = []
    colors = plt.get_cmap("tab10")
    for task in config["tasks"]:
        units = [u for u in results["units"] if u["task"] == task]
        if not units:
            continue
        fig, (ax, ax2) = plt.subplots(
            1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.7, 1]}
        )
        for i, m in enumerate(config["methods"]):
            med, q1, q3 = _median_curve(units, m, grid, longest)
            primary = m == config["primary"]
            ax.plot(grid, med, color=colors(i), lw=2.6 if primary else 1.4, label=m)
            ax.fill_between(grid, q1, q3, color=colors(i), alpha=0.12)
            finals = [
                float(v)
                for u in units
                if (v := (u["methods"][m]["best"].get(budgets[-1][0]) or {}).get("value"))
                is not None
            ]
            ax2.scatter(
                finals, [i] * len(finals), color=colors(i), s=18, alpha=0.7, edgecolors="none"
            )
            if finals:
                ax2.plot([np.mean(finals)] * 2, [i - 0.3, i + 0.3], color="k", lw=1.5)
        for bname, b in budgets:
            ax.axvline(b, color="grey", ls=":", lw=1)
            ax.text(b, 1.0, f" {bname}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        finite = [
            v
            for u in units
            for m in config["methods"]
            for v in [(u["methods"][m]["best"].get(budgets[0][0]) or {}).get("value")]
            if v is not None
        ]
        if finite:
            ax.set_ylim(min(finite) * 0.97, float(np.percentile(finite, 95)) * 1.12)
        ax.set_xlabel("budget used (plain-episode equivalents)")
        ax.set_ylabel("best validation loss so far (median over seeds)")
        ax.set_title(f"{task}: {len(units)} seeds, interquartile band")
        ax.legend(fontsize=8, ncol=2)
        ax.grid(alpha=0.3)
        ax2.set_yticks(range(len(config["methods"])), config["methods"])
        ax2.invert_yaxis()
        ax2.set_xlabel(f"best validation loss at {budgets[-1][1]:g} PEE (dots: seeds, bar: mean)")
        ax2.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        path = str(path_for(task))
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
