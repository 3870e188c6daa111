"""The refiner: a family bent window by window, :class:`Refiner` (a base family times
``exp(delta_k)`` in each window ``k``), and :data:`DELTA`, the prefix of its per-window
corrections' names. Import them from :mod:`optuna_fmd.space`, which re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ._family import Family, FamilyParam

__all__ = ["DELTA", "Refiner"]

#: Prefix of a refiner's per-window corrections (``delta_0`` ...).
DELTA = "delta_"


class Refiner(Family):
    """A family times a windowed correction: value_k = base(u_k) * exp(delta_k).

    The base sets the shape and scale (few parameters, found first); the ``windows`` corrections
    ``delta_0`` ... (in [-``span``, ``span``], starting at 0) let gradient steps bend it window by
    window. The refiner has ``windows`` windows whatever the base's.
    """

    def __init__(self, base: Family, windows: int, *, span: float = 2.0) -> None:
        super().__init__(windows=windows, hyper=base.hyper, params=base.params)
        if any(n.startswith(DELTA) for n in base.parameters):
            raise ValueError(f"the base family's parameters must not be named `{DELTA}<k>`.")
        self.base = base
        self.parameters = {
            **base.parameters,
            **{f"{DELTA}{k}": FamilyParam(-span, span, init=0.0) for k in range(windows)},
        }

    def _k(self, u: float) -> int:
        return min(self.windows - 1, int(u * self.windows))

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return self.base.value(u, p) * math.exp(p[f"{DELTA}{self._k(u)}"])

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        k, scale = self._k(u), math.exp(p[f"{DELTA}{self._k(u)}"])
        out = {n: g * scale for n, g in self.base.gradient(u, p).items()}
        out.update({f"{DELTA}{j}": 0.0 for j in range(self.windows)})
        out[f"{DELTA}{k}"] = self.value(u, p)
        return out
