"""What the plots, the report and the dashboard read of an FMD study, in one place.

Param names are read through the study's :class:`~optuna_fmd.space.ScheduleSpace` when it is at
hand (given, or the study's :class:`~optuna_fmd.FMDSampler`'s), otherwise with
:func:`optuna_fmd.space.parse_param` and the window values the objective stores
(``user_attrs["schedules"]``). "Best" is one notion everywhere: the outer iterate with the best
mean value over its members (``FMDSampler.best_iterate``); without a population, the best trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeGuard

from ..outer import (
    CHECK_ATTR,
    STATE_KEY,
    BestIterate,
    MembersCheck,
    StateView,
    read_check,
    read_view,
    sense_sign,
    stored_view,
)
from ..outer import best_iterate as outer_best_iterate
from ..sampler import FMDSampler
from ..space import ParamRef, ScheduleSpace, parse_param

if TYPE_CHECKING:
    import optuna

__all__ = [
    "StudyNames",
    "best_iterate",
    "check_words",
    "hypergradient_status",
    "luckiest",
    "origin_words",
    "search_events",
    "stored_population",
]


def _real(v: object) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def space_of(study: optuna.Study, space: ScheduleSpace | None = None) -> ScheduleSpace | None:
    """``space``, else the space of the study's own sampler (an FMDSampler), else ``None``."""
    if space is not None:
        return space
    found = getattr(getattr(study, "sampler", None), "space", None)
    return found if isinstance(found, ScheduleSpace) else None


class StudyNames:
    """Reads a study's trial params as schedules: through ``space`` if given, else by
    :func:`~optuna_fmd.space.parse_param` with the entries the objective stored."""

    def __init__(self, space: ScheduleSpace | None = None) -> None:
        self.space = space

    def ref(self, name: str, entries: Sequence[str] | None = None) -> ParamRef | None:
        """What param ``name`` stands for (``None``: not a schedule param)."""
        if self.space is not None:
            return self.space.parse(name)
        return parse_param(name, entries)

    def schedules(
        self, params: Mapping[str, Any], user_attrs: Mapping[str, Any]
    ) -> dict[str, list[float]]:
        """``{entry: [window values]}`` of a trial (``{}``: no complete schedule)."""
        if self.space is not None:
            try:
                return self.space.from_params({n: float(v) for n, v in params.items() if _real(v)})
            except ValueError:  # a trial that did not suggest every param of the space
                pass
        stored = user_attrs.get("schedules")  # a family space's window values
        if isinstance(stored, dict) and stored:
            return {
                str(h): [float(x) for x in v]
                for h, v in stored.items()
                if isinstance(v, list) and v and all(_real(x) for x in v)
            }
        windows: dict[str, dict[int, float]] = {}
        for name, value in params.items():
            ref = self.ref(name)
            if ref is not None and ref.kind == "window" and _real(value):
                assert ref.window is not None
                windows.setdefault(ref.entry, {})[ref.window] = float(value)
        return {
            h: [w[k] for k in range(len(w))]
            for h, w in windows.items()
            if sorted(w) == list(range(len(w)))
        }

    def family_params(
        self, params: Mapping[str, Any], user_attrs: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """``{entry: {param: value}}`` of a trial's family params (``peak``, ``value``, and
        a refiner's corrections as ``delta_<k>``), in the trial's param order."""
        stored = user_attrs.get("schedules")
        entries = list(stored) if isinstance(stored, dict) and stored else None
        out: dict[str, dict[str, float]] = {}
        for name, value in params.items():
            ref = self.ref(name, entries)
            if ref is not None and ref.kind != "window" and _real(value):
                out.setdefault(ref.entry, {})[ref.local] = float(value)
        return out


def trial_iterate(trial: optuna.trial.FrozenTrial) -> tuple[int, int] | None:
    """``(iterate, member)`` of a population member, from the sampler state or the objective's
    user attrs; ``None`` for a trial outside a population."""
    view = read_view(trial.system_attrs.get(STATE_KEY))
    if view is not None and view.iterate is not None and view.iterate >= 0 <= (view.member or 0):
        return view.iterate, view.member or 0
    it, member = trial.user_attrs.get("iterate"), trial.user_attrs.get("member", 0)
    if isinstance(it, int) and isinstance(member, int) and it >= 0 <= member:
        return it, member
    return None


def stored_population(study: optuna.Study) -> int:
    """Members per outer iterate, as the sampler stored them: the population of the study's
    own :class:`~optuna_fmd.FMDSampler` when it runs one, else the most members an iterate's
    stored claims name (a claimed member counts; 1: none)."""
    own = getattr(study, "sampler", None)
    if isinstance(own, FMDSampler) and own.population is not None:
        return own.population
    slots = (trial_iterate(t) for t in study.get_trials(deepcopy=False))
    return max((s[1] + 1 for s in slots if s is not None), default=1)


def _member_view(trial: optuna.trial.FrozenTrial) -> StateView | None:
    """The state stored on ``trial``, its iterate and member those :func:`trial_iterate`
    reads (the objective's user attrs where the state names none)."""
    view = stored_view(trial)
    slot = trial_iterate(trial)
    if slot is None:
        return view
    return replace(view or StateView(), iterate=slot[0], member=slot[1])


def best_iterate(study: optuna.Study) -> BestIterate | None:
    """The study's best point, the record :meth:`optuna_fmd.FMDSampler.best_iterate` returns
    (``None``: no finite value yet): with a population, the outer iterate with the best mean
    value over its members (:func:`stored_population` of them); else the best trial."""
    if len(study.directions) != 1:
        return None
    return outer_best_iterate(study, stored_population(study), _member_view)


def luckiest(study: optuna.Study, best: BestIterate) -> tuple[int, float] | None:
    """``(number, value)`` of the study's single best trial (the earlier on a tie) when it is
    not ``best`` itself (with a population, ``study.best_trial`` is a lucky member), else
    ``None``."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    sense = sense_sign(study.direction == StudyDirection.MAXIMIZE)
    done = [
        (t.number, float(t.value))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    if not done:
        return None
    single = min(done, key=lambda p: (sense * p[1], p[0]))
    return None if best.trials == (single[0],) else single


def describe_best(best: BestIterate | None) -> str:
    """One line: ``trials 6, 7 (mean over 2 seeds), value 0.1072``."""
    if best is None:
        return "no trial with a finite value yet"
    if best.members == 1:
        which = f"trial {best.trials[0]}"
    else:
        which = f"trials {', '.join(map(str, best.trials))} (mean over {best.members} seeds)"
    return f"{which}, value {best.value:.4f}"


#: What each kind of proposal of the outer rules is, in words.
_ORIGINS = {
    "start": "start: the space's initial schedules",
    "init": "start: the space's initial schedules",
    "scale": "scale search: the lr scale times {factor} of the start (plain episode)",
    "vertex": "scale search: the parabola's vertex through the best scale and its neighbours, "
    "lr times {factor} of the start (plain episode)",
    "explore": "exploration: {draw}, {sigma} units a parameter, {moved} moved from the best "
    "point (plain episode)",
    "pattern": "{pass_}: {moved} moved from the best point (plain episode)",
    "climb": "climb: a step of {alpha} units along the hypergradient (plain episode)",
    "bracket": "climb: the vertex of the line's bracket, {alpha} units along the hypergradient, "
    "with its hypergradient: the next direction",
    "grad": "hypergradient at the best point: gives the next search direction",
    "line": "line search along the hypergradient direction, step {alpha} units (plain episode)",
    "converged": "converged: the best point again",
    "step": "{rule} step from trial {base}",
    "backtrack": "back to the best trial {base} after a worse step, {rule} step from it",
    "retry": "retry of failed trial {retry_of}",
}


def origin_words(state: object, names: Sequence[str] = ()) -> tuple[str, str]:
    """``(kind, why)`` of a trial from the sampler state stored on it (``STATE_KEY``, raw or
    a :class:`~optuna_fmd.outer.StateView`): the proposal's kind (``start``, ``climb``,
    ``bracket``, ``scale``, ``vertex``, ``explore``, ``pattern``, ``grad`` and ``line`` (earlier
    releases), ``converged``, ``step``,
    ``backtrack``, ``retry``) and why the sampler chose it, in words. ``names`` are the
    space's param names in the sampler's order (to say which moved). ``("", "")`` for a trial
    the FMD sampler did not propose."""
    view = state if isinstance(state, StateView) else read_view(state)
    if view is None:
        return "", ""
    kind = view.probe if view.origin == "init" and view.probe else view.origin
    moved = "a parameter"
    x, inc = view.x, view.incumbent
    if x is not None and inc is not None and len(x) == len(inc) == len(names):
        changed = [n for n, a, b in zip(names, x, inc, strict=True) if a != b]
        if changed:
            moved = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
    template = _ORIGINS.get(kind)
    if template is None:
        return kind, kind
    return kind, template.format(
        rule=view.rule,
        base=view.base,
        retry_of=view.retry_of,
        factor="?" if view.offset is None else f"{math.exp(view.offset):.3g}",
        alpha="?" if view.alpha is None else f"{view.alpha:.3g}",
        pass_="coarse pass" if view.coarse else "pattern search",
        draw="the mirror of the draw before" if view.mirror else "a Gaussian draw",
        sigma="?" if view.sigma is None else f"{view.sigma:.3g}",
        moved=moved,
    )


_HANDOVER = {
    "contradicted": "contradicted (members pointing apart, or no better point along it)",
    "exploding": "exploding (the lr is too high for it to mean anything)",
    "blocked": "of no use (zero, or every param at a bound)",
}


def search_events(before: object, after: object) -> list[str]:
    """What the search rule decided between two consecutive proposals, in words, from the
    states stored on them (raw, or :class:`~optuna_fmd.outer.StateView` s): a climb step
    taken (a line along the hypergradient found a better point), or the climb's hand-over
    (a hypergradient dropped, and why). ``[]`` when nothing of the kind happened.

    Example:
        >>> search_events({"climbed": 0}, {"climbed": 1, "incumbent": {"f": 0.41}})
        ['climb step taken: the line along the hypergradient reached 0.4100']
    """
    old = before if isinstance(before, StateView) else read_view(before)
    new = after if isinstance(after, StateView) else read_view(after)
    if old is None or new is None:
        return []
    out = []
    if new.climbed > old.climbed:
        value = "a better point" if new.best is None else f"{new.best:.4f}"
        out.append(f"climb step taken: the line along the hypergradient reached {value}")
    if new.handover and not old.handover:
        why = _HANDOVER.get(new.handover, new.handover)
        nxt = {"scale": "the lr-scale search", "explore": "the exploration"}.get(
            new.probe, "the pattern search"
        )
        out.append(f"hypergradient dropped: {why}; plain episodes from here ({nxt})")
    return out


def hypergradient_status(trial: optuna.trial.FrozenTrial) -> str:
    """Whether ``trial`` computed a hypergradient, in words: ``"yes"``, ``"no: plain probe"``,
    ``"no: diverged"``, ``"no: not asked for"``, ``"no: failed"``, ``"running"``."""
    from optuna.trial import TrialState

    hg = trial.user_attrs.get("hypergradient")
    if isinstance(hg, dict) and hg:
        return "yes"
    if trial.state == TrialState.RUNNING:
        return "running"
    view = read_view(trial.system_attrs.get(STATE_KEY))
    if view is not None and not view.hypergradient:
        return "no: plain probe"
    if trial.state != TrialState.COMPLETE:
        return f"no: {trial.state.name.lower()}"
    if trial.user_attrs.get("diverged") is True:
        return "no: diverged"
    if view is None:
        return "no: not asked for"
    return "no: missing"


def check_words(
    trial: optuna.trial.FrozenTrial, members: Mapping[int, Sequence[int]] | None = None
) -> str:
    """The sampler's check of the latest hypergradient, stored on ``trial``
    (``user_attrs["hypergradient_check"]``), in words; ``""`` when it carries none.

    The check names the point whose hypergradient it checked: with a population the outer
    iterate (``iterate 3 (trials 6, 7)``, its trials from ``members``: iterate -> trial
    numbers), else the trial (``trial 7``). A probe check compares the change of the value the
    hypergradient predicted over the step with the one the first probe along it found; a
    members check compares the members' hypergradients with each other (the smallest cosine
    between two of them, the largest size over the smallest).

    Example:
        >>> check_words(trial, {0: [0, 1]})  # doctest: +SKIP
        "the hypergradients of iterate 0's members (trials 0, 1) agree (cosine 1.00, ...)"
    """
    check = read_check(trial.user_attrs.get(CHECK_ATTR))
    if check is None:
        return ""
    whose = _point_words(check.point, trial_iterate(trial) is not None, members or {})
    if isinstance(check, MembersCheck):
        ratio = check.norm_ratio
        size = "" if ratio is None else f", sizes {ratio:.3g}x apart"
        cos = "cosine ?" if check.cosine is None else f"cosine {check.cosine:.2f}"
        head = f"the hypergradients of {whose[0]}'s members{whose[1]}"
        if check.agrees:
            return f"{head} agree ({cos}{size})"
        return f"{head} disagree ({cos}{size}): the probes decide"
    pred = "?" if check.predicted is None else f"{check.predicted:+.3g}"
    got = "a failed episode" if check.found is None else f"{check.found:+.3g}"
    verdict = "agrees" if check.agrees else "contradicts it: the probes decide"
    return (
        f"the hypergradient of {whose[0]}{whose[1]} predicted {pred}, the first probe along "
        f"it found {got}: {verdict}"
    )


def _point_words(
    point: int | None, population: bool, members: Mapping[int, Sequence[int]]
) -> tuple[str, str]:
    """``("iterate 3", " (trials 6, 7)")``, ``("trial 7", "")``; ``("the latest point", "")``
    when the check does not say."""
    if point is None:
        return "the latest point", ""
    if not population:
        return f"trial {point}", ""
    trials = members.get(point, ())
    listed = f" (trials {', '.join(map(str, trials))})" if trials else ""
    return f"iterate {point}", listed


def hypergradient_note(study: optuna.Study, drawn: int) -> str:
    """Why the hypergradient panel holds what it holds (``drawn`` trials with one), in words."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return "no hypergradient yet: no trial has finished"
    status = [hypergradient_status(t) for t in done]
    plain = status.count("no: plain probe")
    if drawn:
        # the members of an iterate carry the same check: count each once
        checks = list(
            dict.fromkeys(
                c for t in done if (c := read_check(t.user_attrs.get(CHECK_ATTR))) is not None
            )
        )
        against = sum(not c.agrees for c in checks)
        checked = (
            f"; the probes (or members) contradicted {against} of the {len(checks)} checked, "
            "and the pattern search took those steps"
            if against
            else (f"; all {len(checks)} checked agreed with the probes" if checks else "")
        )
        if plain:
            return (
                f"hypergradients of {drawn} of {len(done)} finished trials; the other "
                f"{plain} are plain probes (scale, pattern and line-search episodes)" + checked
            )
        return f"hypergradients of {drawn} of {len(done)} finished trials" + checked
    if plain == len(done):
        kinds = []
        for t in done:
            kind, _ = origin_words(t.system_attrs.get(STATE_KEY))
            if kind and kind not in kinds:
                kinds.append(kind)
        return (
            f"no hypergradient yet: the first {plain} trials search the lr scale and the "
            f"schedule's shape with plain episodes ({', '.join(kinds)}); hypergradient steps "
            "follow from the best point found"
        )
    if plain:
        return (
            f"no hypergradient yet: {plain} of {len(done)} trials are plain probes and the "
            "others have none (diverged, or the objective was not asked for one)"
        )
    if status.count("no: not asked for") == len(done):
        return (
            "no hypergradient: these trials ran plain episodes (another sampler, or "
            "HypergradientObjective(hypergradient=False))"
        )
    return "no hypergradient: every trial that asked for one diverged or stored none"
