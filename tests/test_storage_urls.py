"""open_storage: one clear error for every bad storage URL, SQLite that waits for locks."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import optuna
import pytest

from optuna_fmd._storage import StorageError, open_storage

from .test_storage import _postgres_url


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "must be a URL such as"),
        ("optuna.db", "must be a URL such as"),
        ("redis://127.0.0.1:6379", "must be a URL such as"),
        ("journal:", "needs a file path"),
        ("sqlite:////no/such/dir/x.db", "cannot open the storage"),
        ("postgresql://user@127.0.0.1:5432/db", "needs the Python module 'psycopg'"),
        ("postgresql+psycopg2://nobody:secret@127.0.0.1:1/x", "cannot open the storage"),
    ],
)
def test_bad_urls_get_one_clear_error(url: str, match: str) -> None:
    with pytest.raises(StorageError, match=match) as info:
        open_storage(url)
    assert "secret" not in str(info.value)  # passwords are not echoed


def test_bad_heartbeat_arguments() -> None:
    with pytest.raises(StorageError, match="`heartbeat` must be positive"):
        open_storage("sqlite://", heartbeat=0)
    with pytest.raises(StorageError, match="`grace_period` needs a heartbeat"):
        open_storage("sqlite://", grace_period=5)
    with pytest.raises(StorageError, match="journal storage has no heartbeat"):
        open_storage("journal:x.log", heartbeat=1)


def test_journal_and_sqlite_open(tmp_path: Path) -> None:
    journal = open_storage(f"journal:{tmp_path / 'j.log'}")
    assert isinstance(journal, optuna.storages.JournalStorage)
    rdb = open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=1, grace_period=3)
    assert rdb.get_heartbeat_interval() == 1  # type: ignore[attr-defined]


def test_sqlite_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    storage = open_storage(f"sqlite:///{db}")
    optuna.create_study(storage=storage, study_name="s")
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for 2 s
    threading.Timer(2.0, lambda: con.execute("COMMIT")).start()
    study = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{db}"))
    study.enqueue_trial({"x": 1.0})  # waits instead of "database is locked"
    assert len(study.trials) == 1
    con.close()


def test_postgres_with_heartbeat() -> None:
    for url in _postgres_url():
        storage = open_storage(url, heartbeat=1, grace_period=2)
        study = optuna.create_study(storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(study.trials) == 2
