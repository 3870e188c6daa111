"""The schedules the comparison's methods propose, pinned: the first trials of the black-box
family methods (TPE on the cosine and on the constants, with and without Hyperband), the
peak-lr grid and FMD on its family spaces, on the digits task with training replaced by a
closed-form bowl over the window values. Every window value of every trial is compared to 1e-12
with ``tests/compare/data/method_sequences.json``: a change of structure (param names, the
family spaces, the cosine's maths) must propose the same schedules, since stored results
depend on them.

``OPTUNA_FMD_UPDATE_PINS=1`` rewrites the file and fails (only when a method is meant to change).
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from optuna_fmd import compare, objective
from optuna_fmd.compare import _methods, _objectives
from optuna_fmd.episode import EpisodeResult
from optuna_fmd.space import default_space

from .._pins import pinned

optuna.logging.set_verbosity(optuna.logging.WARNING)

PINS = Path(__file__).parent / "data" / "method_sequences.json"
#: Trials per method: past TPE's 10 startup trials, so its model proposes some.
TRIALS = 14
METHODS = ("tpe-cosine", "tpe-const", "tpe-hyperband", "cosine-grid", "fmd", "fmd-cosine")


def _fake_episode(task, schedules, **kwargs):  # type: ignore[no-untyped-def]
    """A bowl over the log window values with its exact hypergradient, instead of training."""
    loss, grad = 0.1, {}
    for h, values in schedules.items():
        target = 0.05 if h == "lr" else 0.5
        grad[h] = []
        for v in values:
            x = math.log(max(v, 1e-12) / target) if h == "lr" else v - target
            loss += x * x / len(values)
            dx = 1 / max(v, 1e-12) if h == "lr" else 1.0
            grad[h].append(2 * x * dx / len(values))
    hypergradient = grad if kwargs.get("hypergradient", True) else None
    return EpisodeResult(loss, 0.9, hypergradient, task.steps, 0.0, 0, loss, False, "none")


def _sequence(method: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[float]]]:
    seen: list[dict[str, list[float]]] = []

    def fake(task, schedules, **kwargs):  # type: ignore[no-untyped-def]
        seen.append({k: [float(x) for x in v] for k, v in schedules.items()})
        return _fake_episode(task, schedules, **kwargs)

    monkeypatch.setattr(_objectives, "run_episode", fake)
    monkeypatch.setattr(objective, "run_episode", fake)
    task = compare.TASKS["digits-sgd"].make_task()
    st = _methods.open_study(
        compare.METHODS[method],
        task,
        default_space("sgd", windows=4),
        seed=0,
        grid=(0.25, 0.5, 1.0, 2.0, 4.0),
        storage=optuna.storages.InMemoryStorage(),
        name=method,
    )
    for _ in range(TRIALS):
        if st.exhausted():
            break
        trial = st.study.ask()
        try:
            st.study.tell(trial, st.objective(trial))
        except optuna.TrialPruned:
            st.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        assert st.schedule_of(trial.params) == {h: pytest.approx(v) for h, v in seen[-1].items()}
    return seen


def test_the_methods_propose_the_pinned_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    got = {m: _sequence(m, monkeypatch) for m in METHODS}
    pins = pinned(PINS, got)
    for m in METHODS:
        # To 1e-12, not to the bit: TPE's model samples move in their last bit across numpy
        # and scipy releases; a change of structure moves them by far more.
        assert len(got[m]) == len(pins[m]), m
        for trial, (a, b) in enumerate(zip(got[m], pins[m], strict=True)):
            assert a.keys() == b.keys(), (m, trial)
            for h in a:
                assert a[h] == pytest.approx(b[h], rel=1e-12, abs=0), (m, trial, h)
    assert len(got["cosine-grid"]) == 5
    assert all(len(got[m]) == TRIALS for m in METHODS if m != "cosine-grid")
