"""The inner optimisers by name: what ``Task(optimizer=...)`` and :func:`make_optimizer` read."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._optim import SGD, Adam, InnerOptimizer
from ._schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD

__all__ = ["OPTIMIZERS", "make_optimizer"]

#: The inner optimisers by the name a task gives (``Task(optimizer=...)``).
OPTIMIZERS: Mapping[str, Callable[[], InnerOptimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": lambda: Adam(decoupled=True),
    "sf-adamw": ScheduleFreeAdamW,
    "sf-sgd": ScheduleFreeSGD,
}


def make_optimizer(name: str, *, nesterov: bool = False) -> InnerOptimizer:
    """The inner optimiser called ``name``, one of :data:`OPTIMIZERS`: ``"sgd"``, ``"adam"``,
    ``"adamw"``, ``"sf-adamw"`` or ``"sf-sgd"``."""
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        names = ", ".join(repr(n) for n in OPTIMIZERS)
        raise ValueError(f"`optimizer` must be one of {names}, but got {name!r}.")
    name = name.lower()
    if nesterov and name != "sgd":
        raise ValueError(f"`nesterov=True` needs optimizer='sgd', but got optimizer={name!r}.")
    if name == "sgd":
        return SGD(nesterov=nesterov)
    return OPTIMIZERS[name]()
