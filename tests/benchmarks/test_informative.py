"""benchmarks/informative.py: each estimator is exactly what it says (fast, Digits, float64)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import optuna_fmd as fmd

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "informative_bench", ROOT / "benchmarks" / "informative.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


inf = _load()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_projection_matches_central_differences_of_plain_episodes(optimizer: str) -> None:
    task = fmd.tasks.Digits(
        model="mlp-16-8", steps=12, batch_size=16, optimizer=optimizer, dtype=torch.float64
    )
    names = [n for n, _ in task.make_model(0).named_parameters()]
    layout = inf.make_layout(optimizer, names, windows=4)
    assert len(layout.groups) == 3  # one group per Linear layer, weight and bias together
    assert all(len(globs) == 2 for _, globs in layout.groups.values())
    peak = 0.1 if optimizer == "sgd" else 0.01
    u = inf.base_u(layout, peak, 0.25, 0.8, 0.003)
    # the point is what it says: every layer on the cosine, momentum and weight decay constant
    sched = layout.schedules(u)
    assert sched["lr_l0"] == pytest.approx(fmd.baselines.cosine(peak, 4, warmup=0.25))
    mom = "beta1" if optimizer == "adamw" else "momentum"
    assert sched[mom] == pytest.approx([0.8]) and sched["weight_decay"] == pytest.approx([0.003])
    assert len(layout.directions) >= 10 and set(layout.directions) >= {"lr", mom, "lr:l1"}

    res = fmd.run_episode(task, sched, seed=3, groups=layout.groups)
    derivs = layout.project(layout.gradient_u(res.hypergradient, u))
    h = 1e-5
    for i, (name, v) in enumerate(layout.directions.items()):

        def loss(sign: int, v: np.ndarray = v) -> float:
            s = layout.schedules(u + sign * h * v)
            return fmd.run_episode(
                task, s, seed=3, hypergradient=False, groups=layout.groups
            ).val_loss

        fd = (loss(1) - loss(-1)) / (2 * h)
        assert derivs[i] == pytest.approx(fd, rel=1e-4, abs=1e-8), name


def test_antithetic_pair_is_exact_on_a_quadratic() -> None:
    rng = np.random.default_rng(0)
    g, a = rng.standard_normal(5), rng.standard_normal((5, 5))

    def f(x: np.ndarray) -> float:
        return 1.0 + g @ x + x @ a @ x

    zs, s = rng.standard_normal((3, 5)), 0.3
    rows = inf.es_pairs(zs, [f(s * z) for z in zs], [f(-s * z) for z in zs], s)
    # the even part cancels: each row is z (z . g), exactly
    assert rows == pytest.approx(zs * (zs @ g)[:, None])


def test_inverse_variance_blend_on_known_variances() -> None:
    a, b = np.array([1.0, 1.0, 2.0, 5.0]), np.array([3.0, -1.0, 2.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 1.0, 0.0]), np.array([1.0, 1.0, 9.0, 2.0])
    blend, w = inf.inverse_variance_blend(a, var_a, b, var_b)
    assert w == pytest.approx([0.5, 0.2, 0.9, 1.0])
    assert blend == pytest.approx([2.0, -0.6, 2.0, 5.0])


def _toy_layout():
    return inf.make_layout("sgd", ["0.weight", "0.bias", "2.weight", "2.bias"], windows=2)


def test_estimators_from_members_and_pairs() -> None:
    layout = _toy_layout()
    n = len(layout.coords)
    rng = np.random.default_rng(1)
    members = [rng.standard_normal(n) for _ in range(4)]
    zs = rng.standard_normal((4, n))
    plus, minus = rng.standard_normal(4), rng.standard_normal(4)
    rows = inf.es_pairs(zs, plus, minus, 0.1)
    est = inf.estimates(layout, members, rows)
    variants = {inf._disc_name(d, n) for d in inf.DECAYS for n in (1, 4)} | {"f64-1", "f64-4"}
    assert set(est) == set(inf.ESTIMATORS) - variants
    assert variants <= set(inf.ESTIMATORS)
    p = np.array([layout.project(m) for m in members])
    assert est["exact-1"] == pytest.approx(p[0])
    assert est["mean-2"] == pytest.approx(p[:2].mean(0))
    assert est["mean-4"] == pytest.approx(p.mean(0))
    assert est["median-4"] == pytest.approx(np.median(p, 0))
    norms = [np.linalg.norm(m) for m in members]
    unit = sum(m / nm for m, nm in zip(members, norms, strict=True)) / 4
    assert est["unit-mean-4"] == pytest.approx(layout.project(unit * np.median(norms)))
    e = np.array([layout.project(r) for r in rows])
    assert est["es-2"] == pytest.approx(e[:2].mean(0))
    assert est["es-4"] == pytest.approx(e.mean(0))
    w = (4 / p.var(0, ddof=1)) / (4 / p.var(0, ddof=1) + 4 / e.var(0, ddof=1))
    assert est["blend"] == pytest.approx(w * p.mean(0) + (1 - w) * e.mean(0))
    # global lr = sum of the per-layer lr directions = early + late
    d = dict(zip(layout.directions, est["mean-4"], strict=True))
    assert d["lr"] == pytest.approx(d["lr:l0"] + d["lr:l1"])
    assert d["lr"] == pytest.approx(d["lr:early"] + d["lr:late"])


def test_variant_estimators_are_seed_zero_and_the_mean_of_four() -> None:
    layout = _toy_layout()
    rng = np.random.default_rng(2)
    members = [rng.standard_normal(len(layout.coords)) for _ in range(4)]
    p = np.array([layout.project(m) for m in members])
    est = inf.variant_estimates(layout, members, inf._disc_name(0.01))
    assert set(est) == {"disc100-1", "disc100-4"}
    assert est["disc100-1"] == pytest.approx(p[0])
    assert est["disc100-4"] == pytest.approx(p.mean(0))
    assert set(inf.variant_estimates(layout, members[:3], "f64")) == {"f64-1"}


def test_variant_jobs_run_their_discount_and_dtype(monkeypatch) -> None:
    """``decay`` r runs the episode at ``discount = r ** (1 / T)``, other jobs at 1;
    ``dtype`` trains the float64 task."""
    seen = []

    def fake_episode(task, schedules, **kw):
        seen.append((kw["options"].discount, task.dtype))
        return fmd.episode.EpisodeResult(
            val_loss=1.0, val_accuracy=0.5, hypergradient={}, steps=task.steps, seconds=0.0,
            seed=kw["seed"], train_loss=1.0, diverged=False, engine="reverse",
        )  # fmt: skip

    monkeypatch.setattr(fmd, "run_episode", fake_episode)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the session's stay
    monkeypatch.setitem(inf._CACHE, "lenet", (fmd.tasks.Digits(steps=300), _toy_layout()))
    monkeypatch.setattr(inf, "point_u", lambda task, point: np.zeros(len(_toy_layout().coords)))
    job = {"kind": "hyper", "task": "lenet", "point": "base", "seed": 0}
    f64 = fmd.tasks.Digits(steps=300, dtype=torch.float64)
    monkeypatch.setitem(inf._CACHE, "lenet/float64", (f64, _toy_layout()))
    inf.run_job({**job, "decay": 0.01})
    inf.run_job(job)
    inf.run_job({**job, "dtype": "float64"})
    assert seen[0][0] ** 300 == pytest.approx(0.01)
    assert seen[1] == (1.0, torch.float32)
    assert seen[2] == (1.0, torch.float64)


def test_logit_coordinate_round_trip_and_chain_rule() -> None:
    c = inf.Coordinate("momentum", 0, "logit", 0.0, 0.99)
    x = 0.9
    assert c.from_u(c.to_u(x)) == pytest.approx(x)
    eps = 1e-6
    fd = (c.from_u(c.to_u(x) + eps) - c.from_u(c.to_u(x) - eps)) / (2 * eps)
    assert c.dx_du(x) == pytest.approx(fd, rel=1e-6)


def test_reference_significance_and_metrics() -> None:
    recs = []
    losses = [(1.2, 1.0), (1.3, 1.0), (1.1, 1.0), (1.2, 1.0)]
    for seed, (lp, lm) in zip(inf.REF_SEEDS, losses, strict=True):
        for sign, loss in ((1, lp), (-1, lm)):
            recs.append({"kind": "ref", "task": "t", "point": "p", "direction": "lr",
                         "sign": sign, "seed": seed, "h": 0.1, "val_loss": loss,
                         "diverged": False})  # fmt: skip
    ref = inf.reference(recs, "t", "p", 0.1)["lr"]
    per = [1.0, 1.5, 0.5, 1.0]
    assert ref["mean"] == pytest.approx(1.0)
    assert ref["se"] == pytest.approx(np.std(per, ddof=1) / 2)
    assert ref["significant"]
    m = inf.compare(np.array([2.0, -1.0, 5.0]), np.array([1.0, 1.0, 0.0]),
                    np.array([True, True, False]))  # fmt: skip
    assert m["n_significant"] == 2
    assert m["cosine"] == pytest.approx(1.0 / (math.sqrt(5) * math.sqrt(2)))
    assert m["sign_agreement"] == 0.5
    assert m["magnitude_ratio"] == pytest.approx(math.sqrt(5) / math.sqrt(2))


def test_default_rule() -> None:
    def row(est: str, cos: float, sign: float, cost: float, n: int = 3) -> dict:
        return {"task": "t", "point": "p", "estimator": est, "cosine": cos,
                "sign_agreement": sign, "n_significant": n, "cost_pee": cost}  # fmt: skip

    rows = [row("a", 0.9, 1.0, 8), row("b", 0.85, 0.9, 4), row("c", 0.7, 1.0, 1)]
    best, _ = inf.choose_default(rows)
    assert best == "b"
    best, _ = inf.choose_default([row("a", 0.5, 1.0, 8), row("c", 0.7, 0.5, 1)])
    assert best == "c"
