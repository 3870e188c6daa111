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

from ..space import ScheduleSpace
from ._classes import plot_class_weights
from ._regret import plot_regret
from ._schedules import (
    _get_hypergradient_info,
    _get_schedule_info,
    class_weight_entries,
    plot_hypergradients,
    plot_schedules,
)
from ._study import (
    StudyNames,
    best_iterate,
    check_words,
    describe_best,
    hypergradient_status,
    luckiest,
    origin_words,
    search_events,
    space_of,
    trial_iterate,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["OuterStep", "write_report"]


class OuterStep(NamedTuple):
    """One trial (outer step) of a study, as the report's table shows it.

    Attributes:
        number: The trial number.
        state: The trial state's name (``"COMPLETE"``, ``"FAIL"``, ...).
        origin: The kind of proposal (``"start"``, ``"climb"``, ``"bracket"``, ``"scale"``,
            ``"vertex"``, ``"explore"``, ``"pattern"``, ``"grad"`` and ``"line"`` (earlier
            releases), ``"converged"``, ``"step"``, ``"backtrack"``, ``"retry"``),
            from the FMD sampler's state; ``""`` for a trial another sampler proposed.
        value: The objective value (validation loss), ``None`` if there is none.
        val_accuracy: ``user_attrs["val_accuracy"]``, if any.
        seconds: ``user_attrs["seconds"]`` (the episode's duration), if any.
        diverged: ``user_attrs["diverged"]``.
        schedules: ``{entry: [window values]}``, read through the study's space.
        why: Why the sampler proposed it, in words, and what the search decided before it (a
            climb step taken, a hypergradient dropped); ``""``: not an FMD sampler's trial.
        hypergradient: Whether it computed a hypergradient, in words (``"yes"``, ``"no: plain
            probe"``, ...).
        check: The sampler's check of the latest hypergradient against the probe along it
            (or its members against each other), in words, on the trial proposed right after
            it (``""``: none).
        iterate: ``(outer iterate, member)`` with a population, else ``None``.
        params: ``{entry: {param: value}}`` of its family params (``peak``, ``warmup``,
            ``value``, a refiner's ``delta_<k>``).
        best: Whether it belongs to the best iterate (by member mean).
    """

    number: int
    state: str
    origin: str
    value: float | None
    val_accuracy: float | None
    seconds: float | None
    diverged: bool
    schedules: dict[str, list[float]]
    why: str = ""
    hypergradient: str = ""
    check: str = ""
    iterate: tuple[int, int] | None = None
    params: dict[str, dict[str, float]] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)
    best: bool = False


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _get_outer_steps(study: optuna.Study, space: ScheduleSpace | None = None) -> list[OuterStep]:
    """Every trial of ``study`` in order, with what the report's table shows of it."""
    from optuna_fmd.sampler import STATE_KEY

    space = space_of(study, space)
    names = StudyNames(space)
    best = best_iterate(study)
    best_numbers = set(best.trials) if best is not None else set()
    trials = study.get_trials(deepcopy=False)
    members: dict[int, list[int]] = {}  # the trials of each outer iterate
    for trial in trials:
        if (slot := trial_iterate(trial)) is not None:
            members.setdefault(slot[0], []).append(trial.number)
    rows, before = [], None
    for trial in trials:
        order = space.param_names() if space is not None else list(trial.distributions)
        raw = trial.system_attrs.get(STATE_KEY)
        kind, why = origin_words(raw, order)
        # what the search decided before proposing it: a climb step taken, a hypergradient
        # dropped
        why = "; ".join(w for w in (why, *search_events(before, raw)) if w)
        before = raw
        rows.append(
            OuterStep(
                number=trial.number,
                state=trial.state.name,
                origin=kind,
                value=trial.value if len(study.directions) == 1 else None,
                val_accuracy=_number(trial.user_attrs.get("val_accuracy")),
                seconds=_number(trial.user_attrs.get("seconds")),
                diverged=trial.user_attrs.get("diverged") is True,
                schedules=names.schedules(trial.params, trial.user_attrs),
                why=why,
                hypergradient=hypergradient_status(trial),
                check=check_words(trial, members),
                iterate=trial_iterate(trial),
                params=names.family_params(trial.params, trial.user_attrs),
                best=trial.number in best_numbers,
            )
        )
    return rows


def _fmt(v: float | None, spec: str) -> str:
    if v is None:
        return ""
    return format(v, spec) if math.isfinite(v) else str(v)


def _params_cell(params: dict[str, dict[str, float]]) -> str:
    """``<b>lr</b> peak 0.4 warmup 0.125 final 0 delta 0 0 0`` per entry."""
    lines = []
    for entry, ps in params.items():
        plain = [f"{html.escape(k)} {v:.3g}" for k, v in ps.items() if not k.startswith("delta_")]
        deltas = [f"{v:.3g}" for k, v in ps.items() if k.startswith("delta_")]
        if deltas:
            plain.append("delta " + " ".join(deltas))
        lines.append(f"<b>{html.escape(entry)}</b> " + " ".join(plain))
    return "<br>".join(lines)


def _table(rows: Sequence[OuterStep]) -> str:
    population = any(r.iterate is not None for r in rows)
    families = any(r.params for r in rows)
    head = ["trial"] + (["iterate"] if population else [])
    head += ["state", "origin", "hypergradient", "value", "val_accuracy", "seconds"]
    head += (["params"] if families else []) + ["schedules"]
    out = ['<table class="steps">', "<thead><tr>"]
    out += [f"<th>{h}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in rows:
        scheds = "<br>".join(
            f"<b>{html.escape(h)}</b> " + " ".join(f"{v:.3g}" for v in vals)
            for h, vals in r.schedules.items()
        )
        value = _fmt(r.value, ".4f") + (" (diverged)" if r.diverged else "")
        cells = [str(r.number)]
        if population:
            cells.append("" if r.iterate is None else f"{r.iterate[0]}.{r.iterate[1]}")
        cells += [r.state]
        tips = {1: f"outer iterate {r.iterate[0]}, member {r.iterate[1]}"} if r.iterate else {}
        origin = html.escape(r.origin)
        if r.why and r.why != r.origin:
            origin += f'<br><span class="why">{html.escape(r.why)}</span>'
        hypergradient = html.escape(r.hypergradient)
        if r.check:
            hypergradient += f'<br><span class="why check">{html.escape(r.check)}</span>'
        tail = [
            hypergradient,
            html.escape(value),
            html.escape(_fmt(r.val_accuracy, ".3f")),
            html.escape(_fmt(r.seconds, ".1f")),
        ]
        classes = [
            c for c, on in (("fail", r.state == "FAIL" or r.diverged), ("best", r.best)) if on
        ]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        out.append(
            f"<tr{cls}>"
            + "".join(
                (f'<td title="{html.escape(tips[i])}">' if i in tips else "<td>")
                + f"{html.escape(c)}</td>"
                for i, c in enumerate(cells)
            )
        )
        out.append(f'<td class="origin">{origin}</td>')
        out.append("".join(f"<td>{c}</td>" for c in tail))
        if families:
            out.append(f'<td class="sched">{_params_cell(r.params)}</td>')
        out.append(f'<td class="sched">{scheds}</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


#: What each kind of plain probe tries, in words (the report's legend of its table).
_PROBES = {
    "climb": "a step along the hypergradient from the best point, each further one twice as "
    "far while the value improves",
    "scale": "the start's lr scaled up or down, to find its scale",
    "vertex": "the lr scale at the vertex of a parabola through the best scales",
    "explore": "a random move around the best point (then its mirror)",
    "pattern": "one param moved up or down from the best point (a coarse pass first)",
    "line": "a step along the hypergradient",
    "converged": "the best point again",
}


def _steps_legend(rows: Sequence[OuterStep]) -> str:
    """What the columns of the outer steps' table mean, in words, for this study: its iterate
    numbers (with a population), its plain probes and the checks of its hypergradients."""
    items = []
    iterates: dict[int, list[int]] = {}
    for r in rows:
        if r.iterate is not None:
            iterates.setdefault(r.iterate[0], []).append(r.number)
    if iterates:
        size = max(len(m) for m in iterates.values())
        k, trials = [(k, m) for k, m in iterates.items() if len(m) == size][-1]
        names = "0 and 1" if size == 2 else f"0 to {size - 1}"
        items.append(
            f"<b>iterate</b>: <code>{k}.1</code> reads outer iterate {k}, member 1. The "
            f"sampler runs each point it tries (an outer iterate) as {size} trials, its members "
            f"{names}: the same params and schedules, each on a seed of its own. It "
            "compares iterates by their members' mean value and averages their "
            f"hypergradients: trials {', '.join(map(str, trials))} are one point, iterate {k}."
        )
    items.append("<b>origin</b>: how the sampler proposed the trial, and why (in grey).")
    kinds = [
        r.origin for r in rows if r.hypergradient == "no: plain probe" and r.origin in _PROBES
    ]
    probes = "; ".join(f"<i>{k}</i>: {_PROBES[k]}" for k in dict.fromkeys(kinds))
    items.append(
        "<b>hypergradient</b>: <i>yes</i>: the episode computed the hypergradient, the "
        "derivative of the validation loss with respect to each param, alongside training; "
        "the sampler steps along it. <i>no: plain probe</i>: a plain training episode (no "
        "hypergradient, so cheaper) that only measures the value at a point the sampler "
        "wants to try; the best point moves to a probe that beats it."
    )
    if probes:
        items.append(f"<b>plain probes</b> in this study: {probes}.")
    items.append(
        "<b>check</b> (grey, under the hypergradient, on the trials proposed right after "
        "it): the sampler's check of the latest hypergradient, against the first probe along "
        "it (the change of the value it predicted over the step, and the change the probe "
        "found) or, with a population, between the iterate's members (the smallest cosine "
        "between two of their hypergradients, 1 for one direction, and how many times "
        "larger the largest is than the smallest); where they disagree, the probes decide."
    )
    items.append(
        "<b>params</b>: the family parameters (a refiner's corrections as delta); "
        "<b>schedules</b>: the window values they stand for. Shaded: the best iterate."
    )
    return (
        '<ul class="note" id="outer-steps-legend">'
        + "".join(f"<li>{item}</li>" for item in items)
        + "</ul>"
    )


def _summary(studies: Sequence[optuna.Study]) -> str:
    out = [
        '<table class="summary"><thead><tr><th>study</th><th>trials</th><th>complete</th>',
        "<th>failed</th><th>best trial</th><th>best value</th><th>best single trial</th>",
        "</tr></thead><tbody>",
    ]
    for study in studies:
        trials = study.get_trials(deepcopy=False)
        states = [t.state.name for t in trials]
        best = best_iterate(study)
        if best is None:
            which = value = lucky = ""
        else:
            which = describe_best(best).rsplit(", value ", 1)[0]
            value = f"{best.value:.4f}"
            single = luckiest(study, best)
            lucky = "" if single is None else f"trial {single[0]}: {single[1]:.4f} (one seed)"
        cells = (
            study.study_name,
            str(len(trials)),
            str(states.count("COMPLETE")),
            str(states.count("FAIL")),
            which,
            value,
            lucky,
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
tr.best td { background: #eef7ee; } .why { color: #555; font-size: 0.85em; }
p.best { font-size: 1.05em; }
.note { color: #666; font-size: 0.85em; } ul.note { padding-left: 1.2em; }
ul.note li { margin-bottom: 0.3em; }
"""


def _best_paragraph(study: optuna.Study) -> str:
    best = best_iterate(study)
    if best is None:
        return '<p class="best" id="best">No trial with a finite value yet.</p>'
    text = f"Best: {describe_best(best)}"
    if best.members > 1:
        text += " (the iterate with the best mean over its seeds, as the sampler compares them)"
    text += "."
    single = luckiest(study, best)
    if single is not None:
        text += (
            f" The luckiest single trial, {single[0]} ({single[1]:.4f} on one "
            "seed), is not what the sampler compares."
        )
    return f'<p class="best" id="best">{html.escape(text)}</p>'


def _png_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" width="800">'


def _figures(
    study: optuna.Study, studies: Sequence[optuna.Study], space: ScheduleSpace | None
) -> list[tuple[str, str, Any, Any]]:
    """``(stem, title, plotly figure, matplotlib axes)`` of each figure of the report: the
    class weights' only where the space has class weights."""
    from .matplotlib._classes import _class_weights_axes
    from .matplotlib._regret import _regret_axes
    from .matplotlib._schedules import _hypergradients_axes, _schedules_axes

    figures = [
        (
            "schedules",
            "Schedules",
            plot_schedules(study, space=space),
            _schedules_axes(_get_schedule_info(study, space), pyplot=False),
        ),
        (
            "hypergradients",
            "Hypergradients",
            plot_hypergradients(study, space=space),
            _hypergradients_axes(study, pyplot=False, space=space),
        ),
    ]
    if class_weight_entries(space):
        figures.append(
            (
                "class-weights",
                "Class weights",
                plot_class_weights(study, space=space),
                _class_weights_axes(study, pyplot=False, space=space),
            )
        )
    figures.append(
        (
            "regret",
            "Best value vs wall-clock time",
            plot_regret(studies),
            _regret_axes(studies, pyplot=False),
        )
    )
    return figures


def write_report(
    study: optuna.Study,
    out: str | os.PathLike[str],
    *,
    vs: Sequence[optuna.Study] = (),
    space: ScheduleSpace | None = None,
) -> Path:
    """Write ``<out>/report.html`` and the figures as PNGs; return the HTML file's path.

    The HTML file is self-contained (plotly.js inline, each figure also as an embedded PNG for
    readers without JavaScript): schedules and hypergradients of ``study``, best value against
    wall-clock time of ``study`` and the ``vs`` studies, and a table of the outer steps (per
    trial: how and why the sampler proposed it, whether it computed a hypergradient, its
    family params and window schedules). "Best" is the outer iterate with the best mean over
    its members, as :meth:`~optuna_fmd.FMDSampler.best_iterate` says; the luckiest single
    trial is shown as such. ``schedules.png``, ``hypergradients.png`` and ``regret.png`` are
    written beside it; where the space has class weights (an imbalanced task), also a figure
    of them and of each class's validation accuracy, ``class-weights.png``.

    Args:
        study: The FMD study.
        out: Output directory (created if missing).
        vs: Studies to compare with in the regret plot and summary (e.g. a TPE study).
        space: The study's :class:`~optuna_fmd.ScheduleSpace` (default: its FMDSampler's,
            else read from the param names and the window values the objective stored).

    Example:
        >>> write_report(study, "report", vs=[tpe_study])  # doctest: +SKIP
        PosixPath('report/report.html')
    """
    from .matplotlib._axes import figure_of

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    studies = [study, *vs]
    space = space_of(study, space)
    hg_note = _get_hypergradient_info(study, space).note
    figures = _figures(study, studies, space)
    name = html.escape(study.study_name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>optuna-fmd report: {name}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>optuna-fmd report: {name}</h1>",
        _summary(studies),
        _best_paragraph(study),
    ]
    for i, (stem, title, fig, axes) in enumerate(figures):
        png = outdir / f"{stem}.png"
        figure_of(axes).savefig(png, dpi=100)
        parts.append(f'<h2 id="{stem}">{html.escape(title)}</h2>')
        if stem == "hypergradients" and hg_note:
            parts.append(
                f'<p class="panel-note" id="hypergradients-note">{html.escape(hg_note)}</p>'
            )
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"fig-{stem}"))
        parts.append(f"<noscript>{_png_tag(png, title)}</noscript>")
        parts.append(f'<p class="note">Static image: <a href="{stem}.png">{stem}.png</a></p>')
    parts.append('<h2 id="outer-steps">Outer steps</h2>')
    steps = _get_outer_steps(study, space)
    parts.append(_steps_legend(steps))
    parts.append(_table(steps))
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f'<p class="note">Written by optuna-fmd on {stamp}.</p>')
    parts.append("</body></html>")
    path = outdir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
