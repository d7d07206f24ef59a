"""The run directory and the one module that reads and writes run.json.

Layout::

    runs/<name>/run.json            # schema version 2, written atomically after every variant
    runs/<name>/<variant>/model.tflite
    runs/<name>/.cache/<key>/       # outputs of training steps, keyed by parent digest + config
    runs/<name>/.lock               # held (flock) by the one process writing the directory

What a run directory guarantees: a variant is done only when run.json records it ``done``
(written after its artifact is complete) and its artifact matches the sha256 in that record
(``artifact_sha256``); otherwise it is made again, with a note. A folder without a done record
(a run killed while making it) is removed when the directory is next opened; a failed variant
has no folder, its record holds a one-line ``error`` and the full text in ``error_detail``;
run.json is replaced atomically (temp file, fsync, rename), so it is always a complete, valid
file; one process writes the directory at a time (``engine.lock``). Opening a directory that an
interrupted run left behind removes what is incomplete and says so in ``notes`` (and ``RunDir.notes``).

Re-running into an existing run directory resumes: a variant already done with the same steps and
configs (same model, same data, same measurement settings) is kept. run.json of schema version 1
is migrated when read (graph facts moved out of ``metrics``, provenance added, step configs
unknown); any other version is refused in one line. ``run.schema.json`` beside this module is the
JSON Schema of the file (generated from ``edgeopt.core.types.Run``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from edgeopt.core.types import GRAPH_KEYS, SCHEMA_VERSION, Run
from edgeopt.engine.faults import crash_point
from edgeopt.engine.lock import RunLock
from edgeopt.errors import UserError
from edgeopt.fsutil import atomic_write_json, ensure_writable_dir, fsync_dir

RUN_FILE = "run.json"
CACHE_DIR = ".cache"
SCHEMA_FILE = Path(__file__).with_name("run.schema.json")
READABLE_VERSIONS = (1, SCHEMA_VERSION)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


class RunDir:
    """A run directory open for writing; ``record`` is the run.json content (a dict).

    Holds the directory's lock until ``close()`` (or process exit); usable as a context manager.
    ``notes``: what opening it repaired (a dead holder's lock, incomplete folders), one line each."""

    def __init__(self, path: Path, record: dict, lock: RunLock | None = None, notes: list[str] | None = None):
        self.path = Path(path)
        self.record = record
        self.lock = lock
        self.notes = notes or []

    @classmethod
    def open(cls, path: Path, header: dict, fresh: bool = False) -> "RunDir":
        """Open a run directory for writing, resuming when it holds a compatible run.

        Raises UserError when another process holds the directory (naming its pid and host), when
        it holds a run of another model, data or measurement settings, or when it is not writable."""
        path = ensure_writable_dir(Path(path))
        lock = RunLock.acquire(path)
        notes = [lock.note] if lock.note else []
        try:
            if (path / RUN_FILE).exists() and not fresh:
                old = load_run(path)
                mismatch = _mismatch(old, header)
                if mismatch:
                    raise UserError(f"{path} holds a run of {mismatch}; choose another --out or pass --fresh "
                                    f"to start over")
                old.update({k: v for k, v in header.items() if k not in ("variants", "created", "notes")})
                run = cls(path, old, lock, notes)
            else:
                if fresh and (path / CACHE_DIR).exists():
                    shutil.rmtree(path / CACHE_DIR)
                record = {"schema_version": SCHEMA_VERSION, "created": _now(), **header, "variants": []}
                run = cls(path, record, lock, notes)
            run._repair(fresh)
        except BaseException:
            lock.release()
            raise
        return run

    def close(self) -> None:
        """Release the directory's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save(self) -> None:
        """Validate the record and replace run.json atomically (temp file, fsync, rename)."""
        self.record["updated"] = _now()
        Run.model_validate(self.record)  # never write a record that does not match the schema
        atomic_write_json(self.path / RUN_FILE, self.record, before_rename=lambda: crash_point("run.json"))

    @property
    def variants(self) -> list[dict]:
        return self.record["variants"]

    def get(self, name: str) -> dict | None:
        return next((v for v in self.variants if v["name"] == name), None)

    def is_done(self, name: str, steps: list[dict] | None = None) -> bool:
        """True when the variant is done, its artifact exists and matches its recorded digest, and
        (when ``steps`` is given) it was made with exactly these steps and configs."""
        v = self.get(name)
        if not (v and v.get("status") == "done" and self._artifact_intact(v)):
            return False
        return steps is None or v.get("steps") == steps

    def put(self, variant: dict) -> None:
        """Record a variant and save run.json. A done variant gets ``artifact_sha256`` (its artifact
        must be complete by now); a failed variant's folder is removed, so nothing half-made stays."""
        variant = dict(variant, finished=_now())
        name = variant["name"]
        if variant.get("status") == "done" and variant.get("artifact"):
            if (self.path / variant["artifact"]).exists():
                variant["artifact_sha256"] = file_digest(self.path / variant["artifact"])
        else:
            _remove(self.path / _safe_dirname(name))
        for i, v in enumerate(self.variants):
            if v["name"] == name:
                self.variants[i] = variant
                break
        else:
            self.variants.append(variant)
        self.save()

    def variant_dir(self, name: str) -> Path:
        """An empty folder for making variant ``name``. An earlier record of the variant is marked
        failed ("interrupted while being made again") first, in its place, so a kill during the
        remake never leaves it shown as done; until ``put`` records it done, the folder counts as
        incomplete (removed, with a note, when the directory is next opened)."""
        old = self.get(name)
        if old is not None:
            keep = {k: old[k] for k in ("name", "recipe", "steps") if k in old}
            self.variants[self.variants.index(old)] = {**keep, "status": "failed",
                                                       "error": "interrupted while being made again"}
            self.save()
        d = self.path / _safe_dirname(name)
        _remove(d)
        d.mkdir(parents=True)
        return d

    @property
    def cache_dir(self) -> Path:
        return self.path / CACHE_DIR

    # -- repair after an interrupted run
    def _artifact_intact(self, v: dict) -> bool:
        if not v.get("artifact"):
            return False
        artifact = self.path / v["artifact"]
        if not artifact.exists():
            return False
        digest = v.get("artifact_sha256")
        return digest is None or file_digest(artifact) == digest

    def _repair(self, fresh: bool) -> None:
        """Remove what an interrupted run left incomplete, with a note for each."""
        def note(text: str) -> None:
            self.notes.append(text)

        kept = []
        for v in self.variants:
            if v.get("status") == "done" and not self._artifact_intact(v):
                note(f"{v['name']}: its artifact {v.get('artifact')} is missing or incomplete; "
                     f"the variant will be made again")
                continue
            kept.append(v)
        self.record["variants"] = kept
        owned = {Path(v["artifact"]).parts[0] for v in kept if v.get("status") == "done" and v.get("artifact")}
        for child in sorted(self.path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir() and (fresh or child.name not in owned):
                _remove(child)
                note(f"removed {child.name}/: {'--fresh' if fresh else 'not a finished variant (left by an interrupted run)'}")
        for tmp in self.path.glob(f".{RUN_FILE}.*"):
            tmp.unlink()  # a run.json temp file of a run killed while writing
        cache = self.path / CACHE_DIR
        if cache.exists():
            for entry in cache.iterdir():
                if entry.is_dir() and not (entry / "step.json").exists():
                    _remove(entry)  # written model first, step.json last: no step.json, not complete
        if self.notes:
            self.record["notes"] = [*self.record.get("notes", []), *(f"{_now()} {n}" for n in self.notes)][-50:]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _safe_dirname(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


def _mismatch(old: dict, header: dict) -> str | None:
    if old.get("model", {}).get("sha256") != header["model"]["sha256"]:
        return f"another model ({old.get('model', {}).get('path')})"
    if old.get("data", {}).get("fingerprint") != header["data"]["fingerprint"]:
        return f"other data ({old.get('data', {}).get('source')})"
    scored = (old.get("data", {}).get("scored") or {}).get("output")
    if scored is not None and scored != (header["data"].get("scored") or {}).get("output"):
        return f"another scored output (--output {scored})"  # kept variants would score another output
    keep = ("threads", "runs")
    if any(old.get("settings", {}).get(k) != header["settings"].get(k) for k in keep):
        return "other measurement settings (threads/runs)"
    return None


def read_record(path: Path) -> tuple[Path, object]:
    """(run.json's path, its parsed JSON as written: no version check, no migration) of a run
    directory or the file itself. Raises UserError when there is no run.json or it is not JSON."""
    path = Path(path)
    run_file = path / RUN_FILE if path.is_dir() else path
    if not run_file.is_file():
        raise UserError(f"{path} is not a run directory (no {RUN_FILE}); create one with edgeopt optimize")
    try:
        return run_file, json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{run_file} is not valid JSON ({getattr(e, 'msg', e)})") from None


def load_run(path: Path) -> dict:
    """run.json of a run directory (or the file itself) as a schema-version-2 dict.

    Raises UserError for a missing or unreadable file and for a schema version this edgeopt
    cannot read; version 1 is migrated."""
    run_file, record = read_record(path)
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version not in READABLE_VERSIONS:
        raise UserError(f"{run_file} has schema version {version}; this edgeopt reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))} (re-run edgeopt optimize with --fresh)")
    return migrate(record)


def read_run(path: Path) -> Run:
    """The typed ``Run`` of a run directory (see ``load_run``)."""
    run = Run.model_validate(load_run(path))
    path = Path(path)
    run._path = path if path.is_dir() else path.parent
    return run


def migrate(record: dict) -> dict:
    """A version-1 record in the version-2 layout (a version-2 record is returned unchanged)."""
    if record.get("schema_version") == SCHEMA_VERSION:
        return record
    record = json.loads(json.dumps(record))  # a deep copy
    for v in record.get("variants", []):
        metrics = v.get("metrics")
        if isinstance(metrics, dict):
            v["graph"] = {k: metrics.pop(k) for k in GRAPH_KEYS if k in metrics}
            metrics["provenance"] = provenance(metrics.get("how") or {})
        v.setdefault("steps", [{"step": s, "config": None} for s in v.get("recipe", [])])
    record["schema_version"] = SCHEMA_VERSION
    return record


def provenance(how: dict) -> dict:
    """``metrics.provenance`` from the ``how`` block that measure.bench writes."""
    return {"runtime": how.get("runtime"), "version": how.get("runtime_version"),
            "threads": how.get("threads"), "cpu": how.get("cpu"), "flags": list(how.get("cpu_flags") or [])}


def graph_of(variant: dict) -> dict:
    """A variant's graph facts, from ``graph`` or (older records) ``metrics``."""
    return variant.get("graph") or {k: (variant.get("metrics") or {}).get(k) for k in GRAPH_KEYS}


def json_schema() -> dict:
    """The JSON Schema of run.json (version 2), generated from ``edgeopt.core.types.Run``."""
    schema = Run.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgeopt run.json (schema version 2)"
    return schema


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
