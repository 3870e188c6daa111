"""Running a comparison: one (task, seed) unit at a time per process (:func:`~optuna_fmd.
compare._unit.run_unit`), each finished unit appended to a JSON-lines file at once (a run
resumes from it), the results stamped with the commit they ran on; and rescoring a finished
run's best schedules on fresh seeds the same way, without rerunning any search."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import torch

from .._storage import open_storage
from ._config import CompareConfig
from ._provenance import provenance, refuse_dirty
from ._retrain import retrain_unit
from ._unit import run_unit

__all__ = ["read_units", "rescore_results", "run_compare", "units_of"]


def units_of(cfg: CompareConfig) -> list[tuple[str, int]]:
    """(task, seed) units in run order: seed by seed, the tasks of a seed side by side."""
    return [(t, s) for s in cfg.seeds for t in cfg.tasks]


def _setup(threads: int) -> None:
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _job(args: tuple[CompareConfig, str, int]) -> dict[str, Any]:
    cfg, task_name, seed = args
    _setup(cfg.threads)
    return run_unit(cfg, task_name, seed, log=sys.stdout)


def read_units(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The header (config and provenance of the run that started the file) and the unit
    records of a JSON-lines file (missing file: ``(None, [])``)."""
    if not os.path.exists(path):
        return None, []
    header, units = None, []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if "header" in rec:
                    header = rec["header"]
                else:
                    units.append(rec)
    return header, units


def _open_partial(
    partial: str | os.PathLike[str],
    head: dict[str, Any],
    same: Callable[[dict[str, Any]], bool],
    refusal: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """The unit records already in the JSON-lines file ``partial``. A new file starts with
    ``head``; an existing one must be ``same`` run (else ``RuntimeError(refusal(header))``)."""
    header, done = read_units(partial)
    if header is None:
        _append(partial, {"header": head})
    elif not same(header):
        raise RuntimeError(refusal(header))
    return done


def _append(partial: str | os.PathLike[str], record: dict[str, Any]) -> None:
    with open(partial, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _each_unit(
    cfg: CompareConfig,
    todo: Sequence[tuple[Any, ...]],
    local: Callable[[tuple[Any, ...]], dict[str, Any]],
    worker: Callable[[Any], dict[str, Any]],
    partial: str | os.PathLike[str],
    done: list[dict[str, Any]],
) -> None:
    """Run the jobs ``todo``: in this process with ``local`` (``cfg.jobs == 1``), otherwise in
    ``cfg.jobs`` spawned processes with ``worker``; each record is appended to ``partial`` and
    to ``done`` as it finishes, so an interrupted run resumes."""

    def keep(record: dict[str, Any]) -> None:
        _append(partial, record)
        done.append(record)

    if cfg.jobs == 1:
        _setup(cfg.threads)
        for job in todo:
            keep(local(job))
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(cfg.jobs, len(todo))) as pool:
            for record in pool.imap_unordered(worker, todo, chunksize=1):
                keep(record)


def run_compare(
    cfg: CompareConfig,
    *,
    partial: str | os.PathLike[str],
    allow_dirty: bool = False,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Run every unit of ``cfg`` not yet in ``partial`` (JSON lines, appended as units finish).

    Refuses a tree whose tracked files differ from its commit unless ``allow_dirty`` (the
    results are then marked dirty), and units of ``partial`` made on another commit.

    Returns:
        Every unit record of ``partial`` after the run. The file's first line holds the
        settings and provenance; a resumed run must match both.
    """
    cfg.validate()
    log = log or sys.stdout
    prov = provenance(cfg)
    refuse_dirty(prov, allow_dirty)
    config = json.loads(json.dumps(cfg.to_dict()))
    done = _open_partial(
        partial,
        {"config": config, "provenance": prov},
        lambda h: h["provenance"].get("commit") == prov["commit"] and h["config"] == config,
        lambda h: (
            f"{partial} was started on commit {h['provenance'].get('commit')} with other "
            "settings or code: resume with the same settings from a worktree at that commit, "
            "or write to another file."
        ),
    )
    have = {(u["task"], u["seed"]) for u in done}
    todo = [(cfg, t, s) for t, s in units_of(cfg) if (t, s) not in have]
    print(
        f"{len(todo)} of {len(units_of(cfg))} units to run ({len(cfg.methods)} methods, "
        f"budgets {cfg.budgets} PEE), {cfg.jobs} at a time; commit {prov['commit']}",
        file=log,
        flush=True,
    )
    if cfg.storage:
        open_storage(cfg.storage)  # one clear error before any training; creates the schema

    _each_unit(cfg, todo, lambda job: run_unit(*job, log=log), _job, partial, done)
    return done


def _rescored(cfg: CompareConfig, unit: dict[str, Any]) -> dict[str, Any]:
    retrain_unit(cfg, unit)
    print(f"[{time.strftime('%H:%M:%S')}] {unit['task']} s{unit['seed']} rescored", flush=True)
    return unit


def _retrain_job(args: tuple[CompareConfig, dict[str, Any]]) -> dict[str, Any]:
    _setup(args[0].threads)
    return _rescored(*args)


def rescore_results(
    results: Mapping[str, Any],
    cfg: CompareConfig,
    *,
    partial: str | os.PathLike[str],
    allow_dirty: bool = False,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Score the best schedules of a finished run again, on ``cfg.retrain_seeds`` fresh seeds
    per unit (:func:`retrain_unit`), without rerunning any search.

    The run's own settings and provenance stay; ``cfg`` brings the retraining settings and the
    new figures are stamped with the commit that computed them (``provenance["rescored"]``).
    Units already in ``partial`` (JSON lines, appended as they finish) are not redone.
    """
    log = log or sys.stdout
    prov = provenance(cfg)
    refuse_dirty(prov, allow_dirty)
    config = {
        **results["config"],
        "retrain": True,
        "retrain_offset": cfg.retrain_offset,
        "retrain_seeds": cfg.retrain_seeds,
    }
    head = {
        "config": config,
        "provenance": {**results["provenance"], "rescored": prov},
    }
    done = _open_partial(
        partial,
        head,
        lambda h: (
            h["config"] == config
            and h["provenance"].get("rescored", {}).get("commit") == prov["commit"]
        ),
        lambda h: (
            f"{partial} holds another rescoring (other run, settings or commit): write "
            "to another file."
        ),
    )
    have = {(u["task"], u["seed"]) for u in done}
    todo = [
        (cfg, json.loads(json.dumps(u)))
        for u in results["units"]
        if (u["task"], u["seed"]) not in have
    ]
    print(
        f"{len(todo)} of {len(results['units'])} units to rescore on {cfg.retrain_seeds} fresh "
        f"seeds each, {cfg.jobs} at a time; commit {prov['commit']}",
        file=log,
        flush=True,
    )

    _each_unit(cfg, todo, lambda job: _rescored(*job), _retrain_job, partial, done)
    return done
