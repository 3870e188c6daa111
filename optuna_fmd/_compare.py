"""Equal-budget comparison: FMD against black-box samplers and a tuned cosine schedule.

Every method gets the same compute budget (seconds per study, measured by one clock that counts
everything the method does: sampler, storage, episodes and, for FMD, the hypergradient) on the
same task, with several seeds; every study goes into one Optuna storage, so optuna-dashboard shows
them side by side. The summary gives each method's best validation loss at the budget, one-sided
paired tests of FMD against each baseline across seeds, the time FMD needs to reach a baseline's
final best value, and the test accuracy of each method's best schedule retrained from scratch by
:func:`optuna_fmd.evaluate_schedule`.

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS 2021).

Example:
    >>> from optuna_fmd import _compare
    >>> _compare.wilcoxon_less([0.30, 0.31, 0.29, 0.32, 0.30], [0.35, 0.36, 0.33, 0.34, 0.38])
    0.03125
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import baselines

if TYPE_CHECKING:
    import optuna

    from .engine import ScheduleSpace
    from .tasks import Task

__all__ = [
    "METHODS",
    "CompareConfig",
    "Method",
    "constant_schedules",
    "cosine_schedules",
    "paired_t_less",
    "preset",
    "run_compare",
    "summarize",
    "time_to_reach",
    "wilcoxon_less",
]

HYPERS = ("lr", "momentum", "weight_decay")
#: Bounds of the DESIGN space (and of the low-dimensional spaces' matching parameters).
LR = (1e-3, 1.0)
MOMENTUM = (0.0, 0.99)
WEIGHT_DECAY = (0.0, 1e-2)
#: The FMD start (every window) and the hand-tuned cosine's fixed momentum and weight decay.
INIT = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
#: Peak learning rates the hand-tuned cosine tries (log-spaced over the lr range that trains).
COSINE_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: Warm-up fraction range of the low-dimensional cosine space.
WARMUP = (0.0, 0.5)


# --------------------------------------------------------------------------------------------
# Low-dimensional spaces mapped to full window schedules
# --------------------------------------------------------------------------------------------
def constant_schedules(
    lr: float, momentum: float, weight_decay: float, windows: int
) -> dict[str, list[float]]:
    """Three constants as ``windows``-window schedules (the 30-dim equivalent at K = 10).

    Example:
        >>> constant_schedules(0.1, 0.9, 0.0, 2)
        {'lr': [0.1, 0.1], 'momentum': [0.9, 0.9], 'weight_decay': [0.0, 0.0]}
    """
    return {
        "lr": baselines.constant(lr, windows),
        "momentum": baselines.constant(momentum, windows),
        "weight_decay": baselines.constant(weight_decay, windows),
    }


def cosine_schedules(
    peak_lr: float, warmup: float, momentum: float, weight_decay: float, windows: int
) -> dict[str, list[float]]:
    """A cosine lr schedule with linear warm-up (annealed to 0) and constant momentum and weight
    decay, as ``windows``-window schedules (:func:`optuna_fmd.baselines.cosine`)."""
    return {
        "lr": baselines.cosine(peak_lr, windows, warmup=warmup),
        "momentum": baselines.constant(momentum, windows),
        "weight_decay": baselines.constant(weight_decay, windows),
    }


class ReducedObjective:
    """Suggest a few parameters, map them to full window schedules, run a plain episode.

    The trial's value is the episode's validation loss, exactly as for
    :class:`~optuna_fmd.HypergradientObjective` with ``hypergradient=False`` on the full space;
    the full schedule it stands for goes to ``trial.user_attrs["schedule"]``.

    Args:
        task: The training problem.
        params: ``{name: (low, high, log)}`` suggested with ``trial.suggest_float``.
        to_schedules: Maps the suggested values (by name) to ``{hyper: [K values]}``.
        seed: Episode seed (the same for every trial, like the default objective).
    """

    def __init__(
        self,
        task: Task,
        params: Mapping[str, tuple[float, float, bool]],
        to_schedules: Callable[[Mapping[str, float]], dict[str, list[float]]],
        *,
        seed: int = 0,
    ) -> None:
        self.task = task
        self.params = dict(params)
        self.to_schedules = to_schedules
        self.seed = seed

    def schedules_of(self, params: Mapping[str, float]) -> dict[str, list[float]]:
        """The full schedules a trial's parameters stand for."""
        return self.to_schedules(params)

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        from .episode import run_episode

        values = {
            n: float(trial.suggest_float(n, lo, hi, log=log))
            for n, (lo, hi, log) in self.params.items()
        }
        schedules = self.to_schedules(values)
        trial.set_user_attr("schedule", schedules)
        result = run_episode(self.task, schedules, seed=self.seed, hypergradient=False)
        diverged = bool(result.diverged) or not math.isfinite(result.val_loss)
        acc = float(result.val_accuracy)
        trial.set_user_attr("val_accuracy", acc if math.isfinite(acc) else None)
        trial.set_user_attr("seconds", float(result.seconds))
        trial.set_user_attr("diverged", diverged)
        trial.set_user_attr("engine", str(result.engine))
        return float("inf") if diverged else float(result.val_loss)


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One compared method.

    Attributes:
        name: Short name (study names are ``<prefix>-<name>-s<seed>``).
        kind: ``"fmd"`` (hypergradient steps on the full space), ``"full"`` (a black-box sampler
            on the full space), ``"reduced"`` (a black-box sampler on a low-dimensional space) or
            ``"grid"`` (the hand-tuned cosine, peak lr grid-searched).
        space: What is searched, in words.
        sampler: Sampler name (``"sign"``/``"adam"`` for FMD).
    """

    name: str
    kind: str
    space: str
    sampler: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("fmd-sign", "fmd", "30-dim schedules", "sign"),
        Method("fmd-adam", "fmd", "30-dim schedules", "adam"),
        Method("tpe", "full", "30-dim schedules", "tpe"),
        Method("random", "full", "30-dim schedules", "random"),
        Method("cmaes", "full", "30-dim schedules", "cmaes"),
        Method("gp", "full", "30-dim schedules", "gp"),
        Method("tpe-const", "reduced", "3 constants (lr, momentum, wd)", "tpe"),
        Method("tpe-cosine", "reduced", "cosine (peak lr, warm-up, momentum, wd)", "tpe"),
        Method("cosine-grid", "grid", "cosine peak lr grid (momentum 0.9, wd 5e-4)", "grid"),
    )
}
FMD_METHODS = tuple(n for n, m in METHODS.items() if m.kind == "fmd")


# --------------------------------------------------------------------------------------------
# Configuration and presets
# --------------------------------------------------------------------------------------------
@dataclass
class CompareConfig:
    """One comparison run.

    Attributes:
        task: ``"fashion-mnist"`` or ``"digits"``.
        model: Model name.
        steps: Inner steps T per episode.
        batch_size: Training minibatch size.
        subset: Fashion-MNIST: train on this many examples only.
        windows: Windows K per schedule (the full space has 3 K parameters).
        budget: Seconds per study on ``clock``.
        clock: ``"cpu"`` (the worker's CPU time, torch at ``threads`` threads: robust to other
            processes on a shared machine) or ``"wall"``.
        seeds: Study seeds (episode seed and sampler seed).
        methods: Method names (keys of :data:`METHODS`).
        retrain_seeds: Seeds of :func:`optuna_fmd.evaluate_schedule` for each study's best
            schedule (empty: no retraining).
        storage: Optuna storage URL for every study.
        prefix: Study-name prefix.
        jobs: Worker processes running studies at once.
        threads: torch threads per worker.
        device: Where episodes run.
        step_size: FMDSampler ``step_size``.
        trust_region: FMDSampler ``trust_region``.
        grid: Peak learning rates of the hand-tuned cosine.
    """

    task: str = "fashion-mnist"
    model: str = "mlp"
    steps: int = 2000
    batch_size: int = 128
    subset: int | None = None
    windows: int = 10
    budget: float = 80.0
    clock: str = "cpu"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    methods: tuple[str, ...] = tuple(METHODS)
    retrain_seeds: tuple[int, ...] = (0, 1, 2)
    storage: str = "sqlite:///compare.db"
    prefix: str = "compare"
    jobs: int = 1
    threads: int = 1
    device: str = "cpu"
    step_size: float = 0.1
    trust_region: float = 0.25
    grid: tuple[float, ...] = COSINE_GRID
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.task not in ("fashion-mnist", "digits"):
            raise ValueError(f"`task` must be 'fashion-mnist' or 'digits', but got {self.task!r}.")
        for arg in ("steps", "batch_size", "windows", "jobs", "threads"):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{arg}` must be a positive int, but got {v!r}.")
        if not (isinstance(self.budget, (int, float)) and self.budget > 0):
            raise ValueError(f"`budget` must be positive seconds, but got {self.budget!r}.")
        if self.clock not in ("cpu", "wall"):
            raise ValueError(f"`clock` must be 'cpu' or 'wall', but got {self.clock!r}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct and non-empty, but got {self.seeds!r}.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"`methods` must be among {list(METHODS)}, but got {self.methods!r}.")
        if self.windows > self.steps:
            raise ValueError(
                f"`windows` must be at most steps={self.steps}, but got {self.windows}."
            )


_PRESETS: dict[str, dict[str, Any]] = {
    # The default CPU benchmark (see benchmarks/README.md).
    "cpu": {},
    # A few minutes on Digits (slow test, smoke runs).
    "quick": {
        "task": "digits",
        "steps": 300,
        "batch_size": 64,
        "budget": 6.0,
        "seeds": (0, 1),
        "retrain_seeds": (0,),
        "grid": (0.01, 0.05, 0.2, 1.0),
    },
    # One GPU, about 4 minutes: the same comparison on shorter episodes and a smaller budget,
    # on the wall clock (CPU time does not count the GPU's work).
    "gpu": {
        "device": "cuda",
        "clock": "wall",
        "steps": 500,
        "budget": 8.0,
        "seeds": (0, 1, 2),
        "retrain_seeds": (0,),
    },
}


def preset(name: str) -> dict[str, Any]:
    """The settings of a named preset (``"cpu"``, ``"quick"``, ``"gpu"``)."""
    if name not in _PRESETS:
        raise ValueError(f"`preset` must be one of {list(_PRESETS)}, but got {name!r}.")
    return dict(_PRESETS[name])


_TASKS: dict[tuple[Any, ...], Task] = {}


def make_task(cfg: CompareConfig, *, steps: int | None = None) -> Task:
    """The task of ``cfg`` (``steps`` overrides the horizon, e.g. for a warm-up), one instance
    per process and settings, so its data is loaded once."""
    from . import tasks

    horizon = cfg.steps if steps is None else steps
    key = (cfg.task, cfg.model, horizon, cfg.batch_size, cfg.subset, cfg.device)
    if key in _TASKS:
        return _TASKS[key]
    common: dict[str, Any] = {
        "model": cfg.model,
        "steps": horizon,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
    }
    task: Task
    if cfg.task == "digits":
        task = tasks.Digits(**common)
    else:
        if cfg.subset is not None:
            common["subset"] = cfg.subset
        task = tasks.FashionMNIST(**common)
    _TASKS[key] = task
    return task


def make_space(windows: int) -> ScheduleSpace:
    """The 30-dim (at K = 10) DESIGN space: lr, momentum, weight decay x ``windows``."""
    from .engine import Schedule, ScheduleSpace

    return ScheduleSpace(
        {
            "lr": Schedule(windows=windows, low=LR[0], high=LR[1], log=True, init=INIT["lr"]),
            "momentum": Schedule(
                windows=windows, low=MOMENTUM[0], high=MOMENTUM[1], init=INIT["momentum"]
            ),
            "weight_decay": Schedule(
                windows=windows,
                low=WEIGHT_DECAY[0],
                high=WEIGHT_DECAY[1],
                init=INIT["weight_decay"],
            ),
        }
    )


def _reduced_objective(method: Method, task: Task, cfg: CompareConfig, seed: int) -> Any:
    k = cfg.windows
    if method.name == "tpe-const":
        return ReducedObjective(
            task,
            {
                "lr": (*LR, True),
                "momentum": (*MOMENTUM, False),
                "weight_decay": (*WEIGHT_DECAY, False),
            },
            lambda p: constant_schedules(p["lr"], p["momentum"], p["weight_decay"], k),
            seed=seed,
        )
    if method.name == "tpe-cosine":
        return ReducedObjective(
            task,
            {
                "peak_lr": (*LR, True),
                "warmup": (*WARMUP, False),
                "momentum": (*MOMENTUM, False),
                "weight_decay": (*WEIGHT_DECAY, False),
            },
            lambda p: cosine_schedules(
                p["peak_lr"], p["warmup"], p["momentum"], p["weight_decay"], k
            ),
            seed=seed,
        )
    if method.name == "cosine-grid":
        return ReducedObjective(
            task,
            {"peak_lr": (min(cfg.grid), max(cfg.grid), True)},
            lambda p: cosine_schedules(
                p["peak_lr"], 0.0, INIT["momentum"], INIT["weight_decay"], k
            ),
            seed=seed,
        )
    raise ValueError(f"no low-dimensional objective for method {method.name!r}")


def make_sampler(method: Method, cfg: CompareConfig, space: ScheduleSpace, seed: int) -> Any:
    """The sampler of ``method`` for the study of ``seed``."""
    import optuna

    from .sampler import FMDSampler

    if method.kind == "fmd":
        return FMDSampler(
            space,
            outer=method.sampler,
            step_size=cfg.step_size,
            trust_region=cfg.trust_region,
            seed=seed,
        )
    if method.kind == "grid":
        return optuna.samplers.GridSampler({"peak_lr": list(cfg.grid)}, seed=seed)
    if method.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if method.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if method.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown sampler {method.sampler!r}")


# --------------------------------------------------------------------------------------------
# The budgeted study runner
# --------------------------------------------------------------------------------------------
def _clock(kind: str) -> Callable[[], float]:
    return time.process_time if kind == "cpu" else time.perf_counter


class _Timed:
    """Wraps an objective: stores the budget clock and the wall clock at each trial's end."""

    def __init__(self, objective: Any, clock: Callable[[], float], start: float, wall0: float):
        self.objective = objective
        self.clock = clock
        self.start = start
        self.wall0 = wall0

    def __call__(self, trial: optuna.trial.Trial) -> float:
        trial.set_user_attr("t_start", self.clock() - self.start)
        value = float(self.objective(trial))
        trial.set_user_attr("t_end", self.clock() - self.start)
        trial.set_user_attr("wall_end", time.perf_counter() - self.wall0)
        return value


def _schedule_of(
    trial: optuna.trial.FrozenTrial, space: ScheduleSpace
) -> dict[str, list[float]] | None:
    sched = trial.user_attrs.get("schedule")
    if isinstance(sched, dict):
        return {str(k): [float(v) for v in vs] for k, vs in sched.items()}
    try:
        return {k: [float(v) for v in vs] for k, vs in space.from_params(trial.params).items()}
    except (KeyError, ValueError, TypeError):
        return None


def _setup_worker(threads: int) -> None:
    import optuna
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _warm_up(cfg: CompareConfig) -> None:
    """Load the data and run two short episodes (plain, hypergradient) outside every budget."""
    from .episode import run_episode

    short = make_task(cfg, steps=max(cfg.windows, 20))
    sched = {h: [INIT[h]] * cfg.windows for h in HYPERS}
    make_task(cfg).data()
    run_episode(short, sched, seed=0, hypergradient=False)
    run_episode(short, sched, seed=0, hypergradient=True)


def run_study(cfg: CompareConfig, method_name: str, seed: int) -> dict[str, Any]:
    """Run one method's study for ``seed`` within the budget; retrain its best schedule.

    Trials start while the budget clock is below ``cfg.budget`` and the last trial's cost
    predicts that the next one ends within it; only trials that ended within the budget count.
    An FMD study stops early once its sampler reports convergence (it would only repeat its best
    schedule).

    Returns:
        A JSON-ready record: each trial's number, state, value, budget-clock and wall-clock end
        time, episode seconds, engine and divergence flag; the best value and schedule within
        the budget; and the retrained test figures.
    """
    import optuna

    from .evaluation import evaluate_schedule
    from .objective import HypergradientObjective

    method = METHODS[method_name]
    task = make_task(cfg)
    task.data()  # loaded outside the budget (once per process)
    space = make_space(cfg.windows)
    sampler = make_sampler(method, cfg, space, seed)
    name = f"{cfg.prefix}-{method_name}-s{seed}"
    try:
        optuna.load_study(study_name=name, storage=cfg.storage)
    except KeyError:
        pass
    else:
        raise ValueError(
            f"study {name!r} already exists in {cfg.storage}; nothing stored is overwritten: "
            "use another `--prefix` or `--storage`."
        )
    study = optuna.create_study(study_name=name, storage=cfg.storage, sampler=sampler)
    study.set_user_attr("method", method_name)
    study.set_user_attr("seed", seed)
    study.set_user_attr("space", method.space)
    study.set_user_attr("budget", float(cfg.budget))
    study.set_user_attr("clock", cfg.clock)
    if method.kind == "fmd":
        objective: Any = HypergradientObjective(task, space, seed=seed)
    elif method.kind == "full":
        objective = HypergradientObjective(task, space, hypergradient=False, seed=seed)
    else:
        objective = _reduced_objective(method, task, cfg, seed)
    clock = _clock(cfg.clock)
    start, wall0 = clock(), time.perf_counter()
    last_end = [0.0]

    def stop_when_spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = clock() - start
        cost = now - last_end[0]
        last_end[0] = now
        spent = now + cost > cfg.budget  # the next trial would end past the budget
        if spent or (method.kind == "fmd" and sampler.is_converged(study)):
            study.stop()

    study.optimize(
        _Timed(objective, clock, start, wall0),
        n_trials=None,
        callbacks=[stop_when_spent],
        catch=(RuntimeError,),
    )
    elapsed, wall = clock() - start, time.perf_counter() - wall0
    records = []
    best_value, best_time, best_trial = math.inf, None, None
    for t in study.get_trials(deepcopy=False):
        t_end = t.user_attrs.get("t_end")
        in_budget = isinstance(t_end, float) and t_end <= cfg.budget
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
        rec: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": value if value is None or math.isfinite(value) else None,
            "t_end": t_end,
            "wall_end": t.user_attrs.get("wall_end"),
            "seconds": t.user_attrs.get("seconds"),
            "engine": t.user_attrs.get("engine"),
            "diverged": t.user_attrs.get("diverged"),
            "in_budget": in_budget,
        }
        if method.kind != "fmd" and method.kind != "full":
            rec["params"] = dict(t.params)
        records.append(rec)
        if in_budget and value is not None and math.isfinite(value) and value < best_value:
            best_value, best_time, best_trial = value, t_end, t
    out: dict[str, Any] = {
        "method": method_name,
        "seed": seed,
        "study_name": name,
        "budget": float(cfg.budget),
        "clock": cfg.clock,
        "elapsed": elapsed,
        "wall_seconds": wall,
        "n_trials": len(records),
        "n_in_budget": sum(r["in_budget"] for r in records),
        "engines": sorted({str(r["engine"]) for r in records if r["engine"] is not None}),
        "best_value": best_value if math.isfinite(best_value) else None,
        "best_time": best_time,
        "best_trial": None if best_trial is None else best_trial.number,
        "best_schedule": None if best_trial is None else _schedule_of(best_trial, space),
        "converged": bool(method.kind == "fmd" and sampler.is_converged(study)),
        "trials": records,
        "retrain": None,
    }
    if cfg.retrain_seeds and out["best_schedule"] is not None:
        t0 = time.perf_counter()
        res = evaluate_schedule(task, out["best_schedule"], seeds=tuple(cfg.retrain_seeds))
        out["retrain"] = {
            "seeds": list(cfg.retrain_seeds),
            "test_accuracy": res.test_accuracy,
            "test_accuracy_std": res.test_accuracy_std,
            "test_loss": res.test_loss if math.isfinite(res.test_loss) else None,
            "per_seed_accuracy": [r.test_accuracy for r in res.per_seed],
            "seconds": time.perf_counter() - t0,
        }
    return out


def _job(args: tuple[CompareConfig, str, int]) -> dict[str, Any]:
    cfg, method, seed = args
    record = run_study(cfg, method, seed)
    best = record["best_value"]
    retrain = record["retrain"]
    acc = f", test acc {retrain['test_accuracy']:.4f}" if retrain else ""
    print(
        f"[{time.strftime('%H:%M:%S')}] {record['study_name']}: {record['n_in_budget']} trials "
        f"in {cfg.budget:g} s ({cfg.clock}), best {best if best is None else round(best, 4)}"
        f", engines {','.join(record['engines'])}, wall {record['wall_seconds']:.0f} s{acc}",
        flush=True,
    )
    return record


_WORKER_READY = False


def _pool_init(cfg: CompareConfig) -> None:
    global _WORKER_READY
    _setup_worker(cfg.threads)
    _warm_up(cfg)
    _WORKER_READY = True


def jobs_of(cfg: CompareConfig) -> list[tuple[str, int]]:
    """(method, seed) pairs in run order: seed by seed, methods interleaved (rotated per seed),
    so that slow and fast periods of a shared machine fall on every method alike."""
    out: list[tuple[str, int]] = []
    methods = list(cfg.methods)
    for i, seed in enumerate(cfg.seeds):
        r = i % len(methods)
        out.extend((m, seed) for m in methods[r:] + methods[:r])
    return out


def run_compare(
    cfg: CompareConfig, *, log: Any = None, partial: str | None = None
) -> dict[str, Any]:
    """Run every (method, seed) study of ``cfg`` (``cfg.jobs`` at a time) and summarise.

    Args:
        cfg: The comparison.
        log: Where progress lines go (default stdout).
        partial: Append each study's record to this file (JSON lines) as soon as it is done,
            so an interrupted run keeps what it finished.

    Returns:
        ``{"config", "machine", "studies", "summary"}``, JSON-ready.
    """
    cfg.validate()
    log = log or sys.stdout
    pairs = jobs_of(cfg)
    print(
        f"{len(pairs)} studies ({len(cfg.methods)} methods x {len(cfg.seeds)} seeds), "
        f"{cfg.budget:g} s each ({cfg.clock} clock), {cfg.jobs} at a time, storage {cfg.storage}",
        file=log,
        flush=True,
    )
    import optuna

    storage = optuna.storages.get_storage(cfg.storage)  # the schema, once, before the workers
    taken = {s.study_name for s in storage.get_all_studies()}
    clash = [f"{cfg.prefix}-{m}-s{s}" for m, s in pairs if f"{cfg.prefix}-{m}-s{s}" in taken]
    if clash:
        raise ValueError(
            f"studies {clash} already exist in {cfg.storage}; nothing stored is overwritten: "
            "use another `--prefix` or `--storage`."
        )
    t0 = time.perf_counter()
    args = [(cfg, m, s) for m, s in pairs]
    studies: list[dict[str, Any]] = []

    def keep(record: dict[str, Any]) -> None:
        studies.append(record)
        if partial:
            import json

            with open(partial, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    if cfg.jobs == 1:
        _pool_init(cfg)
        for a in args:
            keep(_job(a))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(cfg.jobs, initializer=_pool_init, initargs=(cfg,)) as pool:
            for record in pool.imap(_job, args, chunksize=1):
                keep(record)
    return {
        "config": dataclasses.asdict(cfg),
        "machine": machine_info(cfg),
        "total_wall_seconds": time.perf_counter() - t0,
        "studies": studies,
        "summary": summarize(studies, cfg.methods),
    }


def machine_info(cfg: CompareConfig) -> dict[str, Any]:
    """Machine, versions and the command line, for the results file."""
    import optuna
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "torch_threads_per_worker": cfg.threads,
        "workers": cfg.jobs,
        "command": " ".join(sys.argv),
    }
    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------------------------
# Statistics and summary
# --------------------------------------------------------------------------------------------
def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties get their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon_less(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Exact one-sided Wilcoxon signed-rank p-value that ``a`` tends to be below ``b`` (paired).

    Zero differences are dropped; ties among |differences| get average ranks; the null
    distribution is enumerated over all 2^n sign patterns (n <= 20). With 5 pairs the smallest
    possible p is 1/32 = 0.031. ``None`` when a pair is not finite or n > 20.

    Example:
        >>> wilcoxon_less([1, 2, 3], [2, 3, 4])
        0.125
    """
    if len(a) != len(b):
        raise ValueError(f"`a` and `b` must pair up, but got {len(a)} and {len(b)} values.")
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    if any(not math.isfinite(v) for v in d):
        return None
    d = [v for v in d if v != 0.0]
    n = len(d)
    if n == 0:
        return 1.0
    if n > 20:
        return None
    ranks = _ranks([abs(v) for v in d])
    observed = sum(r for r, v in zip(ranks, d, strict=True) if v > 0)
    count = 0
    for signs in itertools.product((0, 1), repeat=n):
        w = sum(r for r, s in zip(ranks, signs, strict=True) if s)
        if w <= observed + 1e-9:
            count += 1
    return count / 2**n


def paired_t_less(a: Sequence[float], b: Sequence[float]) -> float | None:
    """One-sided paired t-test p-value that ``a`` is below ``b`` (``None`` without scipy, with
    fewer than 2 pairs or non-finite values)."""
    if len(a) != len(b):
        raise ValueError(f"`a` and `b` must pair up, but got {len(a)} and {len(b)} values.")
    if len(a) < 2 or any(not math.isfinite(float(v)) for v in [*a, *b]):
        return None
    try:
        from scipy import stats
    except ImportError:
        return None
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    if all(v == d[0] for v in d):  # no spread: the test is undefined; decide by the sign
        return 0.0 if d[0] < 0 else 1.0
    return float(stats.ttest_rel(a, b, alternative="less").pvalue)


def best_curve(trials: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(time, best value so far) at each in-budget trial end that improved the best."""
    points = []
    best = math.inf
    ends = sorted(
        (t for t in trials if t.get("in_budget") and t.get("t_end") is not None),
        key=lambda t: float(t["t_end"]),
    )
    for t in ends:
        v = t.get("value")
        if v is not None and math.isfinite(v) and v < best:
            best = float(v)
            points.append((float(t["t_end"]), best))
    return points


def time_to_reach(trials: Sequence[Mapping[str, Any]], target: float) -> float | None:
    """Budget-clock time at which the best value so far first reached ``<= target``
    (``None``: never within the budget).

    Example:
        >>> trials = [{"t_end": 2.0, "value": 0.5, "in_budget": True},
        ...           {"t_end": 4.0, "value": 0.3, "in_budget": True}]
        >>> time_to_reach(trials, 0.4)
        4.0
    """
    for t, best in best_curve(trials):
        if best <= target:
            return t
    return None


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    mean = math.fsum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def summarize(
    studies: Sequence[Mapping[str, Any]], methods: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-method figures, FMD-vs-baseline tests and time-to-reach, from study records.

    Args:
        studies: Records as returned by :func:`run_study` (``method``, ``seed``,
            ``best_value``, ``best_time``, ``trials``, ``retrain``, ``engines``).
        methods: Methods in table order (default: order of appearance).

    Returns:
        ``{"methods": {name: {...}}, "tests": [...], "time_to_reach": [...],
        "accuracy_vs_cosine": [...]}``. Seeds where a method has no finite best value count as
        ``inf`` (a loss for that method) in the tests.
    """
    by: dict[str, dict[int, Mapping[str, Any]]] = {}
    for s in studies:
        by.setdefault(str(s["method"]), {})[int(s["seed"])] = s
    names = list(methods) if methods is not None else list(by)
    names = [n for n in names if n in by]
    table: dict[str, Any] = {}
    for n in names:
        recs = [by[n][k] for k in sorted(by[n])]
        best = [r["best_value"] for r in recs]
        acc = [r["retrain"]["test_accuracy"] for r in recs if r.get("retrain")]
        bm, bs = _mean_std([math.inf if v is None else v for v in best])
        am, as_ = _mean_std(acc)
        engines = sorted({e for r in recs for e in r.get("engines", [])})
        table[n] = {
            "seeds": sorted(by[n]),
            "best_values": best,
            "best_mean": bm,
            "best_std": bs,
            "best_times": [r["best_time"] for r in recs],
            "trials_in_budget": [r["n_in_budget"] for r in recs],
            "test_accuracy": acc,
            "test_accuracy_mean": am,
            "test_accuracy_std": as_,
            "engines": engines,
            "converged": [r.get("converged", False) for r in recs],
        }

    def paired(a: str, b: str) -> tuple[list[int], list[float], list[float]]:
        seeds = sorted(set(by[a]) & set(by[b]))
        va = [by[a][k]["best_value"] for k in seeds]
        vb = [by[b][k]["best_value"] for k in seeds]
        inf = math.inf
        return seeds, [inf if v is None else v for v in va], [inf if v is None else v for v in vb]

    tests, reach, accs = [], [], []
    fmd_names = [n for n in names if METHODS.get(n, Method(n, "", "", "")).kind == "fmd"]
    others = [n for n in names if n not in fmd_names]
    for f in fmd_names:
        for b in others:
            seeds, va, vb = paired(f, b)
            # an inf on one side only: replace it by a finite number worse than every finite one
            finite = [v for v in va + vb if math.isfinite(v)]
            cap = (max(finite) + 1.0) if finite else 1.0
            ca = [v if math.isfinite(v) else cap for v in va]
            cb = [v if math.isfinite(v) else cap for v in vb]
            tests.append(
                {
                    "fmd": f,
                    "baseline": b,
                    "seeds": seeds,
                    "fmd_lower_on": sum(x < y for x, y in zip(ca, cb, strict=True)),
                    "mean_difference": _mean_std([x - y for x, y in zip(ca, cb, strict=True)])[0],
                    "wilcoxon_p": wilcoxon_less(ca, cb),
                    "t_test_p": paired_t_less(ca, cb),
                }
            )
            if METHODS.get(b, Method(b, "", "", "")).kind in ("full", "reduced"):
                rows = []
                for k in seeds:
                    target = by[b][k]["best_value"]
                    t_base = by[b][k]["best_time"]
                    t_fmd = None if target is None else time_to_reach(by[f][k]["trials"], target)
                    rows.append(
                        {
                            "seed": k,
                            "target": target,
                            "baseline_time": t_base,
                            "budget": by[b][k]["budget"],
                            "fmd_time": t_fmd,
                            "ratio_to_budget": None
                            if t_fmd is None
                            else t_fmd / by[b][k]["budget"],
                            "ratio": (
                                t_fmd / t_base
                                if t_fmd is not None and t_base is not None and t_base > 0
                                else None
                            ),
                        }
                    )
                ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
                reach.append(
                    {
                        "fmd": f,
                        "baseline": b,
                        "per_seed": rows,
                        "reached": len(ratios),
                        "median_ratio": _median(ratios) if len(ratios) == len(rows) else None,
                        "max_ratio": max(ratios) if len(ratios) == len(rows) else None,
                    }
                )
        if "cosine-grid" in by:
            seeds = sorted(set(by[f]) & set(by["cosine-grid"]))
            pairs = [
                (by[f][k]["retrain"], by["cosine-grid"][k]["retrain"])
                for k in seeds
                if by[f][k].get("retrain") and by["cosine-grid"][k].get("retrain")
            ]
            if pairs:
                fa = [p[0]["test_accuracy"] for p in pairs]
                ca = [p[1]["test_accuracy"] for p in pairs]
                accs.append(
                    {
                        "fmd": f,
                        "fmd_mean": _mean_std(fa)[0],
                        "cosine_mean": _mean_std(ca)[0],
                        "mean_difference": _mean_std([x - y for x, y in zip(fa, ca, strict=True)])[
                            0
                        ],
                        "fmd_higher_or_equal_on": sum(x >= y for x, y in zip(fa, ca, strict=True)),
                        "n": len(pairs),
                        # one-sided: FMD's accuracy below the cosine's (small p: FMD worse)
                        "wilcoxon_p_fmd_worse": wilcoxon_less(fa, ca),
                    }
                )
    return {"methods": table, "tests": tests, "time_to_reach": reach, "accuracy_vs_cosine": accs}


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def _f(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown tables (the benchmarks/README.md format)."""
    lines = [
        "| method | space | best val loss at budget (mean ± std) | trials in budget | "
        "engine | retrained test acc (mean ± std) |",
        "|---|---|---|---|---|---|",
    ]
    for n, m in summary["methods"].items():
        space = METHODS[n].space if n in METHODS else ""
        trials = m["trials_in_budget"]
        tr = f"{min(trials)}-{max(trials)}" if trials else "-"
        acc = (
            f"{100 * m['test_accuracy_mean']:.2f}% ± {100 * m['test_accuracy_std']:.2f}%"
            if m["test_accuracy_mean"] is not None
            else "-"
        )
        lines.append(
            f"| {n} | {space} | {_f(m['best_mean'])} ± {_f(m['best_std'])} | {tr} | "
            f"{', '.join(m['engines'])} | {acc} |"
        )
    lines += [
        "",
        "| FMD | baseline | FMD lower on | mean difference | Wilcoxon p (one-sided) | "
        "paired t p (one-sided) |",
        "|---|---|---|---|---|---|",
    ]
    for t in summary["tests"]:
        lines.append(
            f"| {t['fmd']} | {t['baseline']} | {t['fmd_lower_on']}/{len(t['seeds'])} | "
            f"{_f(t['mean_difference'], '+.4f')} | {_f(t['wilcoxon_p'], '.3f')} | "
            f"{_f(t['t_test_p'], '.3g')} |"
        )
    lines += [
        "",
        "| FMD | baseline | seeds reached | FMD time to baseline's final best (s, per seed) | "
        "baseline time to its best (s) | ratio median (max) |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["time_to_reach"]:
        ft = " ".join(_f(x["fmd_time"], ".0f") for x in r["per_seed"])
        bt = " ".join(_f(x["baseline_time"], ".0f") for x in r["per_seed"])
        ratio = (
            f"{r['median_ratio']:.3f} ({r['max_ratio']:.3f})"
            if r["median_ratio"] is not None
            else "not reached on every seed"
        )
        lines.append(
            f"| {r['fmd']} | {r['baseline']} | {r['reached']}/{len(r['per_seed'])} | {ft} | "
            f"{bt} | {ratio} |"
        )
    if summary["accuracy_vs_cosine"]:
        lines += [
            "",
            "| FMD | FMD test acc | cosine-grid test acc | mean difference | FMD >= cosine on |",
            "|---|---|---|---|---|",
        ]
        for a in summary["accuracy_vs_cosine"]:
            lines.append(
                f"| {a['fmd']} | {100 * a['fmd_mean']:.2f}% | {100 * a['cosine_mean']:.2f}% | "
                f"{100 * a['mean_difference']:+.2f} pts | {a['fmd_higher_or_equal_on']}/{a['n']} |"
            )
    return "\n".join(lines)


def load_studies(storage: str, records: Sequence[Mapping[str, Any]]) -> list[optuna.Study]:
    """The Optuna studies behind ``records`` (for plots)."""
    import optuna

    return [optuna.load_study(study_name=r["study_name"], storage=storage) for r in records]


# --------------------------------------------------------------------------------------------
# Command line (``optuna-fmd compare``)
# --------------------------------------------------------------------------------------------
def add_arguments(p: Any) -> None:
    """The ``compare`` subcommand's options (an ``argparse`` parser)."""
    p.add_argument("--quick", action="store_true", help="preset: a few minutes on Digits")
    p.add_argument("--gpu", action="store_true", help="preset: one GPU, a few minutes")
    p.add_argument("--task", choices=("fashion-mnist", "digits"), default=None)
    p.add_argument("--model", default=None, help="model name (default mlp)")
    p.add_argument("--steps", type=int, default=None, help="inner steps T (default 2000)")
    p.add_argument("--batch-size", type=int, default=None, help="minibatch (default 128)")
    p.add_argument("--subset", type=int, default=None, help="Fashion-MNIST training subset")
    p.add_argument("--windows", type=int, default=None, help="windows K (default 10)")
    p.add_argument("--budget", type=float, default=None, help="seconds per study (default 80)")
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="budget clock: the worker's CPU time (default; robust to other processes) or wall",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 3 4")
    p.add_argument(
        "--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}"
    )
    p.add_argument(
        "--retrain-seeds",
        type=int,
        nargs="*",
        default=None,
        help="evaluate_schedule seeds for each study's best schedule (default 0 1 2; none: skip)",
    )
    p.add_argument("--storage", default=None, help="Optuna storage URL for every study")
    p.add_argument("--prefix", default=None, help="study-name prefix (default compare-<time>)")
    p.add_argument("--jobs", type=int, default=None, help="studies run at once (processes)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--step-size", type=float, default=None, help="FMDSampler step_size")
    p.add_argument("--trust-region", type=float, default=None, help="FMDSampler trust_region")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.add_argument("--plot", default=None, help="write the regret curves (PNG) here")
    p.add_argument(
        "--from-results",
        nargs="+",
        default=None,
        metavar="FILE",
        help="run nothing: merge the study records of earlier results (JSON, or the JSON-lines "
        "`<out>.partial` of an interrupted run) and summarise them",
    )


def config_from_args(args: Any, *, default_storage: str) -> CompareConfig:
    """A :class:`CompareConfig` from parsed ``compare`` options (preset, then overrides)."""
    if args.quick and args.gpu:
        raise SystemExit("error: --quick and --gpu are exclusive presets")
    values: dict[str, Any] = preset("quick" if args.quick else "gpu" if args.gpu else "cpu")
    values.setdefault("storage", default_storage)
    values["prefix"] = "compare-" + time.strftime("%Y%m%d-%H%M%S")
    for key in (
        "task",
        "model",
        "steps",
        "batch_size",
        "subset",
        "windows",
        "budget",
        "clock",
        "storage",
        "prefix",
        "jobs",
        "threads",
        "device",
        "step_size",
        "trust_region",
    ):
        v = getattr(args, key)
        if v is not None:
            values[key] = v
    if args.seeds is not None:
        values["seeds"] = tuple(args.seeds)
    if args.retrain_seeds is not None:
        values["retrain_seeds"] = tuple(args.retrain_seeds)
    if args.methods is not None:
        values["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    cfg = CompareConfig(**values)
    try:
        cfg.validate()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return cfg


def plot_results(results: Mapping[str, Any], path: str, *, seed: int | None = None) -> bool:
    """Regret curves of every method for one seed (default: the first) against the budget's
    clock (the trials' ``t_end``), drawn by ``optuna_fmd.visualization.matplotlib.plot_regret``;
    ``False`` when matplotlib or that function is unavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from .visualization.matplotlib import plot_regret
    except ImportError as err:
        print(f"no plot written ({err})", file=sys.stderr)
        return False
    cfg = results["config"]
    seed = cfg["seeds"][0] if seed is None else seed
    records = [s for s in results["studies"] if s["seed"] == seed]
    ax = plot_regret(load_studies(cfg["storage"], records), time_attr="t_end")
    ax.set_xlabel(f"{cfg.get('clock', 'budget')} seconds since the study started (budget clock)")
    fig = ax
    fig = getattr(fig, "figure", fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return True


def merge_results(paths: Sequence[str], cfg: CompareConfig) -> dict[str, Any]:
    """Results from the study records in ``paths`` (results JSON files, or the JSON-lines
    ``.partial`` files a run appends to), one record per study name (the last one read wins),
    summarised again. The configuration is the first results file's (else ``cfg``'s), with the
    seeds and methods actually present."""
    import json

    config: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        with open(path) as fh:
            text = fh.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # JSON lines
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        if isinstance(data, dict):
            config = config or data.get("config")
            machine = machine or data.get("machine")
            data = data.get("studies", [])
        for rec in data:
            records[str(rec["study_name"])] = rec
    config = dict(config or dataclasses.asdict(cfg))
    studies = sorted(records.values(), key=lambda r: (int(r["seed"]), str(r["method"])))
    present = {str(r["method"]) for r in studies}
    order = [m for m in config.get("methods", METHODS) if m in present]
    order += sorted(present - set(order))
    config["seeds"] = sorted({int(r["seed"]) for r in studies})
    config["methods"] = order
    return {
        "config": config,
        "machine": machine or machine_info(cfg),
        "merged_from": list(paths),
        "studies": studies,
        "summary": summarize(studies, order),
    }


def cli_main(args: Any, *, default_storage: str) -> int:
    """``optuna-fmd compare``: run, print the tables, write the JSON and the plot."""
    import json

    cfg = config_from_args(args, default_storage=default_storage)
    partial = f"{args.out}.partial" if args.out else None
    if args.from_results:
        results = merge_results(args.from_results, cfg)
        partial = None
    else:
        results = run_compare(cfg, partial=partial)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
        print(f"results: {args.out}")
        if partial and os.path.exists(partial):
            os.remove(partial)
    print(format_summary(results["summary"]))
    if args.plot:
        try:
            if plot_results(results, args.plot):
                print(f"regret curves: {args.plot}")
        except Exception as err:  # the results are written; a plot failure must not lose them
            print(f"no plot written ({type(err).__name__}: {err})", file=sys.stderr)
    return 0
