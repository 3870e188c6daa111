"""The search rule's exploration (optuna_fmd.outer.search._explore): Gaussian draws over every
first-stage param at the edge, with mirrors, seeded, resumable."""

from __future__ import annotations

import math
from dataclasses import replace

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd.outer._geometry import Coord, Geometry
from optuna_fmd.outer._state import STATE_KEY
from optuna_fmd.outer.search import SearchConfig, _explore
from optuna_fmd.outer.search._state import Explore

from .test_search import _drive

SPACE = fmd.ScheduleSpace({"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True)})


def _layers(n: int = 6) -> Geometry:
    """A peak lr per layer (log, every one an lr-scale param), momentum, and 2 corrections."""
    coords = [Coord("log", 1e-3, 1.0)] * n + [Coord("logit", 0.0, 0.99)]
    coords += [Coord("linear", -2.0, 2.0)] * 2
    return Geometry(
        coords,
        scale=[True] * n + [False] * 3,
        base=[True] * (n + 1) + [False] * 2,
        start=[0.05] * n + [0.9, 0.0, 0.0],
    )


#: The search exploring 10 probes, seeded 0.
EXPLORE = SearchConfig(explore=10)


def _split(x: list[float]) -> float:
    """Layers 0-2 want lr 0.3, layers 3-5 lr 0.005: a global scale or a block move cannot
    reach it, and per layer the loss barely changes near the start."""
    want = [0.3] * 3 + [0.005] * 3
    return (
        0.2 + 0.1 * math.fsum(math.log(a / w) ** 2 for a, w in zip(x[:6], want, strict=True)) / 6
    )


def _u(geo: Geometry, x: list[float]) -> list[float]:
    return [c.to_u(v) for c, v in zip(geo.coords, x, strict=True)]


def test_draws_are_seeded_and_move_every_first_stage_param_only() -> None:
    geo = _layers()
    z = _explore.draw(geo, EXPLORE, 3)
    assert z == _explore.draw(geo, EXPLORE, 3)
    assert z != _explore.draw(geo, EXPLORE, 4)
    assert z != _explore.draw(geo, replace(EXPLORE, seed=1), 3)
    assert all(v != 0 for v in z[:7]) and z[7:] == [0.0, 0.0]


def test_a_failed_draw_is_followed_by_its_mirror_and_sigma_narrows_after_both() -> None:
    ex = _explore.start()
    x = [0.05] * 6 + [0.9, 0.0, 0.0]
    geo = _layers()
    up, ex = _explore.next_probe(ex, x, geo, EXPLORE)  # type: ignore[misc]
    ex = _explore.after_probe(ex, improved=False)
    down, ex = _explore.next_probe(ex, x, geo, EXPLORE)  # type: ignore[misc]
    u, d, u0 = (_u(geo, p) for p in (up, down, x))
    assert [a - b for a, b in zip(u, u0, strict=True)] == pytest.approx(
        [b - a for a, b in zip(d, u0, strict=True)]
    )
    after = _explore.after_probe(ex, improved=False)
    assert after.sigma == pytest.approx(_explore.SIGMA * _explore.SHRINK)
    assert after.draws == 1 and not after.mirror
    wider = _explore.after_probe(Explore(0.4, draws=2), improved=True)
    assert wider.sigma == _explore.MAX_SIGMA and wider.draws == 3


def test_the_search_explores_at_the_edge_guided_by_the_climb_then_polls() -> None:
    geo = _layers()
    run = _drive(_split, geo, 60, cfg=EXPLORE)
    kinds = [r[2].probe.kind for r in run]
    first = kinds.index("explore")
    assert run[first][2].edge and set(kinds[:first]) <= {"start", "climb", "bracket"}
    assert kinds[first : first + 10] == ["explore"] * 10
    assert kinds[first + 10] == "pattern"  # no coarse pass: the exploration replaced it
    assert not any(r[3] for r in run[first:])  # plain episodes only
    guide = run[first][2].explore.guide
    assert guide and all(v == 0.0 for u in guide for v in u[7:])  # first-stage params only
    # the best point never gets worse, and the climb and the exploration found better ones
    best = [min(r[1] for r in run[: i + 1]) for i in range(len(run))]
    assert best[first - 1] < best[0] and best[first + 9] <= best[first - 1]


def test_a_guided_draw_puts_its_share_of_the_variance_along_the_guide() -> None:
    geo = _layers()
    along = [1.0] + [0.0] * 8
    guide = _explore.orthonormal([[3.0] + [0.0] * 8], geo.base)
    assert guide == (tuple(along),)
    draws = [_explore.draw(geo, EXPLORE, k, guide) for k in range(4000)]
    n = sum(geo.base)
    var_along = math.fsum(d[0] ** 2 for d in draws) / len(draws)
    var_other = math.fsum(d[1] ** 2 for d in draws) / len(draws)
    # ALPHA of the variance is isotropic, 1 - ALPHA of n along the guide
    assert var_along == pytest.approx(_explore.ALPHA + (1 - _explore.ALPHA) * n, rel=0.1)
    assert var_other == pytest.approx(_explore.ALPHA, rel=0.1)
    assert all(d[7:] == [0.0, 0.0] for d in draws[:10])
    assert _explore.draw(geo, EXPLORE, 5) != _explore.draw(geo, EXPLORE, 5, guide)


def test_the_sampler_explores_the_same_way_after_a_resume(tmp_path) -> None:
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=3, low=1e-3, high=1.0, log=True, init=0.05),
            "momentum": fmd.Schedule(windows=1, low=0.0, high=0.99, init=0.9),
        }
    )

    def objective(trial: optuna.Trial) -> float:
        lrs = [trial.suggest_float(f"lr_{k}", 1e-3, 1.0, log=True) for k in range(3)]
        mom = trial.suggest_float("momentum_0", 0.0, 0.99)
        want = [0.3, 0.01, 0.1]
        value = (
            math.fsum(math.log(a / w) ** 2 for a, w in zip(lrs, want, strict=True))
            + (mom - 0.8) ** 2
        )
        trial.set_user_attr("hypergradient", {n: 0.0 for n in trial.params})
        return value

    storage = f"sqlite:///{tmp_path}/s.db"
    whole = optuna.create_study(
        sampler=fmd.FMDSampler(space, outer=fmd.outer.search(explore=6), seed=3)
    )
    whole.optimize(objective, n_trials=14)
    first = optuna.create_study(
        study_name="s",
        storage=storage,
        sampler=fmd.FMDSampler(space, outer=fmd.outer.search(explore=6), seed=3),
    )
    first.optimize(objective, n_trials=8)
    again = optuna.load_study(
        study_name="s",
        storage=storage,
        sampler=fmd.FMDSampler(space, outer=fmd.outer.search(explore=6), seed=3),
    )
    again.optimize(objective, n_trials=6)
    assert [t.params for t in again.trials] == [t.params for t in whole.trials]
    explored = [t for t in whole.trials if t.system_attrs[STATE_KEY]["probe"]["kind"] == "explore"]
    assert len(explored) == 6
    other = optuna.create_study(
        sampler=fmd.FMDSampler(space, outer=fmd.outer.search(explore=6), seed=4)
    )
    other.optimize(objective, n_trials=14)
    assert [t.params for t in other.trials] != [t.params for t in whole.trials]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: fmd.outer.search(explore=-1), ValueError),
        (lambda: fmd.outer.search(explore=1.5), TypeError),
        (lambda: fmd.outer.search(explore=True), TypeError),
        (lambda: fmd.FMDSampler(SPACE, outer="sign", explore=4), TypeError),
    ],
)
def test_bad_exploration_settings_raise_before_any_trial(make, error) -> None:
    with pytest.raises(error, match="explore"):
        make()


def test_the_default_explores_spaces_split_over_layer_groups_only() -> None:
    layers = fmd.space.per_layer_space({"l0": "1.*", "l1": "3.*"}, windows=4)
    family = fmd.space.default_family_space("sgd", windows=4)
    classes = fmd.space.imbalanced_space([500, 50, 5], windows=4)
    assert layers.layered() and not family.layered()
    assert classes.groups() and not classes.layered()  # class weights do not count
    assert _explore.probes_for(True, None, None) == _explore.LAYER_TRIALS
    assert _explore.probes_for(True, None, 2) == _explore.LAYER_TRIALS // 2
    assert _explore.probes_for(True, 5, None) == 5
    assert _explore.probes_for(False, None, None) == 0
    assert fmd.outer.search().resolved(True, 2).explore == _explore.LAYER_TRIALS // 2
    assert fmd.outer.search().resolved(False, None).explore == 0
    assert fmd.outer.search(explore=3).resolved(True, None).explore == 3
    assert fmd.outer.sign().resolved(True, None) == fmd.outer.sign()  # no exploration
