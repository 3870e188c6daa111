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


def test_each_direction_is_unit_length_and_shaped_as_named() -> None:
    g = [-9.0, 0.5, -1.0, 0.0, 2.0]  # layer 0's lr dominates, as on the deep task
    d = bench.directions(g, NAMES, LOGS, SCALE)
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
