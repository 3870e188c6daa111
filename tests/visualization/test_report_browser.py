"""End to end: ``optuna-fmd report`` of small studies, opened in headless Chromium.

A default family-space study of the CLI, a window-space one and a per-layer-group one (each a
few 20-step Digits episodes): the outer-steps table shows every trial's params, the header's best
is the CLI's (and the sampler's) best iterate, and the empty hypergradient panel says why.
Skipped without Chromium and ChromeDriver, as the dashboard test.
``OPTUNA_FMD_UPDATE_SCREENSHOTS=1`` copies the family and window reports' screenshots to
``docs/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd import cli
from optuna_fmd.space import Constant, Cosine, Refiner
from optuna_fmd.visualization import write_report

from .test_dashboard_browser import CHROMEDRIVER, CHROMIUM, ROOT, _save, _wait, start_chromium

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium or ChromeDriver not found (apt-get install chromium chromium-driver)",
    ),
    pytest.mark.timeout(180),
]

FLAGS = ["--task", "digits", "--steps", "20", "--windows", "2", "--batch-size", "32"]
QUIET = ["--no-progress", "--no-artifacts"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module's reports."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def _cli_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[str, Path]:
    """Run ``optuna-fmd run`` (4 trials: 2 iterates of 2 seeds) and ``optuna-fmd report``;
    the line the run printed about its best and the report's path."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    capsys.readouterr()
    argv = ["run", *FLAGS, "--trials", "4", "--study", "s", "--storage", url, *QUIET, *extra]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    best = next(line for line in printed.splitlines() if line.startswith("best: "))
    assert cli.main(["report", "--study", "s", "--storage", url, "--out", str(tmp_path)]) == 0
    return best, tmp_path / "report.html"


def _open(browser: Any, path: Path) -> dict[str, Any]:
    """Open the report; the header's best line, the hypergradient note and the table's cells
    by column name, one dict per trial."""
    browser.set_window_size(1400, 1000)
    browser.get(path.as_uri())
    _wait(browser, lambda d: d.find_elements("css selector", "#fig-schedules .main-svg"), "plots")
    header = [th.text for th in browser.find_elements("css selector", "table.steps thead th")]
    rows = [
        dict(zip(header, [td.text for td in tr.find_elements("tag name", "td")], strict=True))
        for tr in browser.find_elements("css selector", "table.steps tbody tr")
    ]
    return {
        "best": browser.find_element("id", "best").text,
        "hg_note": browser.find_element("id", "hypergradients-note").text,
        "hg_figure": browser.find_element("id", "fig-hypergradients").text,
        "legend": browser.find_element("id", "outer-steps-legend").text,
        "rows": rows,
    }


def _numbers(line: str) -> tuple[list[int], str]:
    """The trial numbers and the value (4 decimals) in a 'best' line of the CLI or report."""
    m = re.search(r"trials? (\d+(?:, \d+)*)(?: \(mean over \d+ seeds\))?, \D*(\d+\.\d{4})", line)
    assert m is not None, line
    return [int(n) for n in m.group(1).split(",")], m.group(2)


def _screenshot(browser: Any, tmp_path: Path, name: str) -> None:
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 4000))
    _save(browser, tmp_path, name)


def _check_climb_panel(page: dict[str, Any]) -> None:
    # the start computes the hypergradient (2 seeds), then the first climb probe (plain)
    assert page["hg_note"].startswith("hypergradients of 2 of 4 finished trials")
    assert [r["hypergradient"].split("\n")[0] for r in page["rows"]] == ["yes"] * 2 + [
        "no: plain probe"
    ] * 2
    check = page["rows"][2]["hypergradient"]
    assert "the hypergradients of iterate 0's members (trials 0, 1) agree" in check
    assert "reads outer iterate 1, member 1" in page["legend"]  # the iterate numbers in words
    assert [r["origin"].split("\n")[0] for r in page["rows"]] == ["start"] * 2 + ["climb"] * 2


def test_report_of_a_default_family_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: Any
) -> None:
    best, path = _cli_study(tmp_path, capsys)
    page = _open(browser, path)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'cli.db'}")
    assert len(page["rows"]) == 4
    for trial, row in zip(study.trials, page["rows"], strict=True):
        p = trial.params
        head = f"lr peak {p['lr_peak']:.3g} warmup {p['lr_warmup']:.3g} final {p['lr_final']:.3g}"
        assert head in row["params"]
        assert f"momentum value {p['momentum_value']:.3g}" in row["params"]
        assert f"weight_decay value {p['weight_decay_value']:.3g}" in row["params"]
        lr = trial.user_attrs["schedules"]["lr"]
        assert f"lr {lr[0]:.3g} {lr[1]:.3g}" in row["schedules"]  # window values, not deltas
        assert "lr_delta" not in row["schedules"]
    assert {r["iterate"] for r in page["rows"]} == {"0.0", "0.1", "1.0", "1.1"}
    assert _numbers(page["best"]) == _numbers(best)  # the CLI's best iterate, not one seed
    assert "warmup 0 final 0 delta 0 0" in page["rows"][0]["params"]  # the start
    assert "climb: a step of" in page["rows"][2]["origin"]
    _check_climb_panel(page)
    _screenshot(browser, tmp_path, "report-family.png")


def test_report_of_a_window_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: Any
) -> None:
    best, path = _cli_study(tmp_path, capsys, "--space", "windows")
    page = _open(browser, path)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'cli.db'}")
    assert "params" not in page["rows"][0]  # windows only: the schedules are the params
    for trial, row in zip(study.trials, page["rows"], strict=True):
        p = trial.params
        assert f"lr {p['lr_0']:.3g} {p['lr_1']:.3g}" in row["schedules"]
        assert f"momentum {p['momentum_0']:.3g} {p['momentum_1']:.3g}" in row["schedules"]
        assert "weight_decay 0.0005 0.0005" in row["schedules"]
    assert _numbers(page["best"]) == _numbers(best)
    _check_climb_panel(page)
    _screenshot(browser, tmp_path, "report-windows.png")


def test_report_of_a_layer_group_study_read_without_its_space(
    tmp_path: Path, browser: Any
) -> None:
    # the lr of the output layer ("3.*") as its own cosine, beside the refined lr of the rest
    space = fmd.ScheduleSpace(
        {
            "lr": Refiner(Cosine(windows=2, init=0.05), 2),
            "lr_out": Cosine(windows=2, init=0.02, hyper="lr", params="3.*"),
            "momentum": Constant(0.0, 0.99, log=False, init=0.9),
        }
    )
    url = f"sqlite:///{tmp_path / 'groups.db'}"
    sampler = fmd.FMDSampler(space, seed=0, population=2)
    study = optuna.create_study(storage=url, study_name="groups", sampler=sampler)
    task = fmd.tasks.Digits(model="mlp", steps=20, batch_size=32)
    study.optimize(fmd.HypergradientObjective(task, space, seed=0), n_trials=4)
    # a fresh load (no sampler, no space): the names and stored windows are all there is
    loaded = optuna.load_study(study_name="groups", storage=url)
    page = _open(browser, write_report(loaded, tmp_path / "report"))
    for trial, row in zip(study.trials, page["rows"], strict=True):
        p = trial.params
        assert f"lr_out peak {p['lr_out_peak']:.3g} warmup " in row["params"]
        assert f"lr peak {p['lr_peak']:.3g} warmup " in row["params"]
        assert f"momentum value {p['momentum_value']:.3g}" in row["params"]
        assert row["schedules"].splitlines()[1].startswith("lr_out ")
    point = sampler.best_iterate(study)
    assert point is not None
    assert _numbers(page["best"]) == (list(point.trials), f"{point.value:.4f}")
    _check_climb_panel(page)


def test_the_hypergradient_figure_has_integer_trial_ticks_and_its_whole_subtitle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: Any
) -> None:
    # the sign rule differentiates every trial: two iterates of two members with hypergradients
    _, path = _cli_study(tmp_path, capsys, "--space", "windows", "--outer", "sign")
    page = _open(browser, path)
    assert page["hg_note"].startswith("hypergradients of 4 of 4 finished trials")
    ticks = _wait(
        browser,
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll("
            "'#fig-hypergradients .xaxislayer-above text')).map(e => e.textContent);"
        ),
        "the hypergradient figure's trial ticks",
    )
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    assert sorted({int(t) for t in ticks}) == [0, 1, 2, 3]
    # the subtitle: all of the note's words, inside the figure's box
    note = browser.execute_script(
        """const fig = document.getElementById('fig-hypergradients');
        const box = fig.querySelector('.main-svg').getBoundingClientRect();
        for (const g of fig.querySelectorAll('g.annotation')) {
          const text = Array.from(g.querySelectorAll('text tspan.line, text'))
            .map(e => e.textContent);
          const r = g.getBoundingClientRect();
          if (text.join(' ').includes('finished trials')) {
            return {lines: Array.from(g.querySelectorAll('tspan.line')).map(e => e.textContent),
                    text: g.querySelector('text').textContent,
                    inside: r.left >= box.left && r.right <= box.right && r.top >= box.top};
          }
        }
        return null;"""
    )
    assert note is not None and note["inside"], note
    words = " ".join(note["lines"]) if note["lines"] else note["text"]
    assert " ".join(words.split()) == " ".join(page["hg_note"].split())
    figure = browser.find_element("id", "fig-hypergradients")
    shot = tmp_path / "report-hypergradients.png"
    figure.screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("OPTUNA_FMD_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / shot.name)
