"""Pinned results: compared with a committed file; rewritten only on request, and a rewrite
never passes, so a run with the request left on cannot hide a change."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

#: Set to 1 to rewrite the pinned files (only when the pinned behaviour is meant to change).
UPDATE = "OPTUNA_FMD_UPDATE_PINS"


def pinned(path: Path, got: Any) -> Any:
    """The pinned content of ``path``; with ``OPTUNA_FMD_UPDATE_PINS=1``, ``got`` is written
    there first and the test fails, asking for a review of the diff and a run without it."""
    if os.environ.get(UPDATE) == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=0) + "\n")
        pytest.fail(f"rewrote {path.name}: review its diff, then run again without {UPDATE}=1")
    return json.loads(path.read_text())
