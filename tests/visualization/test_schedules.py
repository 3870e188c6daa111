"""Gathering and drawing schedules and hypergradients of small studies (no training needed)."""

from __future__ import annotations

import datetime
import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from optuna_fmd.visualization import plot_hypergradients, plot_schedules
from optuna_fmd.visualization._layout import (
    NOTE_LINE,
    NOTE_WIDTH,
    ROW_TITLE,
    TITLE_ROOM,
)
from optuna_fmd.visualization._schedules import (
    _get_hypergradient_info,
    _get_schedule_info,
    draw_order,
)

from ._figures import check_panels, y_axes
from ._studies import crowded_study

DIST = {
    "lr_0": FloatDistribution(1e-3, 1.0, log=True),
    "lr_1": FloatDistribution(1e-3, 1.0, log=True),
    "momentum_0": FloatDistribution(0.0, 0.99),
}


def trial(
    value: float | None,
    lr: tuple[float, float],
    mom: float,
    hg: dict | None = None,
    state: TrialState = TrialState.COMPLETE,
) -> optuna.trial.FrozenTrial:
    attrs: dict = {"steps": 100}
    if hg is not None:
        attrs["hypergradient"] = hg
    return create_trial(
        params={"lr_0": lr[0], "lr_1": lr[1], "momentum_0": mom},
        distributions=DIST,
        value=value,
        user_attrs=attrs,
        state=state,
    )


@pytest.fixture
def study() -> optuna.Study:
    s = optuna.create_study()
    s.add_trial(trial(0.9, (0.05, 0.05), 0.9, {"lr_0": -1.0, "lr_1": 2.0, "momentum_0": 0.5}))
    s.add_trial(trial(0.5, (0.1, 0.02), 0.8, {"lr_0": -0.5, "lr_1": 1.0, "momentum_0": 0.1}))
    s.add_trial(trial(None, (0.2, 0.01), 0.7, state=TrialState.FAIL))
    s.add_trial(trial(float("inf"), (0.9, 0.9), 0.9))  # diverged: no hypergradient
    s.add_trial(trial(0.6, (0.12, 0.03), 0.8, {"lr_0": "x"}))  # corrupt attr
    return s


def test_schedule_info(study: optuna.Study) -> None:
    info = _get_schedule_info(study)
    assert info.hypers == ["lr", "momentum"]
    assert info.log == {"lr": True, "momentum": False}
    assert info.steps == 100
    assert [t.number for t in info.trials] == [0, 1, 3, 4]  # the failed trial is left out
    assert info.trials[1].schedules == {"lr": [0.1, 0.02], "momentum": [0.8]}
    assert info.latest == 4 and info.best == 1


def test_hypergradient_info_skips_missing_and_corrupt(study: optuna.Study) -> None:
    info = _get_hypergradient_info(study)
    assert info.numbers == [0, 1]
    assert info.values["lr"] == [[-1.0, -0.5], [2.0, 1.0]]
    assert info.values["momentum"] == [[0.5, 0.1]]


def test_hypergradient_info_puts_family_params_in_their_hypers_row() -> None:
    s = optuna.create_study()
    for scale in (1.0, 0.5):
        s.add_trial(
            optuna.trial.create_trial(
                value=0.3,
                user_attrs={
                    "hypergradient": {
                        "lr_peak": -2.0 * scale,
                        "lr_warmup": 0.1 * scale,
                        "lr_delta_1": 0.2 * scale,
                        "lr_delta_0": 0.3 * scale,
                        "momentum_value": 0.05 * scale,
                    }
                },
            )
        )
    info = _get_hypergradient_info(s)
    assert info.hypers == ["lr", "lr corrections", "momentum"]
    assert info.labels == {
        "lr": ["lr_peak", "lr_warmup"],
        "lr corrections": ["lr_delta_0", "lr_delta_1"],
        "momentum": ["momentum_value"],
    }
    assert info.values["lr"] == [[-2.0, -1.0], [0.1, 0.05]]
    assert info.values["lr corrections"][0] == [0.3, 0.15]
    fig = plot_hypergradients(s)
    assert [t.name for t in fig.data if t.showlegend is not False] == [
        "lr_peak",
        "lr_warmup",
        "lr_delta_0",
        "lr_delta_1",
        "momentum_value",
    ]


def test_single_trial_and_empty_study() -> None:
    s = optuna.create_study()
    assert _get_schedule_info(s).trials == [] and _get_schedule_info(s).latest is None
    assert _get_hypergradient_info(s).hypers == []
    s.add_trial(trial(0.3, (0.1, 0.1), 0.9))
    info = _get_schedule_info(s)
    assert info.latest == info.best == 0
    assert len(plot_schedules(s).data) == 4  # latest and best: red, then dashed green on top
    assert len(plot_hypergradients(s).data) == 0


def test_figures(study: optuna.Study) -> None:
    fig = plot_schedules(study)
    # 4 trials x 2 hypers, step functions over the 100 training steps
    assert len(fig.data) == 8
    latest = [t for t in fig.data if "(latest)" in t.name]
    assert len(latest) == 2 and latest[0].line.width == 3
    assert list(latest[0].x) == [0.0, 50.0, 50.0, 100.0]
    assert fig.layout.yaxis.type == "log"
    hg = plot_hypergradients(study)
    assert sorted(t.name for t in hg.data if t.showlegend is not False) == [
        "lr_0",
        "lr_1",
        "momentum_0",
    ]
    assert all(not any(math.isnan(y) for y in t.y) for t in hg.data)


def test_with_a_population_the_best_is_the_iterate_with_the_best_mean() -> None:
    s = optuna.create_study()
    # iterate 0: 0.30 (a lucky member) and 0.50; iterate 1: 0.34 and 0.36
    for number, (value, it) in enumerate([(0.30, 0), (0.50, 0), (0.34, 1), (0.36, 1)]):
        t = trial(value, (0.1, 0.05), 0.9)
        t.set_user_attr("iterate", it)
        t.set_user_attr("member", number % 2)
        s.add_trial(t)
    assert _get_schedule_info(s).best == 2


def _population_study() -> optuna.Study:
    """Iterates 10 (trials 0, 1) and 11 (trials 2, 3) of two members each, with hypergradients;
    the best iterate (10) is not the latest."""
    s = optuna.create_study()
    grads = [-1.0, -3.0, 2.0, 4.0]
    for number, (value, it) in enumerate([(0.30, 10), (0.32, 10), (0.60, 11), (0.70, 11)]):
        hg = {"lr_0": grads[number], "lr_1": 0.0, "momentum_0": 0.1}
        t = trial(value, (0.1 * (it - 9), 0.05), 0.9, hg)
        t.set_user_attr("iterate", it)
        t.set_user_attr("member", number % 2)
        s.add_trial(t)
    return s


def test_hypergradients_join_iterates_not_members_on_integer_trial_ticks() -> None:
    s = _population_study()
    info = _get_hypergradient_info(s)
    assert info.iterates == [10, 10, 11, 11]
    fig = plot_hypergradients(s)
    lines = [t for t in fig.data if t.mode == "lines" and t.name == "lr_0"]
    points = [t for t in fig.data if t.mode == "markers" and t.name == "lr_0"]
    # the path has one point per iterate, the mean of its members; each member is a marker
    assert len(lines) == 1 and list(lines[0].x) == [0.5, 2.5] and list(lines[0].y) == [-2.0, 3.0]
    assert len(points) == 1 and list(points[0].x) == [0, 1, 2, 3]
    assert list(points[0].y) == [-1.0, -3.0, 2.0, 4.0]
    assert not any(t.mode and "lines" in t.mode and len(t.x) == 4 for t in fig.data)
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert list(axis.tickvals) == [0, 1, 2, 3] and list(axis.ticktext) == ["0", "1", "2", "3"]


def test_a_long_subtitle_is_wrapped_and_the_margin_holds_it() -> None:
    s = _population_study()
    note = _get_hypergradient_info(s).note
    fig = plot_hypergradients(s)
    (annotation,) = [a for a in fig.layout.annotations if a.name == "note"]
    lines = annotation.text.split("<br>")
    assert " ".join(lines) == note  # all of it, nothing cut
    assert all(len(line) <= NOTE_WIDTH for line in lines)
    # the top margin holds the title, the note's lines and the first panel's title
    assert fig.layout.margin.t >= TITLE_ROOM + NOTE_LINE * len(lines) + ROW_TITLE
    assert annotation.yshift >= ROW_TITLE


def test_the_best_schedule_is_drawn_last_over_the_latest() -> None:
    s = _population_study()
    info = _get_schedule_info(s)
    assert (info.best, info.latest) == (0, 3)  # trial 3 finished last: its iterate's line
    assert [(t.number, role) for _, t, role in draw_order(info)] == [(2, "latest"), (0, "best")]
    fig = plot_schedules(s)
    names = [t.name for t in fig.data]
    assert "best" in names[-1] and "(latest)" in names[-3]  # two rows: lr and momentum
    assert fig.data[-1].line.dash == "dash" and fig.data[-1].line.color == "#2ca02c"
    # a latest trial that is also the best is drawn twice: red, then dashed green on top
    solo = optuna.create_study()
    solo.add_trial(trial(0.5, (0.1, 0.05), 0.9))
    roles = [role for _, _, role in draw_order(_get_schedule_info(solo))]
    assert roles == ["latest", "best"]
    assert [t.line.dash for t in plot_schedules(solo).data][-1] == "dash"


def test_report_figures_have_readable_ticks_and_no_blank_gaps() -> None:
    study = crowded_study()
    schedules = plot_schedules(study)
    assert schedules.layout.yaxis.type == "log"
    assert list(schedules.layout.yaxis.tickvals) == [0.001, 0.01, 0.1]  # lr over 4 decades
    check_panels(schedules)
    hypergradients = plot_hypergradients(study)
    assert len(y_axes(hypergradients)) == 4
    check_panels(hypergradients)


def test_each_hypergradient_series_has_a_colour_of_its_own() -> None:
    fig = plot_hypergradients(crowded_study())
    lines = {t.name: t.line.color for t in fig.data if t.mode == "lines"}
    assert list(lines) == [
        *("lr_final", "lr_peak", "lr_warmup"),
        *(f"lr_delta_{k}" for k in range(5)),
        *("momentum_value", "weight_decay_value"),
    ]
    assert len(set(lines.values())) == 10  # no two series alike, across the rows too
    for t in fig.data:  # each trial's marker in its series' colour
        assert t.mode == "lines" or t.marker.color == lines[t.name]


def test_the_latest_is_the_trial_that_finished_last() -> None:
    study = crowded_study()  # trial 23 finished last; its iterate (22, 23) is drawn once
    info = _get_schedule_info(study)
    assert info.latest == 23 and info.trials[-1].numbers == (22, 23)
    fig = plot_schedules(study)
    latest = [t for t in fig.data if t.legendgroup == "22/latest"]
    assert latest and latest[0].name == "trial 23 (latest)" and latest[0].showlegend
    assert "trials 22, 23" in latest[0].hovertemplate
    # without a population, by completion time, not by number; a failed trial is not drawn
    s = optuna.create_study()
    t0 = datetime.datetime(2026, 1, 1)
    done, failed = TrialState.COMPLETE, TrialState.FAIL
    for number, (seconds, state) in enumerate([(1, done), (9, done), (5, done), (20, failed)]):
        t = trial(0.5 if state == TrialState.COMPLETE else None, (0.1, 0.05), 0.9, state=state)
        t.datetime_start = t0
        t.datetime_complete = t0 + datetime.timedelta(seconds=seconds + number)
        s.add_trial(t)
    assert _get_schedule_info(s).latest == 1
    assert "trial 1 (latest)" in [t.name for t in plot_schedules(s).data]
