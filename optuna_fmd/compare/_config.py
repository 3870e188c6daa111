"""What a comparison runs: its tasks, budgets, seeds and methods, and the named presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._checks import positive, positive_int
from ..space import (
    ScheduleSpace,
    default_space,
    imbalanced_space,
    per_layer_space,
    schedule_free_space,
)
from ..tasks import Digits, FashionMNIST, Task, layer_groups

__all__ = ["PRESETS", "SCHEDULE_FREE", "TASKS", "CompareConfig", "TaskSpec", "preset"]


@dataclass(frozen=True)
class TaskSpec:
    """One training problem of the comparison and its search space: 3 x K window values, or
    (``layers``) a cosine per layer of the model and shared constants.

    Attributes:
        name: Short name used in study names and results (``"fashion-sgd"``).
        dataset: ``"fashion-mnist"`` or ``"digits"``.
        model: Model name (``"mlp"``, ``"mlp-256-128"``).
        optimizer: Inner optimiser (``"sgd"``, ``"adamw"``).
        steps: Horizon T.
        batch_size: Training minibatch size.
        windows: Windows K per hyperparameter.
        layers: Search a per-layer space (:func:`optuna_fmd.space.per_layer_space`: a cosine
            lr per layer, momentum and weight decay constants) instead of the window space;
            the methods over a low-dimensional family still search the global one.
        imbalance: A long-tailed training split with this ratio of the largest class to the
            smallest (``Task.imbalance``; validation and test balanced). The methods over
            many params then search the per-class space
            (:func:`optuna_fmd.space.imbalanced_space`: a deferred class-weight step per
            class, a cosine lr and constants); the low-dimensional families train with plain
            cross-entropy unless they set class weights themselves.
        hypers: Fixed values of the optimiser's hyperparameters, ``((hyper, value), ...)``
            (``Task.hypers``); they are the common start of the spaces that search them. With a
            schedule-free optimiser and ``layers``, the space is
            :func:`optuna_fmd.space.schedule_free_space` (an lr and a warm-up per layer, beta
            and weight decay shared).
    """

    name: str
    dataset: str
    model: str
    optimizer: str
    steps: int
    batch_size: int
    windows: int = 10
    layers: bool = False
    imbalance: float | None = None
    hypers: tuple[tuple[str, float], ...] = ()

    def make_task(self, device: str = "cpu") -> Task:
        kind = FashionMNIST if self.dataset == "fashion-mnist" else Digits
        return kind(
            model=self.model,
            optimizer=self.optimizer,
            steps=self.steps,
            batch_size=self.batch_size,
            device=device,
            imbalance=self.imbalance,
            hypers=dict(self.hypers),
        )

    def _init(self, lr_start: float | None) -> dict[str, float] | None:
        """The spaces' starts that replace their defaults: the fixed hypers and ``lr_start``."""
        init = dict(self.hypers) | ({} if lr_start is None else {"lr": lr_start})
        return init or None

    def window_space(self, lr_start: float | None = None) -> ScheduleSpace:
        """The task's window space; ``lr_start`` replaces the default start of the lr."""
        return default_space(self.optimizer, self.windows, init=self._init(lr_start))

    def make_space(self, lr_start: float | None = None, task: Task | None = None) -> ScheduleSpace:
        """The space the methods over many params search: the window space, or with
        ``layers`` the per-layer space of ``task``'s model (default: :meth:`make_task`), or
        with ``imbalance`` the per-class space of its class counts."""
        init = self._init(lr_start)
        if self.imbalance is not None:
            counts = (task or self.make_task()).class_counts(0)
            return imbalanced_space(counts, self.optimizer, self.windows, init=init)
        if not self.layers:
            return self.window_space(lr_start)
        model = (task or self.make_task()).make_model(0)
        if self.optimizer in SCHEDULE_FREE:
            return schedule_free_space(layer_groups(model), self.optimizer, init=init)
        return per_layer_space(layer_groups(model), self.optimizer, self.windows, init=init)

    def groups(self, task: Task | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
        """The layer or class groups of :meth:`make_space` (``{}`` for a window space)."""
        if self.layers or self.imbalance is not None:
            return self.make_space(task=task).groups()
        return {}


#: The schedule-free inner optimisers (Defazio et al., NeurIPS 2024).
SCHEDULE_FREE = ("sf-adamw", "sf-sgd")
#: The deep task's model: an MLP with six hidden layers of 128.
DEEP_MLP = "mlp-" + "-".join(["128"] * 6)

#: The comparison's tasks. Both Fashion-MNIST ones take 0.7-0.8 s per plain episode on one CPU
#: thread: an MLP 784-64-10 with SGD (momentum, L2 weight decay) over 800 steps of batch 128
#: (1.9 epochs), and an MLP 784-256-128-10 with AdamW over 400 steps of batch 64. fashion-deep
#: (protocol v4) is the deep case: an MLP with six hidden layers of 128, SGD, 600 steps of batch
#: 128 (about 4-6 s per plain episode), searched with a cosine per layer; digits-deep is its
#: quick twin. fashion-lt is the imbalanced case: fashion-sgd's MLP, optimiser and horizon (800
#: steps, about 7 epochs of its 14,000 examples) on a training split with imbalance 100, scored
#: on balanced validation and test splits; the same model keeps its episodes as cheap as
#: protocol v3's, so the 10-seed protocol fits, and its classes still differ enough in
#: difficulty for weights to matter. digits-lt is its quick twin. fashion-deep-sf is fashion-deep
#: with schedule-free AdamW: its common start is what a user runs first, the ``schedulefree``
#: package's defaults (lr 0.0025, beta 0.9, no weight decay) with a warm-up of 30 steps (5% of
#: the run), and its space an lr and a warm-up per layer, beta and weight decay shared;
#: digits-deep-sf is its quick twin.
TASKS: Mapping[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("fashion-sgd", "fashion-mnist", "mlp", "sgd", steps=800, batch_size=128),
        TaskSpec("fashion-adamw", "fashion-mnist", "mlp-256-128", "adamw", 400, 64),
        TaskSpec("digits-sgd", "digits", "mlp", "sgd", steps=200, batch_size=64),
        TaskSpec("digits-adamw", "digits", "mlp", "adamw", steps=200, batch_size=64),
        # six hidden layers of 128, a cosine per layer (7 x 3 params) and two constants
        TaskSpec(
            "fashion-deep",
            "fashion-mnist",
            DEEP_MLP,
            "sgd",
            steps=600,
            batch_size=128,
            layers=True,
        ),
        TaskSpec("digits-deep", "digits", "mlp-32-32-32", "sgd", 200, 64, layers=True),
        # imbalance 100 (classes 5,700 ... 57 examples), fashion-sgd's model and horizon
        TaskSpec("fashion-lt", "fashion-mnist", "mlp", "sgd", 800, 128, imbalance=100.0),
        TaskSpec("digits-lt", "digits", "mlp", "sgd", steps=200, batch_size=32, imbalance=10.0),
        # fashion-deep with schedule-free AdamW from the package's defaults, warm-up 30 steps
        TaskSpec(
            "fashion-deep-sf",
            "fashion-mnist",
            DEEP_MLP,
            "sf-adamw",
            steps=600,
            batch_size=128,
            layers=True,
            hypers=(("warmup", 30.0),),
        ),
        TaskSpec(
            "digits-deep-sf",
            "digits",
            "mlp-32-32-32",
            "sf-adamw",
            steps=200,
            batch_size=64,
            layers=True,
            hypers=(("warmup", 10.0),),
        ),
    )
}


@dataclass
class CompareConfig:
    """One comparison run.

    Budgets are in plain-episode equivalents (PEE): a trial's cost is its CPU time (sampler,
    storage and episode, torch at ``threads`` threads) divided by the CPU time of a plain episode
    of the same task measured in the same process around the same time, so the budget does not
    move with the machine's load. The methods of one (task, seed) run in lock-step: the method
    that has used the least budget runs the next trial. A shorter budget is read off the same
    studies (every method is budget-independent: the best trial that ended within it counts).

    Attributes:
        tasks: Names in :data:`TASKS`.
        seeds: Study seeds (episode seed and sampler seed); each (task, seed) is one unit.
        budgets: ``{"short": PEE, "long": PEE}``; the run lasts the largest.
        methods: Method names (see :data:`optuna_fmd.compare.METHODS`).
        primary: The FMD method the tests are about (fixed before the run); a run of baselines
            alone (to be merged with one that has it) names it without running it.
        grid: Factors of the starting lr that the grid-searched cosine tries.
        retrain: Score each method's best schedule at each budget on fresh seeds: a plain
            episode's validation loss (the figure a choice may use) and a retraining on
            train+val with :func:`optuna_fmd.evaluate_schedule` scored on the test set.
        retrain_offset: The first fresh seed is ``retrain_offset + seed`` (fresh weights,
            batches and split).
        retrain_seeds: Fresh seeds per unit (``retrain_offset + seed + 1000 j``).
        jobs: Units run at once (processes).
        threads: torch threads per process.
        device: Where episodes run.
        clock: ``"cpu"`` (process CPU time; a CPU run) or ``"wall"`` (a GPU run).
        storage: Optuna storage URL for every study (``None``: in memory).
        prefix: Study-name prefix.
        lr_start: The common start's lr (``None``: the optimiser's default; a robustness run
            starts elsewhere).
    """

    tasks: tuple[str, ...] = ("fashion-sgd", "fashion-adamw")
    seeds: tuple[int, ...] = tuple(range(10))
    budgets: dict[str, float] = field(default_factory=lambda: {"short": 15.0, "long": 60.0})
    methods: tuple[str, ...] = (
        "fmd",
        "tpe",
        "cmaes",
        "random",
        "tpe-const",
        "tpe-cosine",
        "tpe-hyperband",
        "cosine-grid",
    )
    primary: str = "fmd"
    grid: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0)
    retrain: bool = True
    retrain_offset: int = 1000
    retrain_seeds: int = 5
    jobs: int = 2
    threads: int = 1
    device: str = "cpu"
    clock: str = "cpu"
    storage: str | None = None
    prefix: str = "compare"
    lr_start: float | None = None

    @property
    def budget(self) -> float:
        """The longest budget: every study runs to it."""
        return max(self.budgets.values())

    def validate(self) -> None:
        """One clear error naming the setting, the rule and the value."""
        from ._methods import METHODS

        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"`tasks` must be among {list(TASKS)}, but got {list(self.tasks)}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct and non-empty, but got {self.seeds!r}.")
        bad = {
            k: v for k, v in self.budgets.items() if not (isinstance(v, (int, float)) and v > 0)
        }
        if bad or not self.budgets:
            raise ValueError(f"`budgets` must be positive PEE, but got {self.budgets!r}.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"`methods` must be among {list(METHODS)}, but got {unknown}.")
        fmd = [m for m in self.methods if METHODS[m].kind == "fmd"]
        if fmd and (self.primary not in self.methods or METHODS[self.primary].kind != "fmd"):
            raise ValueError(
                f"`primary` must be an FMD method among `methods`, but got {self.primary!r}."
            )
        for arg in ("jobs", "threads", "retrain_seeds"):
            positive_int(arg, getattr(self, arg))
        if self.clock not in ("cpu", "wall"):
            raise ValueError(f"`clock` must be 'cpu' or 'wall', but got {self.clock!r}.")
        if self.lr_start is not None:
            positive("lr_start", self.lr_start)
        if not self.grid or any(g <= 0 for g in self.grid):
            raise ValueError(f"`grid` must be positive lr factors, but got {self.grid!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Protocol v6's methods: FMD with two seeds per iterate (primary), its ablation without
#: hypergradients, and the black-box samplers of v4.
_V6 = ("fmd-pop2", "pattern-pop2", "tpe", "cmaes", "random", "tpe-cosine")
#: What users run instead of tuning (``_methods.ANCHORS``).
_ANCHORS = ("sf-adamw", "sf-adamw-grid", "sf-sgd-grid", "adamw-cosine-grid", "prodigy")

_PRESETS: dict[str, dict[str, Any]] = {
    # The v3 protocol (benchmarks/README.md): two Fashion-MNIST tasks, 10 seeds, 15 and 60 PEE,
    # best schedules scored on 5 fresh seeds.
    "v3": {},
    # v2: the same with one fresh seed (the first of v3's five).
    "v2": {"retrain_seeds": 1},
    # A few minutes on Digits: the same machinery end to end (a slow test runs it).
    "quick": {
        "tasks": ("digits-sgd", "digits-adamw"),
        "seeds": (0, 1),
        "budgets": {"short": 10.0, "long": 30.0},
        "grid": (0.2, 1.0, 5.0),
        "jobs": 1,
        "retrain_seeds": 2,
    },
    # Protocol v4's deep task: the per-layer space of a 6 x 128 MLP (benchmarks/README.md).
    "v4-deep": {
        "tasks": ("fashion-deep",),
        "methods": ("fmd", "pattern", "tpe", "cmaes", "random", "tpe-cosine"),
    },
    # Protocol v6, from below: every method starts at a tenth of the tuned peak lr, where the
    # exact hypergradient is the slope (benchmarks/results/informative.md): fashion-deep's
    # tuned peak is 0.05, fashion-sgd's 0.146 (the median of TPE's cosines at 60 PEE, v2).
    "v6-deep-below": {
        "tasks": ("fashion-deep",),
        "methods": _V6,
        "primary": "fmd-pop2",
        "lr_start": 0.005,
    },
    "v6-sgd-below": {
        "tasks": ("fashion-sgd",),
        "methods": _V6,
        "primary": "fmd-pop2",
        "lr_start": 0.015,
    },
    # Protocol v6 at the tuned start: v4's deep task with the gradient-first search.
    "v6-deep": {"tasks": ("fashion-deep",), "methods": _V6, "primary": "fmd-pop2"},
    # Protocol v6's anchor table: the deep task with schedule-free AdamW from the package's
    # defaults (what a user runs first); the searchers on its per-layer space against what
    # users run instead of tuning, at 5, 15 and 60 PEE.
    "v6-sf": {
        "tasks": ("fashion-deep-sf",),
        "methods": (*_V6[:-1], *_ANCHORS),
        "primary": "fmd-pop2",
        "budgets": {"first": 5.0, "short": 15.0, "long": 60.0},
    },
    # The same machinery on Digits in minutes (a test runs it).
    "quick-deep": {
        "tasks": ("digits-deep",),
        "methods": ("fmd", "pattern", "tpe", "tpe-cosine"),
        "seeds": (0,),
        "budgets": {"short": 4.0, "long": 8.0},
        "jobs": 1,
        "retrain_seeds": 1,
    },
    # Protocol v5's imbalanced task: the per-class space of Fashion-MNIST at imbalance 100.
    "v5-lt": {
        "tasks": ("fashion-lt",),
        "methods": (
            "fmd",
            "pattern",
            "tpe",
            "cmaes",
            "random",
            "tpe-drw",
            "tpe-cosine",
            "inverse-frequency",
        ),
    },
    # The same machinery on Digits in minutes (a test runs it).
    "quick-lt": {
        "tasks": ("digits-lt",),
        "methods": ("fmd", "pattern", "tpe-drw", "inverse-frequency"),
        "seeds": (0,),
        "budgets": {"short": 4.0, "long": 8.0},
        "jobs": 1,
        "retrain_seeds": 1,
    },
    # One GPU: episodes are too short for the CPU clock to see the GPU's work.
    "gpu": {"device": "cuda", "clock": "wall", "jobs": 1, "seeds": (0, 1, 2)},
}


#: The presets' names.
PRESETS = tuple(_PRESETS)


def preset(name: str) -> dict[str, Any]:
    """The settings of a named preset (``"v3"``, ``"v2"``, ``"v4-deep"``, ``"v5-lt"``,
    ``"v6-deep-below"``, ``"v6-sgd-below"``, ``"v6-deep"``, ``"quick"``, ``"quick-deep"``,
    ``"quick-lt"``, ``"gpu"``)."""
    if name not in _PRESETS:
        raise ValueError(f"`preset` must be one of {list(_PRESETS)}, but got {name!r}.")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in _PRESETS[name].items()}
