"""What the HTML report shows, read from a run record (run.json v1 or v2) into plain dicts.

Pure functions on the record (no model loading): the summary, each variant's steps, training
histories, environment and provenance, and the search history. The per-layer and device views,
which read the artifacts, live in :mod:`edgeopt.report.layers` and :mod:`edgeopt.report.devices`.

run.json keys read (v1 / v2):
  name, created, updated, model{path,name,sha256,params}, data{source,eval,task}, settings{threads,
  runs,options{max_accuracy_drop}}, environment{cpu{model,flags},python,os,packages}, warnings,
  variants[{name, recipe, status, artifact, error, metrics{accuracy|mae, size_bytes, gzip_bytes,
  latency_ms{p50_ms,p99_ms}, how | provenance}, graph (v2; v1: the same keys in metrics), steps (v2:
  [{step, config}]) or details.steps (v1: [{step, seconds, ...}]), quant_errors, vs_baseline}],
  search (optional, see :func:`search_history`).
"""
from __future__ import annotations

import math
from pathlib import Path

from edgeopt.core.types import GRAPH_KEYS  # noqa: F401 (the engine's list; tests read it here)
from edgeopt.engine.analysis import DEFAULT_BUDGET_POINTS, speed_rank  # budget when the run set none
from edgeopt.errors import UserError
from edgeopt.report.format import fmt_bytes

READABLE_SCHEMAS = (1, 2)
# Step-detail keys shown elsewhere in the report (curves, per-layer view) or too bulky to list.
_SHOWN_ELSEWHERE = {"fine_tune", "layer_sparsity", "history", "kept_float", "tried"}


def read_run(run_dir: str | Path) -> dict:
    """The run record of ``run_dir`` (a run directory or its run.json); v1 and v2 are accepted.

    Raises UserError when there is no run.json, it is not JSON, or its schema is unknown."""
    from edgeopt.engine.store import read_record

    run_file, record = read_record(run_dir)  # as written: the report reads v1 and v2 layouts itself
    if not isinstance(record, dict) or record.get("schema_version") not in READABLE_SCHEMAS:
        version = record.get("schema_version") if isinstance(record, dict) else None
        raise UserError(f"{run_file} has schema version {version}; the report reads versions "
                        f"{', '.join(map(str, READABLE_SCHEMAS))}")
    if not isinstance(record.get("variants"), list):
        raise UserError(f"{run_file} has no 'variants' list")
    return record


# ------------------------------------------------------------------ one variant's facts
def done(record: dict) -> list[dict]:
    return [v for v in record["variants"] if v.get("status") == "done"]


def graph_fact(variant: dict, key: str):
    """A graph fact (macs, params, precision, ...): v2 ``graph`` first, then v1 ``metrics``."""
    graph = variant.get("graph") or {}
    return graph[key] if key in graph else (variant.get("metrics") or {}).get(key)


def quality(variant: dict) -> float | None:
    """Accuracy in [0, 1] for classification, -MAE for regression (higher is better)."""
    m = variant.get("metrics") or {}
    if "accuracy" in m:
        return m["accuracy"]
    return -m["mae"] if "mae" in m else None


def quality_text(variant: dict) -> str:
    m = variant.get("metrics") or {}
    if "accuracy" in m:
        return f"{m['accuracy'] * 100:.2f}%"
    return f"MAE {m['mae']:.4g}" if "mae" in m else "–"


def p50_ms(variant: dict) -> float | None:
    return ((variant.get("metrics") or {}).get("latency_ms") or {}).get("p50_ms")


def provenance(variant: dict) -> dict:
    """How the variant was measured: v2 ``metrics.provenance``, v1 ``metrics.how``."""
    m = variant.get("metrics") or {}
    return m.get("provenance") or m.get("how") or {}


def steps(variant: dict) -> list[dict]:
    """The variant's steps as ``[{"step": name, "seconds": s|None, "config": {...}}]``.

    v2 records carry ``steps: [{step, config}]`` with exact configs; v1 records mix configs and
    results in ``details.steps``. Keys shown elsewhere in the report are left out."""
    if isinstance(variant.get("steps"), list):
        raw = [{"step": s.get("step"), "seconds": s.get("seconds"), **(s.get("config") or {})}
               for s in variant["steps"]]
        detail_by_step = {d.get("step"): d for d in (variant.get("details") or {}).get("steps", [])}
    else:
        raw = (variant.get("details") or {}).get("steps", [])
        detail_by_step = {}
    out = []
    for s in raw:
        config = {k: v for k, v in s.items() if k not in ("step", "seconds") and k not in _SHOWN_ELSEWHERE}
        extra = detail_by_step.get(s.get("step"), {})
        seconds = s.get("seconds") if s.get("seconds") is not None else extra.get("seconds")
        out.append({"step": str(s.get("step")), "seconds": seconds, "config": config,
                    "results": {k: v for k, v in extra.items()
                                if k not in ("step", "seconds") and k not in _SHOWN_ELSEWHERE
                                and k not in config}})
    return out


def step_details(variant: dict) -> list[dict]:
    """Raw per-step result dicts (v1 ``details.steps``; v2 keeps results there too)."""
    details = (variant.get("details") or {}).get("steps")
    if isinstance(details, list):
        return details
    return [s.get("config") or {} for s in variant.get("steps") or []]


def kept_float(variant: dict) -> dict[str, str]:
    """Ops left in float: op or tensor name -> why (mixed precision reasons, converter fallbacks)."""
    out: dict[str, str] = {}
    for s in step_details(variant):
        for k in s.get("kept_float") or []:
            if isinstance(k, dict):
                out[str(k.get("tensor") or k.get("op"))] = str(k.get("reason", "kept float"))
        for op in s.get("float_ops") or []:
            out.setdefault(str(op), "no int8 kernel used by the converter (left float)")
    return out


def layer_sparsity(variant: dict) -> dict[str, float]:
    """Keras layer name -> fraction of zero weights, as the training steps recorded it."""
    out: dict[str, float] = {}
    for s in step_details(variant):
        out.update({str(k): float(v) for k, v in (s.get("layer_sparsity") or {}).items()})
    return out


def fine_tune_histories(variant: dict) -> list[dict]:
    """Each fine-tuning history of a variant: ``[{"step", "history", "diagnosis", "best_epoch", ...}]``."""
    out = []
    for s in step_details(variant):
        runs = s.get("fine_tune")
        for i, rep in enumerate(runs if isinstance(runs, list) else [runs] if runs else []):
            if isinstance(rep, dict) and rep.get("history"):
                label = s.get("step", "?") + (f" (round {i + 1})" if isinstance(runs, list) else "")
                out.append({"step": label, "history": rep["history"], "diagnosis": rep.get("diagnosis") or [],
                            "best_epoch": rep.get("best_epoch"), "epochs": rep.get("epochs"),
                            "epochs_run": rep.get("epochs_run"), "stopped_early": rep.get("stopped_early")})
    return out


# ------------------------------------------------------------------ summary
def budget_points(record: dict) -> tuple[float, bool]:
    """(allowed accuracy drop in points, whether the run set it); infinite for regression runs,
    whose quality (MAE) has no points to budget."""
    base = baseline_of(record)
    if base is not None and "accuracy" not in (base.get("metrics") or {}):
        return math.inf, False
    budget = ((record.get("settings") or {}).get("options") or {}).get("max_accuracy_drop")
    return (float(budget), True) if budget is not None else (DEFAULT_BUDGET_POINTS, False)


def drop_points(variant: dict, baseline: dict | None) -> float:
    """Accuracy lost against the baseline in points (negative: gained); quality units for MAE."""
    vs = variant.get("vs_baseline") or {}
    if "accuracy_delta_points" in vs:
        return -float(vs["accuracy_delta_points"])
    q, qb = quality(variant), quality(baseline) if baseline else None
    if q is None or qb is None:
        return 0.0
    return (qb - q) * (100 if "accuracy" in (variant.get("metrics") or {}) else 1)


def baseline_of(record: dict) -> dict | None:
    names = [v for v in done(record) if v.get("name") == "float32"]
    return names[0] if names else (done(record)[0] if done(record) else None)


FASTEST = "fastest (speed-up vs float32, measured here)"


def summary(record: dict) -> dict:
    """Baseline and, per objective measured on this machine, the variant to pick and why."""
    base = baseline_of(record)
    budget, given = budget_points(record)
    ok = [v for v in done(record) if drop_points(v, base) <= budget]
    picks = []
    base_p50 = p50_ms(base) if base else None
    # the terminal summary's rule (engine.analysis.speed_rank): paired speed-up vs float32, then p50
    fastest = (lambda v: speed_rank(v, base_p50) if p50_ms(v) is not None else None)
    for label, key, fmt in (("smallest file", lambda v: v["metrics"]["size_bytes"], fmt_bytes),
                            (FASTEST, fastest, lambda r: f"{-r[0]:.3g}x speed-up (p50 {r[1]:.4g} ms)"),
                            ("most accurate", lambda v: -(quality(v) or -math.inf), None)):
        pool = [v for v in ok if key(v) is not None]
        if not pool or base is None:
            continue
        best = min(pool, key=key)
        picks.append({"target": label, "variant": best["name"], "why": _why(best, base, key, fmt, budget)})
    return {"baseline": base, "budget": budget, "budget_given": given, "picks": picks,
            "within_budget": [v["name"] for v in ok]}


def _why(best: dict, base: dict, key, fmt, budget: float) -> str:
    acc = delta_text(best, base)
    if best is base:
        return "the baseline itself: no variant" + within(budget) + " does better"
    if fmt is None:
        return acc
    return f"{fmt(key(best))} vs {fmt(key(base))} for {base['name']}; {acc}"


def within(budget: float) -> str:
    """' within N point(s)' for a finite budget, '' for none."""
    return f" within {budget:g} point(s)" if math.isfinite(budget) else ""


def delta_text(variant: dict, base: dict | None) -> str:
    """Quality change against the baseline: '+0.50 points vs float32' or 'MAE +0.01 vs float32'."""
    name = base["name"] if base else "baseline"
    if "accuracy" in (variant.get("metrics") or {}):
        return f"{0.0 - drop_points(variant, base):+.2f} points vs {name}"
    return f"MAE {drop_points(variant, base):+.4g} vs {name}"


# ------------------------------------------------------------------ environment, search
def environment_rows(record: dict) -> list[tuple[str, str]]:
    """(label, text) pairs: where and with what the run was made."""
    env = record.get("environment") or {}
    cpu = env.get("cpu") or {}
    model, data, settings = record.get("model") or {}, record.get("data") or {}, record.get("settings") or {}
    rows = [("model file", f"{model.get('path', '?')} (sha256 {model.get('sha256', '?')})"),
            ("data", f"{data.get('source', '?')}: {data.get('train', '?')} train / {data.get('val', '?')} val / "
                     f"{data.get('eval', '?')} eval samples (fingerprint {data.get('fingerprint', '?')})"),
            ("CPU", f"{cpu.get('model', '?')}, {cpu.get('cores', '?')} cores, {cpu.get('arch', '')} "
                    f"[{', '.join(cpu.get('flags') or [])}]"),
            ("measurement", f"{settings.get('threads', '?')} thread(s), batch 1, median of "
                            f"{settings.get('runs', '?')} timed runs"),
            ("Python / OS", f"{env.get('python', '?')} / {env.get('os', '?')}"),
            ("packages", ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())),
            ("created / updated", f"{record.get('created', '?')} / {record.get('updated', '?')}")]
    return rows


def search_history(record: dict) -> dict | None:
    """The run's search history, or None when it has none.

    Expected input (``record["search"]``)::

        {"objectives": [{"name": "accuracy", "direction": "max"}, {"name": "size_bytes", "direction": "min"}],
         "trials": [{"number": 0, "state": "complete" | "pruned" | "failed",
                     "params": {"sparsity": 0.5, ...}, "values": {"accuracy": 0.97, "size_bytes": 13464},
                     "variant": "prune+int8" (optional), "error": "..." (optional)}]}

    Raises UserError when ``search`` is there but malformed."""
    search = record.get("search")
    if not search:
        return None
    if not isinstance(search, dict) or not isinstance(search.get("trials"), list):
        raise UserError("run.json: 'search' must be a mapping with a 'trials' list")
    objectives = search.get("objectives") or []
    if any(isinstance(o, dict) and "name" not in o for o in objectives):
        raise UserError("run.json: each search objective needs a 'name'")
    names = [str(o["name"]) if isinstance(o, dict) else str(o) for o in objectives]
    directions = [o.get("direction", "max") if isinstance(o, dict) else "max" for o in objectives]
    trials = []
    for i, t in enumerate(search["trials"]):
        if not isinstance(t, dict):
            raise UserError(f"run.json: search trial #{i + 1} is not a mapping")
        values = t.get("values") or {}
        if not isinstance(values, dict) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in values.values()):
            raise UserError(f"run.json: search trial #{i + 1}: 'values' must map objective names to numbers")
        trials.append({"number": t.get("number", i), "state": str(t.get("state", "complete")),
                       "params": t.get("params") or {}, "values": values,
                       "variant": t.get("variant"), "error": t.get("error")})
    if not names:
        names = sorted({k for t in trials for k in t["values"]})
        directions = ["max"] * len(names)
    return {"objectives": names, "directions": directions, "trials": trials}
