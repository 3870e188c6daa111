"""The pins' helper: a rewrite on request never passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._pins import UPDATE, pinned


def test_pins_are_read_and_a_rewrite_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"a": [1.0]}))
    monkeypatch.delenv(UPDATE, raising=False)
    assert pinned(path, {"a": [2.0]}) == {"a": [1.0]}
    monkeypatch.setenv(UPDATE, "1")
    with pytest.raises(pytest.fail.Exception, match=r"rewrote pins\.json"):
        pinned(path, {"a": [2.0]})
    assert json.loads(path.read_text()) == {"a": [2.0]}
