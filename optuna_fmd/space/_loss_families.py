"""The loss side's families: the class-weight shapes (:func:`inverse_frequency_weights`,
:func:`effective_number_weights`, :data:`SHAPES`), the deferred re-weighting
:class:`DeferredStep`, the bounds of class weights and label smoothing, and
:func:`loss_families`, the loss-side entries of :func:`~optuna_fmd.space.imbalanced_space`.

Import the public names from :mod:`optuna_fmd.space`, which re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from .._checks import finite
from ._families import Constant
from ._family import Family, FamilyParam
from ._refiner import Refiner

__all__ = [
    "CLASS_WEIGHT_BOUNDS",
    "LABEL_SMOOTHING_BOUNDS",
    "SHAPES",
    "DeferredStep",
    "effective_number_weights",
    "inverse_frequency_weights",
    "loss_families",
]

#: Class weights ``(low, high, log, init)``, as :data:`~optuna_fmd.space.DEFAULT_BOUNDS`: from a
#: twentieth to twenty times a class's share, on a log scale, starting unweighted.
CLASS_WEIGHT_BOUNDS: tuple[float, float, bool, float] = (0.05, 20.0, True, 1.0)
#: Label smoothing ``(low, high, log, init)``: epsilon from none (the start) to 0.3.
LABEL_SMOOTHING_BOUNDS: tuple[float, float, bool, float] = (0.0, 0.3, False, 0.0)


def _counts(counts: Iterable[object]) -> list[float]:
    """``counts`` as floats: finite positive numbers (ints, numpy or 0-d torch scalars), >= 1."""
    if isinstance(counts, (str, bytes, Mapping)) or not isinstance(counts, Iterable):
        raise ValueError(f"`counts` must be a sequence of class counts, but got {counts!r}.")
    out = []
    for c, n in enumerate(counts):
        v = math.nan if isinstance(n, (bool, str, bytes)) else float(n)  # type: ignore[arg-type]
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"`counts[{c}]` must be a positive number, but got {n!r}.")
        out.append(v)
    if not out:
        raise ValueError("`counts` must name at least one class, but got none.")
    return out


def _mean_one(raw: Sequence[float]) -> list[float]:
    return [len(raw) * r / math.fsum(raw) for r in raw]


def inverse_frequency_weights(counts: Iterable[float]) -> list[float]:
    """Class weights proportional to ``1 / n_c``, averaging 1 over the ``C`` classes:
    ``w_c = C * (1 / n_c) / sum_j (1 / n_j)``.

    Args:
        counts: ``n_c``, the training examples of class ``c`` (positive), in class order.

    Example:
        >>> [round(w, 4) for w in inverse_frequency_weights([1, 2, 4])]
        [1.7143, 0.8571, 0.4286]
    """
    return _mean_one([1.0 / n for n in _counts(counts)])


def effective_number_weights(counts: Iterable[float], beta: float = 0.9999) -> list[float]:
    """Class weights proportional to the inverse *effective number* of examples,
    ``(1 - beta) / (1 - beta ** n_c)``, averaging 1 over the classes (Cui et al., "Class-Balanced
    Loss Based on Effective Number of Samples", CVPR 2019).

    ``beta = 0`` weighs every class 1; as ``beta`` tends to 1 the weights tend to
    :func:`inverse_frequency_weights`.

    Args:
        counts: ``n_c``, the training examples of class ``c`` (positive), in class order.
        beta: In [0, 1); the paper's default 0.9999.

    Example:
        >>> [round(w, 4) for w in effective_number_weights([1, 2], beta=0.5)]
        [1.2, 0.8]
    """
    n = _counts(counts)
    b = finite("beta", beta)
    if not 0.0 <= b < 1.0:
        raise ValueError(f"`beta` must lie in [0, 1), but got {beta!r}.")
    if b == 0.0:
        return [1.0] * len(n)
    return _mean_one([(1.0 - b) / -math.expm1(m * math.log(b)) for m in n])


#: The class-weight shapes of :func:`loss_families`: ``{shape: weights of the class counts}``.
SHAPES: Mapping[str, Callable[[Iterable[float]], list[float]]] = {
    "effective": effective_number_weights,
    "inverse": inverse_frequency_weights,
}


class DeferredStep(Family):
    """A multiplier that is 1 early in training and switches to ``target`` later: deferred
    re-weighting (DRW, Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware
    Margin Loss", NeurIPS 2019), e.g. one class's weight with ``target`` its
    :func:`effective_number_weights` value.

    ``value(u) = 1 + strength * (target - 1) * s(u)``, where ``s(u) = 1 / (1 + exp(-(u -
    switch) / width))`` is a smooth step of width ``1 / (2K)`` (``K`` the windows). A hard step
    would leave every window value flat in ``switch`` (a zero hypergradient); a logistic this
    wide keeps the sum of ``s`` over the window midpoints (spaced ``1 / K``) affine in
    ``switch`` to within 0.2 % away from the ends of the run, so the hypergradient pulls
    ``switch`` evenly wherever it sits between two midpoints, while the step still goes from
    12 % to 88 % within one window either side of it.

    Params: ``switch``, the training fraction of the step, in [0.05, 0.95]; ``strength``, how
    far towards ``target`` it goes (1: all the way), in [0, ``max_strength``], lowered for a
    ``target`` below 1 so that the value never falls under :data:`CLASS_WEIGHT_BOUNDS`'s
    ``low`` (a negative class weight would train the model *away* from that class).

    Args:
        target: The value after the switch at ``strength`` 1 (positive).
        switch: Start of ``switch``.
        max_strength: Upper bound of ``strength`` (it starts at 1, or its bound if lower).
        windows: Windows K.

    Example:
        >>> cw = DeferredStep(3.0, windows=4, hyper="class_weight", params="7")
        >>> [round(v, 2) for v in cw.initial_values()]
        [1.04, 1.28, 2.1, 2.8]
    """

    def __init__(
        self,
        target: float,
        *,
        switch: float = 0.6,
        max_strength: float = 2.0,
        windows: int = 10,
        hyper: str | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(windows=windows, hyper=hyper, params=params)
        self.target = finite("target", target)
        top = finite("max_strength", max_strength)
        if self.target <= 0 or top <= 0:
            raise ValueError(
                f"`target` and `max_strength` must be positive, but got {target!r} and "
                f"{max_strength!r}."
            )
        if self.target < 1:
            top = min(top, (1.0 - CLASS_WEIGHT_BOUNDS[0]) / (1.0 - self.target))
        self.width = 0.5 / self.windows
        self.parameters = {
            "switch": FamilyParam(0.05, 0.95, init=switch),
            "strength": FamilyParam(0.0, top, init=min(1.0, top)),
        }

    def _step(self, u: float, p: Mapping[str, float]) -> float:
        return 0.5 * (1.0 + math.tanh(0.5 * (u - p["switch"]) / self.width))  # the logistic

    def value(self, u: float, p: Mapping[str, float]) -> float:
        return 1.0 + p["strength"] * (self.target - 1.0) * self._step(u, p)

    def gradient(self, u: float, p: Mapping[str, float]) -> dict[str, float]:
        s = self._step(u, p)
        return {
            "switch": -p["strength"] * (self.target - 1.0) * s * (1.0 - s) / self.width,
            "strength": (self.target - 1.0) * s,
        }


def loss_families(
    class_counts: Iterable[float],
    windows: int = 10,
    *,
    shape: str = "effective",
    refine: bool = False,
    label_smoothing: bool = False,
) -> dict[str, Family]:
    """The loss-side entries of :func:`~optuna_fmd.space.imbalanced_space`: ``cw_<c>``, a
    :class:`DeferredStep` of hyper ``class_weight`` for class ``c`` towards its ``shape``
    weight (times its windows' corrections with ``refine``, :class:`Refiner`), and with
    ``label_smoothing`` one :class:`Constant` in :data:`LABEL_SMOOTHING_BOUNDS`.

    Example:
        >>> sorted(loss_families([90, 10], windows=2, label_smoothing=True))
        ['cw_0', 'cw_1', 'label_smoothing']
    """
    if shape not in SHAPES:
        raise ValueError(f"`shape` must be one of {list(SHAPES)}, but got {shape!r}.")
    out: dict[str, Family] = {}
    for c, w in enumerate(SHAPES[shape](class_counts)):
        cw = DeferredStep(w, windows=windows, hyper="class_weight", params=str(c))
        out[f"cw_{c}"] = Refiner(cw, windows) if refine else cw
    if label_smoothing:
        low, high, log, init = LABEL_SMOOTHING_BOUNDS
        out["label_smoothing"] = Constant(low, high, log=log, init=init)
    return out
