from __future__ import annotations

import datetime
import math

import optuna
from optuna.trial import TrialState, create_trial

from optuna_fmd.visualization import plot_regret
from optuna_fmd.visualization._regret import _get_regret_info

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0)


def timed(value: float | None, start: float, end: float, state: TrialState = TrialState.COMPLETE):  # type: ignore[no-untyped-def]
    t = create_trial(value=value, state=state)
    t.datetime_start = T0 + datetime.timedelta(seconds=start)
    t.datetime_complete = T0 + datetime.timedelta(seconds=end)
    return t


def test_regret_info_best_so_far_against_seconds() -> None:
    a = optuna.create_study(study_name="fmd")
    for t in (timed(float("inf"), 0, 2), timed(0.8, 2, 5), timed(0.9, 5, 7), timed(0.5, 7, 9)):
        a.add_trial(t)
    a.add_trial(timed(None, 9, 10, TrialState.FAIL))
    b = optuna.create_study(study_name="tpe")
    curves = _get_regret_info([a, b])
    assert [c.name for c in curves] == ["fmd", "tpe"]
    assert curves[0].seconds == [2.0, 5.0, 7.0, 9.0]
    assert math.isnan(curves[0].best[0]) and curves[0].best[1:] == [0.8, 0.8, 0.5]
    assert curves[1].seconds == [] and curves[1].best == []
    fig = plot_regret([a, b])
    assert [t.name for t in fig.data] == ["fmd", "tpe"]
    assert len(plot_regret(a).data) == 1


def test_regret_against_a_user_attr_clock() -> None:
    study = optuna.create_study(study_name="cpu")
    for value, clock in ((0.7, 30.0), (0.9, 10.0), (0.4, 55.0)):
        t = timed(value, 0, 1)
        t.user_attrs = {"t_end": clock}
        study.add_trial(t)
    study.add_trial(timed(0.1, 0, 1))  # no clock reading: left out
    (curve,) = _get_regret_info([study], time_attr="t_end")
    assert curve.seconds == [10.0, 30.0, 55.0] and curve.best == [0.9, 0.7, 0.4]
    fig = plot_regret(study, time_attr="t_end")
    assert "t_end" in fig.layout.xaxis.title.text
