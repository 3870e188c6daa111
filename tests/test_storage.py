"""FMDSampler keeps its outer state in storage: same proposals on every backend and on restart.

In-memory, SQLite, JournalStorage (file) and PostgreSQL (skipped when no server answers at
127.0.0.1:5432); the resume test continues a study in a new process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd.sampler import STATE_KEY
from tests.test_sampler import SPACE, quad_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]


def _postgres_url() -> Iterator[str]:
    """A fresh database on the local server, as users write its URL (``postgresql://``).

    Skips (before anything else runs) without psycopg 3, the driver the ``postgres`` extra
    installs, or without a server at 127.0.0.1:5432; the database is dropped afterwards.
    """
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'optuna-fmd[postgres]')")
    try:
        conn = psycopg.connect(
            host="127.0.0.1",
            port=5432,
            user="postgres",
            dbname="postgres",
            connect_timeout=3,
            autocommit=True,
        )
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({err})")
    name = f"fmd_test_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.fixture(params=["inmemory", "sqlite", "journal", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    kind = request.param
    if kind == "inmemory":
        yield None
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'fmd.db'}"
    elif kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        yield JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    else:
        yield from _postgres_url()


def _proposals(study: optuna.Study) -> list[dict[str, float]]:
    return [dict(t.params) for t in study.trials]


def test_same_study_on_every_backend(storage: object) -> None:
    ref = optuna.create_study(sampler=fmd.FMDSampler(SPACE, outer="adam"))
    ref.optimize(quad_objective(), n_trials=6)
    study = optuna.create_study(
        storage=storage,
        study_name="s",  # type: ignore[arg-type]
        sampler=fmd.FMDSampler(SPACE, outer="adam"),
    )
    study.optimize(quad_objective(), n_trials=6)
    assert _proposals(study) == _proposals(ref)
    for a, b in zip(study.trials, ref.trials, strict=True):
        assert a.system_attrs[STATE_KEY] == b.system_attrs[STATE_KEY]
        assert a.user_attrs["hypergradient"] == b.user_attrs["hypergradient"]
    if storage is not None:
        # a fresh sampler object on the stored study continues exactly where the first left off
        loaded = optuna.load_study(
            study_name="s",
            storage=storage,  # type: ignore[arg-type]
            sampler=fmd.FMDSampler(SPACE, outer="adam"),
        )
        loaded.optimize(quad_objective(), n_trials=2)
        ref.optimize(quad_objective(), n_trials=2)
        assert _proposals(loaded) == _proposals(ref)


_CHILD = textwrap.dedent(
    """
    import sys, torch, optuna, optuna_fmd as fmd
    torch.set_num_threads(2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = fmd.ScheduleSpace({"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True,
                                                  init=0.05)})
    task = fmd.tasks.Digits(steps=20, batch_size=32)
    study = optuna.load_study(study_name="resume", storage=sys.argv[1],
                              sampler=fmd.FMDSampler(space, seed=0, outer=sys.argv[3]))
    study.optimize(fmd.HypergradientObjective(task, space), n_trials=int(sys.argv[2]))
    """
)


@pytest.mark.parametrize("outer", ["search", "sign"])
def test_resume_in_a_new_process_gives_the_same_proposals(tmp_path: Path, outer: str) -> None:
    space = fmd.ScheduleSpace(
        {"lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.05)}
    )
    task = fmd.tasks.Digits(steps=20, batch_size=32)
    objective = fmd.HypergradientObjective(task, space)
    ref = optuna.create_study(sampler=fmd.FMDSampler(space, seed=0, outer=outer))
    ref.optimize(objective, n_trials=5)

    url = f"sqlite:///{tmp_path / 'resume.db'}"
    study = optuna.create_study(
        storage=url, study_name="resume", sampler=fmd.FMDSampler(space, seed=0, outer=outer)
    )
    study.optimize(objective, n_trials=3)  # stop after 3 trials
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), url, "2", outer],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = optuna.load_study(study_name="resume", storage=url)
    assert len(resumed.trials) == 5
    assert _proposals(resumed) == _proposals(ref)
    assert [t.value for t in resumed.trials] == [t.value for t in ref.trials]
    states = [t.system_attrs[STATE_KEY] for t in resumed.trials]
    assert states == [t.system_attrs[STATE_KEY] for t in ref.trials]
    # the new process went on stepping from the stored state (not from the initial schedules)
    if outer == "search":
        assert [s["origin"] for s in states] == ["start", "climb", "climb", "climb", "climb"]
        return
    assert [(s["origin"], s["base"], s["outer_step"]) for s in states] == [
        ("init", None, 0),
        ("step", 0, 1),
        ("step", 1, 2),
        ("step", 2, 3),
        ("step", 3, 4),
    ]
    json.dumps(states, allow_nan=False)
