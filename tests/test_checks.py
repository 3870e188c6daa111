"""The shared argument checks: one rule and one message each, naming argument, rule and value."""

from __future__ import annotations

import math
import re

import pytest

from optuna_fmd import _checks
from optuna_fmd._checks import ArgumentTypeError

V, T = ValueError, ArgumentTypeError
CASES = [
    ("positive_int", ("steps", 0), V, "`steps` must be a positive int, but got 0."),
    ("positive_int", ("steps", 2.0), T, "`steps` must be a positive int, but got 2.0"),
    ("positive_int", ("steps", True), T, "but got True"),
    ("optional_positive_int", ("steps", -1), V, "a positive int or None, but got -1"),
    ("non_negative_int", ("tries", -1), V, "`tries` must be a non-negative int, but got -1"),
    ("windows", (0,), V, "`windows` must be a positive int, but got 0"),
    ("finite", ("low", math.nan), V, "`low` must be a finite float, but got nan"),
    ("finite", ("low", "1"), T, "`low` must be a finite float, but got '1'"),
    ("positive", ("clip", 0.0), V, "`clip` must be positive, but got 0.0"),
    ("positive", ("clip", math.inf), V, "`clip` must be a finite float, but got inf"),
    ("check_values", ("lr", [0.1], 2), V, "schedule `lr` must have 2 values"),
    ("check_values", ("lr", "ab", 2), T, "schedule `lr` must be a sequence of floats"),
    ("check_target", ("", None), V, "`hyper` must be a hyperparameter name"),
    ("check_target", ("lr", []), V, "`params` must be a glob pattern"),
]


@pytest.mark.parametrize(("name", "args", "error", "match"), CASES)
def test_each_rule_names_the_argument_the_rule_and_the_value(
    name: str, args: tuple, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=re.escape(match)) as info:
        getattr(_checks, name)(*args)
    assert type(info.value) is error


def test_zero_allowed_says_non_negative() -> None:
    with pytest.raises(ValueError, match=r"`wait` must be non-negative, but got -1\.0"):
        _checks.positive("wait", -1.0, allow_zero=True)


def test_a_wrong_type_is_a_type_error_and_a_value_error() -> None:
    """Entry points raised either for a wrong type before the checks were shared."""
    for caught in (TypeError, ValueError):
        with pytest.raises(caught):
            _checks.positive_int("population", 2.5)


def test_good_values_come_back_normalised() -> None:
    assert _checks.positive_int("k", 3) == 3
    assert _checks.optional_positive_int("k", None) is None
    assert _checks.non_negative_int("k", 0) == 0
    assert _checks.finite("x", 2) == 2.0 and isinstance(_checks.finite("x", 2), float)
    assert _checks.positive("x", 0, allow_zero=True) == 0.0
    assert _checks.check_values("lr", (1, 0.5), 2) == [1.0, 0.5]
    assert _checks.check_target("lr", "fc.*") == ("fc.*",)
    assert _checks.check_target(None, None) is None
