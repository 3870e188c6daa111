"""Opening Optuna storages from a URL, safely for many worker processes.

- SQLite waits for a lock instead of failing with "database is locked" when several processes
  write (``timeout`` of the sqlite3 driver).
- RDB storages (SQLite, PostgreSQL, MySQL) get Optuna's heartbeat when asked, so the RUNNING
  trial of a killed worker is failed by the next worker that looks at the study.
- ``postgresql://`` (and ``postgres://``) URLs, as users write them, use whichever PostgreSQL
  driver is installed: psycopg 3 (``pip install 'optuna-fmd[postgres]'``), else psycopg2. A URL
  that names its driver (``postgresql+psycopg2://``, ``postgresql+psycopg://``) keeps it.
- ``journal:<path>`` opens a :class:`optuna.storages.JournalStorage` on a file (no heartbeat:
  Optuna's journal storage does not beat).
- Every mistake in the URL or the connection ends in one :class:`StorageError` that names the
  URL and what to do, before any training starts.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = ["POSTGRES_DRIVERS", "SQLITE_TIMEOUT", "StorageError", "open_storage", "postgres_url"]

#: Seconds a SQLite writer waits for another process's lock before giving up.
SQLITE_TIMEOUT = 120.0
_RDB = re.compile(r"^(sqlite|postgresql|postgres|mysql|mariadb)(\+[a-z0-9_]+)?://", re.I)
_POSTGRES = re.compile(r"^postgres(?:ql)?(\+[a-z0-9_]+)?://", re.I)
#: PostgreSQL drivers tried for a URL that names none, in order: (module, SQLAlchemy dialect).
POSTGRES_DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))
_EXAMPLES = "sqlite:///optuna-fmd.db, postgresql://user@127.0.0.1:5432/db, journal:./study.log"


class StorageError(ValueError):
    """A storage URL that cannot be opened (bad syntax, missing driver, unreachable server)."""


def _redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def postgres_url(url: str) -> str:
    """``url`` with an installed PostgreSQL driver named in it; other URLs unchanged.

    ``postgresql://`` and ``postgres://`` get the first of :data:`POSTGRES_DRIVERS` that imports
    (SQLAlchemy's own default differs between its versions: psycopg2 in 2.0, psycopg 3 in 2.1);
    ``postgres+driver://`` becomes ``postgresql+driver://``. With no driver installed the URL
    is returned as given, and opening it names the missing module.
    """
    match = _POSTGRES.match(url)
    if match is None:
        return url
    rest = url[match.end() :]
    if match.group(1):
        return f"postgresql{match.group(1)}://{rest}"
    for module, dialect in POSTGRES_DRIVERS:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return f"{dialect}://{rest}"
    return f"postgresql://{rest}"


def open_storage(
    url: str,
    *,
    heartbeat: float | None = None,
    grace_period: float | None = None,
) -> optuna.storages.BaseStorage:
    """Open the Optuna storage at ``url``.

    Args:
        url: ``sqlite:///file.db``, ``postgresql://...`` (with the installed driver, see
            :func:`postgres_url`), ``mysql://...`` (any SQLAlchemy URL Optuna's RDB storage
            accepts) or ``journal:<path>`` (a journal file).
        heartbeat: Seconds between heartbeats of a running trial (RDB storages only;
            ``None``: no heartbeat).
        grace_period: Seconds without a heartbeat after which a RUNNING trial is failed
            (default: Optuna's, twice the heartbeat interval).

    Raises:
        StorageError: The URL is not a storage URL, its driver is missing or it cannot be
            reached.
    """
    import optuna

    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"the storage must be a URL such as {_EXAMPLES}, but got {url!r}.")
    if heartbeat is not None and not heartbeat > 0:
        raise StorageError(f"`heartbeat` must be positive seconds, but got {heartbeat!r}.")
    if grace_period is not None and (heartbeat is None or not grace_period > heartbeat):
        raise StorageError(
            "`grace_period` needs a heartbeat and must exceed it, but got "
            f"grace_period={grace_period!r} with heartbeat={heartbeat!r}."
        )
    if url.startswith("journal:"):
        path = url[len("journal:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise StorageError(
                f"a journal storage needs a file path (journal:./study.log): {url!r}."
            )
        if heartbeat is not None:
            raise StorageError(
                "Optuna's journal storage has no heartbeat; use an RDB storage (SQLite, "
                "PostgreSQL) for workers that may be killed, or drop `heartbeat`."
            )
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as err:
            raise StorageError(f"cannot open the journal file {path!r}: {err}") from None
    if not _RDB.match(url):
        raise StorageError(f"the storage must be a URL such as {_EXAMPLES}, but got {url!r}.")
    kwargs: dict[str, object] = {}
    if url.lower().startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    if heartbeat is not None:
        kwargs["heartbeat_interval"] = int(max(1, round(heartbeat)))
        if grace_period is not None:
            kwargs["grace_period"] = int(max(2, round(grace_period)))
    try:
        return optuna.storages.RDBStorage(postgres_url(url), **kwargs)  # type: ignore[arg-type]
    except ImportError as err:
        cause = err if isinstance(err, ModuleNotFoundError) else err.__cause__
        name = getattr(cause, "name", None) or "its database driver"
        raise StorageError(
            f"the storage {_redact(url)!r} needs the Python module {name!r}, which is not "
            "installed; install it or name an installed driver in the URL (PostgreSQL: pip "
            "install 'optuna-fmd[postgres]' installs psycopg 3, which postgresql://... uses)."
        ) from None
    except Exception as err:  # sqlalchemy's OperationalError, ArgumentError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open the storage {_redact(url)!r}: {reason}") from None
