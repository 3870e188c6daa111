"""The outer rules as pure functions: the search rule driven by closed-form objectives."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import pytest

from optuna_fmd.outer._geometry import Coord, Geometry, geometry_of
from optuna_fmd.outer._point import Point
from optuna_fmd.outer._state import MembersCheck, OuterState
from optuna_fmd.outer.search import SearchConfig, SearchState, search_step
from optuna_fmd.outer.search._climb import line_block
from optuna_fmd.space import per_layer_space

Fn = Callable[[list[float]], float]
#: The search's defaults, and its ablation without hypergradients.
CFG = SearchConfig()
PLAIN = SearchConfig(hypergradients=False)


def _geometry(n_delta: int = 0, lr: float = 0.05) -> Geometry:
    """lr peak (log, scale; starting at ``lr``), momentum-like (linear), and ``n_delta``
    corrections."""
    coords = [Coord("log", 1e-3, 1.0), Coord("linear", 0.0, 0.99)]
    coords += [Coord("linear", -2.0, 2.0)] * n_delta
    return Geometry(
        coords,
        scale=[True, False] + [False] * n_delta,
        base=[True, True] + [False] * n_delta,
        start=[lr, 0.9] + [0.0] * n_delta,
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


def _drive(
    f: Fn, geo: Geometry, trials: int, grad: Fn | None = None, cfg: SearchConfig = CFG
) -> list[tuple]:
    """Run the rule for ``trials`` trials: [(x, value, state, hypergradient asked)]. Each state
    goes through its JSON (as the sampler's storage does) before the next step."""
    prev, last, out = None, None, []
    for number in range(trials):
        x, state = search_step(prev, last, geo, cfg)
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


def test_gradient_steps_descend_a_smooth_bowl() -> None:
    f = _bowl([0.08, 0.6])
    run = _drive(f, _geometry(), 40)
    start = f([0.05, 0.9])
    best = min(r[1] for r in run)
    assert best < 0.3 + 0.02 * (start - 0.3)  # within 2% of the way from the minimum
    assert sum(r[3] for r in run) >= 2  # the start's and its line's minimum


def test_corrections_stay_frozen_until_the_family_stalls() -> None:
    f = _bowl([0.05, 0.9])  # the start is the minimum: the family's first line must stall

    def with_deltas(x: list[float]) -> float:
        return f(x) + 0.1 * (x[2] - 0.5) ** 2

    # (the barren first line drops every lr to a tenth and climbs back before the edge)
    run = _drive(with_deltas, _geometry(n_delta=1), 30)
    # the corrections move first in the pattern search over every param (not the coarse pass)
    first_full = next(
        i for i, r in enumerate(run) if r[2].pattern is not None and not r[2].pattern.once
    )
    assert all(r[0][2] == 0.0 for r in run[:first_full])
    assert min(r[0][2] for r in run[first_full:]) != 0.0 or max(r[0][2] for r in run) > 0.0


def test_a_failed_start_stops_the_search() -> None:
    run = _drive(lambda x: math.inf, _geometry(), 3)
    assert run[-1][2].converged


def test_the_sampler_and_space_modules_import_no_torch() -> None:
    code = "import sys, optuna_fmd.sampler, optuna_fmd.space; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_hypergradients_the_search_is_a_pattern_search_that_never_asks_for_one() -> None:
    geo = _geometry()
    f = _bowl([0.08, 0.6])
    run = _drive(f, geo, 40, cfg=PLAIN)
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


def test_the_ablations_scale_search_finds_the_lr_scale_with_plain_episodes() -> None:
    f = _bowl([0.4, 0.9])
    run = _drive(f, _geometry(), 6, cfg=PLAIN)
    assert [r[2].probe.kind for r in run][:5] == ["start", "scale", "scale", "scale", "scale"]
    assert not any(r[3] for r in run)
    assert [round(r[0][0], 4) for r in run[:5]] == [0.05, 0.1, 0.2, 0.4, 0.8]
    best = min(run, key=lambda r: r[1])
    assert best[0][0] == pytest.approx(0.4, rel=0.05)


def test_a_failed_first_step_up_searches_downwards() -> None:
    run = _drive(_bowl([0.01, 0.9]), _geometry(), 6, cfg=PLAIN)
    assert [round(r[0][0], 4) for r in run[:5]] == [0.05, 0.1, 0.025, 0.0125, 0.0063]


def test_the_climb_starts_with_a_hypergradient_and_doubles_along_it() -> None:
    """From below the good lr: the start is differentiated, plain probes step along the
    learning rate's descent direction (the momentum held), the first multiplying the lr by 4,
    each next one doubling the step (lr x 4, 16, 256), then golden-section probes refine the
    bracket, and the line's best point is differentiated next."""
    geo = _geometry(lr=0.001)
    run = _drive(_bowl([0.012, 0.6]), geo, 9)
    kinds = [r[2].probe.kind for r in run]
    assert kinds[0] == "start" and run[0][3]
    n = kinds.index("bracket")
    assert kinds[1:n] == ["climb"] * (n - 1) and n >= 5
    assert not any(r[3] for r in run[1:n]) and run[n][3]
    lrs = [r[0][0] for r in run[:n]]
    doublings = [math.log2(lr / lrs[0]) for lr in lrs[1:]]
    assert doublings[:3] == pytest.approx([2.0, 4.0, 8.0])  # lr 0.004, 0.016, 0.256
    refined = doublings[3:]  # inside the bracket (x2^4, x2^8) around its best step x2^4
    assert refined and all(2.0 < t < 8.0 for t in refined)
    assert all(r[0][1] == 0.9 for r in run[: n + 1])  # the momentum waits for the edge
    # the differentiated point is the line's best, found within a fifth of a doubling
    assert run[n][0] == min(run[1:n], key=lambda r: r[1])[0]
    assert abs(math.log2(run[n][0][0] / 0.012)) < 0.2
    assert run[n][1] < run[0][1]


def test_no_line_probe_is_trained_twice_and_the_incumbent_only_improves() -> None:
    """On a rough objective (a bowl plus a fast ripple): no probe of a line repeats a point, a
    hypergradient is taken only at the start or at its line's best point, and the incumbent
    never gets worse."""

    def rough(x: list[float]) -> float:
        return _bowl([0.3, 0.7])(x) + 0.02 * math.sin(300 * x[1]) * math.cos(40 * math.log(x[0]))

    run = _drive(rough, _geometry(), 80)
    seen: set[tuple[float, ...]] = set()
    best = math.inf
    for i, (x, value, state, wants) in enumerate(run):
        if wants and i > 0:  # the line's minimum, trained before as a plain probe
            assert state.incumbent is not None and tuple(x) == state.incumbent.x
        elif state.probe.kind == "climb":
            assert tuple(x) not in seen
        if state.incumbent is not None:
            assert state.incumbent.f <= best + 1e-15
        seen.add(tuple(x))
        best = min(best, value)
    assert sum(r[3] for r in run) >= 2


def test_the_climb_descends_from_below_faster_than_the_ablation() -> None:
    """From a tenth of the good lr: one line along the hypergradient reaches the lr that the
    ablation's scale search needs more probes for."""
    f = _bowl([0.5, 0.9])
    run = _drive(f, _geometry(), 8)
    ablation = _drive(f, _geometry(), 8, cfg=PLAIN)
    assert min(r[1] for r in run) < min(r[1] for r in ablation)
    checks = [r[2].check for r in run if r[2].check is not None]
    assert checks and checks[0].agrees  # the first probe confirmed the hypergradient


def test_an_exploding_first_hypergradient_scales_the_lr_down() -> None:
    def huge(f: Fn, x: list[float]) -> list[float]:
        return [1e9, 1e9]

    run = _drive(_bowl([0.05, 0.9]), _geometry(), 8, grad=huge)
    assert run[1][2].probe.kind == "scale" and run[1][2].handover == "exploding"
    assert run[1][0][0] == pytest.approx(0.025)
    assert not any(r[3] for r in run[1:])  # plain episodes from the edge on


def test_members_that_point_apart_at_the_start_climb_again_from_a_tenth_below() -> None:
    """Two members whose hypergradients have opposite signs at the start (a start above the
    edge): the check is stored and the climb starts again, differentiated, from every lr at a
    tenth of the start's; when that start's members point apart too, the plain lr-scale search
    takes over from the best point."""
    geo = _geometry()

    def apart(x: list[float], state: SearchState, number: int) -> Point:
        g = _grad(_tilted, x)
        members = [g, [-v for v in g]]
        mean = [0.5 * (a + b) for a, b in zip(*members, strict=True)]
        return Point(number, x, _tilted(x), False, mean, _stored(state), members=members)

    x, state = search_step(None, None, geo, CFG)
    x, state = search_step(state, apart(x, state, 0), geo, CFG)
    assert isinstance(state.check, MembersCheck) and not state.check.agrees
    assert state.probe.kind == "start" and state.below and state.wants_hypergradient
    assert x[0] == pytest.approx(0.005) and x[1] == 0.9 and not state.edge
    x, state = search_step(state, apart(x, state, 1), geo, CFG)
    assert state.probe.kind == "scale" and state.edge and x[0] == pytest.approx(0.1)
    assert not state.wants_hypergradient


def test_a_first_line_that_finds_nothing_climbs_again_from_a_tenth_below() -> None:
    """The start's members agree, but the line along their hypergradient finds nothing down
    to half its first step (a start just past the basin's edge): the climb begins again from
    every lr at a tenth, differentiated, with no quasi-Newton pair across the drop; a second
    barren line after that hands over to plain episodes."""
    geo = _geometry()
    f = _bowl([0.05, 0.9])

    def uphill(fn: Fn, x: list[float]) -> list[float]:
        return [-v - 1.0 for v in _grad(fn, x)]  # points away from the minimum at the start

    run = _drive(f, geo, 8, uphill)
    kinds = [r[2].probe.kind for r in run]
    assert kinds[:4] == ["start", "climb", "climb", "start"]
    assert run[1][1] > run[0][1] and run[2][1] > run[0][1]
    drop = run[3]
    assert drop[2].below and drop[3] and drop[2].line is None and not drop[2].edge
    assert drop[0][0] == pytest.approx(0.005) and drop[0][1] == 0.9
    assert not any(r[2].edge for r in run[:4])
    later = next(i for i, r in enumerate(run) if r[2].edge)
    assert run[later][2].handover == "contradicted" and later > 4
    assert all(r[2].below for r in run[3:])


def test_a_climb_from_a_tenth_below_goes_up_along_the_hypergradient() -> None:
    """After the drop the line starts where its hypergradient was taken, not at the
    incumbent (the contradicted start), and a point of it better than the start is taken."""
    geo = _geometry()
    f = _bowl([0.05, 0.9])
    x, state = search_step(None, None, geo, CFG)
    g = _grad(f, x)
    members = [[1.0, 0.0], [-1.0, 0.0]]
    last = Point(0, x, f(x), False, [0.0, 0.0], _stored(state), members=members)
    x, state = search_step(state, last, geo, CFG)
    assert state.below and x[0] == pytest.approx(0.005)
    g = _grad(f, x)
    last = Point(1, x, f(x), False, g, _stored(state), members=[g, g])
    x, state = search_step(state, last, geo, CFG)
    assert state.probe.kind == "climb" and state.line.origin == tuple(last.x)
    assert x[0] == pytest.approx(0.02)  # two doublings up from the tenth


def test_a_contradicted_hypergradient_after_the_climb_hands_over_to_plain_episodes() -> None:
    """A hypergradient of the wrong sign after the first (a chaotic unroll at the edge): the
    line along it finds nothing, and the search goes on with plain probes only, never
    accepting a worse point."""
    calls = {"n": 0}

    def liar_after_first(fn: Fn, x: list[float]) -> list[float]:
        calls["n"] += 1
        g = _grad(fn, x)
        return g if calls["n"] == 1 else [-1000 * v for v in g]

    run = _drive(_bowl([0.3, 0.6]), _geometry(), 50, liar_after_first)
    kinds = [r[2].probe.kind for r in run]
    assert kinds.count("bracket") >= 1
    after = next(i for i, r in enumerate(run) if r[2].edge)
    assert run[after][2].handover in ("contradicted", "exploding")
    assert run[after][2].climbed >= 1
    assert not any(r[3] for r in run[after:])
    best = [r[2].incumbent.f for r in run if r[2].incumbent is not None]
    assert best == sorted(best, reverse=True)


def test_a_step_that_diverges_leaves_a_doubling_of_margin() -> None:
    """The loss falls slowly as the lr grows and blows up above 0.3: the refinement never
    probes within a doubling of a step that diverged above the best, so the line's minimum
    (differentiated next) is at most half the smallest lr that diverged."""

    def cliff(x: list[float]) -> float:
        return math.inf if x[0] > 0.3 else 1.0 - 0.05 * math.log(x[0]) + (x[1] - 0.9) ** 2

    run = _drive(cliff, _geometry(), 12)
    kinds = [r[2].probe.kind for r in run]
    n = kinds.index("bracket")
    line = run[n][2].line
    assert line.cliff is not None
    diverged = min(r[0][0] for r in run[:n] if not math.isfinite(r[1]))
    assert run[n][0][0] <= diverged / 2 * (1 + 1e-12)
    finite = [r for r in run[1:n] if math.isfinite(r[1])]
    assert run[n][0] == min(finite, key=lambda r: r[1])[0]
    assert run[n][0][0] > 0.1  # refined past the last doubling below the cliff (lr 0.1)
    assert all(r[0][0] <= 0.3 for r in run if r[3])


def test_the_pattern_search_does_not_step_back_to_the_point_it_just_left() -> None:
    """After a move that improved, the next sweep skips the move back: that point is trained."""
    run = _drive(_tilted, _geometry(), 80, cfg=PLAIN)
    best, left = math.inf, None  # the incumbent's value, and the point the last move left
    incumbent: tuple[float, ...] | None = None
    steps_back = 0
    for x, value, state, _ in run:
        if state.probe.kind == "pattern" and tuple(x) == left:
            steps_back += 1
        if value < best:
            best, left, incumbent = value, incumbent, tuple(x)
    assert steps_back == 0
    assert sum(r[2].probe.kind == "pattern" for r in run) > 20  # the sweep ran long enough


def test_lines_alternate_between_the_learning_rates_and_the_other_hypers() -> None:
    """Odd lines move the learning rate's params only, even lines the others (momentum, weight
    decay): a step in momentum never compounds with one in the lr. A block without slope gives
    way to the other."""
    geo = geometry_of(per_layer_space({"l0": "1.*", "l1": "3.*"}))
    names = per_layer_space({"l0": "1.*", "l1": "3.*"}).param_names()
    lr = [n.startswith("lr_") for n in names]
    assert geo.lr_mask == lr and any(lr) and not all(lr)
    g = [1.0] * len(names)
    others = [not m for m in lr]
    assert line_block(geo, 1, g) == lr and line_block(geo, 3, g) == lr
    assert line_block(geo, 2, g) == others
    flat_lr = [0.0 if m else 1.0 for m in lr]
    assert line_block(geo, 1, flat_lr) == others

    run = _drive(_bowl([0.4, 0.6]), _geometry(), 20)
    lines = [r for r in run if r[2].probe.kind == "climb"]
    first = [r for r in lines if r[2].outer_step == 1]
    second = [r for r in lines if r[2].outer_step == 2]
    assert first and all(r[0][1] == 0.9 for r in first)  # the lr line holds the momentum
    assert second and all(r[0][0] == second[0][2].line.origin[0] for r in second)
    assert min(r[1] for r in second) < min(r[1] for r in first)  # and the second moves it


def test_a_long_first_line_does_not_make_the_next_hypergradient_explode() -> None:
    """A first line that went far (lr x256 and more) and a steep slope in momentum at its
    minimum: the explosion check weighs the next line's own first step (half a doubling), not
    the long step the first line took, so the second line moves the momentum along the
    hypergradient instead of handing over."""
    geo = _geometry(lr=0.001)

    def f(x: list[float]) -> float:
        return math.log(x[0] / 0.3) ** 2 + 1000 * (x[1] - 0.89) ** 2 + 0.3

    run = _drive(f, geo, 24)
    kinds = [r[2].probe.kind for r in run]
    n = kinds.index("bracket")
    assert run[n][0][0] > 0.001 * 2**7  # the first line's minimum, far up
    second = run[n + 1][2]
    assert second.probe.kind == "climb" and second.handover is None and not second.edge
    assert second.line is not None and second.line.d[0] == 0.0 and second.line.d[1] != 0.0
