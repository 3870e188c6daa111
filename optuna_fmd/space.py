"""Default search spaces: each inner optimiser's scheduled hyperparameters with their bounds and
starting values, shared by the CLI, the comparison and user scripts.

Example:
    >>> from optuna_fmd.space import default_space
    >>> space = default_space("sgd", windows=2)
    >>> space.initial_values()
    {'lr': [0.05, 0.05], 'momentum': [0.9, 0.9], 'weight_decay': [0.0005, 0.0005]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .engine import Schedule, ScheduleSpace

__all__ = ["DEFAULT_BOUNDS", "default_space"]

#: ``{optimizer: {hyper: (low, high, log, init)}}``. SGD: the usual 0.05 / 0.9 / 5e-4 start with
#: bounds that contain every setting that trains the small models here; Adam(W): PyTorch's
#: defaults (lr 1e-3, beta1 0.9) and AdamW's common decoupled weight decay of 0.01.
DEFAULT_BOUNDS: Mapping[str, Mapping[str, tuple[float, float, bool, float]]] = {
    "sgd": {
        "lr": (1e-3, 1.0, True, 0.05),
        "momentum": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 5e-4),
    },
    "adam": {
        "lr": (1e-5, 1e-1, True, 1e-3),
        "beta1": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 0.0),
    },
    "adamw": {
        "lr": (1e-5, 1e-1, True, 1e-3),
        "beta1": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 0.3, False, 1e-2),
    },
}


def default_space(
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    hypers: Sequence[str] | None = None,
    init: Mapping[str, float] | None = None,
) -> ScheduleSpace:
    """The default window space of ``optimizer``: every scheduled hyperparameter of
    :data:`DEFAULT_BOUNDS` with ``windows`` values.

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K per hyperparameter.
        hypers: Only these hyperparameters (default: all of the optimiser's).
        init: Starting values that replace the defaults, ``{hyper: value}``.
    """
    if optimizer not in DEFAULT_BOUNDS:
        raise ValueError(
            f"`optimizer` must be one of {list(DEFAULT_BOUNDS)}, but got {optimizer!r}."
        )
    bounds = DEFAULT_BOUNDS[optimizer]
    names = list(bounds) if hypers is None else list(hypers)
    unknown = [h for h in [*names, *(init or {})] if h not in bounds]
    if unknown or not names:
        raise ValueError(
            f"`hypers` must be a non-empty subset of {list(bounds)} for optimizer="
            f"{optimizer!r}, but got {unknown if unknown else names}."
        )
    starts = {h: bounds[h][3] for h in names} | dict(init or {})
    return ScheduleSpace(
        {
            h: Schedule(
                windows=windows,
                low=bounds[h][0],
                high=bounds[h][1],
                log=bounds[h][2],
                init=starts[h],
            )
            for h in names
        }
    )
