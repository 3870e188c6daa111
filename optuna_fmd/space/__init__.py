"""Search spaces, without torch: window schedules, schedule *families* and the one place that
names trial parameters and converts them to and from schedules.

A :class:`ScheduleSpace` maps names to entries. A :class:`Schedule` is ``K`` free window values
(trial params ``<name>_0`` ... ``<name>_{K-1}``); a :class:`Family` is a schedule given by a few
parameters (trial params ``<name>_<param>``, e.g. ``lr_peak``), evaluated at the ``K`` window
midpoints ``(k + 0.5) / K``. An episode's hypergradient with respect to the window values gives
the hypergradient with respect to a family's parameters exactly, by the chain rule
(:meth:`ScheduleSpace.chain`). What every family is (:class:`Family`, :class:`FamilyParam`,
:func:`midpoints`) is defined in ``_family``, the closed-form families (:class:`Cosine`,
:class:`Constant` ...) and the cosine's maths (:func:`cosine_value`) in ``_families``, the
:class:`Refiner` that bends a family window by window in ``_refiner``, the loss side's families
(:class:`DeferredStep`, the class-weight shapes) in ``_loss_families``, the window
:class:`Schedule` in ``_windows``, the space in ``_space``, the params' names
(:func:`param_name`, :func:`parse_param`) in ``_names`` and the default spaces
(:data:`DEFAULT_BOUNDS`, :func:`default_space` ...) in ``_defaults``; import them from here.

Example:
    >>> from optuna_fmd.space import Constant, Cosine, ScheduleSpace, default_space
    >>> default_space("sgd", windows=2).initial_values()
    {'lr': [0.05, 0.05], 'momentum': [0.9, 0.9], 'weight_decay': [0.0005, 0.0005]}
    >>> cos = Cosine(windows=4)
    >>> [round(v, 4) for v in cos.window_values({"peak": 0.1, "warmup": 0.0, "final": 0.0})]
    [0.0962, 0.0691, 0.0309, 0.0038]
    >>> space = ScheduleSpace({"lr": Cosine(windows=4, init=0.1), "momentum": Constant(0.0, 0.99,
    ...                        log=False, init=0.9)})
    >>> space.param_names()
    ['lr_peak', 'lr_warmup', 'lr_final', 'momentum_value']
"""

from __future__ import annotations

from ._defaults import (
    DEFAULT_BOUNDS,
    default_family_space,
    default_space,
    family_space,
    imbalanced_space,
    per_layer_space,
    schedule_free_space,
)
from ._families import Constant, Cosine, Custom, Linear, StepDecay, cosine_value
from ._family import Family, FamilyParam, midpoints
from ._loss_families import (
    CLASS_WEIGHT_BOUNDS,
    DeferredStep,
    effective_number_weights,
    inverse_frequency_weights,
)
from ._names import ParamRef, param_name, parse_param
from ._refiner import DELTA, Refiner
from ._space import ScheduleSpace
from ._windows import Schedule

__all__ = [
    "CLASS_WEIGHT_BOUNDS",
    "DEFAULT_BOUNDS",
    "DELTA",
    "Constant",
    "Cosine",
    "Custom",
    "DeferredStep",
    "Family",
    "FamilyParam",
    "Linear",
    "ParamRef",
    "Refiner",
    "Schedule",
    "ScheduleSpace",
    "StepDecay",
    "cosine_value",
    "default_family_space",
    "default_space",
    "effective_number_weights",
    "family_space",
    "imbalanced_space",
    "inverse_frequency_weights",
    "midpoints",
    "param_name",
    "parse_param",
    "per_layer_space",
    "schedule_free_space",
]
