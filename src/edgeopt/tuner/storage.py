"""Where a search keeps its trials and artifacts.

Trials: an Optuna RDB storage. SQLite in the run directory by default (one machine; a killed
search resumes from it); ``postgresql://user:pass@host/db`` for many workers on many machines.
Every worker records a heartbeat while a trial runs; a trial whose heartbeat stops for
``grace_period`` seconds is marked failed and re-queued once more (Optuna's
RetryHeartbeatStaleTrialCallback), so a killed worker's trial runs again elsewhere.

Artifacts: an Optuna artifact store. A path (``FileSystemArtifactStore``) by default, in the run
directory; a shared path (NFS) or S3-compatible bucket (``s3://bucket``, boto3) for many
machines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import UserError

DB_FILE = "search.db"
# a dot folder: reopening a run directory (RunDir.open, on resume) removes every other folder that
# is not a finished variant, which took the finished trials' artifacts with it
ARTIFACT_DIR = ".artifacts"


@dataclass(frozen=True)
class Heartbeat:
    """interval: seconds between a running trial's heartbeats; grace: seconds without one after
    which the trial counts as lost; max_retry: how often a lost trial is re-queued."""

    interval: int = 30
    grace: int = 120
    max_retry: int = 3

    def __post_init__(self):
        if not 0 < self.interval < self.grace:
            raise ValueError(f"heartbeat: need 0 < interval < grace (got {self.interval}, {self.grace})")


def default_url(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / DB_FILE).resolve()}"


def check_url(url: str) -> str:
    """The storage URL, or a UserError saying which forms are accepted (before any connection)."""
    if not re.match(r"^(sqlite|postgresql|postgresql\+\w+|mysql\+\w+)://", url or ""):
        raise UserError(f"--storage {redact(url)!r} is not a database URL; use sqlite:///path/search.db "
                        f"or postgresql://user:password@host:5432/dbname")
    if url.startswith("postgresql") and _missing("psycopg") and _missing("psycopg2"):
        raise UserError("PostgreSQL storage needs the psycopg package (pip install psycopg[binary])")
    return url


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def redact(url: str) -> str:
    """The URL without its password, for logs and run records."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url or "")


def open_storage(url: str, heartbeat: Heartbeat = Heartbeat()):
    """An Optuna RDBStorage with heartbeats and retry of lost trials.

    SQLite waits up to 60 s for a lock (several local workers); PostgreSQL connections are checked
    before use (``pool_pre_ping``) and each worker keeps a small pool (main thread + heartbeat
    thread), see ARCHITECTURE.md, "Scale".
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    check_url(url)
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 1800}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat.interval,
                                 grace_period=heartbeat.grace,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                     max_retry=heartbeat.max_retry))
        except Exception as err:  # sqlalchemy OperationalError and friends: one line, no traceback
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot open the search storage {redact(url)}: {first[:300]}") from None
    if url.startswith("sqlite"):
        _sqlite_wal(storage.engine)
    return storage


def sqlite_study_names(url: str) -> list[str]:
    """The study names in the SQLite file of ``url``, read without creating or changing anything.
    Raises UserError when the file is missing, empty or not a search database."""
    import sqlite3

    path = url.split(":///", 1)[1] if ":///" in url else ""
    where = Path(path.split("?", 1)[0])
    if not path or not where.is_file() or where.stat().st_size == 0:
        raise UserError(f"no search database at {where or url}: give the --storage URL a search "
                        f"was run with (edgeopt search ... --storage URL)")
    try:
        con = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return [row[0] for row in con.execute("SELECT study_name FROM studies")]
        finally:
            con.close()
    except sqlite3.Error as err:
        raise UserError(f"{where} is not a search database ({err})") from None


def _sqlite_wal(engine) -> None:
    """Write-ahead log with synchronous=NORMAL: a commit survives a killed process (not a power
    cut), readers do not block the writer, and a trial costs a few ms of fsync instead of ~20 per
    attribute. WAL needs a local file system (not NFS): use PostgreSQL across machines."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while the tables were created reconnect with the pragmas


def open_artifact_store(where: str | Path):
    """A path -> FileSystemArtifactStore (created); ``s3://bucket`` -> Boto3ArtifactStore."""
    from optuna.artifacts import Backoff, FileSystemArtifactStore

    where = str(where)
    if where.startswith("s3://"):
        bucket = where[5:].strip("/")
        if not bucket or "/" in bucket:
            raise UserError(f"artifact store {where!r}: give a bucket only, s3://BUCKET "
                            "(endpoint and keys come from the usual AWS_* variables)")
        try:
            from optuna.artifacts import Boto3ArtifactStore
            return Backoff(Boto3ArtifactStore(bucket))
        except ImportError:
            raise UserError("an s3:// artifact store needs boto3 (pip install boto3)") from None
    path = Path(where)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the artifact store {path}: {err.strerror}") from None
    return FileSystemArtifactStore(path)
