"""Analysis of a run's variants: change against the float32 baseline, the Pareto front of
quality, size and latency, and the best variant within an accuracy budget.

Works on variant records (dicts as stored in run.json) so it reads old and new runs alike.
"""
from __future__ import annotations

from typing import Any


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
