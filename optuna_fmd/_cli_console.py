"""What the command line prints: a study's setup, a line per trial, the best iterate and the
flags' help, in words a person reads without the source."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from . import tasks
from .outer import STATE_KEY, BestIterate, StateView, read_view
from .sampler import FMDSampler
from .space import Family, Refiner, Schedule, ScheduleSpace
from .visualization import search_events

__all__ = [
    "WIDTH",
    "HelpFormatter",
    "best_words",
    "command_lines",
    "describe_entry",
    "describe_setup",
    "describe_space",
    "describe_trial",
    "format_values",
    "legend",
    "next_steps",
    "print_best",
    "program",
    "progress_wanted",
    "wrap",
]

#: Columns the command line's own lines keep within (progress bars fit the terminal by
#: themselves).
WIDTH = 100


def wrap(text: str, indent: str = "", first: str = "") -> str:
    """``text`` in lines of at most :data:`WIDTH` columns: the first starts with ``first``, the
    others with ``indent``; a word longer than a line (a path, a URL) stays whole."""
    return "\n".join(
        textwrap.wrap(
            text,
            WIDTH,
            initial_indent=first,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )


def format_values(values: Sequence[float]) -> str:
    return "[" + " ".join(f"{v:.3g}" for v in values) + "]"


def describe_trial(
    trial: optuna.trial.FrozenTrial,
    space: ScheduleSpace,
    population: int | None = None,
    best: str = "",
) -> str:
    """A trial in a few lines within :data:`WIDTH` columns: its number, how it was proposed (with
    a population: iterate.member), its value and ``best`` (the best so far, in words), then its
    schedules, indented under the label."""
    view = read_view(trial.system_attrs.get(STATE_KEY)) or StateView(origin="other")
    member = bool(population and population > 1 and view.iterate is not None)
    origin = f"{view.origin} {view.iterate}.{view.member or 0}" if member else view.origin
    value = "failed" if trial.value is None else f"{trial.value:.4f}"
    acc = trial.user_attrs.get("val_accuracy")
    acc_s = f" acc {acc:.3f}" if isinstance(acc, float) else ""
    secs = trial.user_attrs.get("seconds")
    secs_s = f" {secs:.1f}s" if isinstance(secs, float) else ""
    try:
        schedules = space.from_params(trial.params)
    except ValueError:  # a trial that did not suggest every param of the space
        schedules = {}
    scheds = " ".join(f"{name}={format_values(values)}" for name, values in schedules.items())
    head = f"trial {trial.number:3d} {origin:9s} val_loss {value}{acc_s}{secs_s}"
    under = " " * len(f"trial {trial.number:3d} ")
    lines = [wrap(head + (f"  ({best})" if best else ""), indent=under)]
    if scheds:
        lines.append(wrap(scheds, indent=under, first=under))
    return "\n".join(lines)


def search_lines(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> list[str]:
    """What the search decided before it proposed ``trial``, one indented line each (a climb
    step taken, a hypergradient dropped and why): the change from the state stored on the
    trial before it."""
    if trial.number == 0:
        return []
    storage = study._storage
    prev = storage.get_trial_id_from_study_id_trial_number(study._study_id, trial.number - 1)
    before = storage.get_trial_system_attrs(prev).get(STATE_KEY)
    events = search_events(before, trial.system_attrs.get(STATE_KEY))
    return [wrap(e, indent="     ", first="  -> ") for e in events]


def best_words(best: BestIterate | None) -> str:
    """The best so far in a few words: ``best 0.5199, trial 3`` or, for an iterate of several
    seeds, ``best: mean 0.5199 of trials 18, 19``."""
    if best is None:
        return "best: none yet"
    if best.members == 1:
        return f"best {best.value:.4f}, trial {best.trials[0]}"
    return f"best: mean {best.value:.4f} of trials {', '.join(map(str, best.trials))}"


def describe_entry(entry: Schedule | Family, n_params: int) -> str:
    """A space entry in words: ``5 windows``, ``a constant``, ``a cosine times 5 window
    corrections (8 params)``."""
    if isinstance(entry, Schedule):
        return f"{entry.windows} windows"
    if isinstance(entry, Refiner):
        base = type(entry.base).__name__.lower()
        return f"a {base} times {entry.windows} window corrections ({n_params} params)"
    kind = type(entry).__name__.lower()
    return f"a {kind}" + ("" if n_params == 1 else f" ({n_params} params)")


def describe_space(space: ScheduleSpace) -> str:
    """The space in plain words: ``10 hyperparameters (lr: a cosine times 5 window corrections
    (8 params), momentum: a constant, weight_decay: a constant)``."""
    counts = {name: 0 for name in space}
    for param in space.param_names():
        owner = space.owner(param)
        if owner is not None:
            counts[owner[0]] += 1
    entries = ", ".join(f"{n}: {describe_entry(space[n], counts[n])}" for n in space)
    return f"{space.n_params} hyperparameters ({entries})"


def describe_setup(
    task: tasks.Task, space: ScheduleSpace, outer: str, population: int | None
) -> str:
    """One line: the task, its horizon and batch, the outer rule, the seeds per iterate and the
    space in words."""
    seeds = "" if not population or population < 2 else f", {population} seeds per iterate"
    return (
        f"{type(task).__name__} {task.model} ({task.optimizer}), {task.steps} steps, batch "
        f"{task.batch_size}, outer rule {outer!r}{seeds}, {describe_space(space)}"
    )


def legend(population: int | None) -> str:
    """What the short labels of a trial line mean, printed once under the header (wrapped
    within :data:`WIDTH` columns)."""
    return wrap(_legend_words(population), indent="  ")


def _legend_words(population: int | None) -> str:
    if population and population > 1:
        return (
            "legend: `init 0.1` = how the sampler proposed the trial (init: the start, with its "
            "hypergradient; climb: a step along the hypergradient; bracket: the best of a climb's "
            "line, with its hypergradient; scale, explore, pattern: plain probes once the "
            "hypergradient is no longer the slope; `optuna-fmd report` says why), then outer "
            "iterate 0, "
            f"member 1 (each iterate runs {population} seeds, members 0 to {population - 1}); "
            f"(best: mean ...) = the iterate with the lowest mean validation loss over its "
            f"{population} seeds so far"
        )
    return (
        "legend: `init` = how the sampler proposed the trial (init: the start, with its "
        "hypergradient; climb: a step along the hypergradient; bracket: the best of a climb's "
        "line, with its hypergradient; scale, explore, pattern: plain probes once the "
        "hypergradient is no longer the slope; `optuna-fmd report` says why); (best ...) = the "
        "lowest validation loss so far"
    )


def print_best(sampler: FMDSampler, study: optuna.Study, space: ScheduleSpace, out: Any) -> None:
    """Print the best iterate (trials, validation loss, schedules) and any convergence."""
    best = sampler.best_iterate(study)
    if best is None:
        print("no trial with a finite validation loss yet", file=out)
    else:
        which = (
            f"trial {best.trials[0]}"
            if best.members == 1
            else f"trials {', '.join(map(str, best.trials))} (mean over {best.members} seeds)"
        )
        print(f"best: {which}, validation loss {best.value:.4f}", file=out)
        for name, values in space.from_params(best.params).items():
            print(wrap(f"{name}: {format_values(values)}", indent="    ", first="  "), file=out)
    if sampler.is_converged(study):
        print("the outer loop reported convergence (no step improves any more)", file=out)


def program(name: str) -> str:
    """How to call the console script ``name`` from here: the script beside this Python when
    there is one and ``name`` on PATH is not it (``.venv/bin/optuna-fmd`` after ``make demo``,
    relative when under the working directory), else ``name``."""
    beside = Path(sys.executable).parent / name
    if not beside.is_file():
        return name
    found = shutil.which(name)
    if found is not None and os.path.samefile(found, beside):
        return name
    relative = os.path.relpath(beside)
    return str(beside) if relative.startswith("..") else relative


def command_lines(argv: Sequence[str], indent: str = "  ") -> list[str]:
    """``argv`` as shell lines to paste: its program found by :func:`program`, every word quoted,
    a flag kept with its value where they fit on a line, and lines broken with `` \\`` within
    :data:`WIDTH` columns (a word longer than a line sits on a line of its own)."""
    words = [shlex.quote(program(argv[0])), *(shlex.quote(w) for w in argv[1:])]
    pieces: list[list[str]] = []
    for word in words:
        last = pieces[-1] if pieces else []
        if len(last) == 1 and last[0].startswith("--") and not word.startswith("--"):
            last.append(word)  # the flag's value
        else:
            pieces.append([word])
    lines = [indent + words[0]]
    more = indent + "    "

    def fits(line: str, text: str) -> bool:
        return len(line) + 1 + len(text) + 2 <= WIDTH  # room for " \\"

    for piece in pieces[1:]:
        text = " ".join(piece)
        parts = [text] if fits(more, text) or len(piece) == 1 else piece
        for part in parts:
            if fits(lines[-1], part):
                lines[-1] += " " + part
            else:
                lines[-1] += " \\"
                lines.append(more + part)
    return lines


def next_steps(report: Sequence[str], dashboard: Sequence[str], out_dir: str) -> str:
    """The last lines of ``optuna-fmd run`` and ``demo``: the commands that show the study,
    its report (written to ``out_dir``) and optuna-dashboard, ready to paste."""
    return "\n".join(
        [
            wrap(
                f"see the study: its report, an HTML page and PNGs in {out_dir}/ (the best "
                "schedules, the hypergradients, why each trial was proposed):"
            ),
            *command_lines(report),
            "or every trial in optuna-dashboard (in the browser, live while a study runs):",
            *command_lines(dashboard),
        ]
    )


def progress_wanted(no_progress: bool, stream: Any = None) -> bool:
    """Progress bars only on a terminal: none with ``--no-progress`` or when ``stream`` (the
    bars' stream, default stderr) is a file or a pipe, so a log holds no escape codes."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not no_progress and callable(isatty) and bool(isatty())


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default, except a switch's or a default of ``None`` (the
    flag's help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return action.help
        if "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
