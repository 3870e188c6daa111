from __future__ import annotations

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)
