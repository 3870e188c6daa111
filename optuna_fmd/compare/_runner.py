"""Running a comparison: one (task, seed) unit at a time per process, every method of a unit in
lock-step on one budget of plain-episode equivalents, each finished unit appended to a JSON-lines
file at once (a run resumes from it), the results stamped with the commit they ran on."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from .._storage import open_storage
from ..episode import run_episode
from ..evaluation import evaluate_schedule
from ..outer import best_group
from ..sampler import FMDSampler
from ..tasks import Task
from . import _stats
from ._anchors import anchor_task
from ._budget import CostUnit, LockStep
from ._config import TASKS, CompareConfig
from ._methods import METHODS, Study, open_study
from ._objectives import Schedules
from ._torch_loop import TORCH_OPTIMIZERS, torch_episode

__all__ = [
    "fresh_seed_figures",
    "provenance",
    "rescore_results",
    "retrain_seeds",
    "retrain_unit",
    "run_compare",
    "run_unit",
    "units_of",
]

#: Distance between a unit's successive fresh seeds (see :func:`retrain_seeds`).
RETRAIN_STRIDE = 1000
_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def provenance(cfg: CompareConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The commit (and whether tracked files differ from it), machine, versions and command."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "threads_per_process": cfg.threads,
        "processes": cfg.jobs,
        "device": cfg.device,
        "gpu": torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") else None,
        "command": " ".join(sys.argv if argv is None else argv),
    }


def _refuse_dirty(prov: Mapping[str, Any], allow_dirty: bool) -> None:
    if prov["dirty"] and not allow_dirty:
        raise RuntimeError(
            "the working tree differs from its commit: results would not say what ran. Commit "
            "first (or pass allow_dirty=True / --allow-dirty, and the results say dirty)."
        )


def units_of(cfg: CompareConfig) -> list[tuple[str, int]]:
    """(task, seed) units in run order: seed by seed, the tasks of a seed side by side."""
    return [(t, s) for s in cfg.seeds for t in cfg.tasks]


def _clock(kind: str) -> Callable[[], float]:
    return time.process_time if kind == "cpu" else time.perf_counter


def _trial(st: Study, clock: Callable[[], float]) -> tuple[dict[str, Any], float, float | None]:
    """Ask, run and tell one trial; its record, its cost on ``clock`` and, for a whole plain
    episode, the episode's own time (the yardstick's next reading)."""
    c0, w0 = clock(), time.perf_counter()
    trial = st.study.ask()
    e0 = clock()
    state, value, note = optuna.trial.TrialState.COMPLETE, None, None
    try:
        value = float(st.objective(trial))
    except optuna.TrialPruned:
        state = optuna.trial.TrialState.PRUNED
    except RuntimeError as err:  # a failed episode is a failed trial, as in study.optimize
        state, note = optuna.trial.TrialState.FAIL, f"{type(err).__name__}: {err}"
    episode = clock() - e0
    attrs = trial.user_attrs
    if state == optuna.trial.TrialState.COMPLETE:
        st.study.tell(trial, value)
    else:
        st.study.tell(trial, state=state)
    cost = clock() - c0
    steps = attrs.get("steps")
    diverged = bool(attrs.get("diverged", False))
    plain = st.method.kind != "fmd" and not st.method.pruner
    full = state == optuna.trial.TrialState.COMPLETE and not diverged and plain
    record = {
        "number": trial.number,
        "state": state.name,
        "value": value if value is not None and math.isfinite(value) else None,
        "seconds": cost,
        "wall": time.perf_counter() - w0,
        "episode_seconds": episode,
        "steps": steps,
        "diverged": diverged,
        "hypergradient": attrs.get("hypergradient") is not None,
        "engine": attrs.get("engine"),
        "params": dict(trial.params),
    }
    for key in ("iterate", "member"):  # a population's outer iterate and member
        if isinstance(attrs.get(key), int):
            record[key] = int(attrs[key])
    sampler = st.study.sampler
    aside = sampler.set_aside(trial) if isinstance(sampler, FMDSampler) else ()
    if aside:  # what the search knew, proposing this trial, to be next to a divergence
        record["set_aside"] = list(aside)
    if note:
        record["error"] = note
    return record, cost, episode if full else None


def _best(
    trials: Sequence[Mapping[str, Any]], budget: float, population: int | None = None
) -> Mapping[str, Any] | None:
    """The best trial that ended within ``budget``; with a population the best outer iterate,
    by its members' mean, as its first member's record ending when its last member ended
    (:func:`_stats.iterate_records`). Points the search knew, within the budget, to be next to
    a divergence are left out. :func:`~optuna_fmd.outer.best_group` picks it, with the
    comparison's tie rule: of equal values, the point that ended first (not the one whose
    first trial came first, the sampler's rule), so a stored comparison reports the same."""
    within = [t for t in trials if t["end"] <= budget]
    cliffs = {n for t in within for n in t.get("set_aside", ())}
    if not population:  # trials alone: their cliffs left out while another trial has a value
        within, cliffs = list(_stats.iterate_records(within, None, cliffs)), set()
    done = {
        t["number"]: t
        for t in within
        if t["state"] == "COMPLETE"
        and t["value"] is not None
        and (not population or t.get("iterate") is not None)
    }
    points = [
        (n, t["iterate"] if population else None, float(t["value"])) for n, t in done.items()
    ]

    def end(numbers: Sequence[int]) -> float:
        return max(float(done[n]["end"]) for n in numbers)

    best = best_group(points, population, cliffs=cliffs, tie=end)
    if best is None:
        return None
    first = done[best.trials[0]]
    return {**first, "value": best.value, "end": end(best.trials)} if population else first


def retrain_seeds(cfg: CompareConfig, seed: int) -> tuple[int, ...]:
    """The fresh seeds a unit's best schedules are scored on: ``retrain_offset + seed``, then
    steps of :data:`RETRAIN_STRIDE` (so a one-seed protocol's seed is the first of these)."""
    return tuple(cfg.retrain_offset + seed + RETRAIN_STRIDE * j for j in range(cfg.retrain_seeds))


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def fresh_seed_figures(
    task: Task,
    schedule: Schedules,
    seeds: Sequence[int],
    groups: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
    *,
    optimizer: str | None = None,
) -> dict[str, Any]:
    """How one schedule does on seeds the search never saw (``groups``: the per-layer groups
    of a per-layer space; those the schedule names apply; ``optimizer``: an anchor's optimiser
    (:func:`~optuna_fmd.compare._anchors.anchor_task`; one outside the engine is trained by
    :func:`~optuna_fmd.compare._torch_loop.torch_episode` with the schedule's constant values).

    For each seed, a plain episode on the training split scored on that seed's validation split
    (``fresh_vals``: what a choice between methods may use) and a retraining on train+val scored
    on the test set (``test_accuracies``, ``test_losses``: reported, never chosen on). The means
    are ``None`` where a seed diverged; ``dead_fresh`` and ``dead_retrain`` count the runs that
    diverged or ended at chance (:func:`_stats.dead`).
    """
    fresh: list[float | None] = []
    accs: list[float | None] = []
    losses: list[float | None] = []
    if optimizer in TORCH_OPTIMIZERS:
        factory = TORCH_OPTIMIZERS[optimizer]
        hypers = {h: v[0] for h, v in schedule.items()}
        for s in seeds:
            t = torch_episode(task, factory, hypers, seed=s)
            fresh.append(None if t.diverged else _finite(t.loss))
            e = torch_episode(task, factory, hypers, seed=s, final=True)
            accs.append(None if e.diverged else _finite(e.accuracy))
            losses.append(None if e.diverged else _finite(e.loss))
    else:
        task = anchor_task(task, optimizer)
        named = {n: g for n, g in (groups or {}).items() if n in schedule} or None
        for s in seeds:
            r = run_episode(task, schedule, seed=s, hypergradient=False, groups=named)
            fresh.append(None if r.diverged else _finite(r.val_loss))
        res = evaluate_schedule(task, schedule, seeds=tuple(seeds), groups=named)
        # a diverged retraining still predicts (at chance): no figure, like a diverged loss
        accs = [None if e.diverged else _finite(e.test_accuracy) for e in res.per_seed]
        losses = [None if e.diverged else _finite(e.test_loss) for e in res.per_seed]

    def mean(xs: list[float | None]) -> float | None:
        finite = [x for x in xs if x is not None]
        return math.fsum(finite) / len(xs) if len(finite) == len(xs) else None

    chance = math.log(task.data().n_classes)
    return {
        "retrain_seeds": list(seeds),
        "dead_fresh": _stats.dead(fresh, chance),
        "dead_retrain": _stats.dead(losses, chance),
        "fresh_val": mean(fresh),
        "fresh_vals": fresh,
        "test_accuracy": mean(accs),
        "test_accuracies": accs,
        "test_loss": mean(losses),
        "test_losses": losses,
    }


def retrain_unit(cfg: CompareConfig, unit: dict[str, Any], task: Task | None = None) -> None:
    """Score every method's best schedule of ``unit`` (each budget's) on the unit's fresh
    seeds, in place; a schedule that is best at several budgets is scored once."""
    if task is None:
        task = TASKS[unit["task"]].make_task(cfg.device)
    groups = TASKS[unit["task"]].groups(task)
    seeds = retrain_seeds(cfg, int(unit["seed"]))
    done: dict[str, dict[str, Any]] = {}
    for record in unit["methods"].values():
        for best in record["best"].values():
            if best is None:
                continue
            key = json.dumps([best["schedule"], best.get("optimizer")], sort_keys=True)
            if key not in done:
                done[key] = fresh_seed_figures(
                    task, best["schedule"], seeds, groups, optimizer=best.get("optimizer")
                )
            best.update(done[key])


def _yardstick(task: Task, start: Schedules, seed: int, clock: Callable[[], float]) -> CostUnit:
    """The cost unit's first readings: three plain episodes of the start, after a warm-up
    outside every budget (first calls, the allocator, the reverse-mode code path)."""
    run_episode(task, start, seed=seed, hypergradient=False)
    run_episode(task, start, seed=seed, hypergradient=True)
    unit = CostUnit()
    for _ in range(3):
        c0 = clock()
        run_episode(task, start, seed=seed, hypergradient=False)
        unit.observe(clock() - c0)
    return unit


def _bests(
    cfg: CompareConfig, trials: list[dict[str, Any]], study: Study
) -> dict[str, dict[str, Any] | None]:
    """A method's best trial at each budget of ``cfg`` (``None``: none ended within it), with
    the schedule it stands for."""
    best: dict[str, dict[str, Any] | None] = {}
    for bname, b in cfg.budgets.items():
        t = _best(trials, b, study.method.population)
        best[bname] = None
        if t is not None:
            record = {
                "value": t["value"],
                "trial": t["number"],
                "end": t["end"],
                "schedule": study.schedule_of(t["params"]),
            }
            if study.optimizer is not None:  # an anchor's schedule trains with its optimiser
                record["optimizer"] = study.optimizer
            best[bname] = record
    return best


def run_unit(cfg: CompareConfig, task_name: str, seed: int, *, log: Any = None) -> dict[str, Any]:
    """Every method of ``cfg`` on one task and seed, in lock-step up to the longest budget;
    then each method's best schedule at each budget scored on the unit's fresh seeds
    (:func:`retrain_unit`).

    Returns:
        A JSON-ready record: the yardstick's readings, every trial (cost in PEE, its start and
        end on the method's budget, both clocks) and each method's best per budget.
    """
    spec = TASKS[task_name]
    task = spec.make_task(cfg.device)
    task.data()
    space, window_space = spec.make_space(cfg.lr_start, task), spec.window_space(cfg.lr_start)
    clock = _clock(cfg.clock)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    start = {h: list(v) for h, v in window_space.initial_values().items()}
    unit = _yardstick(task, start, seed, clock)
    storage = open_storage(cfg.storage) if cfg.storage else optuna.storages.InMemoryStorage()
    order = list(cfg.methods)
    r = seed % len(order)  # rotate the tie-break order per seed
    order = order[r:] + order[:r]
    studies = {
        m: open_study(
            METHODS[m],
            task,
            space,
            seed,
            grid=cfg.grid,
            storage=storage,
            name=f"{cfg.prefix}-{task_name}-{m}-s{seed}",
            window_space=window_space,
        )
        for m in order
    }
    lock = LockStep(order, cfg.budget, unit)
    trials: dict[str, list[dict[str, Any]]] = {m: [] for m in order}
    while (m := lock.next()) is not None:
        seq = len(unit.observed)
        record, seconds, plain = _trial(studies[m], clock)
        if plain is not None:
            unit.observe(plain)
        lock.charge(m, seconds, seq)
        record["seq"] = seq
        trials[m].append(record)
        if studies[m].exhausted():
            lock.finish(m, "converged" if METHODS[m].kind == "fmd" else "grid done")
    for m in order:  # the final charge: the yardstick's readings on both sides of each trial
        for record, cost, (t0, t1, counted) in zip(
            trials[m], lock.costs(m), lock.spans(m), strict=True
        ):
            record.update(
                unit=unit.around(record["seq"]), cost=cost, start=t0, end=t1, counted=counted
            )
    methods = {
        m: {
            "trials": trials[m],
            "used": lock.used(m),
            "stopped": lock.done.get(m),
            "best": _bests(cfg, trials[m], studies[m]),
        }
        for m in order
    }
    out: dict[str, Any] = {
        "task": task_name,
        "seed": seed,
        "commit": _git("rev-parse", "HEAD"),
        "host": socket.gethostname(),
        "yardstick": {"clock": cfg.clock, "initial": unit.observed[:3], **unit.spread()},
        "cpu_seconds": time.process_time() - cpu0,
        "wall_seconds": time.perf_counter() - wall0,
        "methods": methods,
    }
    if cfg.retrain:
        retrain_unit(cfg, out, task)
    if log is not None:
        print(_unit_line(out, cfg), file=log, flush=True)
    return out


def _unit_line(u: Mapping[str, Any], cfg: CompareConfig) -> str:
    long = max(cfg.budgets, key=lambda k: cfg.budgets[k])
    parts = []
    for m, r in u["methods"].items():
        b = r["best"].get(long)
        parts.append(f"{m} {b['value']:.4f}" if b else f"{m} -")
    spread = u["yardstick"]
    return (
        f"[{time.strftime('%H:%M:%S')}] {u['task']} s{u['seed']}: {', '.join(parts)} "
        f"(plain episode {spread.get('median', math.nan):.2f} s, "
        f"x{spread.get('max_over_min', 1):.2f} spread; unit {u['wall_seconds'] / 60:.1f} min)"
    )


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
    _refuse_dirty(prov, allow_dirty)
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
    _refuse_dirty(prov, allow_dirty)
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
