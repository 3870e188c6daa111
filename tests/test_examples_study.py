"""The study examples run end to end with tiny settings (OPTUNA_FMD_TINY=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script", ["fmd_study.py", "fmd_vs_tpe.py", "ask_tell.py", "refine_tpe.py", "imbalanced.py"]
)
def test_example_runs(script: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OPTUNA_FMD_TINY": "1",
        "PYTHONPATH": str(ROOT),
        "OPTUNA_FMD_STORAGE": f"sqlite:///{tmp_path / 'fmd.db'}",
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best" in proc.stdout
