"""The scripts in examples/ run as a user would run them (one case per script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, timeout: float = 180) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(not (EXAMPLES / "custom_model.py").exists(), reason="example missing")
def test_custom_model_example() -> None:
    out = _run("custom_model.py")
    assert "outer step 1" in out and "test accuracy" in out
