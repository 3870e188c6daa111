"""A self-contained HTML report of an FMD study (plots and a table of outer steps) plus PNGs."""

from __future__ import annotations

import base64
import datetime
import html
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._regret import plot_regret
from ._schedules import _complete, _split_params, plot_hypergradients, plot_schedules

if TYPE_CHECKING:
    import optuna

__all__ = ["OuterStep", "write_report"]


class OuterStep(NamedTuple):
    """One trial (outer step) of a study, as the report's table shows it.

    Attributes:
        number: The trial number.
        state: The trial state's name (``"COMPLETE"``, ``"FAIL"``, ...).
        origin: How the sampler proposed it (``"init"``, ``"step"``, ``"backtrack"``, ...), from
            the FMD sampler's state; ``""`` for a trial another sampler proposed.
        value: The objective value (validation loss), ``None`` if there is none.
        val_accuracy: ``user_attrs["val_accuracy"]``, if any.
        seconds: ``user_attrs["seconds"]`` (the episode's duration), if any.
        diverged: ``user_attrs["diverged"]``.
        schedules: ``{hyper: [window values]}`` from the trial's params.
    """

    number: int
    state: str
    origin: str
    value: float | None
    val_accuracy: float | None
    seconds: float | None
    diverged: bool
    schedules: dict[str, list[float]]


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _get_outer_steps(study: optuna.Study) -> list[OuterStep]:
    """Every trial of ``study`` in order, with what the report's table shows of it."""
    from optuna_fmd.sampler import STATE_KEY

    rows = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.system_attrs.get(STATE_KEY)
        origin = state.get("origin", "") if isinstance(state, dict) else ""
        split = _split_params(trial.params)
        schedules = {h: v for h, w in split.items() if (v := _complete(w)) is not None}
        rows.append(
            OuterStep(
                number=trial.number,
                state=trial.state.name,
                origin=str(origin or ""),
                value=trial.value if len(study.directions) == 1 else None,
                val_accuracy=_number(trial.user_attrs.get("val_accuracy")),
                seconds=_number(trial.user_attrs.get("seconds")),
                diverged=trial.user_attrs.get("diverged") is True,
                schedules=schedules,
            )
        )
    return rows


def _fmt(v: float | None, spec: str) -> str:
    if v is None:
        return ""
    return format(v, spec) if math.isfinite(v) else str(v)


def _table(rows: Sequence[OuterStep]) -> str:
    head = ("trial", "state", "origin", "value", "val_accuracy", "seconds", "schedules")
    out = ['<table class="steps">', "<thead><tr>"]
    out += [f"<th>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        scheds = "<br>".join(
            f"<b>{html.escape(h)}</b> " + " ".join(f"{v:.3g}" for v in vals)
            for h, vals in r.schedules.items()
        )
        value = _fmt(r.value, ".4f") + (" (diverged)" if r.diverged else "")
        cells = (
            str(r.number),
            r.state,
            r.origin,
            value,
            _fmt(r.val_accuracy, ".3f"),
            _fmt(r.seconds, ".1f"),
        )
        cls = ' class="fail"' if r.state == "FAIL" or r.diverged else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells))
        out.append(f'<td class="sched">{scheds}</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def _summary(studies: Sequence[optuna.Study]) -> str:
    out = [
        '<table class="summary"><thead><tr><th>study</th><th>trials</th><th>complete</th>',
        "<th>failed</th><th>best trial</th><th>best value</th></tr></thead><tbody>",
    ]
    for study in studies:
        trials = study.get_trials(deepcopy=False)
        states = [t.state.name for t in trials]
        finite = [
            t
            for t in trials
            if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
        ]
        best = min(finite, key=lambda t: t.value) if finite else None  # type: ignore[arg-type,return-value]
        cells = (
            study.study_name,
            str(len(trials)),
            str(states.count("COMPLETE")),
            str(states.count("FAIL")),
            "" if best is None else str(best.number),
            "" if best is None else f"{best.value:.4f}",
        )
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; } tr.fail td { color: #b22; }
td.sched { font-family: ui-monospace, monospace; font-size: 0.85em; }
.note { color: #666; font-size: 0.85em; }
"""


def _png_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" width="800">'


def write_report(
    study: optuna.Study,
    out: str | os.PathLike[str],
    *,
    vs: Sequence[optuna.Study] = (),
) -> Path:
    """Write ``<out>/report.html`` and the figures as PNGs; return the HTML file's path.

    The HTML file is self-contained (plotly.js inline, each figure also as an embedded PNG for
    readers without JavaScript): schedules and hypergradients of ``study``, best value against
    wall-clock time of ``study`` and the ``vs`` studies, and a table of the outer steps.
    ``schedules.png``, ``hypergradients.png`` and ``regret.png`` are written beside it.

    Args:
        study: The FMD study.
        out: Output directory (created if missing).
        vs: Studies to compare with in the regret plot and summary (e.g. a TPE study).

    Example:
        >>> write_report(study, "report", vs=[tpe_study])  # doctest: +SKIP
        PosixPath('report/report.html')
    """
    from ._schedules import _get_schedule_info
    from .matplotlib._axes import figure_of
    from .matplotlib._regret import _regret_axes
    from .matplotlib._schedules import _hypergradients_axes, _schedules_axes

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    studies = [study, *vs]
    figures = [
        (
            "schedules",
            "Schedules",
            plot_schedules(study),
            _schedules_axes(_get_schedule_info(study), pyplot=False),
        ),
        (
            "hypergradients",
            "Hypergradients",
            plot_hypergradients(study),
            _hypergradients_axes(study, pyplot=False),
        ),
        (
            "regret",
            "Best value vs wall-clock time",
            plot_regret(studies),
            _regret_axes(studies, pyplot=False),
        ),
    ]
    name = html.escape(study.study_name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>optuna-fmd report: {name}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>optuna-fmd report: {name}</h1>",
        _summary(studies),
    ]
    for i, (stem, title, fig, axes) in enumerate(figures):
        png = outdir / f"{stem}.png"
        figure_of(axes).savefig(png, dpi=100)
        parts.append(f'<h2 id="{stem}">{html.escape(title)}</h2>')
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"fig-{stem}"))
        parts.append(f"<noscript>{_png_tag(png, title)}</noscript>")
        parts.append(f'<p class="note">Static image: <a href="{stem}.png">{stem}.png</a></p>')
    parts.append('<h2 id="outer-steps">Outer steps</h2>')
    parts.append(_table(_get_outer_steps(study)))
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f'<p class="note">Written by optuna-fmd on {stamp}.</p>')
    parts.append("</body></html>")
    path = outdir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
