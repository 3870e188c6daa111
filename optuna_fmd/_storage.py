"""Opening Optuna storages from a URL, safely for many worker processes.

- SQLite waits for a lock instead of failing with "database is locked" when several processes
  write (``timeout`` of the sqlite3 driver).
- RDB storages (SQLite, PostgreSQL, MySQL) get Optuna's heartbeat when asked, so the RUNNING
  trial of a killed worker is failed by the next worker that looks at the study.
- ``journal:<path>`` opens a :class:`optuna.storages.JournalStorage` on a file (no heartbeat:
  Optuna's journal storage does not beat).
- Every mistake in the URL or the connection ends in one :class:`StorageError` that names the
  URL and what to do, before any training starts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = ["SQLITE_TIMEOUT", "StorageError", "open_storage"]

#: Seconds a SQLite writer waits for another process's lock before giving up.
SQLITE_TIMEOUT = 120.0
_RDB = re.compile(r"^(sqlite|postgresql|postgres|mysql|mariadb)(\+[a-z0-9_]+)?://", re.I)
_EXAMPLES = "sqlite:///optuna-fmd.db, postgresql://user@127.0.0.1:5432/db, journal:./study.log"


class StorageError(ValueError):
    """A storage URL that cannot be opened (bad syntax, missing driver, unreachable server)."""


def _redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(
    url: str,
    *,
    heartbeat: float | None = None,
    grace_period: float | None = None,
) -> optuna.storages.BaseStorage:
    """Open the Optuna storage at ``url``.

    Args:
        url: ``sqlite:///file.db``, ``postgresql://...``, ``mysql://...`` (any SQLAlchemy URL
            Optuna's RDB storage accepts) or ``journal:<path>`` (a journal file).
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
        return optuna.storages.RDBStorage(url, **kwargs)  # type: ignore[arg-type]
    except ImportError as err:
        cause = err if isinstance(err, ModuleNotFoundError) else err.__cause__
        name = getattr(cause, "name", None) or "its database driver"
        raise StorageError(
            f"the storage {_redact(url)!r} needs the Python module {name!r}, which is not "
            "installed; install it or name an installed driver in the URL (PostgreSQL: "
            "postgresql+psycopg2://..., installed by pip install 'optuna-fmd[postgres]')."
        ) from None
    except Exception as err:  # sqlalchemy's OperationalError, ArgumentError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open the storage {_redact(url)!r}: {reason}") from None
