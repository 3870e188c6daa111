"""How informative is each hypergradient estimator? Against the macroscopic slope, by direction.

The reference is the *macroscopic slope*: a central difference of plain episodes
(``run_episode(..., hypergradient=False)``) along a direction in the sampler's coordinates,
``(L(u + h v) - L(u - h v)) / (2 h)``, per reference seed (100-103, the same seed on both sides),
averaged over the seeds with its standard error. A direction is *significant* when
``|mean| > 2 standard errors``. The estimators are built from episodes on other seeds (0-3) at
the same point and projected onto the same directions.

Coordinates (those of ``FMDSampler``): the log of every lr window value of every layer group;
momentum (SGD) or beta1 (AdamW) and weight decay as logits of their ranges in
``optuna_fmd.space.DEFAULT_BOUNDS`` (the sampler's ``logit`` coordinate: weight decay's default
bounds are linear, so the sampler does not put it on a log scale; at SGD's 5e-4 in [0, 1e-2] the
logit is within 5% of the log). The lr is one 10-window schedule per layer (a Linear or Conv
layer, weight and bias together: ``groups=`` of ``run_episode``), all layers starting from the
same cosine; momentum and weight decay are constants (one window each).

Directions ``v`` (indicator vectors over the coordinates; a direction's derivative is
``sum_k v_k dL/du_k`` with ``dL/du_k = dL/dx_k dx_k/du_k``): ``lr`` (every lr window of every
layer: the global lr scale), ``lr:<layer>`` (each layer's lr scale), ``lr:early`` and ``lr:late``
(windows 0-4 and 5-9 of every layer), the momentum (``beta1``) and ``weight_decay`` logits; where
that makes fewer than 10 directions, each layer's early and late halves ``lr:<layer>:early`` and
``lr:<layer>:late`` are added.

Tasks (Fashion-MNIST): ``fashion-sgd`` and ``fashion-adamw`` as in the comparison
(``optuna_fmd.compare.TASKS``: MLP 784-64-10, SGD, T = 800, batch 128; MLP 784-256-128-10, AdamW,
T = 400, batch 64), ``lenet`` (SGD, batch 128; T = 300, not 600: a plain episode took 14.7 s of
CPU at T = 600 on this shared machine, at the limit, and the reference needs ~80 of them per
point) and ``mlp6`` (MLP with 6 hidden layers of 128, SGD, T = 600, batch 128).
Points: a cosine with warm-up over 10 windows (``baselines.cosine``, final 0). The comparison's
tasks take the tuned cosine of the comparison: the median over seeds 0-9 of the schedule TPE over
the cosine family chose at 60 PEE (``results/compare_v2_rescored.jsonl``): fashion-sgd peak 0.146,
warm-up 0.094, momentum 0.787, weight decay 4.73e-4; fashion-adamw peak 0.0050, warm-up 0.059,
beta1 0.740, weight decay 0.0776. LeNet and the deep MLP: peak 0.05, warm-up 0.1, momentum 0.9,
weight decay 5e-4. Each task at ``base``, ``half`` (peak / 2) and ``twice`` (peak x 2).

Estimators (the hypergradient episodes use seeds 0-3, the members):
- ``exact-1``: seed 0's exact hypergradient (``run_episode``, default engine).
- ``mean-2``, ``mean-4``: the mean over seeds 0-1 and 0-3.
- ``median-4``: the per-direction median of the 4 members' directional derivatives.
- ``unit-mean-4``: each member's hypergradient in coordinates (``dL/du``, all coordinates)
  divided by its Euclidean norm, averaged, then scaled by the median of the members' norms (the
  sign-consensus direction with a robust length), then projected.
- ``es-2``, ``es-4``: antithetic evolution strategies in the same coordinates, K pairs, pair j on
  seed j with ``z_j ~ N(0, I)``: ``g = (1/K) sum_j z_j (L(u + s z_j) - L(u - s z_j)) / (2 s)``
  with ``s`` = the reference step; cost 2K plain episodes (es-2 uses the first two pairs of es-4).
- ``disc10-1``, ``disc10-4``, ``disc100-1``, ``disc100-4``: discounted tangents (as in MARTHE,
  Donini et al. 2020; ``run_episode(discount=)``), a step's term reaching the hypergradient
  through ``k`` later steps times ``discount ** k``, with ``discount = r ** (1 / T)`` so that
  the whole horizon decays by ``r`` = 1/10 or 1/100; seed 0 alone (``-1``) or the mean over
  seeds 0-3 (``-4``). Added after the first main run (commit 537db08), as candidates of the
  same rule; their episodes are appended to the same results file (``commits`` lists the
  commits of every main run). Their cost is that of the exact episodes of the first run (the
  discount adds one multiply per state entry and step to an episode of the same engine).
- ``f64-1``, ``f64-4``: the exact hypergradient of the same episodes trained in float64
  (``FashionMNIST(dtype=torch.float64)``: the same initial weights and minibatches), seed 0 alone
  or the mean over seeds 0-3: is float32 rounding what makes the exact hypergradient large on
  the deep network? Added with the discounted estimators. Their cost: the median CPU time of the
  float64 hypergradient episodes over that of plain float32 episodes at the point (seeds 0-1,
  kind ``timing``) run alongside them.
- ``blend``: per direction, the inverse-variance blend of ``mean-4`` and ``es-4`` (after
  Metz et al. 2019/2021): ``w = (1/var_m) / (1/var_m + 1/var_e)``, ``blend = w m + (1 - w) e``,
  ``var_m`` = the sample variance of the 4 members' directional derivatives / 4, ``var_e`` = the
  sample variance of the 4 pairs' directional derivatives / 4 (per direction, not as a vector).

Figures per (task, point, estimator), over the directions whose reference is significant:
cosine similarity with the reference, sign agreement, magnitude ratio (Euclidean norms), the
number of significant directions, and the cost in plain-episode equivalents (a plain episode 1;
a hypergradient episode its median CPU time over the median CPU time of the reference's plain
episodes at the same (task, point), measured in the same run).

The step h (written before the check was run): the check runs the 6 x 128 MLP at its base point
(where the exact hypergradient is known to be chaotic) along ``lr``, ``lr:early`` and
``lr:late`` at h = 0.05 and 0.2 (``--step-check``). If the two agree in every direction (their
means within 2 combined standard errors), h is the one with the smaller summed standard error;
if they disagree anywhere, h = 0.2 (the small step then sees the microscopic, chaotic part of
the slope; the aim is the macroscopic one). The main run is then started with ``--step h``.

The default rule (written before the main run): the sampler's default estimator is the cheapest
estimator with cosine >= 0.8 and sign agreement >= 90% on every (task, point) with >= 3
significant directions; if none qualifies, the one with the highest minimum cosine over those
cells (ties: the cheaper).

    python benchmarks/informative.py --step-check          # the step check (about 3 min)
    python benchmarks/informative.py --step 0.2 --jobs 2   # the full run (resumes)
    python benchmarks/informative.py --analyse-only        # rebuild informative.{json,md}

Every episode is one line of ``results/informative.jsonl`` (appended as it finishes; a rerun
skips what is there), so a crash loses at most the episodes in flight.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WINDOWS = 10
REF_SEEDS = (100, 101, 102, 103)
MEMBER_SEEDS = (0, 1, 2, 3)
ES_PAIRS = 4
CHECK_STEPS = (0.05, 0.2)
CHECK_TASK, CHECK_POINT = "mlp6", "base"
CHECK_DIRECTIONS = ("lr", "lr:early", "lr:late")
ESTIMATORS = (
    "exact-1",
    "mean-2",
    "mean-4",
    "median-4",
    "unit-mean-4",
    "es-2",
    "es-4",
    "blend",
    "disc10-1",
    "disc10-4",
    "disc100-1",
    "disc100-4",
    "f64-1",
    "f64-4",
)
#: Plain float32 episodes at the point, on these seeds, in the run of the float64 members: the
#: unit of their cost, measured under the same load.
TIMING_SEEDS = (0, 1)
#: Discounted tangents (``run_episode(discount=)``): the decay over the whole horizon, ``r``,
#: per step ``discount = r ** (1 / T)``; estimator ``disc<1/r>-<members>``.
DECAYS = (0.1, 0.01)
POINTS = {"base": 1.0, "half": 0.5, "twice": 2.0}


@dataclass(frozen=True)
class Spec:
    """One task: model, horizon, batch, optimiser and its base point (a cosine with warm-up)."""

    model: str
    steps: int
    batch_size: int
    optimizer: str
    peak: float
    warmup: float
    momentum: float  # beta1 for AdamW
    weight_decay: float

    @property
    def momentum_name(self) -> str:
        return "beta1" if self.optimizer in ("adam", "adamw") else "momentum"


TASKS: dict[str, Spec] = {
    "fashion-sgd": Spec("mlp", 800, 128, "sgd", 0.146, 0.094, 0.787, 4.73e-4),
    "fashion-adamw": Spec("mlp-256-128", 400, 64, "adamw", 0.0050, 0.059, 0.740, 0.0776),
    "lenet": Spec("lenet", 300, 128, "sgd", 0.05, 0.1, 0.9, 5e-4),
    "mlp6": Spec("mlp-128-128-128-128-128-128", 600, 128, "sgd", 0.05, 0.1, 0.9, 5e-4),
}

#: Run order: every task's base point first, then the other points, the slowest task last.
ORDER = [
    ("fashion-sgd", "base"),
    ("mlp6", "base"),
    ("fashion-adamw", "base"),
    ("lenet", "base"),
    ("mlp6", "half"),
    ("mlp6", "twice"),
    ("fashion-sgd", "half"),
    ("fashion-sgd", "twice"),
    ("fashion-adamw", "half"),
    ("fashion-adamw", "twice"),
    ("lenet", "half"),
    ("lenet", "twice"),
]


# -- coordinates and directions ---------------------------------------------------------------
@dataclass(frozen=True)
class Coordinate:
    """One coordinate u of the point: ``log`` (lr windows) or ``logit`` of ``[low, high]``."""

    schedule: str  # the run_episode schedule name (a layer group, "momentum", ...)
    window: int
    kind: str
    low: float = 0.0
    high: float = 1.0

    def to_u(self, x: float) -> float:
        if self.kind == "log":
            return math.log(x)
        p = (x - self.low) / (self.high - self.low)
        return math.log(p / (1.0 - p))

    def from_u(self, u: float) -> float:
        if self.kind == "log":
            return math.exp(u)
        return self.low + (self.high - self.low) / (1.0 + math.exp(-u))

    def dx_du(self, x: float) -> float:
        if self.kind == "log":
            return x
        p = (x - self.low) / (self.high - self.low)
        return (self.high - self.low) * p * (1.0 - p)


@dataclass(frozen=True)
class Layout:
    """A task's coordinates, layer groups and directions."""

    coords: tuple[Coordinate, ...]
    groups: dict[str, tuple[str, tuple[str, ...]]]
    directions: dict[str, np.ndarray]  # name -> indicator vector over coords

    def schedules(self, u: np.ndarray) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for c, ui in zip(self.coords, u, strict=True):
            out.setdefault(c.schedule, []).append(c.from_u(float(ui)))
        return out

    def gradient_u(
        self, hypergradient: Mapping[str, Sequence[float]], u: np.ndarray
    ) -> np.ndarray:
        """``dL/du`` per coordinate from ``run_episode``'s ``dL/dx`` per window value."""
        return np.array(
            [
                hypergradient[c.schedule][c.window] * c.dx_du(c.from_u(float(ui)))
                for c, ui in zip(self.coords, u, strict=True)
            ]
        )

    def project(self, g_u: np.ndarray) -> np.ndarray:
        """Directional derivatives ``V g`` (one per direction, in ``directions`` order)."""
        return np.array([float(v @ g_u) for v in self.directions.values()])


def layer_groups(named: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Parameter names grouped by their module (``"1.weight"``, ``"1.bias"`` -> ``"1"``), in
    order: one group per Linear or Conv layer, weight and bias together."""
    out: dict[str, list[str]] = {}
    for name in named:
        out.setdefault(name.rsplit(".", 1)[0], []).append(name)
    return {module: tuple(names) for module, names in out.items()}


def make_layout(
    optimizer: str, param_names: Iterable[str], windows: int = WINDOWS, min_directions: int = 10
) -> Layout:
    """Coordinates and directions for a model whose parameters are ``param_names``."""
    from optuna_fmd.space import DEFAULT_BOUNDS

    bounds = DEFAULT_BOUNDS[optimizer]
    mom = "beta1" if "beta1" in bounds else "momentum"
    layers = layer_groups(param_names)
    groups = {f"lr_l{i}": ("lr", names) for i, names in enumerate(layers.values())}
    coords = [Coordinate(g, k, "log") for g in groups for k in range(windows)]
    for hyper in (mom, "weight_decay"):
        low, high = bounds[hyper][0], bounds[hyper][1]
        coords.append(Coordinate(hyper, 0, "logit", low, high))
    n = len(coords)

    def indicator(pred: Any) -> np.ndarray:
        return np.array([1.0 if pred(c) else 0.0 for c in coords])

    half = windows // 2
    lr = [*groups]
    dirs = {"lr": indicator(lambda c: c.schedule in lr)}
    for g in lr:
        dirs[f"lr:{g[3:]}"] = indicator(lambda c, g=g: c.schedule == g)
    dirs["lr:early"] = indicator(lambda c: c.schedule in lr and c.window < half)
    dirs["lr:late"] = indicator(lambda c: c.schedule in lr and c.window >= half)
    dirs[mom] = indicator(lambda c: c.schedule == mom)
    dirs["weight_decay"] = indicator(lambda c: c.schedule == "weight_decay")
    if len(dirs) < min_directions:
        for g in lr:
            dirs[f"lr:{g[3:]}:early"] = indicator(
                lambda c, g=g: c.schedule == g and c.window < half
            )
            dirs[f"lr:{g[3:]}:late"] = indicator(
                lambda c, g=g: c.schedule == g and c.window >= half
            )
    assert all(v.shape == (n,) for v in dirs.values())
    return Layout(tuple(coords), groups, dirs)


def base_u(layout: Layout, peak: float, warmup: float, momentum: float, wd: float) -> np.ndarray:
    """The point's coordinates: every layer on ``baselines.cosine(peak, K, warmup)``."""
    from optuna_fmd import baselines

    windows = max(c.window for c in layout.coords if c.kind == "log") + 1
    lr = baselines.cosine(peak, windows, warmup=warmup)
    values = {**{g: lr for g in layout.groups}}
    out = []
    for c in layout.coords:
        if c.kind == "log":
            out.append(c.to_u(values[c.schedule][c.window]))
        else:
            out.append(c.to_u(momentum if c.schedule != "weight_decay" else wd))
    return np.array(out)


def es_direction(task: str, point: str, pair: int, n: int) -> np.ndarray:
    """Pair ``pair``'s Gaussian direction, drawn from (task, point, pair)."""
    seed = zlib.crc32(f"{task}/{point}/{pair}".encode())
    return np.random.default_rng(seed).standard_normal(n)


# -- estimators -------------------------------------------------------------------------------
def es_pairs(
    zs: np.ndarray, plus: Sequence[float], minus: Sequence[float], s: float
) -> np.ndarray:
    """Per pair j: ``z_j (L+_j - L-_j) / (2 s)`` (rows), the antithetic estimates."""
    diff = (np.asarray(plus) - np.asarray(minus)) / (2 * s)
    return zs * diff[:, None]


def inverse_variance_blend(
    a: np.ndarray, var_a: np.ndarray, b: np.ndarray, var_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per entry ``w a + (1 - w) b`` with ``w = (1/var_a) / (1/var_a + 1/var_b)``; returns
    (blend, w). A zero variance takes that side alone (both zero: the mean of the two)."""
    var_a, var_b = np.asarray(var_a, float), np.asarray(var_b, float)
    w = np.empty_like(var_a)
    for i, (va, vb) in enumerate(zip(var_a, var_b, strict=True)):
        if va == 0 and vb == 0:
            w[i] = 0.5
        elif va == 0:
            w[i] = 1.0
        elif vb == 0:
            w[i] = 0.0
        else:
            w[i] = (1 / va) / (1 / va + 1 / vb)
    return w * a + (1 - w) * b, w


def estimates(
    layout: Layout, members_u: Sequence[np.ndarray], es_rows: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Every estimator's directional derivatives from the members' ``dL/du`` (seeds 0-3, in
    order) and the antithetic pairs' rows (``es_pairs``). Missing inputs: estimator left out."""
    out: dict[str, np.ndarray] = {}
    proj = [layout.project(g) for g in members_u]
    if len(proj) >= 1:
        out["exact-1"] = proj[0]
    if len(proj) >= 2:
        out["mean-2"] = np.mean(proj[:2], axis=0)
    if len(proj) >= 4:
        out["mean-4"] = np.mean(proj[:4], axis=0)
        out["median-4"] = np.median(proj[:4], axis=0)
        norms = [float(np.linalg.norm(g)) for g in members_u[:4]]
        unit = np.mean([g / n for g, n in zip(members_u[:4], norms, strict=True)], axis=0)
        out["unit-mean-4"] = layout.project(unit * statistics.median(norms))
    if es_rows is not None and len(es_rows) >= 2:
        out["es-2"] = layout.project(np.mean(es_rows[:2], axis=0))
    if es_rows is not None and len(es_rows) >= ES_PAIRS:
        es_proj = np.array([layout.project(r) for r in es_rows[:ES_PAIRS]])
        out["es-4"] = es_proj.mean(axis=0)
        if len(proj) >= 4:
            var_m = np.var(proj[:4], axis=0, ddof=1) / 4
            var_e = np.var(es_proj, axis=0, ddof=1) / ES_PAIRS
            out["blend"], _ = inverse_variance_blend(out["mean-4"], var_m, out["es-4"], var_e)
    return out


def _disc_name(decay: float, n: int | None = None) -> str:
    """``disc<1/decay>`` (the prefix), or with ``n`` the estimator ``disc<1/decay>-<n>``."""
    return f"disc{round(1 / decay)}" + ("" if n is None else f"-{n}")


def variant_estimates(
    layout: Layout, members_u: Sequence[np.ndarray], prefix: str
) -> dict[str, np.ndarray]:
    """The estimators of a variant's members (discounted, float64): ``<prefix>-1``, seed 0's,
    and ``<prefix>-4``, the mean over seeds 0-3."""
    out: dict[str, np.ndarray] = {}
    proj = [layout.project(g) for g in members_u]
    if len(proj) >= 1:
        out[f"{prefix}-1"] = proj[0]
    if len(proj) >= 4:
        out[f"{prefix}-4"] = np.mean(proj[:4], axis=0)
    return out


def compare(estimate: np.ndarray, ref: np.ndarray, significant: np.ndarray) -> dict[str, Any]:
    """Cosine, sign agreement and magnitude ratio over the significant directions."""
    n = int(significant.sum())
    if n == 0:
        return dict.fromkeys(("cosine", "sign_agreement", "magnitude_ratio")) | {
            "n_significant": 0
        }
    a, r = estimate[significant], ref[significant]
    na, nr = float(np.linalg.norm(a)), float(np.linalg.norm(r))
    return {
        "cosine": float(a @ r) / (na * nr) if na > 0 else 0.0,
        "sign_agreement": float(np.mean(np.sign(a) == np.sign(r))),
        "magnitude_ratio": na / nr,
        "n_significant": n,
    }


# -- episodes ---------------------------------------------------------------------------------
_CACHE: dict[str, Any] = {}


def _task(name: str, dtype: str = "float32") -> tuple[Any, Layout]:
    key = name if dtype == "float32" else f"{name}/{dtype}"
    if key not in _CACHE:
        import torch

        import optuna_fmd as fmd

        spec = TASKS[name]
        task = fmd.tasks.FashionMNIST(
            model=spec.model,
            steps=spec.steps,
            batch_size=spec.batch_size,
            optimizer=spec.optimizer,
            dtype=getattr(torch, dtype),
        )
        names = [n for n, _ in task.make_model(0).named_parameters()]
        _CACHE[key] = (task, make_layout(spec.optimizer, names))
    return _CACHE[key]


def point_u(task: str, point: str) -> np.ndarray:
    spec = TASKS[task]
    _, layout = _task(task)
    return base_u(layout, spec.peak * POINTS[point], spec.warmup, spec.momentum, spec.weight_decay)


def job_key(job: Mapping[str, Any]) -> str:
    return json.dumps({k: job[k] for k in sorted(job)}, sort_keys=True)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One episode. ``kind``: ``ref`` (plain, u + sign h v_direction, reference seed), ``hyper``
    (hypergradient at u, member seed; ``decay``: discounted, ``dtype``: trained in that
    dtype), ``es`` (plain, u + sign s z_pair, seed = pair) or ``timing`` (plain, at u)."""
    import torch

    import optuna_fmd as fmd

    torch.set_num_threads(1)
    task, layout = _task(job["task"], job.get("dtype", "float32"))
    u = point_u(job["task"], job["point"])
    if job["kind"] == "ref":
        u = u + job["sign"] * job["h"] * layout.directions[job["direction"]]
    elif job["kind"] == "es":
        z = es_direction(job["task"], job["point"], job["pair"], len(u))
        u = u + job["sign"] * job["h"] * z
    hyper = job["kind"] == "hyper"
    discount = job["decay"] ** (1.0 / task.steps) if "decay" in job else 1.0
    t0, w0 = time.process_time(), time.perf_counter()
    res = fmd.run_episode(
        task,
        layout.schedules(u),
        seed=job["seed"],
        hypergradient=hyper,
        groups=layout.groups,
        options=fmd.EngineOptions(discount=discount),
    )
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    out = {
        **job,
        "val_loss": res.val_loss,
        "diverged": res.diverged,
        "cpu_s": cpu,
        "wall_s": wall,
        "engine": res.engine,
    }
    if hyper:
        out["hypergradient"] = res.hypergradient
    return out


def plan(tasks: Sequence[str], points: Sequence[str], h: float) -> list[dict[str, Any]]:
    jobs = []
    for task, point in ORDER:
        if task not in tasks or point not in points:
            continue
        _, layout = _task(task)
        for seed in MEMBER_SEEDS:
            jobs.append({"kind": "hyper", "task": task, "point": point, "seed": seed})
        for decay in DECAYS:
            for seed in MEMBER_SEEDS:
                jobs.append(
                    {"kind": "hyper", "task": task, "point": point, "seed": seed, "decay": decay}
                )
        for seed in MEMBER_SEEDS:
            jobs.append(
                {"kind": "hyper", "task": task, "point": point, "seed": seed, "dtype": "float64"}
            )
        for seed in TIMING_SEEDS:
            jobs.append({"kind": "timing", "task": task, "point": point, "seed": seed})
        for pair in range(ES_PAIRS):
            for sign in (1, -1):
                jobs.append(
                    {"kind": "es", "task": task, "point": point, "pair": pair, "sign": sign,
                     "seed": MEMBER_SEEDS[pair], "h": h}
                )  # fmt: skip
        for direction in layout.directions:
            for seed in REF_SEEDS:
                for sign in (1, -1):
                    jobs.append(
                        {"kind": "ref", "task": task, "point": point, "direction": direction,
                         "sign": sign, "seed": seed, "h": h}
                    )  # fmt: skip
    return jobs


def check_plan() -> list[dict[str, Any]]:
    return [
        {"kind": "ref", "task": CHECK_TASK, "point": CHECK_POINT, "direction": d, "sign": sign,
         "seed": seed, "h": h}
        for h in CHECK_STEPS for d in CHECK_DIRECTIONS for seed in REF_SEEDS for sign in (1, -1)
    ]  # fmt: skip


# -- analysis ---------------------------------------------------------------------------------
def load(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the settings of the latest main run, else of the latest run; every episode record)."""
    headers, records = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            (headers if rec.get("kind") == "settings" else records).append(rec)
    main = [h for h in headers if h.get("h") is not None]
    return (main or headers or [None])[-1], records


def reference(records: Sequence[Mapping[str, Any]], task: str, point: str, h: float) -> dict:
    """Per direction: the per-seed central differences, their mean and standard error."""
    by: dict[tuple[str, int], dict[int, float]] = {}
    for r in records:
        if r["kind"] == "ref" and r["task"] == task and r["point"] == point and r["h"] == h:
            loss = r["val_loss"] if not r["diverged"] else math.inf
            by.setdefault((r["direction"], r["seed"]), {})[r["sign"]] = loss
    out: dict[str, dict[str, Any]] = {}
    for (direction, seed), pm in sorted(by.items()):
        entry = out.setdefault(direction, {"per_seed": {}, "diverged": 0})
        if len(pm) < 2:
            continue
        d = (pm[1] - pm[-1]) / (2 * h)
        if math.isfinite(d):
            entry["per_seed"][seed] = d
        else:
            entry["diverged"] += 1
    for entry in out.values():
        vals = list(entry["per_seed"].values())
        complete = len(vals) == len(REF_SEEDS) and entry["diverged"] == 0
        entry["mean"] = statistics.fmean(vals) if vals else None
        entry["se"] = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else None
        entry["complete"] = complete
        entry["significant"] = bool(
            complete and entry["se"] is not None and abs(entry["mean"]) > 2 * entry["se"]
        )
    return out


def _members(
    recs: Sequence[Mapping[str, Any]], decay: float | None, dtype: str | None = None
) -> dict[int, Mapping]:
    """The hypergradient episodes by seed: exact float32 (``decay`` and ``dtype`` None), of that
    discount, or trained in that dtype."""
    return {
        r["seed"]: r
        for r in recs
        if r["kind"] == "hyper"
        and r.get("decay") == decay
        and r.get("dtype") == dtype
        and r["hypergradient"] is not None
    }


def _members_u(layout: Layout, members: Mapping[int, Mapping], u: np.ndarray) -> list[np.ndarray]:
    """``dL/du`` of seeds 0, 1, ... up to the first missing (or diverged) member."""
    out = []
    for s in MEMBER_SEEDS:
        if s not in members:
            break
        out.append(layout.gradient_u(members[s]["hypergradient"], u))
    return out


def commits(path: Path) -> list[str]:
    """The commits of the main runs that wrote ``path``, in order, each once."""
    out: list[str] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line) if line.strip() else {}
        main_run = rec.get("kind") == "settings" and rec.get("h") is not None
        if main_run and rec.get("commit") not in out:
            out.append(rec.get("commit"))
    return out


def analyse(path: Path, h: float | None = None) -> dict[str, Any]:
    header, records = load(path)
    if h is None:
        h = header["h"] if header and header.get("h") is not None else None
    out: dict[str, Any] = {
        "commit": header.get("commit") if header else None,
        "commits": commits(path),
        "dirty": header.get("dirty") if header else None,
        "settings": header,
        "h": h,
        "rows": [],
        "references": {},
        "missing": [],
        "step_check": step_check(records),
    }
    for task, point in ORDER:
        _, layout = _task(task)
        u = point_u(task, point)
        recs = [r for r in records if r["task"] == task and r["point"] == point]
        ref = reference(recs, task, point, h) if h is not None else {}
        names = list(layout.directions)
        done = [d for d in names if ref.get(d, {}).get("complete")]
        members = _members(recs, None)
        es_by = {(r["pair"], r["sign"]): r for r in recs if r["kind"] == "es" and r["h"] == h}
        if len(done) < len(names) or len(members) < len(MEMBER_SEEDS) or len(es_by) < 2 * ES_PAIRS:
            out["missing"].append(
                {"task": task, "point": point, "reference_directions": f"{len(done)}/{len(names)}",
                 "members": len(members), "es_episodes": len(es_by)}
            )  # fmt: skip
        if not done:
            continue
        plain_cpu = [r["cpu_s"] for r in recs if r["kind"] in ("ref", "es")]
        hyper_cpu = [
            r["cpu_s"]
            for r in recs
            if r["kind"] == "hyper" and "decay" not in r and "dtype" not in r
        ]
        f64_cpu = [r["cpu_s"] for r in recs if r["kind"] == "hyper" and r.get("dtype")]
        timing_cpu = [r["cpu_s"] for r in recs if r["kind"] == "timing"]
        c_f64 = (
            statistics.median(f64_cpu) / statistics.median(timing_cpu)
            if f64_cpu and timing_cpu
            else None
        )
        c_hyper = (
            statistics.median(hyper_cpu) / statistics.median(plain_cpu) if hyper_cpu else None
        )
        members_u = _members_u(layout, members, u)
        rows: list[np.ndarray] = []
        for pair in range(ES_PAIRS):
            if (pair, 1) not in es_by or (pair, -1) not in es_by:
                break
            p, m = es_by[(pair, 1)], es_by[(pair, -1)]
            if p["diverged"] or m["diverged"]:
                break
            z = es_direction(task, point, pair, len(u))
            rows.append(es_pairs(z[None, :], [p["val_loss"]], [m["val_loss"]], h)[0])
        ests = estimates(layout, members_u, np.array(rows) if rows else None)
        for decay in DECAYS:
            disc_u = _members_u(layout, _members(recs, decay), u)
            ests |= variant_estimates(layout, disc_u, _disc_name(decay))
        f64_u = _members_u(layout, _members(recs, None, "float64"), u)
        ests |= variant_estimates(layout, f64_u, "f64")
        idx = [names.index(d) for d in done]
        refv = np.array([ref[d]["mean"] for d in done])
        sig = np.array([ref[d]["significant"] for d in done])
        costs = {
            "exact-1": 1, "mean-2": 2, "mean-4": 4, "median-4": 4, "unit-mean-4": 4,
        }  # fmt: skip
        costs |= {_disc_name(d, n): n for d in DECAYS for n in (1, 4)}
        out["references"][f"{task}/{point}"] = {
            "directions": {
                d: {k: ref[d][k] for k in ("mean", "se", "significant", "per_seed", "diverged")}
                | {"estimates": {e: float(v[names.index(d)]) for e, v in ests.items()}}
                for d in names
                if d in ref
            },
            "hyper_cost_pee": c_hyper,
            "plain_cpu_s_median": statistics.median(plain_cpu),
            "member_val_loss": {s: members[s]["val_loss"] for s in sorted(members)},
        }
        for est in ESTIMATORS:
            if est not in ests:
                continue
            if est in costs:
                cost = costs[est] * c_hyper if c_hyper else None
            elif est.startswith("f64-"):
                cost = int(est[4:]) * c_f64 if c_f64 else None
            elif est.startswith("es-"):
                cost = 2.0 * int(est[3:])
            else:
                cost = 4 * c_hyper + 2 * ES_PAIRS if c_hyper else None
            out["rows"].append(
                {"task": task, "point": point, "estimator": est,
                 **compare(ests[est][idx], refv, sig), "cost_pee": cost}
            )  # fmt: skip
    out["default"], out["default_reason"] = choose_default(out["rows"])
    return out


def choose_default(rows: Sequence[Mapping[str, Any]]) -> tuple[str | None, str]:
    """The rule in the module docstring."""
    cells = {(r["task"], r["point"]) for r in rows if r["n_significant"] >= 3}
    if not cells:
        return None, "no (task, point) has 3 significant directions"
    per: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if (r["task"], r["point"]) in cells:
            per.setdefault(r["estimator"], []).append(r)
    mean_cost = {
        e: statistics.fmean(r["cost_pee"] or math.inf for r in rs) for e, rs in per.items()
    }
    qualified = [
        e
        for e, rs in per.items()
        if len(rs) == len(cells)
        and all(r["cosine"] >= 0.8 and r["sign_agreement"] >= 0.9 for r in rs)
    ]
    if qualified:
        best = min(qualified, key=lambda e: mean_cost[e])
        return best, (
            f"cheapest of {sorted(qualified)} with cosine >= 0.8 and sign agreement >= 90% on all "
            f"{len(cells)} cells with >= 3 significant directions"
        )
    min_cos = {e: min(r["cosine"] for r in rs) for e, rs in per.items() if len(rs) == len(cells)}
    best = max(min_cos, key=lambda e: (min_cos[e], -mean_cost[e]))
    return best, (
        f"no estimator qualifies on all {len(cells)} cells with >= 3 significant directions; "
        f"highest minimum cosine ({min_cos[best]:.3f})"
    )


def step_check(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The step check's figures and the step its rule gives (``None`` until complete)."""
    table = {}
    for h in CHECK_STEPS:
        ref = reference(records, CHECK_TASK, CHECK_POINT, h)
        table[h] = {d: ref.get(d) for d in CHECK_DIRECTIONS}
    if not all(e and e["complete"] for t in table.values() for e in t.values()):
        return {"steps": list(CHECK_STEPS), "table": _jsonable(table), "choice": None}
    small, large = (table[h] for h in CHECK_STEPS)
    agree = all(
        abs(small[d]["mean"] - large[d]["mean"]) <= 2 * math.hypot(small[d]["se"], large[d]["se"])
        for d in CHECK_DIRECTIONS
    )
    if agree:
        choice = min(CHECK_STEPS, key=lambda h: sum(table[h][d]["se"] for d in CHECK_DIRECTIONS))
    else:
        choice = max(CHECK_STEPS)
    return {
        "steps": list(CHECK_STEPS),
        "table": _jsonable(table),
        "agree": agree,
        "choice": choice,
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(summary: Mapping[str, Any]) -> str:
    lines = [
        "# How informative is each hypergradient estimator?",
        "",
        f"Generated by `python benchmarks/informative.py` (main runs at commits "
        f"{', '.join(summary.get('commits') or [str(summary['commit'])])}, the latest dirty "
        f"{summary['dirty']}; step h = {summary['h']}; the module docstring has the "
        "protocol). Reference: central differences of plain episodes on seeds 100-103; "
        "estimators from seeds 0-3. Figures over the directions whose reference is significant "
        "(|mean| > 2 SE). Cost in plain-episode equivalents (PEE).",
        "",
        f"**Default estimator by the rule: `{summary['default']}`** "
        f"({summary['default_reason']}).",
        "",
        "| task | point | estimator | cosine | sign agreement | magnitude ratio | significant | "
        "cost PEE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['task']} | {r['point']} | {r['estimator']} | {_fmt(r['cosine'])} | "
            f"{_fmt(r['sign_agreement'], '.0%')} | {_fmt(r['magnitude_ratio'], '.3g')} | "
            f"{r['n_significant']} | {_fmt(r['cost_pee'], '.1f')} |"
        )
    lines += ["", "## References and estimates by direction", ""]
    for cell, ref in summary["references"].items():
        lines += [
            f"**{cell}** (hypergradient episode {_fmt(ref['hyper_cost_pee'], '.2f')} PEE; plain "
            f"episode {ref['plain_cpu_s_median']:.2f} s CPU)",
            "",
            "| direction | reference | SE | sig | " + " | ".join(ESTIMATORS) + " |",
            "|---|---|---|---|" + "---|" * len(ESTIMATORS),
        ]
        for d, e in ref["directions"].items():
            lines.append(
                f"| {d} | {_fmt(e['mean'], '.3g')} | {_fmt(e['se'], '.2g')} | "
                f"{'*' if e['significant'] else ''} | "
                + " | ".join(_fmt(e["estimates"].get(x), ".3g") for x in ESTIMATORS)
                + " |"
            )
        lines.append("")
    sc = summary["step_check"]
    lines += [
        "## Step check",
        "",
        f"{CHECK_TASK} at {CHECK_POINT}, seeds 100-103: mean [SE] of the central difference.",
        "",
        "| direction | " + " | ".join(f"h = {h}" for h in sc["steps"]) + " |",
        "|---|" + "---|" * len(sc["steps"]),
    ]
    for d in CHECK_DIRECTIONS:
        cells = []
        for h in sc["steps"]:
            e = sc["table"][str(h)].get(d)
            cells.append(f"{_fmt(e and e['mean'], '.3g')} [{_fmt(e and e['se'], '.2g')}]")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", f"Agree: {sc.get('agree')}; the rule's step: {sc.get('choice')}.", ""]
    if summary["missing"]:
        lines += ["## Missing or incomplete cells", ""]
        for m in summary["missing"]:
            lines.append(
                f"- {m['task']} / {m['point']}: reference directions {m['reference_directions']}, "
                f"members {m['members']}/4, antithetic episodes {m['es_episodes']}/8"
            )
        lines.append("")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------
def provenance() -> dict[str, Any]:
    import torch

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads_per_process": 1,
        "command": " ".join(sys.argv),
    }


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def execute(path: Path, jobs: list[dict[str, Any]], n_jobs: int, header: dict[str, Any]) -> None:
    _, records = load(path)
    done = {job_key({k: v for k, v in r.items() if k in _JOB_FIELDS}) for r in records}
    todo = [j for j in jobs if job_key(j) not in done]
    print(f"{len(jobs)} episodes planned, {len(jobs) - len(todo)} done, {len(todo)} to run")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"kind": "settings", **header}) + "\n")
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(n_jobs, initializer=_init_worker) as pool:
            for i, rec in enumerate(pool.imap(run_job, todo, chunksize=1)):
                f.write(json.dumps(rec) + "\n")
                f.flush()
                if i % 20 == 0 or i == len(todo) - 1:
                    print(
                        f"[{time.perf_counter() - t0:7.0f} s] {i + 1}/{len(todo)} {rec['task']} "
                        f"{rec['point']} {rec['kind']} {rec.get('direction', '')} "
                        f"loss {rec['val_loss']:.4f} cpu {rec['cpu_s']:.1f}s",
                        flush=True,
                    )


_JOB_FIELDS = (
    "kind", "task", "point", "direction", "sign", "seed", "h", "pair", "decay", "dtype",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=float, default=None, help="reference and ES step h")
    ap.add_argument("--step-check", action="store_true", help="run the step check only")
    ap.add_argument("--jobs", type=int, default=1, help="processes (torch at 1 thread each)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS))
    ap.add_argument("--name", default="informative")
    ap.add_argument("--analyse-only", action="store_true")
    args = ap.parse_args(argv)
    path = RESULTS / f"{args.name}.jsonl"
    if not args.analyse_only:
        header = {**provenance(), "h": args.step}
        if args.step_check:
            execute(path, check_plan(), args.jobs, {**header, "h": None})
            print(json.dumps(step_check(load(path)[1]), indent=1))
            return
        if args.step is None:
            ap.error("--step is required for the main run (see the step check)")
        execute(path, plan(args.tasks, args.points, args.step), args.jobs, header)
    summary = analyse(path, args.step)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(_jsonable(summary), indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
