"""Atomic file writes: a temp file in the same folder, then os.replace, so readers never see half a file."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from edgeopt.errors import UserError


def ensure_writable_dir(path: Path) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output folder {path} is not writable; choose another with --out")
    return path


@contextlib.contextmanager
def atomic_path(dst: Path, suffix: str | None = None):
    """Yield a temp path beside ``dst`` for a writer that needs a file name (Keras, ONNX, OpenVINO);
    on success it replaces ``dst``, on failure it is removed: never a half-written file."""
    dst = Path(dst)
    ensure_writable_dir(dst.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix or dst.suffix or ".tmp", dir=dst.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)  # the rename itself survives a power cut
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes, before_rename=None) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``.
    ``before_rename()`` (optional) runs between the two: the crash-test hook of the run store."""
    with atomic_path(path, suffix=".tmp") as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
    return Path(path)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj, before_rename=None) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode("utf-8"),
                              before_rename)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
