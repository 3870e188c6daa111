"""The outer state's types: JSON only at the storage edge, and states stored by earlier
releases still load.

``tests/data/outer_state_v1.json`` holds the state stored on every trial of the runs below,
recorded by :func:`_record_all` at commit 7c889b9, when the state was a dict of string keys
changed in place. Each one loads into the types and survives its own JSON. Until the search
rule climbed along the hypergradient first, each also equalled the state the sampler stored in
the same run; the sign and Adam rules' still do. Today's states of every run survive their JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import optuna_fmd as fmd
from optuna_fmd.outer._adam import AdamState
from optuna_fmd.outer._sign import SignState
from optuna_fmd.outer._state import (
    STATE_KEY,
    MembersCheck,
    OuterState,
    ProbeCheck,
    Slot,
    StateError,
    check_json,
    read_check,
    read_view,
)
from optuna_fmd.outer.search._state import Bracket, Probe, SearchState
from optuna_fmd.space import default_family_space, default_space

from ..integration.test_sequence_pin import _cases, _objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

V1 = Path(__file__).parents[1] / "data" / "outer_state_v1.json"
#: Trials recorded per pinned case (tests/integration/test_sequence_pin.py): enough to reach
#: each kind of state the case has (lines, checks, patterns, quasi-Newton memory, a pending
#: hypergradient).
TRIALS = {
    "family": 20,
    "family-pop2": 30,
    "family-liar": 20,
    "family-liar-pop2": 28,
    "family-pattern": 16,
    "windows": 14,
    "per-layer": 16,
    "per-layer-pop2-liar": 36,
    "sign": 30,
    "adam": 8,
}


def _extra() -> dict[str, tuple[Any, ...]]:
    """(space, sampler kwargs, liar, trials, trials whose worker dies, value override)."""
    family = default_family_space("sgd", windows=4)
    windows = default_space("sgd", windows=3)
    return {
        "search-retry": (family, {}, False, 6, {3}, None),
        "sign-pop2-retry": (windows, {"outer": "sign", "population": 2}, False, 6, {1}, None),
        "search-pop2-retry": (family, {"population": 2}, False, 5, {3}, None),
        "search-failed-start": (family, {}, False, 3, set(), math.inf),
        "sign-worse": (windows, {"outer": "sign"}, False, 12, set(), "worse"),
    }


def _record(
    space: fmd.ScheduleSpace,
    kwargs: dict[str, Any],
    liar: bool,
    trials: int,
    dies: set[int] | frozenset[int] = frozenset(),
    value: object = None,
) -> list[Any]:
    """The state stored on each trial as it is proposed (a trial whose worker dies is failed
    and retried by ``RetryHeartbeatStaleTrialCallback``)."""
    study = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, **kwargs))
    objective = _objective(space, liar=liar)
    states = []
    for number in range(trials):
        trial = study.ask()
        v = objective(trial)
        if value == "worse":
            v = 1.0 if number == 0 else 5.0
        elif value is not None:
            v = value  # type: ignore[assignment]
        raw = study._storage.get_trial_system_attrs(trial._trial_id).get(STATE_KEY)
        states.append(json.loads(json.dumps(raw)))
        if number in dies:
            study.tell(trial, state=TrialState.FAIL)
            frozen = study._storage.get_trial(trial._trial_id)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)
        else:
            study.tell(trial, v)
    return states


def _record_all() -> dict[str, list[Any]]:
    out = {}
    cases = _cases()
    for name, n in TRIALS.items():  # the cases there were when the layout was recorded
        space, kwargs, liar = cases[name]
        out[name] = _record(space, kwargs, liar, n)
    for name, (space, kwargs, liar, n, dies, value) in _extra().items():
        out[name] = _record(space, kwargs, liar, n, dies, value)
    return out


@pytest.mark.filterwarnings("ignore")
def test_states_stored_before_the_types_load_and_todays_survive_their_json() -> None:
    before = json.loads(V1.read_text())
    now = _record_all()
    assert sorted(now) == sorted(before)
    for name, raws in before.items():
        for number, old in enumerate(raws):
            state = OuterState.from_json(old)
            assert OuterState.from_json(json.loads(json.dumps(state.to_json()))) == state
            if not isinstance(state.rule, SearchState) and number < len(now[name]):
                # the paper's rules did not change: the same run stores the same states
                assert OuterState.from_json(now[name][number]) == state, f"{name}, {number}"
        for new in now[name]:
            state = OuterState.from_json(new)
            assert OuterState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_the_json_keeps_the_layout_its_readers_know() -> None:
    """What the objective, the plots and earlier releases read from a stored state."""
    (old,) = [s for s in json.loads(V1.read_text())["family"] if "check" in s][:1]
    new = OuterState.from_json(old).to_json()
    assert new["version"] == 1 and new["rule"] == "search" and new["origin"] == "line"
    assert new["hypergradient"] is False and new["probe"]["kind"] == "line"
    assert new["check"] == old["check"] and new["incumbent"] == old["incumbent"]
    assert new["x"] == old["x"] and new["space"] == old["space"]


def test_the_flat_layout_gives_every_key_one_owner() -> None:
    """An OuterState stores its rule's and its slot's fields beside its own: no name twice."""

    def names(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    own = names(OuterState) - {"rule", "slot"} | names(Slot) | {"version", "rule", "hypergradient"}
    for rule in (SearchState, SignState, AdamState):
        assert not own & (names(rule) - {"name"}), rule


def _search() -> OuterState:
    rule = SearchState("scale", None, Probe("start"), Bracket(1, 0.0), None, 0.05)
    return OuterState(rule, "start", space="abc", x=(0.05, 0.9))


def test_the_types_are_frozen_and_updated_by_replace() -> None:
    state = _search()
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.origin = "scale"  # type: ignore[misc]
    moved = dataclasses.replace(state, rule=dataclasses.replace(state.rule, alpha=0.1))
    assert moved.rule.alpha == 0.1 and state.rule.alpha == 0.05  # type: ignore[union-attr]
    assert not state.wants_hypergradient and state.check is None and not state.converged


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"version": 2}, "`state.version` must be 1, but got 2."),
        ({"version": True}, "`state.version` must be 1, but got True."),
        ({"rule": "tpe"}, "`state.rule` must be 'search', 'sign' or 'adam', but got 'tpe'."),
        ({"probe": None}, "`state` must have `probe`, but has"),
        ({"alpha": "0.1"}, "`state.alpha` must be a number, but got '0.1'."),
        ({"outer_step": 1.5}, "`state.outer_step` must be an int, but got 1.5."),
        ({"probe": {"kind": 3}}, "`state.probe.kind` must be a string, but got 3."),
        ({"bracket": {"dir": 1, "offset": 0.0, "points": [[0.0]]}}, "`state.bracket.points[0]` "),
        ({"check": {"kind": "odd", "agrees": True}}, "`state.check.kind` must be one of"),
        ({"x": [0.1, "a"]}, "`state.x[1]` must be a number, but got 'a'."),
        ({"iterate": 0}, "`state` must have `member`"),
    ],
)
def test_a_corrupt_state_raises_one_error_that_names_the_key(
    edit: dict[str, Any], message: str
) -> None:
    raw = {**_search().to_json(), **edit}
    with pytest.raises(StateError) as err:
        OuterState.from_json(raw)
    assert str(err.value).startswith(message)


def test_a_sign_state_needs_one_entry_per_param_in_each_vector() -> None:
    raw = json.loads(V1.read_text())["sign"][3]
    assert OuterState.from_json(raw).rule.name == "sign"
    with pytest.raises(StateError, match=r"one entry per param, but have 9 and 3"):
        OuterState.from_json({**raw, "sign": raw["sign"][:3]})
    with pytest.raises(StateError, match="`state` must be a JSON object"):
        OuterState.from_json("not a dict")


def test_displays_read_any_state_leniently() -> None:
    view = read_view({"origin": "step", "base": 1, "member": True, "resume": [3, "x"]})
    assert view is not None and view.origin == "step" and view.base == 1
    assert view.member is None and view.resume == (3,) and view.hypergradient
    assert read_view("garbage") is None
    assert read_view({"hypergradient": False}).hypergradient is False  # type: ignore[union-attr]
    full = read_view(_search().to_json())
    assert full is not None and full.probe == "start" and full.x == (0.05, 0.9)
    assert not full.hypergradient and full.incumbent is None


def test_checks_read_back_from_the_user_attr() -> None:
    probe = ProbeCheck(-0.1, None, None, False, point=4)
    assert read_check(json.loads(json.dumps(check_json(probe)))) == probe
    members = MembersCheck(-0.5, 3.0, False)
    assert read_check(check_json(members)) == members
    assert check_json(members) == {
        "kind": "members",
        "cosine": -0.5,
        "norm_ratio": 3.0,
        "agrees": False,
        "point": None,
    }
    assert read_check({"agrees": 1}) is None and read_check([]) is None
