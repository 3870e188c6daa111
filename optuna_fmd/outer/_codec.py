"""The outer state's JSON: every state type is a JSON object of its fields by name (tuples as
lists; ``None`` as null, or left out for the fields marked ``absent``), read back checked field
by field against the type's hints. A union of state types is told apart by each type's
``kind``. The types themselves, and their keys, are :mod:`optuna_fmd.outer._state`'s."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

__all__ = [
    "ABSENT",
    "Bad",
    "StateError",
    "boolean",
    "decode",
    "encode",
    "integer",
    "real",
    "short",
    "string",
]

T = TypeVar("T")
#: Field metadata: a ``None`` value is left out of the JSON rather than stored as null.
ABSENT = {"absent": True}


class StateError(ValueError):
    """A stored outer state that does not fit its layout (the sampler ignores it and warns)."""


def encode(value: Any, skip: tuple[str, ...] = ()) -> Any:
    """``value`` as JSON: a state type as an object of its fields (a check's ``kind`` added, a
    rule's ``name`` left to the caller), a tuple as a list."""
    if is_dataclass(value) and not isinstance(value, type):
        kind = _kind(type(value))  # a member of a union: its kind goes along
        out = {} if kind is None else {"kind": kind}
        for f in fields(value):
            v = getattr(value, f.name)
            if f.name not in (*skip, "name") and not (v is None and f.metadata.get("absent")):
                out[f.name] = encode(v)
        return out
    if isinstance(value, tuple):
        return [encode(v) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """Each field's type (read once per type)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _kind(cls: type) -> str | None:
    """The ``kind`` a type declares as a class variable (a member of a union), else ``None``."""
    if typing.get_origin(_hints(cls).get("kind")) is typing.ClassVar:
        return str(cls.kind)  # type: ignore[attr-defined]
    return None


def decode(cls: type[T], raw: object, path: str, **given: Any) -> T:
    """The ``cls`` (a state type) stored as ``raw``, checked field by field; ``given`` fields
    are not read. A field absent or null takes its default, or ``None`` where it may."""
    if not isinstance(raw, Mapping):
        raise StateError(f"`{path}` must be a JSON object, but got {short(raw)}.")
    hints, kwargs = _hints(cls), dict(given)
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            continue
        hint, value = hints[f.name], raw.get(f.name)
        if value is not None:
            kwargs[f.name] = _value(hint, value, f"{path}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            if type(None) not in typing.get_args(hint):
                raise StateError(f"`{path}` must have `{f.name}`, but has {sorted(raw)}.")
            kwargs[f.name] = None
    return cls(**kwargs)


def _value(hint: Any, value: object, path: str) -> Any:
    """``value`` checked against the type ``hint`` (and converted: lists to tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _value(options[0], value, path)
        kinds = {str(_kind(a)): a for a in options}  # a member of a union: its kind says which
        kind = value.get("kind") if isinstance(value, Mapping) else None
        if kind not in kinds:
            raise StateError(f"`{path}.kind` must be one of {sorted(kinds)}, but got {kind!r}.")
        return decode(kinds[kind], value, path)
    if is_dataclass(hint):
        return decode(hint, value, path)  # type: ignore[arg-type]
    if origin is tuple:
        repeated = len(args) == 2 and args[1] is Ellipsis
        if not isinstance(value, list) or not (repeated or len(value) == len(args)):
            what = "a list" if repeated else f"a list of {len(args)}"
            raise StateError(f"`{path}` must be {what}, but got {short(value)}.")
        items = [args[0]] * len(value) if repeated else list(args)
        return tuple(
            _value(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(items, value, strict=True))
        )
    try:
        return _SCALARS[hint](value)
    except Bad as bad:
        raise StateError(f"`{path}` must be {bad}, but got {short(value)}.") from None


class Bad(Exception):
    """A JSON value of the wrong type: ``what`` it must be."""


def real(v: object) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise Bad("a number")


def integer(v: object) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise Bad("an int")


def boolean(v: object) -> bool:
    if isinstance(v, bool):
        return v
    raise Bad("a bool")


def string(v: object) -> str:
    if isinstance(v, str):
        return v
    raise Bad("a string")


_SCALARS: dict[Any, Callable[[object], Any]] = {
    float: real,
    int: integer,
    bool: boolean,
    str: string,
}


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
