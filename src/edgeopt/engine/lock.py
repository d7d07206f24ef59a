"""The run-directory lock: one edgeopt process writes a run directory at a time.

``<run>/.lock`` is locked with ``fcntl.flock`` (the OS releases it when the holder dies, even on
``kill -9``) and holds the holder's pid, host and start time for the refusal message. A lock file
left by a dead process is taken over with a note. Re-opening a run directory in the process that
already holds it is allowed (the API's sequential calls in one notebook)."""
from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from edgeopt.errors import UserError

LOCK_FILE = ".lock"
_held: dict[str, "RunLock"] = {}


class RunLock:
    """An exclusive lock on a run directory; ``note`` says when a dead holder's lock was taken over."""

    def __init__(self, path: Path, fd: int, note: str | None):
        self.path, self.fd, self.note = path, fd, note

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        """Lock ``run_dir`` or raise UserError naming the pid and host of the process holding it."""
        key = str(Path(run_dir).resolve())
        path = Path(run_dir) / LOCK_FILE
        if key in _held:
            if _same_file(_held[key].fd, path):
                return _held[key]
            _held.pop(key).release()  # the folder was removed and made again under us
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot create the lock file {path}: {e.strerror or e}; choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise UserError(f"run directory {run_dir} is in use by edgeopt process {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')} (since {holder.get('since', '?')}); wait for it to "
                            f"finish or choose another --out") from None
        note = _takeover_note(_read(fd))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        os.fsync(fd)
        lock = cls(path, fd, note)
        _held[key] = lock
        return lock

    def release(self) -> None:
        """Unlock and empty the lock file (an empty file means: nobody holds it)."""
        if self.fd < 0:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1
        for k, v in list(_held.items()):
            if v is self:
                del _held[k]


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _takeover_note(old: dict) -> str | None:
    if not old.get("pid"):
        return None  # released cleanly
    same_host = old.get("host") == socket.gethostname()
    state = "no longer running" if same_host and not pid_alive(int(old["pid"])) else "its lock released"
    return f"took over the run-directory lock of edgeopt process {old['pid']} on {old.get('host', '?')} ({state})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
