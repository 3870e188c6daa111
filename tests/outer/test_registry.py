"""A rule of one's own is one module and one registry line: a toy fixed-step rule, written here
from the package's public names only, registered through ``fmd.outer.register``, runs in
:class:`~optuna_fmd.FMDSampler` by its settings or its name, stores its state as JSON and reads
it back, and is offered by the command line; no file of the package names it."""

from __future__ import annotations

import ast
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd import cli

from ..test_sampler import SPACE, quad_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- the toy rule: state, step, settings, factory, registration ---------------------------------
@dataclass(frozen=True, kw_only=True)
class FixedState(fmd.outer.Backtracked):
    """The fixed-step rule's state: each param's step (it never changes)."""

    name: ClassVar[str] = "fixed"
    h: tuple[float, ...]

    @property
    def width(self) -> int:
        return len(self.h)

    @property
    def vectors(self) -> Mapping[str, tuple[object, ...]]:
        return {"h": self.h}


@dataclass(frozen=True)
class FixedStep:
    """``u <- u - sign(g) * h`` per coordinate, ``h`` fixed (scaled down by backtracks)."""

    size: float
    name: ClassVar[str] = FixedState.name

    def fresh(self, n: int) -> FixedState:
        return FixedState(h=(self.size,) * n)

    def __call__(
        self, mem: FixedState, g: list[float], scale: float, trust: float, number: int
    ) -> tuple[list[float], FixedState, bool, list[Any]]:
        moves = [
            -math.copysign(min(h * scale, trust), gi) if gi else 0.0
            for h, gi in zip(mem.h, g, strict=True)
        ]
        return moves, mem, False, []


@dataclass(frozen=True)
class FixedSettings(fmd.outer.PaperSettings):
    step_size: float = 0.05
    trust_region: float = 0.25
    backtrack_tol: float = 0.02
    max_backtracks: int = 6
    name: ClassVar[str] = "fixed"

    def step(self) -> FixedStep:
        return FixedStep(float(self.step_size))


def fixed(*, step_size: float = 0.05) -> FixedSettings:
    """The toy rule's factory."""
    return FixedSettings(step_size=step_size)


@pytest.fixture
def registered() -> Iterator[None]:
    """The toy rule, registered for one test."""
    fmd.outer.register(FixedSettings, FixedState)
    yield
    fmd.outer.unregister("fixed")


def _run(outer: object, trials: int = 8) -> optuna.Study:
    study = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer=outer, seed=0))  # type: ignore[arg-type]
    study.optimize(quad_objective(), n_trials=trials)
    return study


@pytest.mark.filterwarnings("ignore")
def test_a_toy_rule_runs_in_the_sampler_and_its_state_survives_json(registered: None) -> None:
    assert fmd.outer.rule_names() == ("search", "sign", "adam", "fixed")
    study = _run(fixed())
    sampler = study.sampler
    assert isinstance(sampler, fmd.FMDSampler)
    state = sampler.outer_state(study)
    assert state is not None and isinstance(state.rule, FixedState)
    assert state.rule.h == (0.05,) * len(state.rule.h) and state.rule.outer_step == 7
    raw = json.loads(json.dumps(state.to_json()))
    assert raw["rule"] == "fixed" and raw["h"] == list(state.rule.h)
    assert fmd.outer.OuterState.from_json(raw) == state
    values = [t.value for t in study.trials]
    assert values[-1] < values[0]  # a closed-form bowl: fixed steps downhill improve
    # by its name, with its defaults: the same proposals
    again = _run("fixed")
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    # a study continues from the stored states in a new sampler
    sampler = fmd.FMDSampler(SPACE, outer=fixed(), seed=0)
    resumed = optuna.create_study(sampler=sampler)
    for trial in study.trials[:4]:
        resumed.add_trial(trial)
    resumed.optimize(quad_objective(), n_trials=4)
    assert [t.params for t in resumed.trials] == [t.params for t in study.trials]


def test_the_command_line_offers_a_registered_rule(registered: None) -> None:
    parser = cli.build_parser("", defaultdict(lambda: lambda args: 0))
    assert parser.parse_args(["run", "--outer", "fixed"]).outer == "fixed"


def test_an_unknown_or_twice_registered_rule_is_refused(registered: None) -> None:
    with pytest.raises(ValueError, match="a new rule's name, but got 'fixed'"):
        fmd.outer.register(FixedSettings, FixedState)
    with pytest.raises(ValueError, match=r"one of .*'fixed'.*, but got 'odd'"):
        fmd.FMDSampler(SPACE, outer="odd")
    with pytest.raises(fmd.outer.StateError, match="'adam' or 'fixed', but got 'odd'"):
        fmd.outer.OuterState.from_json({"version": 1, "rule": "odd"})


def test_the_toy_rule_needs_no_private_name() -> None:
    """This module imports only public names of the package: the rule needs no change there."""
    tree = ast.parse(Path(__file__).read_text())
    private = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("optuna_fmd")
        and (
            any(part.startswith("_") for part in (node.module or "").split("."))
            or any(a.name.startswith("_") for a in node.names)
        )
    ]
    attrs = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and ast.unparse(node).startswith("fmd.")
        and any(part.startswith("_") for part in ast.unparse(node).split("."))
    ]
    assert private == [] and attrs == []
