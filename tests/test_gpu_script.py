"""benchmarks/gpu.sh runs at tiny sizes on the CPU, without Optuna, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    # The GPU machine has torch but not Optuna: make Optuna unimportable for the script.
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['optuna'] = None\n")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "OUT": str(out),
        "PYTHONPATH": str(site),
        "COMPARE_ARGS": "--device cuda",  # skipped: optuna is not importable
        "OMP_NUM_THREADS": "2",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny", "--backend", "eager", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compare: skipped" in proc.stdout
    (path,) = out.glob("gpu_step_cpu_torch*_tiny.json")
    report = json.loads(path.read_text())
    assert report["errors"] == {}, report["errors"]
    assert report["command"].startswith("python benchmarks/gpu_step.py")
    return report


def test_gpu_script_tiny(tmp_path: Path) -> None:
    report = _run(tmp_path, "--parts", "step", "agreement", "--repeats", "1")
    step = report["step"]
    for key in ("plain_eager_ms", "plain_compiled_ms", "forward_eager_ms", "forward_compiled_ms"):
        assert step[key] > 0
    assert step["fds_loop_ms"] > 0 and step["N"] == 6
    assert report["agreement"]["fp32"]["rel_error_vs_fp32_eager"] <= 1e-5


@pytest.mark.slow
def test_gpu_script_tiny_all_parts(tmp_path: Path) -> None:
    report = _run(tmp_path, "--model", "wrn-10-1", "--shape", "3", "8", "8")
    assert [r["T"] for r in report["memory"]["rows"]] == [6, 12]
    assert report["paper"]["ours_minutes_per_outer_step"] > 0
    assert report["agreement"]["fp32"]["recompiles"] == 0
