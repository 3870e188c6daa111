"""benchmarks/line_directions.py: each candidate direction is what its name says."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "line_directions_bench", ROOT / "benchmarks" / "line_directions.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()
NAMES = ["lr_l0_peak", "lr_l0_final", "lr_l1_peak", "lr_l1_final", "momentum_value"]
LOGS = [True, False, True, False, False]
SCALE = [True, False, True, False, False]
LR = [True, True, True, True, False]


def test_each_direction_is_unit_length_and_shaped_as_named() -> None:
    g = [-9.0, 0.5, -1.0, 0.0, 2.0]  # layer 0's lr dominates, as on the deep task
    d = bench.directions(g, NAMES, LOGS, SCALE, LR)
    for v in d.values():
        assert math.fsum(x * x for x in v) == pytest.approx(1.0)
    assert d["hypergradient"] == pytest.approx([-x / math.sqrt(86.25) for x in g])
    assert d["signs"] == pytest.approx([2**-0.5, 0.0, 2**-0.5, 0.0, 0.0])
    assert d["signs"] == pytest.approx(d["scale"])  # every lr up: the scale direction
    root = [3.0, -math.sqrt(0.5), 1.0, 0.0, -math.sqrt(2.0)]
    assert d["sqrt"] == pytest.approx(
        [x / math.sqrt(math.fsum(r * r for r in root)) for x in root]
    )
    # per layer: each layer's part has the same length (momentum is its own group)
    per = d["per-layer"]
    parts = [per[0] ** 2 + per[1] ** 2, per[2] ** 2 + per[3] ** 2, per[4] ** 2]
    assert parts == pytest.approx([1 / 3] * 3)
    assert per[0] / per[1] == pytest.approx(g[0] / g[1])


def test_the_lr_and_peak_directions_hold_what_they_leave_out() -> None:
    g = [-9.0, 0.5, -1.0, 0.0, 2.0]  # momentum's slope would raise it with the lrs
    d = bench.directions(g, NAMES, LOGS, SCALE, LR)
    assert d["lr-only"][4] == 0.0  # momentum held
    assert d["lr-only"][:4] == pytest.approx(
        [9 / math.sqrt(82.25), -0.5 / math.sqrt(82.25), 1 / math.sqrt(82.25), 0.0]
    )
    assert d["peaks-only"] == pytest.approx([9 / math.sqrt(82), 0.0, 1 / math.sqrt(82), 0.0, 0.0])


def test_the_table_shows_every_step_the_best_and_the_momentum_along_the_line() -> None:
    points = [
        {"doublings": k, "loss": f, "peaks": [0.005 * 2**k, 0.001], "momentum": m}
        for k, f, m in [(4, 0.48, 0.9), (6.5, 0.379, 0.9), (7, 0.371, 0.9), (8, math.inf, 0.9)]
    ]
    out = {
        "lr": 0.005,
        "provenance": {"commit": "abc", "dirty": False, "command": "x"},
        "runs": [{"seed": 20, "lines": {"lr-only": points}}],
    }
    table = bench.markdown(out)
    assert "| x2^4 | x2^6.5 | x2^7 | x2^8 |" in table
    assert "**0.3710**" in table and "| inf |" in table
    assert "0.900 -> 0.900" in table
    assert set(bench.STEPS) >= {4.5, 6.5, 7.5}  # half doublings past x2^4
