"""The search rule's view of a space, without torch: each trial param's coordinate, the lr-scale
and first-stage masks, the coarse pass's blocks and the start (a
:class:`~optuna_fmd._outer.Geometry`), built from a :class:`~optuna_fmd.space.ScheduleSpace`
and a user's ``start`` checked against it. :class:`~optuna_fmd.FMDSampler` builds it once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ._outer import FIRST_STEP, Coord, Geometry
from .space import DELTA, Family, Refiner, Schedule, ScheduleSpace

__all__ = ["check_start", "geometry_of"]


def check_start(space: ScheduleSpace, start: object) -> dict[str, float] | None:
    """``start`` as floats, every name a param of ``space`` and every value inside its bounds."""
    if start is None:
        return None
    if not isinstance(start, Mapping):
        raise TypeError(f"`start` must be a mapping of trial params, but got {start!r}.")
    dists = space.distributions()
    unknown = sorted(str(n) for n in start if n not in dists)
    if unknown:
        raise ValueError(
            f"`start` names params the space does not have: {unknown}; its params are "
            f"{list(dists)}."
        )
    out = {}
    for name, value in start.items():
        low, high, _ = dists[name]
        v = (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )
        if v is None or not (math.isfinite(v) and low <= v <= high):
            raise ValueError(
                f"`start[{name!r}]` must lie inside [{low}, {high}], but got {value!r}."
            )
        out[name] = v
    return out


def geometry_of(
    space: ScheduleSpace,
    *,
    first_step: float | None,
    hypergradients: bool = True,
    start: Mapping[str, float] | None = None,
) -> Geometry:
    """Each param's coordinate, the lr-scale and first-stage masks and the start of ``space``.

    Window values of a linear hyper, and family parameters that start inside their bounds
    (a constant momentum), step in logit coordinates; family parameters that start at a bound
    (warm-up and final fractions) and a refiner's corrections step linearly. The lr scale is
    the log-scale params of every entry of the first entry's hyper (every layer group's lr);
    a refiner's corrections join after the first stage. The coarse pass's blocks join the same
    family param (or the windows) of every entry of one hyper, so its cost does not grow with
    the number of layer groups.
    """
    coords, scale, base, blocks = [], [], [], []
    hypers = space.hypers()
    lr = hypers[next(iter(space))]
    block_ids: dict[tuple[str, str], int] = {}
    dists, init = space.distributions(), space.initial_params()
    for name in space.param_names():
        owner = space.owner(name)
        assert owner is not None
        entry_name, local = owner
        entry = space[entry_name]
        low, high, log = dists[name]
        correction = isinstance(entry, Refiner) and local.startswith(DELTA)
        inside = low < init[name] < high and not correction
        kind = "log" if log else ("logit" if inside or not isinstance(entry, Family) else "linear")
        coords.append(Coord(kind, low, high))
        scale.append(hypers[entry_name] == lr and log)
        base.append(not correction)
        # the coarse pass moves together what plays the same part: a window schedule's
        # windows, and the same family param (or windows) of every group of one hyper
        role = "" if isinstance(entry, Schedule) else local
        blocks.append(block_ids.setdefault((hypers[entry_name], role), len(block_ids)))
    x0 = [(start or {}).get(n, init[n]) for n in space.param_names()]
    step = FIRST_STEP if first_step is None else first_step
    return Geometry(
        coords,
        scale,
        base,
        x0,
        first_step=step,
        hypergradients=hypergradients,
        blocks=blocks,
    )
