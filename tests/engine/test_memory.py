"""Forward mode's memory does not grow with the horizon T."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_BENCH = Path(__file__).parents[2] / "benchmarks" / "engine_memory.py"


def test_peak_memory_flat_in_horizon() -> None:
    spec = importlib.util.spec_from_file_location("engine_memory", _BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    short = bench.measure(100, 3, "forward", "digits")
    long = bench.measure(2000, 3, "forward", "digits")
    assert long["steps"] == 2000
    assert long["peak_rss_mb"] <= 1.05 * short["peak_rss_mb"], (short, long)
