"""Small studies built from frozen trials (no training): the plots' test inputs."""

from __future__ import annotations

import datetime
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

DIST = {
    "lr_0": FloatDistribution(1e-3, 1.0, log=True),
    "lr_1": FloatDistribution(1e-3, 1.0, log=True),
    "momentum_0": FloatDistribution(0.0, 0.99),
}
T0 = datetime.datetime(2026, 1, 1, 12, 0, 0)


def trial(
    value: float | None,
    lr: tuple[float, float],
    mom: float,
    hg: dict[str, Any] | None = None,
    state: TrialState = TrialState.COMPLETE,
    *,
    at: float = 0.0,
    attrs: dict[str, Any] | None = None,
) -> optuna.trial.FrozenTrial:
    user_attrs: dict[str, Any] = {"steps": 100, **(attrs or {})}
    if hg is not None:
        user_attrs["hypergradient"] = hg
    t = create_trial(
        params={"lr_0": lr[0], "lr_1": lr[1], "momentum_0": mom},
        distributions=DIST,
        value=value,
        user_attrs=user_attrs,
        state=state,
    )
    t.datetime_start = T0 + datetime.timedelta(seconds=at)
    t.datetime_complete = T0 + datetime.timedelta(seconds=at + 1.0)
    return t


def mixed_study(name: str = "fmd", storage: Any = None) -> optuna.Study:
    """Two good trials, a failed one, a diverged one without hypergradient, a corrupt attr."""
    s = optuna.create_study(study_name=name, storage=storage)
    s.add_trial(trial(0.9, (0.05, 0.05), 0.9, {"lr_0": -1.0, "lr_1": 2.0, "momentum_0": 0.5}))
    s.add_trial(trial(0.5, (0.1, 0.02), 0.8, {"lr_0": -0.5, "lr_1": 1.0, "momentum_0": 0.1}, at=2))
    s.add_trial(trial(None, (0.2, 0.01), 0.7, state=TrialState.FAIL, at=4))
    s.add_trial(trial(float("inf"), (0.9, 0.9), 0.9, at=6, attrs={"diverged": True}))
    s.add_trial(trial(0.6, (0.12, 0.03), 0.8, {"lr_0": "x"}, at=8))
    return s
