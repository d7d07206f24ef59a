"""Run directories: a baseline and variants, each measured the same way, in a schema-versioned run.json.

Layout::

    runs/<name>/run.json            # written atomically after every variant
    runs/<name>/<variant>/model.tflite

Re-running into an existing run directory resumes: variants already done (same model, same data,
same settings that affect measurement) are kept.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from edgeopt.errors import UserError
from edgeopt.fsutil import atomic_write_json, ensure_writable_dir

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
BASELINE = "float32"


def variant_name(chain: list[str]) -> str:
    return "+".join(chain)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


class RunDir:
    def __init__(self, path: Path, record: dict):
        self.path = Path(path)
        self.record = record

    # ------------------------------------------------------------ creation / resume
    @classmethod
    def open(cls, path: Path, header: dict, fresh: bool = False) -> "RunDir":
        """Open a run directory for writing, resuming when it holds a compatible run."""
        path = ensure_writable_dir(Path(path))
        run_file = path / RUN_FILE
        if run_file.exists() and not fresh:
            old = load_run(path)
            mismatch = _mismatch(old, header)
            if mismatch:
                raise UserError(f"{path} holds a run of {mismatch}; choose another --out or pass --fresh "
                                f"to start over")
            old.update({k: v for k, v in header.items() if k not in ("variants", "created")})
            return cls(path, old)
        record = {"schema_version": SCHEMA_VERSION, "created": _now(), **header, "variants": []}
        return cls(path, record)

    def save(self) -> None:
        self.record["updated"] = _now()
        atomic_write_json(self.path / RUN_FILE, self.record)

    # ------------------------------------------------------------ variants
    @property
    def variants(self) -> list[dict]:
        return self.record["variants"]

    def get(self, name: str) -> dict | None:
        return next((v for v in self.variants if v["name"] == name), None)

    def is_done(self, name: str) -> bool:
        v = self.get(name)
        return bool(v and v.get("status") == "done" and (self.path / v["artifact"]).exists())

    def put(self, variant: dict) -> None:
        for i, v in enumerate(self.variants):
            if v["name"] == variant["name"]:
                self.variants[i] = variant
                break
        else:
            self.variants.append(variant)
        self.save()

    def variant_dir(self, name: str) -> Path:
        d = self.path / _safe_dirname(name)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d


def _safe_dirname(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


def _mismatch(old: dict, header: dict) -> str | None:
    if old.get("model", {}).get("sha256") != header["model"]["sha256"]:
        return f"another model ({old.get('model', {}).get('path')})"
    if old.get("data", {}).get("fingerprint") != header["data"]["fingerprint"]:
        return f"other data ({old.get('data', {}).get('source')})"
    keep = ("threads", "runs")
    if any(old.get("settings", {}).get(k) != header["settings"].get(k) for k in keep):
        return "other measurement settings (threads/runs)"
    return None


def load_run(path: Path) -> dict:
    path = Path(path)
    run_file = path / RUN_FILE if path.is_dir() else path
    if not run_file.exists():
        raise UserError(f"{path} is not a run directory (no {RUN_FILE}); create one with edgeopt optimize")
    try:
        record = json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{run_file} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if record.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{run_file} has schema version {record.get('schema_version')}; this edgeopt "
                        f"reads version {SCHEMA_VERSION}")
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------ comparisons


def compare_to_baseline(metrics: dict, base: dict, task: str) -> dict:
    """Changes against the float32 baseline, with a plain statement of faster/slower."""
    out: dict[str, Any] = {}
    if task == "classification" and "accuracy" in metrics and "accuracy" in base:
        out["accuracy_delta_points"] = round((metrics["accuracy"] - base["accuracy"]) * 100, 3)
    elif "mae" in metrics and "mae" in base:
        out["mae_delta"] = round(metrics["mae"] - base["mae"], 6)
    out["size_ratio"] = round(base["size_bytes"] / metrics["size_bytes"], 3)  # >1: smaller
    out["gzip_ratio"] = round(base["gzip_bytes"] / metrics["gzip_bytes"], 3)
    speed = base["latency_ms"]["p50_ms"] / metrics["latency_ms"]["p50_ms"]  # >1: faster
    out["speedup"] = round(speed, 3)
    runtime = metrics.get("how", {}).get("runtime", "this runtime")
    if speed >= 1.05:
        out["speed"] = f"{speed:.2f}x faster than float32 on {runtime}"
    elif speed <= 0.95:
        out["speed"] = f"{1 / speed:.2f}x slower than float32 on {runtime}"
    else:
        out["speed"] = f"same speed as float32 on {runtime} (within 5%)"
    return out


# ------------------------------------------------------------ executing recipes


def execute_chain(chain: list[str], model_loader: Callable[[], Any], ctx) -> tuple[Path, dict, list]:
    """Run the steps of one recipe on a fresh copy of the model; return (artifact, details, quant_errors)."""
    from edgeopt.steps import get_step

    steps = [get_step(n) for n in chain]
    converts = [s for s in steps if s.kind == "convert"]
    if len(converts) > 1 or (converts and steps[-1].kind != "convert"):
        raise UserError(f"recipe {'+'.join(chain)}: exactly one conversion step ({converts[0].name if converts else ''}) "
                        f"may end a recipe; training steps come before it")
    model = model_loader()
    details: dict[str, Any] = {"steps": []}
    quant_errors: list = []
    artifact = None
    for step in steps:
        t0 = time.perf_counter()
        ctx.log(f"{'+'.join(chain)}: {step.name}")
        result = step.run(ctx, model)
        details["steps"].append({"step": step.name, "seconds": round(time.perf_counter() - t0, 2),
                                 **(result.details or {})})
        quant_errors = result.quant_errors or quant_errors
        if step.kind == "keras":
            model = result.model
            if (result.details.get("sparse_encoding") or {}).get("helps"):
                ctx.options["try_sparse_encoding"] = True  # the float32 conversion may store it sparse
        else:
            artifact = result.artifact
    if artifact is None:  # a recipe of training steps only ends with the matching conversion
        from edgeopt.techniques.qat import is_qat_model

        final = "int8" if is_qat_model(model) else BASELINE
        result = get_step(final).run(ctx, model)
        details["steps"].append({"step": final, **(result.details or {})})
        quant_errors = result.quant_errors or quant_errors
        artifact = result.artifact
    return artifact, details, quant_errors


def failure_record(name: str, chain: list[str], err: BaseException) -> dict:
    message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    rec = {"name": name, "recipe": chain, "status": "failed", "error": message}
    if not isinstance(err, UserError):
        rec["traceback"] = traceback.format_exc(limit=6)
    return rec


# ------------------------------------------------------------ trade-offs

# (metric path, direction): higher accuracy, smaller file, lower latency
PARETO_OBJECTIVES = (("accuracy", "max"), ("size_bytes", "min"), ("latency_p50_ms", "min"))


def objective_values(variant: dict) -> dict[str, float]:
    m = variant.get("metrics", {})
    quality = m.get("accuracy", -m.get("mae", 0.0))
    return {"accuracy": quality, "size_bytes": m.get("size_bytes"),
            "latency_p50_ms": m.get("latency_ms", {}).get("p50_ms")}


def pareto_front(variants: list[dict], objectives=PARETO_OBJECTIVES) -> list[str]:
    """Names of the done variants no other variant beats on every objective (ties allowed)."""
    done = [v for v in variants if v.get("status") == "done"]
    signed = {v["name"]: [objective_values(v)[k] * (1 if d == "max" else -1) for k, d in objectives]
              for v in done}

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [n for n, vals in signed.items()
            if not any(dominates(other, vals) for m, other in signed.items() if m != n)]


def best_within_budget(variants: list[dict], max_drop_points: float | None) -> dict[str, Any]:
    """The smallest and the fastest variant whose accuracy drop vs float32 stays within the budget
    (all done variants when no budget is given). Always returns something when a variant is done."""
    done = [v for v in variants if v.get("status") == "done"]
    if not done:
        return {}

    def drop(v):
        return -(v.get("vs_baseline") or {}).get("accuracy_delta_points", 0.0)

    ok = [v for v in done if max_drop_points is None or drop(v) <= max_drop_points] or \
        [min(done, key=drop)]  # nothing meets the budget: hand back the most accurate
    return {"smallest": min(ok, key=lambda v: v["metrics"]["size_bytes"])["name"],
            "fastest": min(ok, key=lambda v: v["metrics"]["latency_ms"]["p50_ms"])["name"],
            "budget_met": any(max_drop_points is None or drop(v) <= max_drop_points for v in done)}
