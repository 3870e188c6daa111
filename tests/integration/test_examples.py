"""The scripts in examples/ run as a user would run them: the study examples end to end with
tiny settings (``OPTUNA_FMD_TINY=1``), the custom-model example as it is; every script in the
folder is run by one of them, and a script that goes missing fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: The examples that run a study (they read OPTUNA_FMD_TINY and OPTUNA_FMD_STORAGE).
STUDIES = ["fmd_study.py", "fmd_vs_tpe.py", "ask_tell.py", "refine_tpe.py", "imbalanced.py"]
CUSTOM = "custom_model.py"


def _run(script: str, cwd: Path, timeout: float, **env: str) -> str:
    path = EXAMPLES / script
    assert path.is_file(), f"examples/{script} is missing"
    proc = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_example_is_run_by_a_test() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted([*STUDIES, CUSTOM])


@pytest.mark.parametrize("script", STUDIES)
def test_study_example_runs(script: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'fmd.db'}"
    out = _run(script, tmp_path, 300, OPTUNA_FMD_TINY="1", OPTUNA_FMD_STORAGE=storage)
    assert "best" in out


def test_custom_model_example() -> None:
    out = _run(CUSTOM, ROOT, 180)
    assert "outer step 1" in out and "test accuracy" in out
