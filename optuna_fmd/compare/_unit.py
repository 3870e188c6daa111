"""Running one (task, seed) unit: every method of the comparison in lock-step on one budget of
plain-episode equivalents (the yardstick's readings taken as it goes), every trial's record and
cost, then each method's best trial within each budget and the schedule it stands for."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from .._storage import open_storage
from ..episode import run_episode
from ..outer import best_group
from ..sampler import FMDSampler
from ..tasks import Task
from . import _stats
from ._budget import CostUnit, LockStep
from ._config import TASKS, CompareConfig
from ._methods import METHODS, Study, open_study
from ._objectives import Schedules
from ._provenance import commit
from ._retrain import retrain_unit

__all__ = ["run_unit"]


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
        "commit": commit(),
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
