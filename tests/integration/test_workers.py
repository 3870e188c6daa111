"""Many worker processes on one study: `optuna-fmd worker` on PostgreSQL and on a journal file.

Every member of every outer iterate is run exactly once, every COMPLETE trial carries its
hypergradient, and the schedules equal those of a single worker with the same seeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_fmd._storage import open_storage
from optuna_fmd.sampler import STATE_KEY

from ..test_storage import _postgres_url

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[2]
POPULATION, ITERATES = 4, 3
FLAGS = [
    "--task", "digits", "--steps", "40", "--batch-size", "32", "--windows", "2",
    "--hypers", "lr,momentum", "--population", str(POPULATION), "--no-progress",
    "--no-artifacts", "--space", "windows", "--outer", "sign",
]  # fmt: skip


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "optuna_fmd.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def start_workers(storage: str, n: int, total: int, *extra: str) -> list[subprocess.Popen]:
    extra = ("--no-artifacts", *extra)
    return [
        subprocess.Popen(
            cli("worker", "--study", "s", "--storage", storage, "--total", str(total), *extra),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(n)
    ]


def finish(procs: list[subprocess.Popen], timeout: float = 400) -> list[str]:
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outs


def definitions(study: optuna.Study) -> dict[int, list[float]]:
    """x of every outer iterate, from the trials that claimed its members."""
    out: dict[int, list[float]] = {}
    for t in study.get_trials(deepcopy=False):
        st = t.system_attrs.get(STATE_KEY)
        if isinstance(st, dict) and st.get("claim") == "final":
            assert out.setdefault(st["iterate"], st["x"]) == st["x"]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[float]]:
    """One worker, the same flags and seeds."""
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    n = POPULATION * ITERATES + 1
    subprocess.run(
        cli("run", "--study", "s", "--storage", f"sqlite:///{db}", "--trials", str(n), *FLAGS),
        env=env(),
        check=True,
        capture_output=True,
    )
    return definitions(optuna.load_study(study_name="s", storage=f"sqlite:///{db}"))


def check_study(url: str, reference: dict[int, list[float]]) -> None:
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    slots = [(t.user_attrs["iterate"], t.user_attrs["member"]) for t in complete]
    assert len(slots) == len(set(slots)), slots  # no member run twice
    for i in range(ITERATES):  # no member lost
        assert {j for it, j in slots if it == i} == set(range(POPULATION))
    assert all("hypergradient" in t.user_attrs for t in complete)
    assert all(t.user_attrs["seed"] == t.user_attrs["member"] for t in complete)
    defs = definitions(study)
    assert sorted(defs)[: ITERATES + 1] == list(range(ITERATES + 1))
    for i, x in defs.items():  # the same schedules as one worker, bit for bit
        if i in reference:
            assert x == reference[i], i
    assert not study.get_trials(deepcopy=False, states=(TrialState.FAIL,))


@pytest.fixture(params=["postgres", "journal"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        yield from _postgres_url()
    else:
        yield f"journal:{tmp_path / 'study.log'}"


def test_four_workers_lose_and_repeat_nothing(
    shared_storage: str, reference: dict[int, list[float]]
) -> None:
    url = shared_storage
    made = subprocess.run(
        cli("run", "--study", "s", "--storage", url, "--trials", "0", *FLAGS),
        env=env(),
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    procs = start_workers(url, 4, POPULATION * ITERATES)
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), outs
    check_study(url, reference)


KILL_FLAGS = [
    "--task", "digits", "--steps", "300", "--batch-size", "32", "--windows", "2",
    "--hypers", "lr,momentum", "--population", "2", "--no-progress", "--no-artifacts",
    "--space", "windows", "--outer", "sign",
]  # fmt: skip


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database; without a server the test skips before any work."""
    yield from _postgres_url()


def test_sigkill_mid_episode_is_retried_resumed_and_loses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    import signal
    import time

    from optuna_fmd.objective import CHECKPOINT_KEY, WORKER_KEY

    url = postgres_url
    ref_db = f"sqlite:///{tmp_path / 'ref.db'}"
    subprocess.run(
        cli("run", "--study", "s", "--storage", ref_db, "--trials", "7", *KILL_FLAGS),
        env=env(),
        check=True,
        capture_output=True,
    )
    reference = definitions(optuna.load_study(study_name="s", storage=ref_db))
    subprocess.run(
        cli("run", "--study", "s", "--storage", url, "--trials", "0", *KILL_FLAGS),
        env=env(),
        check=True,
        capture_output=True,
    )
    extra = ["--heartbeat", "1", "--checkpoint-every", "50"]
    extra += ["--artifact-dir", str(tmp_path / "artifacts")]
    procs = start_workers(url, 2, 6, *extra)
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    victim, seen, deadline = None, 0, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pointer = t.system_attrs.get(CHECKPOINT_KEY)
            # progress, not step: reverse mode's backward sweep counts its steps down
            if isinstance(pointer, dict) and pointer.get("progress", 0) >= 100:
                victim, seen = t, pointer["progress"]
                break
        time.sleep(0.2)
    assert victim is not None, "no episode reached its second checkpoint"
    pid = victim.system_attrs[WORKER_KEY]["pid"]
    assert pid in [p.pid for p in procs]
    os.kill(pid, signal.SIGKILL)  # mid-episode, between two checkpoints
    outs = finish(procs)
    killed = next(p for p in procs if p.pid == pid)
    assert killed.returncode == -signal.SIGKILL
    assert all(p.returncode == 0 for p in procs if p is not killed), outs
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [victim.number]  # failed by the heartbeat
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    resumed = [t for t in complete if t.user_attrs.get("resumed_from_trial") == victim.number]
    assert len(resumed) == 1 and resumed[0].user_attrs["resumed_from_progress"] >= seen
    slots = [(t.user_attrs["iterate"], t.user_attrs["member"]) for t in complete]
    assert len(slots) == len(set(slots))
    for i in range(3):
        assert {j for it, j in slots if it == i} == {0, 1}
    assert all("hypergradient" in t.user_attrs for t in complete)
    defs = definitions(study)
    for i, x in defs.items():  # nothing lost: the same schedules as an uninterrupted run
        if i in reference:
            assert x == reference[i], i
    assert sorted(defs)[:3] == [0, 1, 2]
