"""``optuna-fmd compare``: run the comparison (resumable), or rebuild its outputs from a
results file, and write the results JSON, the summary JSON, the Markdown tables and the plots."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._config import PRESETS, TASKS, CompareConfig, preset
from ._methods import METHODS
from ._report import format_markdown, plot_results, summarize
from ._runner import read_units, rescore_results, run_compare

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``compare`` subcommand's options."""
    p.add_argument("--quick", action="store_true", help="preset: Digits, 2 seeds, a few minutes")
    p.add_argument("--gpu", action="store_true", help="preset: one GPU, wall clock")
    p.add_argument(
        "--preset",
        default=None,
        choices=PRESETS,
        help="named settings (default v3; v4-deep: the per-layer space of a 6 x 128 MLP)",
    )
    p.add_argument("--tasks", default=None, help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 ... 9")
    p.add_argument("--short", type=float, default=None, help="short budget, PEE (default 15)")
    p.add_argument("--long", type=float, default=None, help="long budget, PEE (default 60)")
    p.add_argument(
        "--budgets",
        nargs="+",
        default=None,
        metavar="NAME=PEE",
        help="every budget instead of the preset's (e.g. first=5 short=15); --short and --long "
        "then change those named so",
    )
    p.add_argument(
        "--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}"
    )
    p.add_argument("--jobs", type=int, default=None, help="units at once (processes; default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--storage", default=None, help="keep every study in this storage URL")
    p.add_argument("--prefix", default=None, help="study-name prefix (default compare)")
    p.add_argument(
        "--no-retrain", action="store_true", help="skip scoring the best schedules on fresh seeds"
    )
    p.add_argument(
        "--retrain-seeds",
        type=int,
        default=None,
        help="fresh seeds each best schedule is scored on (default 5)",
    )
    p.add_argument(
        "--rescore",
        default=None,
        metavar="FILE",
        help="run no search: score the best schedules of a run's JSON-lines file again on "
        "--retrain-seeds fresh seeds, into <name>.jsonl",
    )
    p.add_argument(
        "--lr-start", type=float, default=None, help="start every method at this lr instead"
    )
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run on a tree whose tracked files differ from its commit (results say dirty)",
    )
    p.add_argument("--out-dir", default=".", help="where results go (default: here)")
    p.add_argument(
        "--name", default=None, help="file-name stem (default compare_v3_full, compare_quick)"
    )
    p.add_argument(
        "--rename",
        nargs="+",
        default=None,
        metavar="OLD=NEW",
        help="with several --from-results: rename methods of the earlier runs",
    )
    p.add_argument(
        "--primary",
        default=None,
        help="with --from-results: the FMD method the tests are about (default: the last run's)",
    )
    p.add_argument(
        "--from-results",
        default=None,
        nargs="+",
        metavar="FILE",
        help="run nothing: rebuild the summary, tables and plots from a results JSON or the "
        "JSON-lines file of a (partial) run; several: merge runs of one protocol (a method "
        "that a later run also has is renamed <name>@<commit> in the earlier one)",
    )


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """A validated :class:`CompareConfig` from parsed options (preset, then overrides)."""
    named = [n for n, on in (("quick", args.quick), ("gpu", args.gpu)) if on]
    if args.preset is not None:
        named.append(args.preset)
    if len(named) > 1:
        raise SystemExit(f"error: presets are exclusive, but got {', '.join(named)}")
    values: dict[str, Any] = preset(named[0] if named else "v3")
    cfg = CompareConfig(**values)
    if args.tasks:
        cfg.tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if args.methods:
        cfg.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        fmds = [m for m in cfg.methods if m in METHODS and METHODS[m].kind == "fmd"]
        if cfg.primary not in cfg.methods and fmds:  # e.g. a run of one FMD variant
            cfg.primary = fmds[0]
    if args.seeds is not None:
        cfg.seeds = tuple(args.seeds)
    if args.budgets is not None:
        cfg.budgets = _budgets(args.budgets)
    for key, flag in (("short", args.short), ("long", args.long)):
        if flag is not None:
            cfg.budgets = {**cfg.budgets, key: flag}
    for key in ("jobs", "threads", "storage", "prefix", "retrain_seeds"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.retrain = not args.no_retrain
    if args.lr_start is not None:
        cfg.lr_start = args.lr_start
    try:
        cfg.validate()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return cfg


def _budgets(words: Sequence[str]) -> dict[str, float]:
    """``NAME=PEE`` words as budgets; one clear error for a malformed word."""
    out: dict[str, float] = {}
    for word in words:
        name, sep, value = word.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SystemExit(f"error: `--budgets` takes NAME=PEE words, but got {word!r}")
    return out


#: Config keys that must agree for runs to be merged: the protocol itself.
_PROTOCOL = (
    "tasks",
    "seeds",
    "budgets",
    "grid",
    "retrain",
    "retrain_offset",
    "retrain_seeds",
    "clock",
    "device",
)


def _protocol(config: dict[str, Any]) -> dict[str, Any]:
    """A run's protocol settings; runs from before ``retrain_seeds`` scored one fresh seed."""
    return {"retrain_seeds": 1, **{k: config.get(k) for k in _PROTOCOL if k in config}}


def merge_results(
    parts: Sequence[dict[str, Any]],
    rename: dict[str, str] | None = None,
    keep: Sequence[str] | None = None,
    budgets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One comparison from runs of the same protocol on different commits (e.g. a new FMD
    against baselines run earlier): each unit's methods from every run, the last run's primary
    and budgets.

    Each run's budget is counted in plain episodes measured within that run, so the budgets
    stay comparable across runs. ``rename`` (``{old: new}``) renames methods of every run but
    the last (a method whose name has moved on since); a name that an earlier run still shares
    with a later one becomes ``<name>@<commit[:7]>`` in the earlier run. ``keep``: these
    methods only (after renaming). The provenance lists each run's commit and methods
    (``parts``).

    Runs may differ in their budgets where nothing is lost: a budget of the last run that an
    earlier run did not have is filled, for a method of that run that stopped on its own (a
    grid done, a search converged) within it, by its best at its last budget, since it would
    have spent no more; a method still searching at that point cannot be compared there
    (``SystemExit``: leave it out with ``keep``, or compare at the other budgets only:
    ``budgets``, names of the last run's budgets).
    """
    if len(parts) == 1 and keep is None:
        return parts[0]
    first = _protocol(parts[0]["config"])
    for part in parts[1:]:
        own = _protocol(part["config"])
        diff = [k for k in _PROTOCOL if k != "budgets" and own.get(k) != first.get(k)]
        diff += _budget_clash(part["config"]["budgets"], parts[0]["config"]["budgets"])
        if diff:
            raise SystemExit(f"error: the runs differ in {diff}: not one protocol, not merged")
    later: set[str] = set()
    renamed: list[dict[str, str]] = []
    for i, part in reversed(list(enumerate(parts))):
        tag = f"@{str(part['provenance'].get('commit'))[:7]}"
        own = {
            m: (rename or {}).get(m, m) if i < len(parts) - 1 else m
            for m in part["config"]["methods"]
        }
        renamed.insert(0, {m: n + tag if n in later else n for m, n in own.items()})
        later |= set(renamed[0].values())
    units: dict[tuple[str, int], dict[str, Any]] = {}
    methods: list[str] = []
    provs = []
    for part, names in zip(parts, renamed, strict=True):
        methods += [names[m] for m in part["config"]["methods"]]
        provs.append(
            {**part["provenance"], "methods": [names[m] for m in part["config"]["methods"]]}
        )
        for u in part["units"]:
            key = (u["task"], int(u["seed"]))
            merged = units.setdefault(key, {**u, "methods": {}})
            merged["methods"].update({names[m]: r for m, r in u["methods"].items()})
    last = parts[-1]
    if keep is not None:
        unknown = [m for m in keep if m not in methods]
        if unknown:
            raise SystemExit(f"error: --methods {unknown} not in the runs' methods {methods}")
        methods = [m for m in methods if m in keep]
        for u in units.values():
            u["methods"] = {m: r for m, r in u["methods"].items() if m in keep}
    chosen = _chosen_budgets(last["config"]["budgets"], budgets)
    for (task, seed), u in units.items():
        for m, record in u["methods"].items():
            _fill_budgets(record, chosen, f"{m} on {task} seed {seed}")
    config = {**last["config"], "methods": methods, "budgets": chosen}
    provenance = {
        **last["provenance"],
        "dirty": any(p.get("dirty") for p in provs),
        "parts": provs,
    }
    return {
        "protocol": last.get("protocol", "compare-v2"),
        "config": config,
        "provenance": provenance,
        "units": [units[k] for k in sorted(units)],
    }


def _chosen_budgets(given: dict[str, float], names: Sequence[str] | None) -> dict[str, float]:
    """The last run's budgets named in ``names`` (``None``: all of them)."""
    unknown = [b for b in names or () if b not in given]
    if unknown:
        raise SystemExit(
            f"error: --budgets {unknown} not among the last run's budgets {list(given)}"
        )
    return {b: v for b, v in given.items() if names is None or b in names}


def _budget_clash(a: dict[str, float], b: dict[str, float]) -> list[str]:
    """``["budgets"]`` when two runs give one budget name different values."""
    return ["budgets"] if any(a[k] != b[k] for k in a.keys() & b.keys()) else []


def _fill_budgets(record: dict[str, Any], budgets: dict[str, float], what: str) -> None:
    """A method's bests at ``budgets``: one its run did not have is its best at its largest
    budget when it had stopped on its own (``stopped`` other than ``"budget"``) within it."""
    best = record.setdefault("best", {})
    missing = [b for b in budgets if b not in best]
    if not missing:
        return
    stopped, used = record.get("stopped"), record.get("used")
    done = stopped not in (None, "budget") and isinstance(used, (int, float))
    for b in missing:
        if not done or not best or float(used or 0.0) > budgets[b]:
            raise SystemExit(
                f"error: {what} has no result at budget {b!r} ({budgets[b]:g} PEE) and had not "
                "stopped within it: leave it out (--methods)"
            )
        best[b] = best[max(best, key=lambda k: (best[k] or {}).get("end", 0.0))]


def _restrict(results: dict[str, Any], tasks: Sequence[str]) -> dict[str, Any]:
    """``results`` on ``tasks`` only (each must be one of its tasks)."""
    missing = [t for t in tasks if t not in results["config"]["tasks"]]
    if missing:
        raise SystemExit(
            f"error: --tasks {missing} not in a run of tasks {results['config']['tasks']}"
        )
    return {
        **results,
        "config": {**results["config"], "tasks": list(tasks)},
        "units": [u for u in results["units"] if u["task"] in tasks],
    }


def load_results(path: str) -> dict[str, Any]:
    """Results from a results JSON, or from the JSON-lines file of a (partial) run."""
    if path.endswith(".jsonl"):
        header, units = read_units(path)
        if header is None:
            raise SystemExit(f"error: {path} has no header line: not a comparison's file")
        return {"protocol": "compare-v2", **header, "units": units}
    with open(path) as fh:
        return dict(json.load(fh))


def write_outputs(results: dict[str, Any], out_dir: Path, name: str) -> list[str]:
    """The results JSON (with its summary), the summary JSON, the Markdown tables and a PNG
    per task; returns the paths."""
    results["summary"] = summarize(results["units"], results["config"], results["provenance"])
    paths = {
        "results": out_dir / f"{name}.json",
        "summary": out_dir / f"{name}_summary.json",
        "tables": out_dir / f"{name}.md",
    }
    with open(paths["results"], "w") as fh:
        json.dump(results, fh, separators=(",", ":"))
    with open(paths["summary"], "w") as fh:
        json.dump(results["summary"], fh, indent=1)
    paths["tables"].write_text(_header(results) + format_markdown(results["summary"]))
    pngs = plot_results(results, lambda task: out_dir / f"{name}_{task}.png")
    return [*map(str, paths.values()), *pngs]


def _rescored(prov: dict[str, Any]) -> str:
    r = prov.get("rescored")
    if not r:
        return ""
    dirty = " (dirty tree)" if r.get("dirty") else ""
    return f", fresh seeds scored on commit {r.get('commit')}{dirty} (`{r.get('command')}`)"


def _header(results: dict[str, Any]) -> str:
    prov, cfg = results["provenance"], results["config"]
    dirty = " (dirty tree)" if prov.get("dirty") else ""
    seeds = _protocol(cfg)["retrain_seeds"] if cfg.get("retrain", True) else 0
    scored = (
        f" Each best schedule is scored on {seeds} fresh seed{'s' * (seeds > 1)} per unit."
        if seeds
        else ""
    )
    if prov.get("parts"):
        runs = "; ".join(
            f"{', '.join(p['methods'])} run on commit {p.get('commit')}"
            f"{' (dirty tree)' if p.get('dirty') else ''} (`{p.get('command')}`){_rescored(p)}"
            for p in prov["parts"]
        )
        return (
            f"Merged from {len(prov['parts'])} runs of one protocol: {runs}. Each run counts its "
            f"budget in plain episodes measured within it. torch {prov.get('torch')}, optuna "
            f"{prov.get('optuna')}, {prov.get('processes')} processes x "
            f"{prov.get('threads_per_process')} thread(s) on {prov.get('platform')}; budgets "
            f"{cfg['budgets']} plain-episode equivalents.{scored}\n\n"
        )
    return (
        f"Commit {prov.get('commit')}{dirty}; torch {prov.get('torch')}, optuna "
        f"{prov.get('optuna')}, {prov.get('processes')} processes x "
        f"{prov.get('threads_per_process')} thread(s) on {prov.get('platform')}; budgets "
        f"{cfg['budgets']} plain-episode equivalents; command `{prov.get('command')}`"
        f"{_rescored(prov)}.{scored}\n\n"
    )


def main(args: argparse.Namespace) -> int:
    """Run (or rebuild), write every output, print the tables."""
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        cfg = config_from_args(args)
        source = load_results(args.rescore)
        name = args.name or f"{Path(args.rescore).stem}_rescored"
        partial = out_dir / f"{name}.jsonl"
        if partial.resolve() == Path(args.rescore).resolve():
            raise SystemExit(f"error: --rescore would write into its own source {partial}")
        try:
            rescore_results(source, cfg, partial=partial, allow_dirty=args.allow_dirty)
        except RuntimeError as err:
            raise SystemExit(f"error: {err}") from None
        results = load_results(str(partial))
    elif args.from_results:
        rename = dict(r.split("=", 1) for r in args.rename or [])
        parts = [load_results(p) for p in args.from_results]
        if args.tasks:  # compare on these tasks only (e.g. a run that covered one of them)
            tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
            parts = [_restrict(part, tasks) for part in parts]
        keep = None
        if args.methods:  # these methods of the runs only
            keep = [m.strip() for m in args.methods.split(",") if m.strip()]
        # with --budgets NAME=PEE ...: the merged comparison at those budgets of the last run
        only = [w.split("=", 1)[0] for w in args.budgets] if args.budgets else None
        results = merge_results(parts, rename, keep, only)
        if args.primary:
            methods = results["config"]["methods"]
            if (
                args.primary not in methods
                or METHODS.get(args.primary, None) is None
                or (METHODS[args.primary].kind != "fmd")
            ):
                raise SystemExit(
                    f"error: --primary must be an FMD method of the results {methods}, but got "
                    f"{args.primary!r}"
                )
            results["config"] = {**results["config"], "primary": args.primary}
        name = args.name or Path(args.from_results[-1]).stem
    else:
        cfg = config_from_args(args)
        name = args.name or ("compare_quick" if args.quick else "compare_v3_full")
        partial = out_dir / f"{name}.jsonl"
        try:
            run_compare(cfg, partial=partial, allow_dirty=args.allow_dirty)
        except RuntimeError as err:
            raise SystemExit(f"error: {err}") from None
        results = load_results(str(partial))
    for path in write_outputs(results, out_dir, name):
        print(f"wrote {os.path.relpath(path)}")
    print(format_markdown(results["summary"]))
    return 0
