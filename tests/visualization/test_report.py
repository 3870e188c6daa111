"""``write_report``: a self-contained HTML page (figures, table of outer steps) and PNGs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import create_trial

from optuna_fmd.sampler import CHECK_ATTR, STATE_KEY
from optuna_fmd.visualization import write_report
from optuna_fmd.visualization._report import _get_outer_steps

from ._studies import mixed_study, trial

PNG = b"\x89PNG\r\n\x1a\n"


def test_outer_steps_table_data() -> None:
    study = mixed_study()
    t = trial(0.4, (0.1, 0.05), 0.85, at=10, attrs={"val_accuracy": 0.9, "seconds": 3.5})
    t.system_attrs = {STATE_KEY: {"origin": "step", "base": 1}}
    study.add_trial(t)
    rows = _get_outer_steps(study)
    assert [r.number for r in rows] == [0, 1, 2, 3, 4, 5]
    assert [r.state for r in rows][2:4] == ["FAIL", "COMPLETE"]
    assert rows[2].value is None and rows[2].schedules == {"lr": [0.2, 0.01], "momentum": [0.7]}
    assert rows[3].diverged and not rows[0].diverged
    assert rows[5].origin == "step" and rows[0].origin == ""  # added trials: no sampler state
    assert rows[5].val_accuracy == 0.9 and rows[5].seconds == 3.5 and rows[0].seconds is None


def test_outer_steps_of_a_trial_without_params() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(value=1.0, user_attrs={"val_accuracy": "bad"}))
    (row,) = _get_outer_steps(study)
    assert row.schedules == {} and row.val_accuracy is None and row.value == 1.0


def _cells(html: str) -> list[list[str]]:
    body = html.split('<table class="steps">', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("<tr")[2:]]


def test_report_has_figures_table_and_pngs(tmp_path: Path) -> None:
    fmd, tpe = mixed_study("fmd"), optuna.create_study(study_name="tpe")
    tpe.add_trial(trial(0.7, (0.3, 0.3), 0.5, at=1))
    path = write_report(fmd, tmp_path / "out", vs=[tpe])
    assert path == tmp_path / "out" / "report.html"
    html = path.read_text()
    for stem in ("schedules", "hypergradients", "regret"):
        assert f'id="fig-{stem}"' in html
        assert (tmp_path / "out" / f"{stem}.png").read_bytes()[:8] == PNG
    # self-contained: plotly.js inline once, static images embedded, nothing fetched
    assert html.count("<noscript><img") == 3 and 'src="data:image/png;base64,' in html
    assert not re.search(r"<script[^>]+src=", html) and "Plotly.newPlot" in html
    assert "trial 1 (best)" in html and "tpe" in html  # schedule figure, regret vs study
    assert 'id="hypergradients-note">hypergradients of 2 of 4 finished trials' in html
    rows = _cells(html)
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4"]
    # trial, state, origin, hypergradient, value, val_accuracy, seconds, schedules
    assert rows[2][1] == "FAIL" and rows[1][4] == "0.5000" and rows[3][4] == "inf (diverged)"
    assert rows[1][3] == "yes" and rows[3][3] == "no: diverged" and rows[2][3] == "no: fail"
    assert rows[1][7] == "<b>lr</b> 0.1 0.02<br><b>momentum</b> 0.8"
    summary = html.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    assert "<td>fmd</td><td>5</td><td>4</td><td>1</td><td>trial 1</td><td>0.5000</td>" in summary
    assert "Best: trial 1, value 0.5000." in html


def test_report_of_a_single_trial_and_of_an_empty_study(tmp_path: Path) -> None:
    one = optuna.create_study(study_name="one<&>")
    one.add_trial(trial(0.3, (0.1, 0.1), 0.9))
    html = write_report(one, tmp_path / "one").read_text()
    assert "one&lt;&amp;&gt;" in html and len(_cells(html)) == 1
    empty = write_report(optuna.create_study(study_name="empty"), tmp_path / "empty")
    assert _cells(empty.read_text()) == [] and (tmp_path / "empty" / "regret.png").exists()


def test_the_outer_steps_explain_iterates_probes_and_checks(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="pop")
    members = {"kind": "members", "point": 0, "cosine": 0.99, "norm_ratio": 1.2, "agrees": True}
    probe = {"kind": "probe", "point": 1, "predicted": -0.04, "found": -0.06, "agrees": True}
    for number in range(6):
        it, member = divmod(number, 2)
        attrs: dict[str, Any] = {"iterate": it, "member": member}
        attrs |= {CHECK_ATTR: [None, members, probe][it]} if it else {}
        t = trial(0.5 - 0.1 * it, (0.1, 0.05), 0.9, at=number, attrs=attrs)
        state = {"origin": "init", "hypergradient": it == 0}
        state |= {"probe": {"kind": "climb", "alpha": 0.1}} if it else {}
        t.system_attrs = {STATE_KEY: state}
        study.add_trial(t)
    page = write_report(study, tmp_path).read_text()
    legend = page.split('id="outer-steps-legend">', 1)[1].split("</ul>", 1)[0]
    # the iterate numbers in words, with this study's own example
    assert "<code>2.1</code> reads outer iterate 2, member 1" in legend
    assert "as 2 trials, its members 0 and 1" in legend and "trials 4, 5 are one point" in legend
    # what a plain probe is, and each kind this study ran
    assert "<i>no: plain probe</i>: a plain training episode" in legend
    assert "<i>climb</i>: a step along the hypergradient" in legend
    assert "smallest cosine" in legend and "the probes decide" in legend
    # the checks name the iterate they checked, and its trials
    rows = _cells(page)
    assert [r[1] for r in rows] == ["0.0", "0.1", "1.0", "1.1", "2.0", "2.1"]
    assert "the hypergradients of iterate 0&#x27;s members (trials 0, 1) agree" in rows[2][4]
    assert "the hypergradient of iterate 1 (trials 2, 3) predicted -0.04" in rows[4][4]
    assert " of 0 " not in page and 'title="outer iterate 2, member 1"' in page
