"""The outer rules as pure functions: the search rule driven by closed-form objectives."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import pytest

from optuna_fmd import _outer
from optuna_fmd._geometry import Coord, Geometry
from optuna_fmd._outer import Point, search_step
from optuna_fmd._state import MembersCheck, OuterState, SearchState

Fn = Callable[[list[float]], float]


def _geometry(n_delta: int = 0) -> Geometry:
    """lr peak (log, scale), momentum-like (linear), and ``n_delta`` corrections."""
    coords = [Coord("log", 1e-3, 1.0), Coord("linear", 0.0, 0.99)]
    coords += [Coord("linear", -2.0, 2.0)] * n_delta
    return Geometry(
        coords,
        scale=[True, False] + [False] * n_delta,
        base=[True, True] + [False] * n_delta,
        start=[0.05, 0.9] + [0.0] * n_delta,
    )


def _grad(f: Fn, x: list[float]) -> list[float]:
    out = []
    for i in range(len(x)):
        h = 1e-6 * max(1.0, abs(x[i]))
        hi, lo = list(x), list(x)
        hi[i] += h
        lo[i] -= h
        out.append((f(hi) - f(lo)) / (2 * h))
    return out


def _stored(state: SearchState) -> OuterState:
    """``state`` as the sampler stores it, through JSON and back."""
    return OuterState.from_json(OuterState(state, state.probe.kind).to_json())


def _drive(f: Fn, geo: Geometry, trials: int, grad: Fn | None = None) -> list[tuple]:
    """Run the rule for ``trials`` trials: [(x, value, state, hypergradient asked)]. Each state
    goes through its JSON (as the sampler's storage does) before the next step."""
    prev, last, out = None, None, []
    for number in range(trials):
        x, state = search_step(prev, last, geo)
        value = f(x)
        wants = state.wants_hypergradient
        g = (grad or _grad)(f, x) if wants else None  # type: ignore[operator]
        ok = math.isfinite(value)
        stored = _stored(state)
        assert stored.rule == state
        last = Point(number, x, value if ok else None, not ok, g, stored)
        prev = stored.rule  # type: ignore[assignment]
        out.append((x, value, state, wants))
    return out


def _bowl(target: list[float]) -> Fn:
    def f(x: list[float]) -> float:
        return (math.log(x[0] / target[0])) ** 2 + 4 * (x[1] - target[1]) ** 2 + 0.3

    return f


def test_the_scale_search_finds_the_lr_scale_with_plain_episodes() -> None:
    f = _bowl([0.4, 0.9])
    run = _drive(f, _geometry(), 6)
    assert [r[2].probe.kind for r in run][:5] == [
        "start",
        "scale",
        "scale",
        "scale",
        "scale",
    ]
    assert not any(r[3] for r in run[:5])  # no hypergradient while the scale is searched
    assert [round(r[0][0], 4) for r in run[:5]] == [0.05, 0.1, 0.2, 0.4, 0.8]
    best = min(run, key=lambda r: r[1])
    assert best[0][0] == pytest.approx(0.4, rel=0.05)


def test_a_failed_first_step_up_searches_downwards() -> None:
    run = _drive(_bowl([0.01, 0.9]), _geometry(), 6)
    assert [round(r[0][0], 4) for r in run[:5]] == [0.05, 0.1, 0.025, 0.0125, 0.0063]


def test_the_incumbent_is_always_the_best_value_seen_and_grads_are_taken_there() -> None:
    """On a rough objective (a bowl plus a fast ripple) the rule never moves its incumbent to
    a worse point, computes every hypergradient at the incumbent, and proposes the best point
    seen once it has converged."""

    def rough(x: list[float]) -> float:
        return _bowl([0.3, 0.7])(x) + 0.02 * math.sin(300 * x[1]) * math.cos(40 * math.log(x[0]))

    run = _drive(rough, _geometry(), 80)
    seen = math.inf
    for x, value, state, wants in run:
        inc = state.incumbent
        if inc is not None:
            assert inc.f <= seen + 1e-15
        if wants:
            assert tuple(x) == inc.x
        seen = min(seen, value)
    final = run[-1][2]
    assert final.incumbent.f == min(r[1] for r in run)


def test_gradient_steps_descend_a_smooth_bowl() -> None:
    f = _bowl([0.08, 0.6])
    run = _drive(f, _geometry(), 40)
    start = f([0.05, 0.9])
    best = min(r[1] for r in run)
    assert best < 0.3 + 0.02 * (start - 0.3)  # within 2% of the way from the minimum
    assert sum(r[3] for r in run) >= 3  # it got there by hypergradient steps


def test_quasi_newton_beats_steepest_descent_on_an_ill_conditioned_bowl(monkeypatch) -> None:
    def valley(x: list[float]) -> float:
        a, b = math.log(x[0] / 0.05), x[1] - 0.5
        return 0.3 + (a + 3 * b) ** 2 + 0.02 * (a - 3 * b) ** 2

    def best_after(memory: int) -> float:
        monkeypatch.setattr(_outer, "MEMORY", memory)
        run = _drive(valley, _geometry(), 30)
        return min(r[1] for r in run) - 0.3

    steepest = best_after(0)
    assert best_after(5) < 0.5 * steepest


def test_corrections_stay_frozen_until_the_family_stalls() -> None:
    f = _bowl([0.05, 0.9])  # the start is the minimum: the family's first line must stall

    def with_deltas(x: list[float]) -> float:
        return f(x) + 0.1 * (x[2] - 0.5) ** 2

    run = _drive(with_deltas, _geometry(n_delta=1), 20)
    stages = [r[2].stage for r in run]
    first_full = stages.index("full")
    assert all(r[0][2] == 0.0 for r in run[:first_full])
    assert min(r[0][2] for r in run[first_full:]) != 0.0 or max(r[0][2] for r in run) > 0.0


def test_an_exploding_hypergradient_scales_the_lr_down() -> None:
    geo = _geometry()

    def huge(f: Fn, x: list[float]) -> list[float]:
        return [1e9, 1e9]

    run = _drive(_bowl([0.05, 0.9]), geo, 8, grad=huge)
    kinds = [r[2].probe.kind for r in run]
    i = kinds.index("grad")
    assert kinds[i + 1] == "scale"
    assert run[i + 1][0][0] == pytest.approx(run[i][0][0] / 2)


def test_a_failed_start_stops_the_search() -> None:
    run = _drive(lambda x: math.inf, _geometry(), 3)
    assert run[-1][2].converged


def test_the_sampler_and_space_modules_import_no_torch() -> None:
    code = "import sys, optuna_fmd.sampler, optuna_fmd.space; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_coarse_pass_moves_each_other_family_param_a_quarter_unit_once() -> None:
    geo = _geometry()
    run = _drive(_bowl([0.05, 0.2]), geo, 12)  # momentum far below its start of 0.9
    kinds = [r[2].probe.kind for r in run]
    first = kinds.index("pattern")
    x = run[first - 1][2].incumbent.x
    up, down = run[first][0], run[first + 1][0]
    assert up[0] == down[0] == x[0]  # the lr scale is not moved again
    assert up[1] == 0.99  # up a quarter unit: projected onto the bound
    du = geo.coords[1].to_u(down[1]) - geo.coords[1].to_u(x[1])
    assert du == pytest.approx(-_outer.COARSE_STEP * geo.coords[1].unit)
    assert "grad" in kinds[first:]  # one pass, then hypergradient steps


def test_the_coarse_pass_moves_a_window_schedule_as_one_block() -> None:
    """Three lr windows (the scale) and three momentum windows: the momentum windows move
    together, a quarter unit up (which improves, so down is skipped): one probe, then
    hypergradient steps."""
    coords = [Coord("log", 1e-3, 1.0)] * 3 + [Coord("logit", 0.0, 0.99)] * 3
    geo = Geometry(
        coords,
        scale=[True] * 3 + [False] * 3,
        base=[True] * 6,
        start=[0.05] * 3 + [0.5] * 3,
        blocks=[-1] * 3 + [-2] * 3,
    )

    def f(x: list[float]) -> float:
        return sum(math.log(v / 0.05) ** 2 for v in x[:3]) + sum((v - 0.8) ** 2 for v in x[3:])

    run = _drive(f, geo, 14)
    kinds = [r[2].probe.kind for r in run]
    first = kinds.index("pattern")
    assert kinds.count("pattern") == 1 and kinds[first + 1] == "grad"
    up, x = run[first][0], run[first - 1][2].incumbent.x
    assert tuple(up[:3]) == x[:3] and len(set(up[3:])) == 1 and up[3] > x[3]
    du = coords[3].to_u(up[3]) - coords[3].to_u(x[3])
    assert du == pytest.approx(_outer.COARSE_STEP * coords[3].unit)
    # without blocks the same pass probes each momentum window on its own
    alone = Geometry(**{**geo.__dict__, "blocks": None})
    kinds = [r[2].probe.kind for r in _drive(f, alone, 14)]
    assert kinds.count("pattern") == 3


def test_without_hypergradients_the_search_is_a_pattern_search_that_never_asks_for_one() -> None:
    geo = Geometry(**{**_geometry().__dict__, "hypergradients": False})
    f = _bowl([0.08, 0.6])
    run = _drive(f, geo, 40)
    assert not any(r[3] for r in run)
    kinds = {r[2].probe.kind for r in run}
    assert kinds <= {"start", "scale", "vertex", "pattern", "converged"}
    assert min(r[1] for r in run) < f([0.05, 0.9])


def _tilted(x: list[float]) -> float:
    """A bowl whose valley runs across the coordinates (the coarse pass alone does not solve
    it)."""
    a, b = math.log(x[0] / 0.08), 3 * (x[1] - 0.6)
    return (a + b) ** 2 + 0.2 * (a - b) ** 2 + 0.3


def _first_within(run: list[tuple], target: float) -> int:
    return next(i for i, r in enumerate(run) if r[1] <= target)


def test_a_hypergradient_the_probes_contradict_is_recorded_and_the_probes_decide() -> None:
    """A hypergradient 1,000 times too large and of the wrong sign (a chaotic unroll): every
    check says so, no worse point is ever accepted, and the search reaches what the
    pattern-only ablation reaches, later by at most the hypergradients' own cost (3 plain
    episodes each)."""

    def liar(fn: Fn, x: list[float]) -> list[float]:
        return [-1000 * g for g in _grad(fn, x)]

    geo = _geometry()
    run = _drive(_tilted, geo, 60, liar)
    checks = [r[2].check for r in run if r[2].check is not None]
    assert checks and not any(c.agrees for c in checks)
    best = [r[2].incumbent.f for r in run if r[2].incumbent is not None]
    assert best == sorted(best, reverse=True)
    ablation = _drive(_tilted, Geometry(**{**geo.__dict__, "hypergradients": False}), 60)
    target = min(r[1] for r in ablation) + 1e-3
    reached = _first_within(run, target)
    grads = sum(r[3] for r in run[:reached])
    assert reached <= _first_within(ablation, target) + 3 * grads


def test_an_honest_hypergradient_passes_its_checks_and_beats_the_ablation() -> None:
    geo = _geometry()
    run = _drive(_tilted, geo, 40)
    checks = [r[2].check for r in run if r[2].check is not None]
    assert checks and checks[0].agrees
    ablation = _drive(_tilted, Geometry(**{**geo.__dict__, "hypergradients": False}), 40)
    assert min(r[1] for r in run) < min(r[1] for r in ablation)


def test_members_that_point_apart_send_the_iterate_to_the_probes() -> None:
    """Two members whose hypergradients have opposite signs: no line along their mean; the
    next proposal is a pattern probe, and the check is stored."""
    geo = _geometry()
    f = _tilted
    prev: SearchState | None = None
    last = None
    for number in range(40):
        x, state = search_step(prev, last, geo)
        if prev is not None and prev.probe.kind == "grad":
            assert isinstance(state.check, MembersCheck) and not state.check.agrees
            assert state.probe.kind == "pattern"
            return
        g = _grad(f, x) if state.wants_hypergradient else None
        members = [g, [-v for v in g]] if g is not None else None
        mean = [0.5 * (a + b) for a, b in zip(*members, strict=True)] if members else None
        last = Point(number, x, f(x), False, mean, _stored(state), members=members)
        prev = state
    raise AssertionError("no hypergradient was asked for")
