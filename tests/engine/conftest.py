"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread(_threads: None) -> Iterator[None]:
    """Torch at one thread for the test: the engine tests' problems are tiny, so one thread is
    as fast, and far faster on a shared, loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
