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


#: The hypergradient params of a default family space (lr: a cosine refined in 5 windows).
FAMILY_GRADS = (
    *("lr_peak", "lr_warmup", "lr_final"),
    *(f"lr_delta_{k}" for k in range(5)),
    *("momentum_value", "weight_decay_value"),
)


def crowded_study(iterates: int = 12) -> optuna.Study:
    """A study as a default ``optuna-fmd run`` leaves it: iterates of two members whose lr
    windows span four decades (2.5e-4 to 1), the hypergradients of a family space (four rows,
    ten series) on the first two iterates, the best iterate 8 (trials 16, 17); the second
    member of an iterate finishes after the first (the last trial finishes last, while its
    iterate is drawn by its first member)."""
    dist = {
        **{f"lr_{k}": FloatDistribution(1e-4, 1.0, log=True) for k in range(5)},
        "momentum_0": FloatDistribution(0.0, 0.99),
        "weight_decay_0": FloatDistribution(0.0, 1e-2),
    }
    s = optuna.create_study(study_name="crowded")
    for number in range(2 * iterates):
        it, member = divmod(number, 2)
        peak = min(0.001 * 2.0**it, 0.997)
        params = {f"lr_{k}": peak * (1.0 - 0.2 * k) for k in range(5)}
        params["lr_4"] = 0.00025 if it == 0 else params["lr_4"]
        params |= {"momentum_0": 0.5 + 0.04 * it, "weight_decay_0": 5e-4 - 1e-6 * it}
        attrs: dict[str, Any] = {"steps": 100, "iterate": it, "member": member}
        if it < 2:
            attrs["hypergradient"] = {
                name: -0.1 * (j + 1) - member for j, name in enumerate(FAMILY_GRADS)
            }
        t = create_trial(
            params=params,
            distributions=dist,
            value=0.1 + 0.1 * abs(it - 8) + 0.05 * member,
            user_attrs=attrs,
        )
        t.datetime_start = T0 + datetime.timedelta(seconds=10 * it)
        t.datetime_complete = T0 + datetime.timedelta(seconds=10 * it + 4 + member)
        s.add_trial(t)
    return s
