"""The compared methods: how each builds its study, its objective and its first trial.

Every method starts from the same point where it takes one: the task space's initial values
(lr, momentum or beta1, weight decay, constant over the windows). Window-space studies (TPE,
random) get it as their first, enqueued trial and CMA-ES as its mean ``x0`` too; FMD starts
there by construction; the 3-constant space holds that point exactly; the cosine spaces start
from the cosine with the same peak lr, no warm-up and the same other values (the nearest
member of a family that cannot hold a constant lr), and the grid's factors include 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from ..objective import HypergradientObjective
from ..outer import search
from ..sampler import FMDSampler
from ..space import (
    Constant,
    Cosine,
    DeferredStep,
    Family,
    Schedule,
    ScheduleSpace,
    effective_number_weights,
    family_space,
    inverse_frequency_weights,
)
from ..tasks import Task
from ._anchors import ANCHORS, anchor_trials
from ._objectives import FamilyObjective, Schedules

__all__ = [
    "METHODS",
    "FamilyObjective",
    "Method",
    "Study",
    "describe_space",
    "family_space",
    "open_study",
]

#: Warm-up fraction range of the cosine family.
WARMUP = (0.0, 0.5)
#: The black-box family methods' trial params predate the space's names and keep them:
#: ``peak_lr`` and ``warmup`` are the lr cosine's ``lr_peak`` and ``lr_warmup`` (its
#: ``lr_final`` is held at 0), and a constant is named after its hyper (``momentum`` for
#: ``momentum_value``). TPE orders a trial's params by name, so the space's names would change
#: its proposals, and stored results (benchmarks/results/*.jsonl) read ``peak_lr``.
COSINE_NAMES = {"peak_lr": "peak", "warmup": "warmup"}
#: Intermediate validation losses per episode for Hyperband (resources 1..8 of 9).
RUNGS = 9


@dataclass(frozen=True)
class Method:
    """One compared method.

    Attributes:
        name: Short name (study names are ``<prefix>-<task>-<name>-s<seed>``).
        kind: ``"fmd"`` (hypergradient steps on the window space), ``"window"`` (a black-box
            sampler on the window space), ``"family"`` (a black-box sampler on a
            low-dimensional family), ``"grid"`` (the cosine with a grid-searched peak lr) or
            ``"anchor"`` (what users run instead of tuning: an optimiser's defaults, or a few lrs
            around them, see :data:`~optuna_fmd.compare._anchors.ANCHORS`).
        space: What is searched, in words.
        sampler: ``"fmd"``, ``"fmd-sign"``, ``"fmd-pattern"``, ``"tpe"``, ``"random"``,
            ``"cmaes"`` or ``"grid"``.
        family: ``"constant"`` or ``"cosine"`` for low-dimensional spaces; for FMD,
            ``"refined-cosine"`` (its default family space, :func:`family_space`) or
            ``"cosine"`` (the same without the windowed corrections).
        pruner: TPE with Optuna's ``HyperbandPruner`` on intermediate validation losses.
        population: FMD's members per outer iterate (seeds ``seed ... seed + M - 1``; the
            search compares iterates by their members' mean validation loss).
        explore: FMD's exploration probes (iterates) before its first hypergradient
            (``FMDSampler(explore=)``; ``None``: the sampler's default).
    """

    name: str
    kind: str
    space: str
    sampler: str
    family: str | None = None
    pruner: bool = False
    population: int | None = None
    explore: int | None = None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "fmd",
            "fmd",
            "cosine x 10 lr corrections, 2 constants (FMDSampler defaults)",
            "fmd",
            "refined-cosine",
        ),
        Method(
            "fmd-pop2",
            "fmd",
            "fmd's space and search rule on the mean of 2 seeds' validation losses (the CLI's "
            "default)",
            "fmd",
            "refined-cosine",
            population=2,
        ),
        Method(
            "fmd-no-explore",
            "fmd",
            "fmd with the coarse pattern pass instead of its exploration (explore=0)",
            "fmd",
            "refined-cosine",
            explore=0,
        ),
        Method(
            "fmd-cosine",
            "fmd",
            "fmd's search on cosine (peak, warm-up, final) and 2 constants, no lr corrections",
            "fmd",
            "cosine",
        ),
        Method("fmd-windows", "fmd", "30-dim windows (sign rule, v0.1 default)", "fmd-sign"),
        Method("fmd-windows-search", "fmd", "30-dim windows (FMDSampler's search rule)", "fmd"),
        Method(
            "pattern-windows",
            "fmd",
            "30-dim windows, the search rule without hypergradients (pattern steps only)",
            "fmd-pattern",
        ),
        Method(
            "pattern",
            "fmd",
            "fmd's space and search rule without hypergradients (pattern steps only)",
            "fmd-pattern",
            "refined-cosine",
        ),
        Method(
            "pattern-pop2",
            "fmd",
            "fmd-pop2's space and search rule without hypergradients (pattern steps only)",
            "fmd-pattern",
            "refined-cosine",
            population=2,
        ),
        Method("tpe", "window", "30-dim windows", "tpe"),
        Method("cmaes", "window", "30-dim windows", "cmaes"),
        Method("random", "window", "30-dim windows", "random"),
        Method("tpe-const", "family", "3 constants", "tpe", "constant"),
        Method("tpe-cosine", "family", "cosine: peak lr, warm-up, 2 constants", "tpe", "cosine"),
        Method(
            "tpe-hyperband",
            "family",
            "cosine: peak lr, warm-up, 2 constants; Hyperband",
            "tpe",
            "cosine",
            pruner=True,
        ),
        Method("cosine-grid", "grid", "cosine, peak lr on a grid, other values fixed", "grid"),
        Method(
            "tpe-drw",
            "family",
            "deferred re-weighting (effective-number weights): switch, strength; cosine peak lr",
            "tpe",
            "drw",
        ),
        Method(
            "inverse-frequency",
            "family",
            "inverse-frequency class weights; cosine: peak lr, warm-up, 2 constants",
            "tpe",
            "inverse-frequency",
        ),
        Method(
            "sf-adamw",
            "anchor",
            "schedule-free AdamW at the schedulefree package's defaults (1 plain episode)",
            "grid",
        ),
        Method(
            "sf-adamw-grid",
            "anchor",
            "schedule-free AdamW, lr 0.0025 x {1/4, 1/2, 1, 2, 4} picked on the unit's seed",
            "grid",
        ),
        Method(
            "sf-sgd-grid",
            "anchor",
            "schedule-free SGD, momentum 0.9, lr 1.0 x {1/4, 1/2, 1, 2, 4} picked on the unit's "
            "seed",
            "grid",
        ),
        Method(
            "prodigy",
            "anchor",
            "Prodigy (prodigyopt), lr 1, weight decay 0 or 5e-4 picked on the unit's seed "
            "(a PyTorch loop on the same episode)",
            "grid",
        ),
        Method(
            "adamw-cosine-grid",
            "anchor",
            "AdamW, 5% warm-up and a cosine to 0, peak lr 0.0025 x {1/4, 1/2, 1, 2, 4} picked "
            "on the unit's seed",
            "grid",
        ),
    )
}
#: The families that weight classes, and the shape of their weights.
CLASS_FAMILIES = {"drw": effective_number_weights, "inverse-frequency": inverse_frequency_weights}


def _family(
    space: ScheduleSpace, family: str, counts: Sequence[int] | None = None
) -> tuple[dict[str, tuple[float, float, bool]], Callable[[Mapping[str, float]], Schedules]]:
    """Parameters ``{name: (low, high, log)}`` of a family over ``space``'s hyperparameters and
    the map from their values to window schedules (lr first; the others constant over its
    windows): a :class:`~optuna_fmd.space.ScheduleSpace` of families under the names of
    :data:`COSINE_NAMES`. The class-weight families (:data:`CLASS_FAMILIES`) add an entry
    ``cw_<c>`` per class of ``counts`` (the training examples per class)."""
    families, names = _family_space(space, family, counts)
    dists = families.distributions()
    fixed = {p: v for p, v in families.initial_params().items() if p not in names.values()}
    shared = {p: n for n, q in names.items() for p in _shared_params(families, q)}

    def schedules(p: Mapping[str, float]) -> Schedules:
        own = {names[n]: v for n, v in p.items()}
        own.update({q: p[n] for q, n in shared.items()})  # one switch, one strength
        return families.from_params({**fixed, **own})

    return {n: dists[q] for n, q in names.items()}, schedules


def _shared_params(families: ScheduleSpace, param: str) -> list[str]:
    """The params of every class's entry that move with ``param`` (the first class's switch or
    strength: deferred re-weighting switches every class at once, by the same strength)."""
    ref = families.parse(param)
    if ref is None or not ref.entry.startswith("cw_"):
        return []
    return [
        p
        for p in families.param_names()
        if p != param
        and (other := families.parse(p)) is not None
        and other.entry.startswith("cw_")
        and other.local == ref.local
    ]


def _family_space(
    space: ScheduleSpace, family: str, counts: Sequence[int] | None = None
) -> tuple[ScheduleSpace, dict[str, str]]:
    """The black-box family over a window space (every entry with the lr's windows) and
    ``{stored name: space param}`` of the params it searches."""
    lr = next(iter(space))
    k = space[lr].windows
    entries: dict[str, Family] = {}
    names: dict[str, str] = {}
    for h in space:
        w = _window(space, h)
        if h == lr and family != "constant":
            entries[h] = Cosine(w.low, w.high, max_warmup=WARMUP[1], init=w.init, windows=k)
            searched = ("peak_lr",) if family == "drw" else tuple(COSINE_NAMES)
            names.update({n: f"{h}_{COSINE_NAMES[n]}" for n in searched})
        else:
            entries[h] = Constant(w.low, w.high, log=w.log, init=w.init, windows=k)
            if family != "drw":
                names[h] = f"{h}_value"
    if family in CLASS_FAMILIES:
        if counts is None:
            raise ValueError(f"the `{family}` family needs the task's class counts.")
        shape = CLASS_FAMILIES[family](counts)
        for c, target in enumerate(shape):
            if family == "drw":
                entries[f"cw_{c}"] = DeferredStep(
                    target, windows=k, hyper="class_weight", params=str(c)
                )
            else:  # fixed over the run: bounds that hold the weight, never searched
                entries[f"cw_{c}"] = Constant(
                    0.5 * target,
                    2.0 * target,
                    init=target,
                    windows=1,
                    hyper="class_weight",
                    params=str(c),
                )
        if family == "drw":
            names.update({"switch": "cw_0_switch", "strength": "cw_0_strength"})
    return ScheduleSpace(entries), names


@dataclass
class Study:
    """One method's study on one (task, seed): what runs a trial and what reads its schedule."""

    method: Method
    study: optuna.Study
    objective: Callable[[optuna.trial.Trial], float]
    schedule_of: Callable[[Mapping[str, float]], Schedules]
    max_trials: int | None = None
    optimizer: str | None = None  # an anchor's, where its schedules train with their own

    def exhausted(self) -> bool:
        """No further trial would differ: the grid is done, or FMD reports convergence."""
        finished = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
        n = len(
            self.study.get_trials(deepcopy=False, states=(*finished, optuna.trial.TrialState.FAIL))
        )
        if self.max_trials is not None and n >= self.max_trials:
            return True
        sampler = self.study.sampler
        return isinstance(sampler, FMDSampler) and sampler.is_converged(self.study)


def describe_space(
    method: Method, layers: bool, classes: bool = False, *, schedule_free: bool = False
) -> str:
    """What ``method`` searches, in words: its own space, or on a per-layer task (``layers``;
    with ``schedule_free``, :func:`optuna_fmd.space.schedule_free_space`) or an imbalanced one
    (``classes``) the per-layer or per-class space for FMD and the samplers over many
    params."""
    if (layers or classes) and method.kind in ("fmd", "window"):
        suffix = (
            " without hypergradients (pattern steps only)"
            if method.sampler == "fmd-pattern"
            else ""
        )
        if classes:
            return (
                "per class: a deferred class-weight step per class (switch, strength), a "
                "cosine lr, momentum and weight decay constants" + suffix
            )
        if schedule_free:
            return (
                "per layer: a constant lr and warm-up per layer, beta and weight decay "
                "constants (schedule-free)" + suffix
            )
        return "per layer: a cosine per layer, momentum and weight decay constants" + suffix
    return method.space


def _words(method: Method, space: ScheduleSpace) -> str:
    """:func:`describe_space` of ``method`` on the space it searches (per layer, per class, or
    the schedule-free space, which has a warm-up)."""
    classes = any(h == "class_weight" for h, _ in space.groups().values())
    layers = bool(space.groups()) and not classes
    return describe_space(
        method, layers, classes, schedule_free="warmup" in space.hypers().values()
    )


def _window(space: ScheduleSpace, name: str) -> Schedule:
    """The window schedule ``name`` of a task's window space."""
    s = space[name]
    if not isinstance(s, Schedule):
        raise TypeError(f"the comparison needs a window space, but `{name}` is {s!r}.")
    return s


def start_params(
    space: ScheduleSpace, family: str | None, counts: Sequence[int] | None = None
) -> dict[str, float]:
    """The common start in a method's own parameters (see the module docstring)."""
    if family is None:
        return space.initial_params()
    families, names = _family_space(space, family, counts)
    init = families.initial_params()
    return {n: init[q] for n, q in names.items()}


def open_study(
    method: Method,
    task: Task,
    space: ScheduleSpace,
    seed: int,
    *,
    grid: Sequence[float],
    storage: Any,
    name: str,
    window_space: ScheduleSpace | None = None,
) -> Study:
    """Create ``method``'s study (named ``name`` in ``storage``) with its first trial queued.

    ``space`` is what FMD and the samplers over many params search (a window space, or a
    per-layer family space); ``window_space`` (default: ``space``) gives the bounds and start
    of the low-dimensional families and the grid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # CmaEsSampler's `x0` is deprecated from Optuna 4.9 (removal planned for 6.0); it still
        # sets the search distribution's mean, which the queued first trial alone does not
        warnings.filterwarnings("ignore", message=".*`x0`", category=FutureWarning)
        return _open(method, task, space, window_space or space, seed, grid, storage, name)


def _grid(
    task: Task, space: ScheduleSpace, grid: Sequence[float], seed: int
) -> tuple[list[dict[str, float]], FamilyObjective]:
    """The grid's queued trials, ``{"peak_lr": peak}`` for each peak lr (the start's times each
    factor, inside the bounds), and the objective of the cosine with that peak, the other values
    at the start."""
    s = _window(space, next(iter(space)))
    assert s.init is not None
    peaks = sorted(min(s.high, max(s.low, s.init * g)) for g in dict.fromkeys(grid))
    params, cosine = _family(space, "cosine")
    fixed = start_params(space, "cosine")

    def grid_schedule(p: Mapping[str, float]) -> Schedules:
        return cosine({**fixed, "peak_lr": p["peak_lr"]})

    objective = FamilyObjective(task, {"peak_lr": params["peak_lr"]}, grid_schedule, seed=seed)
    return [{"peak_lr": peak} for peak in peaks], objective


def _open(
    method: Method,
    task: Task,
    space: ScheduleSpace,
    window_space: ScheduleSpace,
    seed: int,
    grid: Sequence[float],
    storage: Any,
    name: str,
) -> Study:
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    max_trials = None
    queued: list[dict[str, float]] = []
    objective: Callable[[optuna.trial.Trial], float]
    schedule_of: Callable[[Mapping[str, float]], Schedules]
    if method.kind == "fmd" and method.family is not None and not space.has_families():
        space = family_space(space, refine=method.family == "refined-cosine")
    if method.kind in ("family", "grid"):
        space = window_space
    if method.kind in ("fmd", "window"):
        start = start_params(space, None) if method.kind == "window" else None
        fmd_args: dict[str, Any] = {"seed": seed, "population": method.population}
        sampler: optuna.samplers.BaseSampler = {
            "fmd": lambda: FMDSampler(space, outer=search(explore=method.explore), **fmd_args),
            "fmd-sign": lambda: FMDSampler(space, outer="sign", seed=seed),
            "fmd-pattern": lambda: FMDSampler(
                space, outer=search(explore=method.explore, hypergradients=False), **fmd_args
            ),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "cmaes": lambda: optuna.samplers.CmaEsSampler(x0=start, seed=seed),
        }[method.sampler]()
        objective = HypergradientObjective(
            task, space, seed=seed, hypergradient=method.kind == "fmd"
        )

        def window_schedule(p: Mapping[str, float]) -> Schedules:
            return space.from_params(p)

        schedule_of = window_schedule

    elif method.kind == "family":
        assert method.family is not None
        counts = task.class_counts(seed) if method.family in CLASS_FAMILIES else None
        params, schedule_of = _family(space, method.family, counts)
        start = start_params(space, method.family, counts)
        class_groups = _family_space(space, method.family, counts)[0].groups()
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        if method.pruner:
            pruner = optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=RUNGS, reduction_factor=3
            )
        objective = FamilyObjective(
            task,
            params,
            schedule_of,
            seed=seed,
            rungs=RUNGS if method.pruner else None,
            groups=class_groups,
        )
    else:  # queued trials, the grid's cosine peaks or an anchor's lrs (GridSampler would stop
        # the study from its after_trial hook, which ask-and-tell does not allow)
        if method.kind == "anchor":
            queued, objective, schedule_of = anchor_trials(ANCHORS[method.name], task, seed)
        else:
            queued, grid_objective = _grid(task, space, grid, seed)
            objective, schedule_of = grid_objective, grid_objective.to_schedules
        sampler = optuna.samplers.RandomSampler(seed=seed)  # never samples
        start, max_trials = None, len(queued)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    for key, value in (("method", method.name), ("seed", seed), ("space", _words(method, space))):
        study.set_user_attr(key, value)
    if start is not None and method.kind != "fmd":
        queued = [start]
    for trial_params in queued:
        study.enqueue_trial(trial_params)
    optimizer = ANCHORS[method.name].optimizer if method.kind == "anchor" else None
    return Study(method, study, objective, schedule_of, max_trials, optimizer)
