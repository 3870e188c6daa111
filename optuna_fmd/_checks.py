"""Argument checks shared by the package, without torch: one function per rule, one message.

Every message names the argument, the rule and the value received (``"`windows` must be a
positive int, but got 0."``). A value outside the rule raises ``ValueError``; a value of the
wrong type raises :class:`ArgumentTypeError`, which is both a ``TypeError`` and a
``ValueError``: before these checks were shared some entry points raised one and some the
other for a wrong type, and callers that catch either keep working.

Example:
    >>> positive_int("windows", 3)
    3
    >>> positive("step_size", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: `step_size` must be positive, but got 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "ArgumentTypeError",
    "check_target",
    "check_values",
    "finite",
    "non_negative_int",
    "optional_positive_int",
    "positive",
    "positive_int",
    "windows",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError`` that is also a ``ValueError``)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1 (not a bool)."""
    if not _is_int(value):
        raise ArgumentTypeError(f"`{name}` must be a positive int, but got {value!r}.")
    assert isinstance(value, int)
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int, but got {value!r}.")
    return value


def optional_positive_int(name: str, value: object) -> int | None:
    """``value`` if it is ``None`` or an int >= 1 (not a bool)."""
    if value is None:
        return None
    if not _is_int(value):
        raise ArgumentTypeError(f"`{name}` must be a positive int or None, but got {value!r}.")
    assert isinstance(value, int)
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int or None, but got {value!r}.")
    return value


def non_negative_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 0 (not a bool)."""
    if not _is_int(value):
        raise ArgumentTypeError(f"`{name}` must be a non-negative int, but got {value!r}.")
    assert isinstance(value, int)
    if value < 0:
        raise ValueError(f"`{name}` must be a non-negative int, but got {value!r}.")
    return value


def windows(value: object) -> int:
    """A number of windows K: an int >= 1."""
    return positive_int("windows", value)


def finite(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number (not a bool)."""
    if not _is_real(value):
        raise ArgumentTypeError(f"`{name}` must be a finite float, but got {value!r}.")
    out = float(value)  # type: ignore[arg-type]
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be a finite float, but got {value!r}.")
    return out


def positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is finite and positive (``allow_zero``: non-negative)."""
    out = finite(name, value)
    if out < 0 or (out == 0 and not allow_zero):
        rule = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be {rule}, but got {value!r}.")
    return out


def check_values(name: str, values: object, windows: int) -> list[float]:
    """Schedule ``name``'s window values: a sequence of ``windows`` finite floats."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ArgumentTypeError(
            f"schedule `{name}` must be a sequence of floats, but got {values!r}."
        )
    if len(values) != windows:
        raise ValueError(
            f"schedule `{name}` must have {windows} values (one per window), "
            f"but got {len(values)}."
        )
    return [finite(f"{name}[{k}]", v) for k, v in enumerate(values)]


def check_target(hyper: object, params: object) -> tuple[str, ...] | None:
    """A schedule's layer-group target: ``hyper`` (a name or ``None``) and ``params`` (a glob
    pattern, a sequence of them or ``None``); returns the patterns as a tuple."""
    if hyper is not None and (not isinstance(hyper, str) or not hyper):
        raise ValueError(f"`hyper` must be a hyperparameter name, but got {hyper!r}.")
    if params is None:
        return None
    patterns = (params,) if isinstance(params, str) else tuple(params)  # type: ignore[arg-type]
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(
            f"`params` must be a glob pattern or a sequence of them, but got {params!r}."
        )
    return patterns
