"""The outer loop: the rules that turn a study's trials into the next schedules.

Pick a rule and its settings with one of the factories below and hand it to the sampler
(``FMDSampler(space, outer=fmd.outer.search(explore=8))``); a rule's name
(``outer="sign"``) takes its defaults.

Pure Python over plain floats, like an optax transformation: :class:`~optuna_fmd.FMDSampler`
reads the study into points (``_point``), a rule steps a typed, frozen state (``_state``; JSON
only at the storage edge) in each param's coordinate (``_geometry``), and the sampler stores
the state on the trial it proposes. Each rule is one module with its settings, its state, its
step and its factory, registered by name in ``_registry`` (:func:`register`): the search rule
(the package ``search/``), the paper's sign rule (``_sign``) and Adam rule (``_adam``), these
two around the backtracking wrapper they share (``_paper``). ``_population`` is the one part
that speaks to Optuna: it claims the members' slots of an iterate across workers. Nothing here
imports torch.

The rest of the package imports what it needs of the outer loop from here, never from its
private modules: the sampler its geometry, points, population, rules and state; the objective,
the command line and the plots the stored state (:func:`read_view`); the plots and the
comparison the best iterate (:class:`BestIterate`, read from a study by :func:`best_iterate`;
:func:`best_group`, :func:`iterate_groups`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._geometry import check_start, geometry_of
from ._paper import Backtracked, GradientStep, PaperSettings
from ._point import BestIterate, Group, Point, best_group, iterate_groups, sense_sign
from ._registry import Settings, register, rule_names, rule_settings, unregister
from ._state import (
    CHECK_ATTR,
    STATE_KEY,
    MembersCheck,
    OuterState,
    StateError,
    StateView,
    check_json,
    read_check,
    read_view,
)

# The rules, each registered by its module as it loads, in the order they are offered (the
# default first).
# isort: off
from .search import SearchSettings, search
from ._sign import SignSettings, sign
from ._adam import AdamSettings, adam

# isort: on

if TYPE_CHECKING:
    from ._population import (
        Claim,
        Due,
        Evaluate,
        Population,
        best_iterate,
        check_population,
        is_slot,
        stored_view,
        study_sense,
    )

#: The names of ``_population``, imported on first use: the one module here that imports
#: Optuna, so that the rules and the state load without it.
_LAZY = (
    "Claim",
    "Due",
    "Evaluate",
    "Population",
    "best_iterate",
    "check_population",
    "is_slot",
    "stored_view",
    "study_sense",
)

__all__ = [
    "CHECK_ATTR",
    "STATE_KEY",
    "AdamSettings",
    "Backtracked",
    "BestIterate",
    "Claim",
    "Due",
    "Evaluate",
    "GradientStep",
    "Group",
    "MembersCheck",
    "OuterState",
    "PaperSettings",
    "Point",
    "Population",
    "SearchSettings",
    "Settings",
    "SignSettings",
    "StateError",
    "StateView",
    "adam",
    "best_group",
    "best_iterate",
    "check_json",
    "check_population",
    "check_start",
    "geometry_of",
    "is_slot",
    "iterate_groups",
    "read_check",
    "read_view",
    "register",
    "rule_names",
    "rule_settings",
    "search",
    "sense_sign",
    "sign",
    "stored_view",
    "study_sense",
    "unregister",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("._population", __name__), name)
    globals()[name] = value
    return value
