"""What a comparison's results are stamped with: the commit they ran on (and whether tracked
files differ from it), the machine, the versions and the command; a dirty tree is refused
unless asked for."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch

from ._config import CompareConfig

__all__ = ["commit", "provenance", "refuse_dirty"]

_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def commit() -> str | None:
    """The commit the package's tree is at (``None``: not a git checkout, or no git)."""
    return _git("rev-parse", "HEAD")


def provenance(cfg: CompareConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The commit (and whether tracked files differ from it), machine, versions and command."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit(),
        "dirty": bool(status) if status is not None else None,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "threads_per_process": cfg.threads,
        "processes": cfg.jobs,
        "device": cfg.device,
        "gpu": torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") else None,
        "command": " ".join(sys.argv if argv is None else argv),
    }


def refuse_dirty(prov: Mapping[str, Any], allow_dirty: bool) -> None:
    """Raise ``RuntimeError`` if ``prov`` says the tree is dirty, unless ``allow_dirty``."""
    if prov["dirty"] and not allow_dirty:
        raise RuntimeError(
            "the working tree differs from its commit: results would not say what ran. Commit "
            "first (or pass allow_dirty=True / --allow-dirty, and the results say dirty)."
        )
