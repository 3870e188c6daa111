"""The matplotlib twins draw what the shared ``_get_*_info`` functions gather."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
from matplotlib.axes import Axes

from optuna_fmd.visualization import matplotlib as vm

from ._studies import crowded_study, mixed_study, trial


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def test_regret_one_line_per_study_saved_as_png(tmp_path: Path) -> None:
    fmd, tpe = mixed_study("fmd"), optuna.create_study(study_name="tpe")
    ax = vm.plot_regret([fmd, tpe])
    assert isinstance(ax, Axes)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["fmd", "tpe (no completed trial)"]
    x, y = ax.get_lines()[0].get_data()
    assert list(x) == [1.0, 3.0, 7.0, 9.0]  # completed trials, seconds since the first start
    assert list(y) == [0.9, 0.5, 0.5, 0.5]  # best so far
    assert ax.get_xlabel().startswith("seconds") and ax.get_title()
    ax.figure.savefig(tmp_path / "regret.png")
    assert (tmp_path / "regret.png").stat().st_size > 1000
    assert len(vm.plot_regret(fmd).get_lines()) == 1  # one study, same signature as plotly's


def test_regret_of_an_empty_study_says_so() -> None:
    ax = vm.plot_regret(optuna.create_study(study_name="empty"))
    assert any("no completed trial" in t.get_text() for t in ax.texts)


def test_schedules_step_shaped_log_axis_latest_highlighted() -> None:
    axes = vm.plot_schedules(mixed_study())
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)  # one row per hyper
    lr, mom = axes
    assert lr.get_yscale() == "log" and mom.get_yscale() == "linear"
    assert lr.get_ylabel() == "lr" and mom.get_xlabel() == "training step"
    stairs = lr.patches
    assert len(stairs) == 4  # four completed trials with a schedule; the failed one left out
    latest = [p for p in stairs if "(latest" in p.get_label()]
    values, edges, _ = latest[0].get_data()
    assert list(edges) == [0.0, 50.0, 100.0] and list(values) == [0.12, 0.03]
    best = [p for p in stairs if p.get_label() == "trial 1 (best)"]
    assert len(latest) == 1 and latest[0].get_linewidth() > stairs[0].get_linewidth()
    assert len(best) == 1 and best[0].get_linestyle() == "--"
    # earlier trials take the colormap's colours in trial order
    assert stairs[0].get_edgecolor() != stairs[2].get_edgecolor()


def test_schedules_single_trial_and_single_hyper() -> None:
    s = optuna.create_study()
    s.add_trial(trial(0.3, (0.1, 0.1), 0.9))
    axes = vm.plot_schedules(s)
    # the latest and best: red, then dashed green above it
    latest, best = axes[0].patches
    assert len(axes) == 2 and "(latest)" in latest.get_label() and "(best)" in best.get_label()
    assert best.get_linestyle() == "--" and best.get_zorder() > latest.get_zorder()
    only_lr = optuna.create_study()
    only_lr.add_trial(
        optuna.trial.create_trial(
            params={"lr_0": 0.1},
            distributions={"lr_0": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)},
            value=1.0,
        )
    )
    ax = vm.plot_schedules(only_lr)
    assert isinstance(ax, Axes) and ax.get_xlabel() == "fraction of training"  # no steps attr


def test_empty_study_draws_a_message() -> None:
    s = optuna.create_study()
    assert any("no completed trial" in t.get_text() for t in vm.plot_schedules(s).texts)
    assert any(
        "no hypergradient yet: no trial has finished" in t.get_text()
        for t in vm.plot_hypergradients(s).texts
    )


def test_hypergradients_one_line_per_window_skipping_missing() -> None:
    lr, mom = vm.plot_hypergradients(mixed_study())
    lines = [line for line in lr.get_lines() if line.get_label().startswith("lr_")]
    assert [line.get_label() for line in lines] == ["lr_0", "lr_1"]
    x, y = lines[1].get_data()
    assert list(x) == [0, 1] and list(y) == [2.0, 1.0]  # no diverged, failed or corrupt trial
    assert mom.get_ylabel() == "dL/dmomentum" and mom.get_xlabel() == "trial (outer step)"
    no_hg = optuna.create_study()
    no_hg.add_trial(trial(0.3, (0.1, 0.1), 0.9))
    ax = vm.plot_hypergradients(no_hg)
    assert isinstance(ax, Axes) and not ax.get_lines()


def _overlap(a: Any, b: Any) -> bool:
    """Whether two drawn texts' boxes (display pixels) overlap."""
    renderer = a.figure.canvas.get_renderer()
    return bool(a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)))


def _texts(fig: Any) -> list[Any]:
    """Every non-empty text of a figure: its suptitle, each axes' three titles, its texts."""
    found = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        found += [ax.title, ax._left_title, ax._right_title, *ax.texts]
    return [t for t in found if t.get_text()]


def test_the_hypergradient_title_is_drawn_once_above_its_note() -> None:
    axes = vm.plot_hypergradients(mixed_study())
    fig = axes[0].figure
    fig.canvas.draw()
    texts = _texts(fig)
    titles = [t for t in texts if t.get_text() == "Hypergradients per param"]
    notes = [t for t in texts if t.get_text().startswith("hypergradients of 2 of 4")]
    assert len(titles) == 1 and len(notes) == 1
    assert not _overlap(titles[0], notes[0])
    assert titles[0].get_window_extent().y0 >= notes[0].get_window_extent().y1  # title above


def test_the_schedule_title_is_clear_of_the_legend() -> None:
    s = optuna.create_study()
    # iterates of two members: the best's legend entry is long ("best iterate: ...")
    for number, value in enumerate([0.9, 0.8, 0.3, 0.35, 0.6, 0.65]):
        t = trial(value, (0.1 * (1 + number // 2), 0.05), 0.9)
        t.set_user_attr("iterate", number // 2)
        t.set_user_attr("member", number % 2)
        s.add_trial(t)
    fig = vm.plot_schedules(s)[0].figure
    fig.canvas.draw()
    (legend,) = fig.legends
    title = fig._suptitle
    assert title is not None and title.get_text() == "Schedules per trial"
    assert not _overlap(title, legend)
    box, frame = legend.get_window_extent(), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0  # all of it shown


def test_each_hypergradient_series_has_the_plotly_figures_colour() -> None:
    from matplotlib.colors import to_hex

    from optuna_fmd.visualization import plot_hypergradients

    study = crowded_study()
    lines = [
        line
        for ax in vm.plot_hypergradients(study)
        for line in ax.get_lines()
        if line.get_label() and not line.get_label().startswith("_")
    ]
    colors = {line.get_label(): to_hex(line.get_color()) for line in lines}
    assert len(colors) == len(set(colors.values())) == 10  # no two series alike
    plotly = {
        t.name: t.line.color.lower() for t in plot_hypergradients(study).data if t.line.color
    }
    assert colors == plotly
