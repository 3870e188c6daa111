"""The outer loop: the rules that turn a study's trials into the next schedules.

Pick a rule and its settings with one of the factories below and hand it to the sampler
(``FMDSampler(space, outer=fmd.outer.search(explore=8))``); a rule's name
(``outer="sign"``) takes its defaults.

Pure Python over plain floats, like an optax transformation: :class:`~optuna_fmd.FMDSampler`
reads the study into points (``_point``), a rule (``_rules``: the search rule of ``search/``,
the paper's sign and Adam rules of ``_paper``) steps a typed, frozen state (``_state``; JSON
only at the storage edge) in each param's coordinate (``_geometry``), and the sampler stores
the state on the trial it proposes. ``_population`` is the one part that speaks to Optuna: it
claims the members' slots of an iterate across workers. Nothing here imports torch.

The rest of the package imports what it needs of the outer loop from here, never from its
private modules: the sampler its geometry, points, population, rules and state; the objective,
the command line and the plots the stored state (:func:`read_view`); the plots and the
comparison the best iterate (:func:`best_group`, :func:`iterate_groups`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._geometry import FIRST_STEP, check_start, geometry_of
from ._point import Point, best_group, iterate_groups, sense_sign
from ._rules import AdamSettings, SearchSettings, Settings, SignSettings, rule_settings
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

if TYPE_CHECKING:
    from ._population import Population, check_population, is_slot, study_sense

#: The names of ``_population``, imported on first use: the one module here that imports
#: Optuna, so that the rules and the state load without it.
_LAZY = ("Population", "check_population", "is_slot", "study_sense")

__all__ = [
    "CHECK_ATTR",
    "STATE_KEY",
    "AdamSettings",
    "MembersCheck",
    "OuterState",
    "Point",
    "Population",
    "SearchSettings",
    "Settings",
    "SignSettings",
    "StateError",
    "StateView",
    "adam",
    "best_group",
    "check_json",
    "check_population",
    "check_start",
    "geometry_of",
    "is_slot",
    "iterate_groups",
    "read_check",
    "read_view",
    "rule_settings",
    "search",
    "sense_sign",
    "sign",
    "study_sense",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("._population", __name__), name)
    globals()[name] = value
    return value


def search(
    *, step: float = FIRST_STEP, explore: int | None = None, hypergradients: bool = True
) -> SearchSettings:
    """The search rule (the default): it climbs along the hypergradient while the hypergradient
    is the slope, then explores and refines with plain episodes (docs/sampler.md).

    From the start (its members' hypergradients, with a population) it line-searches along the
    descent direction in each param's units, twice as far while each probe improves, then
    takes the hypergradient at the bracket's vertex for the next line (quasi-Newton over the
    climb's hypergradients), so no point is trained twice. When a hypergradient is
    contradicted (members that point apart, a probe that finds the opposite change, an
    exploding first-order change) it hands over to plain episodes: Gaussian draws around the
    best point guided by the recent trusted hypergradients (Maheswaranathan et al., ICML 2019),
    then a pattern search with halving steps until it converges. If the very first
    hypergradient is contradicted (a start above the edge), a plain lr-scale search comes
    first. A step that diverges leaves a margin: the point half-way back replaces the best
    step next to it, which is never returned as best.

    Args:
        step: The first line-search step, in coordinate units along a unit direction, where
            the direction moves no log-scale param (the climb's first step otherwise
            multiplies the fastest lr by 2).
        explore: Exploration probes (outer iterates) at the edge; ``None``: 24 trials' worth
            on a space whose optimiser hyperparameters are split over layer groups, none
            elsewhere.
        hypergradients: ``False``: the ablation without hypergradients (the lr-scale search,
            then the exploration and the pattern search; no trial computes one).
    """
    return SearchSettings(step, explore, hypergradients)


def sign(
    *,
    step_size: float = 0.1,
    trust_region: float = 0.25,
    min_step: float = 1e-3,
    backtrack_tol: float = 0.02,
    max_backtracks: int = 6,
) -> SignSettings:
    """The FDS paper's rule (Micaelli & Storkey, NeurIPS 2021): ``u <- u - sign(g) * s`` in
    each param's coordinate, with a per-coordinate step ``s`` halved whenever the sign of its
    hypergradient flips; every trial computes a hypergradient.

    Args:
        step_size: The first per-coordinate step, in coordinate units.
        trust_region: The largest move of one coordinate per step, in coordinate units.
        min_step: The rule has converged once every step is below this.
        backtrack_tol: After a failed, diverged or worse episode (worse than the best by more
            than this fraction of it), the rule goes back to the best point and takes a step
            half as long.
        max_backtracks: Consecutive backtracks before the rule stops at the best point.
    """
    return SignSettings(step_size, trust_region, min_step, backtrack_tol, max_backtracks)


def adam(
    *,
    step_size: float = 0.1,
    trust_region: float = 0.25,
    backtrack_tol: float = 0.02,
    max_backtracks: int = 6,
    betas: tuple[float, float] = (0.9, 0.999),
    clip: float | None = 5.0,
) -> AdamSettings:
    """Adam (Kingma & Ba, ICLR 2015) on the hypergradient in each param's coordinate; every
    trial computes a hypergradient.

    Args:
        step_size: Adam's step, in coordinate units.
        trust_region: The largest move of one coordinate per step, in coordinate units.
        backtrack_tol: As for :func:`sign`.
        max_backtracks: As for :func:`sign`.
        betas: The moments' decay rates.
        clip: A hypergradient coordinate beyond this many times its running RMS is clipped
            (``None``: never).
    """
    return AdamSettings(step_size, trust_region, backtrack_tol, max_backtracks, betas, clip)
