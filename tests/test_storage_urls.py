"""open_storage: one clear error for every bad storage URL, SQLite that waits for locks."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from optuna_fmd._storage import StorageError, open_storage, postgres_url

from .test_storage import _postgres_url


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "must be a URL such as"),
        ("optuna.db", "must be a URL such as"),
        ("redis://127.0.0.1:6379", "must be a URL such as"),
        ("journal:", "needs a file path"),
        ("sqlite:////no/such/dir/x.db", "cannot open the storage"),
        ("postgresql://nobody:secret@127.0.0.1:1/x", "cannot open the storage"),
        ("postgresql+psycopg://nobody:secret@127.0.0.1:1/x", "cannot open the storage"),
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


@pytest.fixture
def postgres() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server (``postgresql://``); skips without one."""
    yield from _postgres_url()


def test_postgres_with_heartbeat(postgres: str) -> None:
    storage = open_storage(postgres, heartbeat=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgres+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
    ],
)
def test_postgres_urls_name_the_installed_driver(url: str, expected: str) -> None:
    pytest.importorskip("psycopg")
    assert postgres_url(url) == expected


def test_postgresql_url_as_users_write_it(postgres: str) -> None:
    """``postgresql://`` and ``postgres://`` open with psycopg 3 (the ``postgres`` extra);
    ``postgresql+psycopg2://`` keeps working where psycopg2 is installed."""
    assert postgres.startswith("postgresql://")
    rest = postgres[len("postgresql://") :]
    urls = [postgres, f"postgres://{rest}"]
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pass
    else:
        urls.append(f"postgresql+psycopg2://{rest}")
    for i, url in enumerate(urls):
        storage = open_storage(url)
        study = optuna.create_study(storage=storage, study_name=f"s{i}")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        again = optuna.load_study(study_name=f"s{i}", storage=open_storage(url))
        assert len(again.trials) == 2


def test_postgresql_url_falls_back_to_psycopg2(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg2")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # psycopg 3 not installed
    assert postgres_url(postgres).startswith("postgresql+psycopg2://")
    study = optuna.create_study(storage=open_storage(postgres))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(study.trials) == 1


def test_postgresql_url_without_any_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        StorageError, match=r"needs the Python module 'psycopg2?'.*optuna-fmd\[postgres\]"
    ):
        open_storage("postgresql://postgres@127.0.0.1:5432/postgres")
