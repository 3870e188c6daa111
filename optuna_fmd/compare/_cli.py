"""``optuna-fmd compare``: run the comparison (resumable), or rebuild its outputs from a
results file, and write the results JSON, the summary JSON, the Markdown tables and the plots."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ._config import TASKS, CompareConfig, preset
from ._methods import METHODS
from ._report import format_markdown, plot_results, summarize
from ._runner import read_units, run_compare

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``compare`` subcommand's options."""
    p.add_argument("--quick", action="store_true", help="preset: Digits, 2 seeds, a few minutes")
    p.add_argument("--gpu", action="store_true", help="preset: one GPU, wall clock")
    p.add_argument("--tasks", default=None, help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 ... 9")
    p.add_argument("--short", type=float, default=None, help="short budget, PEE (default 15)")
    p.add_argument("--long", type=float, default=None, help="long budget, PEE (default 60)")
    p.add_argument(
        "--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}"
    )
    p.add_argument("--jobs", type=int, default=None, help="units at once (processes; default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--storage", default=None, help="keep every study in this storage URL")
    p.add_argument("--prefix", default=None, help="study-name prefix (default compare)")
    p.add_argument("--no-retrain", action="store_true", help="skip the test-set retraining")
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run on a tree whose tracked files differ from its commit (results say dirty)",
    )
    p.add_argument("--out-dir", default=".", help="where results go (default: here)")
    p.add_argument("--name", default=None, help="file-name stem (default compare_v2 / _quick)")
    p.add_argument(
        "--from-results",
        default=None,
        metavar="FILE",
        help="run nothing: rebuild the summary, tables and plots from a results JSON or the "
        "JSON-lines file of a (partial) run",
    )


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """A validated :class:`CompareConfig` from parsed options (preset, then overrides)."""
    if args.quick and args.gpu:
        raise SystemExit("error: --quick and --gpu are exclusive presets")
    values: dict[str, Any] = preset("quick" if args.quick else "gpu" if args.gpu else "v2")
    cfg = CompareConfig(**values)
    if args.tasks:
        cfg.tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if args.methods:
        cfg.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.seeds is not None:
        cfg.seeds = tuple(args.seeds)
    for key, flag in (("short", args.short), ("long", args.long)):
        if flag is not None:
            cfg.budgets = {**cfg.budgets, key: flag}
    for key in ("jobs", "threads", "storage", "prefix"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.retrain = not args.no_retrain
    try:
        cfg.validate()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return cfg


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


def _header(results: dict[str, Any]) -> str:
    prov, cfg = results["provenance"], results["config"]
    dirty = " (dirty tree)" if prov.get("dirty") else ""
    return (
        f"Commit {prov.get('commit')}{dirty}; torch {prov.get('torch')}, optuna "
        f"{prov.get('optuna')}, {prov.get('processes')} processes x "
        f"{prov.get('threads_per_process')} thread(s) on {prov.get('platform')}; budgets "
        f"{cfg['budgets']} plain-episode equivalents; command `{prov.get('command')}`.\n\n"
    )


def main(args: argparse.Namespace) -> int:
    """Run (or rebuild), write every output, print the tables."""
    out_dir = Path(args.out_dir)
    if args.from_results:
        results = load_results(args.from_results)
        name = args.name or Path(args.from_results).stem
    else:
        cfg = config_from_args(args)
        name = args.name or ("compare_quick" if args.quick else "compare_v2")
        out_dir.mkdir(parents=True, exist_ok=True)
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
