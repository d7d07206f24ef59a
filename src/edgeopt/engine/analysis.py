"""Analysis of a run's variants: change against the float32 baseline, the Pareto front of
quality, size and latency, and the best variant within an accuracy budget.

Works on variant records (dicts as stored in run.json) so it reads old and new runs alike.
"""
from __future__ import annotations

from typing import Any


DEFAULT_BUDGET_POINTS = 1.0  # accuracy budget when the user gives none


def compare_to_baseline(metrics: dict, base: dict, task: str, paired: dict | None = None) -> dict:
    """Changes against the float32 baseline, with a plain statement of faster/slower.

    ``paired`` (from ``engine.oracles.paired_speed``): the baseline and the variant timed
    alternately in one process; the speed ratio then comes from those two medians
    (``speed_basis: "paired"``) and the timing is kept under ``paired_latency``. Without it the
    ratio compares two separate measurements (``speed_basis: "separate"``), which load from other
    processes can skew: callers that can pair should."""
    out: dict[str, Any] = {}
    if task != "regression" and "accuracy" in metrics and "accuracy" in base:  # binary/multilabel too
        out["accuracy_delta_points"] = round((metrics["accuracy"] - base["accuracy"]) * 100, 3)
    elif "mae" in metrics and "mae" in base:
        out["mae_delta"] = round(metrics["mae"] - base["mae"], 6)
    out["size_ratio"] = round(base["size_bytes"] / metrics["size_bytes"], 3)  # >1: smaller
    out["gzip_ratio"] = round(base["gzip_bytes"] / metrics["gzip_bytes"], 3)
    if paired:
        speed = paired["baseline_us"] / paired["variant_us"]  # >1: faster
        out["speed_basis"], out["paired_latency"] = "paired", paired
    else:
        speed = base["latency_ms"]["p50_ms"] / metrics["latency_ms"]["p50_ms"]
        out["speed_basis"] = "separate"
    out["speedup"] = round(speed, 3)
    runtime = metrics.get("how", {}).get("runtime", "this runtime")
    if speed >= 1.05:
        out["speed"] = f"{speed:.2f}x faster than float32 on {runtime}"
    elif speed <= 0.95:
        out["speed"] = f"{1 / speed:.2f}x slower than float32 on {runtime}"
    else:
        out["speed"] = f"same speed as float32 on {runtime} (within 5%)"
    return out



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


def accuracy_drop_points(variant: dict) -> float:
    """Accuracy lost against float32, in points (negative: gained); 0 without a comparison."""
    return -float((variant.get("vs_baseline") or {}).get("accuracy_delta_points", 0.0))


def mark_budget(variants: list[dict], max_drop_points: float | None) -> float:
    """Set ``over_budget`` (bool) on every done variant: True when it drops more than the budget
    (``max_drop_points``; ``DEFAULT_BUDGET_POINTS`` when None). Returns the budget applied."""
    budget = DEFAULT_BUDGET_POINTS if max_drop_points is None else float(max_drop_points)
    for v in variants:
        if v.get("status") == "done":
            v["over_budget"] = accuracy_drop_points(v) > budget
    return budget


def best_within_budget(variants: list[dict], max_drop_points: float | None) -> dict[str, Any]:
    """The smallest and the fastest done variant whose accuracy drop vs float32 stays within the
    budget (``DEFAULT_BUDGET_POINTS`` when None). A variant over the budget is never returned:
    when none is within it, ``smallest``/``fastest`` are None, ``budget_met`` False and
    ``closest`` names the most accurate. "Fastest" ranks by the speed-up against float32
    (``vs_baseline.speedup``: the paired timing when there is one), the p50 breaking ties. The
    budget is in accuracy points: with an error metric (regression, MAE) it does not apply and
    ``summary`` says so and gives the winners' MAE change. ``summary`` is one sentence for the
    table/report. Marks ``over_budget`` on the records (see ``mark_budget``). {} when no variant
    is done."""
    done = [v for v in variants if v.get("status") == "done"]
    if not done:
        return {}
    budget = mark_budget(variants, max_drop_points)
    ok = [v for v in done if not v["over_budget"]]
    points = f"{budget:g} point{'s' if budget != 1 else ''}"
    if not ok:
        closest = min(done, key=accuracy_drop_points)
        return {"smallest": None, "fastest": None, "budget_met": False, "budget_points": budget,
                "closest": closest["name"],
                "summary": f"no variant stays within {points} of float32's accuracy; the closest, "
                           f"{closest['name']}, drops {accuracy_drop_points(closest):.2f} points"}
    smallest = min(ok, key=lambda v: v["metrics"]["size_bytes"])
    base = next((v for v in done if v["name"] == "float32"), None)
    base_p50 = base["metrics"]["latency_ms"]["p50_ms"] if base else None
    fastest = min(ok, key=lambda v: speed_rank(v, base_p50))
    over = [v["name"] for v in done if v["over_budget"]]
    if error_metric(done):
        summary = (f"the accuracy budget ({points}) does not apply to MAE; smallest {_with_mae(smallest)}, "
                   f"fastest {_with_mae(fastest)}")
    else:
        summary = f"within {points} of float32's accuracy: smallest {smallest['name']}, fastest {fastest['name']}"
    if over:
        summary += f" ({', '.join(over)} over the budget)"
    unq = list(dict.fromkeys(v["name"] for v in (smallest, fastest) if unquantized_warning(v)))
    if unq:
        summary += f"; {' and '.join(unq)} quantized no weights (still float)"
    return {"smallest": smallest["name"], "fastest": fastest["name"], "budget_met": True, "budget_points": budget,
            "summary": summary}


QUANTIZED_DTYPES = ("int8", "int4", "int16", "uint8")


def unquantized_warning(variant: dict) -> str | None:
    """One line when a quantizing step's artifact holds no quantized weight tensor (its
    ``weight_tensors`` counts, read from the flatbuffer by the step): e.g. dynamic range on a tiny
    MLP, where the converter skips tensors under 1024 elements, leaves a float32 model. None otherwise."""
    for step in (variant.get("details") or {}).get("steps", []):
        counts = step.get("weight_tensors")
        if step.get("precision") not in ("dynamic", "int8") or not counts:
            continue
        if not any(counts.get(d) for d in QUANTIZED_DTYPES):
            return (f"warning: {variant.get('name')}: the converter quantized no weights (weight tensors: "
                    f"{', '.join(f'{n} {d}' for d, n in counts.items())}); this variant is a float model")
    return None


def speed_rank(variant: dict, base_p50: float | None = None) -> tuple[float, float]:
    """Sort key, fastest first: minus the speed-up against float32 (``vs_baseline.speedup``, paired
    when measured so; else float32's p50 ``base_p50`` over the variant's; float32 itself 1.0),
    then the variant's own p50 (ms)."""
    p50 = variant["metrics"]["latency_ms"]["p50_ms"]
    speedup = (variant.get("vs_baseline") or {}).get("speedup")
    if speedup is None:
        speedup = base_p50 / p50 if base_p50 and p50 else 1.0
    return -float(speedup), p50


def error_metric(done: list[dict]) -> bool:
    """True when the scored output is an error metric (MAE), not an accuracy."""
    return bool(done) and all("accuracy" not in v["metrics"] and "mae" in v["metrics"] for v in done)


def _with_mae(v: dict) -> str:
    delta = (v.get("vs_baseline") or {}).get("mae_delta")
    return v["name"] + (f" (MAE {delta:+.4g})" if delta is not None else "")


def exit_code(variants: list[dict]) -> int:
    """The process exit code a run deserves: 0 when every variant (baseline included) is done,
    1 when any failed or none is done (2, bad input, is raised as UserError before any work)."""
    return 0 if variants and all(v.get("status") == "done" for v in variants) else 1
