"""The trial parameters' names: ``<entry>_<local>`` (``lr_0``, ``lr_peak``, ``lr_delta_3``), how
to spell one (:func:`param_name`) and how to read one back without its space
(:func:`parse_param`), as a :class:`ParamRef`.

:meth:`~optuna_fmd.space.ScheduleSpace.parse` reads a name exactly, with its space at hand.
Import these names from :mod:`optuna_fmd.space`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from ._refiner import DELTA

__all__ = ["ParamRef", "param_name", "parse_param"]


class ParamRef(NamedTuple):
    """What a trial parameter stands for in its space.

    Attributes:
        entry: The space entry it belongs to (``"lr"``, ``"lr_head"``).
        local: Its name inside the entry (``"3"`` for window 3, ``"peak"``, ``"delta_3"``).
        kind: ``"window"`` (a window value of a :class:`Schedule`), ``"family"`` (a family
            parameter) or ``"correction"`` (a :class:`Refiner`'s correction ``delta_<k>``).
        window: The window k of a ``"window"`` or ``"correction"`` param, else ``None``.
    """

    entry: str
    local: str
    kind: str
    window: int | None


def param_name(entry: str, local: str | int) -> str:
    """The trial parameter of ``entry``'s ``local`` param: ``<entry>_<local>`` (``lr_0``,
    ``lr_peak``, ``lr_delta_3``)."""
    return f"{entry}_{local}"


def _ref(entry: str, local: str) -> ParamRef:
    """``local`` read by its shape: ``delta_<k>`` a correction, ``<k>`` a window value."""
    if local.startswith(DELTA) and local[len(DELTA) :].isdigit():
        return ParamRef(entry, local, "correction", int(local[len(DELTA) :]))
    if local.isdigit():
        return ParamRef(entry, local, "window", int(local))
    return ParamRef(entry, local, "family", None)


def parse_param(name: str, entries: Iterable[str] | None = None) -> ParamRef | None:
    """Read a trial parameter name without the space that made it (a stored study's params).

    With ``entries`` (the space's entry names, e.g. the keys of a trial's
    ``user_attrs["schedules"]``), the longest entry that prefixes ``name`` owns it; ``None`` if
    none does. Without them, a name ending in ``_delta_<k>`` is a refiner's correction, one
    ending in ``_<k>`` a window value and any other ``<entry>_<param>`` a family parameter
    (split at the last underscore). :meth:`ScheduleSpace.parse` is exact; this is for studies
    whose space is not at hand.

    Example:
        >>> parse_param("lr_delta_3", ["lr", "momentum"])
        ParamRef(entry='lr', local='delta_3', kind='correction', window=3)
        >>> parse_param("lr_head_1")
        ParamRef(entry='lr_head', local='1', kind='window', window=1)
        >>> parse_param("weight_decay_value")
        ParamRef(entry='weight_decay', local='value', kind='family', window=None)
    """
    if entries is not None:
        owners = [e for e in entries if name.startswith(f"{e}_") and len(name) > len(e) + 1]
        if not owners:
            return None
        entry = max(owners, key=len)
        return _ref(entry, name[len(entry) + 1 :])
    head, _, k = name.rpartition("_")
    if not head:
        return None
    stem, _, tag = head.rpartition("_")
    if k.isdigit() and stem and f"{tag}_" == DELTA:
        return ParamRef(stem, f"{DELTA}{k}", "correction", int(k))
    return _ref(head, k)
