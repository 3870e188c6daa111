"""The climb with a population: a line's probes train the first member alone, compared with the
origin's first member; the other members confirm the line's best probe before it is
differentiated, and the population's mean decides what the search accepts."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from optuna_fmd.outer._geometry import Coord, Geometry
from optuna_fmd.outer._point import Point
from optuna_fmd.outer._state import OuterState
from optuna_fmd.outer.search import SearchConfig, SearchState, search_step

#: Two members: member ``j``'s value at params ``x``.
Members = Callable[[int, list[float]], float]
CFG2 = SearchConfig(members=2)


def _geometry(lr: float = 0.001) -> Geometry:
    """lr peak (log, scale) and a momentum-like param (linear)."""
    coords = [Coord("log", 1e-5, 1.0), Coord("linear", 0.0, 0.99)]
    return Geometry(coords, scale=[True, False], base=[True, True], start=[lr, 0.9])


def _bowl(target: float, offset: float = 0.0) -> Callable[[list[float]], float]:
    def f(x: list[float]) -> float:
        return math.log(x[0] / target) ** 2 + 4 * (x[1] - 0.6) ** 2 + 0.3 + offset

    return f


def _grad(f: Callable[[list[float]], float], x: list[float]) -> list[float]:
    out = []
    for i in range(len(x)):
        h = 1e-6 * max(1.0, abs(x[i]))
        hi, lo = list(x), list(x)
        hi[i] += h
        lo[i] -= h
        out.append((f(hi) - f(lo)) / (2 * h))
    return out


def _drive(member: Members, geo: Geometry, iterates: int) -> list[tuple]:
    """The rule driven as a population of two runs it: each proposal trains the members its
    ``share`` names; a confirmation's point averages the probe's first member with the second.
    Returns [(x, state, point seen, members trained)]."""
    prev, last, out = None, None, []
    first: dict[int, float] = {}  # each iterate's first member's value
    for k in range(iterates):
        x, state = search_step(prev, last, geo, CFG2)
        stored = OuterState.from_json(OuterState(state, state.probe.kind).to_json()).rule
        assert stored == state
        share = state.share
        trained = {"first": [0], "rest": [1], "all": [0, 1]}[share]
        values = {j: member(j, x) for j in trained}
        if share == "rest":
            assert state.completes is not None
            values[0] = first[state.completes]
        if 0 in values:
            first[k] = values[0]
        mean = math.fsum(values.values()) / len(values)
        g = None
        if state.wants_hypergradient:
            grads = [_grad(lambda y, j=j: member(j, y), x) for j in sorted(values)]
            g = [math.fsum(c) / len(grads) for c in zip(*grads, strict=True)]
        outer = OuterState(state, state.probe.kind)
        last = Point(k, x, mean, False, g, outer, first=values.get(0))
        prev = state
        out.append((x, state, last, trained))
    return out


def test_a_lines_probes_train_the_first_member_and_the_others_confirm_its_best() -> None:
    """From below: the start trains both members with hypergradients, the line's probes the
    first member alone, compared with the start's first member; the line's best probe is
    confirmed by the second member (its iterate completed), then differentiated by both."""
    geo = _geometry()
    f0, f1 = _bowl(0.012), _bowl(0.02, offset=0.05)
    run = _drive(lambda j, x: (f0, f1)[j](x), geo, 12)
    kinds = [r[1].probe.kind for r in run]
    assert kinds[0] == "start" and run[0][3] == [0, 1]
    c = kinds.index("confirm")
    assert kinds[1:c] == ["climb"] * (c - 1)
    assert all(r[3] == [0] and r[1].share == "first" for r in run[1:c])
    best = min(run[1:c], key=lambda r: f0(r[0]))  # the best by the first member's value
    assert run[c][1].completes == best[2].number and run[c][0] == best[0]
    assert run[c][3] == [1] and not run[c][1].wants_hypergradient
    assert kinds[c + 1] == "bracket" and run[c + 1][3] == [0, 1] and run[c + 1][0] == best[0]
    assert run[c + 1][1].wants_hypergradient
    # the line's value is the first member's at the origin: the start's, not its mean
    line = run[1][1].line
    assert line.single and line.f0 == f0(run[0][0]) and line.mean == run[0][2].value


def test_the_incumbent_is_never_one_members_value() -> None:
    """A first member much luckier than the second: its line probes are far below the
    population's mean, but the incumbent only ever takes means over both members."""
    geo = _geometry()
    f0, f1 = _bowl(0.012, offset=-0.2), _bowl(0.012, offset=0.2)
    run = _drive(lambda j, x: (f0, f1)[j](x), geo, 20)
    means = {r[2].value for r in run if r[1].share != "first"}
    for _, state, _, _ in run:
        if state.incumbent is not None:
            assert state.incumbent.f in means


def test_a_best_probe_the_other_members_contradict_ends_the_line() -> None:
    """The first member improves along the line, the second gets much worse there: the
    confirmed mean is above the start's, so no hypergradient is taken at that probe and the
    first line counts as barren (the climb starts again from a tenth below)."""
    geo = _geometry()
    f0 = _bowl(0.012)

    def f1(x: list[float]) -> float:
        return 1.0 + 10 * max(0.0, math.log(x[0] / 0.002))  # flat at the start, then worse

    run = _drive(lambda j, x: (f0, f1)[j](x), geo, 16)
    kinds = [r[1].probe.kind for r in run]
    c = kinds.index("confirm")
    assert run[c][2].value > run[0][2].value
    assert kinds[c + 1] == "start" and run[c + 1][1].below
    assert run[c + 1][0][0] == pytest.approx(0.0001)
    assert "bracket" not in kinds[: c + 1]


def test_without_a_population_the_line_probes_are_the_points() -> None:
    """One member (no population): no line is one member's, nothing is confirmed."""
    geo = _geometry()
    x, state = search_step(None, None, geo, SearchConfig())
    f = _bowl(0.012)
    for k in range(10):
        g = _grad(f, x) if state.wants_hypergradient else None
        point = Point(k, x, f(x), False, g, OuterState(state, state.probe.kind))
        x, state = search_step(state, point, geo, SearchConfig())
        assert state.share == "all" and state.probe.kind != "confirm"
        assert isinstance(state, SearchState)
