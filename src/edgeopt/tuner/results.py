"""Reading a study back: trial records, accounting, the Pareto front, the best or the closest
variant with a plain sentence, and the hypervolume of a front."""
from __future__ import annotations

from typing import Sequence

from edgeopt.tuner.types import Accounting, Objective, TrialRecord

# user_attrs written by the objective (edgeopt.tuner.study)
STATUS, REASON = "status", "reason"


def record(frozen) -> TrialRecord:
    """A TrialRecord from an Optuna FrozenTrial written by edgeopt's objective."""
    from optuna.trial import TrialState

    ua = frozen.user_attrs
    state = frozen.state
    if "repeat_of" in ua:
        status = "repeat"
    elif state == TrialState.COMPLETE:
        status = "done"
    elif state == TrialState.PRUNED:
        status = ua.get(STATUS, "stopped")
    elif state == TrialState.FAIL:
        status = ua.get(STATUS, "lost")  # no status: the worker died (heartbeat) before writing one
    else:
        status = state.name.lower()  # running | waiting
    seconds = None
    if frozen.datetime_start and frozen.datetime_complete:
        seconds = round((frozen.datetime_complete - frozen.datetime_start).total_seconds(), 3)
    return TrialRecord(
        number=frozen.number, status=status, recipe=ua.get("recipe", ""),
        description=ua.get("description", ""), steps=ua.get("steps", []), params=dict(frozen.params),
        accuracy=ua.get("accuracy"), metrics=ua.get("metrics", {}), violations=ua.get("violations", []),
        constraints=dict(frozen.constraints), artifact_id=ua.get("artifact_id"),
        artifact_name=ua.get("artifact_name"), reason=ua.get(REASON),
        retry_of=frozen.system_attrs.get("failed_trial"), worker=ua.get("worker"), seconds=seconds,
        seed=bool(ua.get("seed", False)), repeat_of=ua.get("repeat_of"))


def account(trials: Sequence[TrialRecord]) -> Accounting:
    """Count trials by status; ``retried`` counts trials that re-run a lost one."""
    acc = Accounting()
    for t in trials:
        if hasattr(acc, t.status):
            setattr(acc, t.status, getattr(acc, t.status) + 1)
        if t.retry_of is not None:
            acc.retried += 1
    return acc


def _signed(t: TrialRecord, objectives: Sequence[Objective]) -> list[float]:
    """Loss vector (everything minimized): -accuracy, then each objective."""
    out = [-float(t.accuracy)]
    for o in objectives:
        v = float(t.value(o.name))
        out.append(v if o.direction == "minimize" else -v)
    return out


def pareto_front(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Feasible done trials that no other feasible trial dominates (accuracy and every objective)."""
    ok = [t for t in trials if t.feasible]
    losses = {t.number: _signed(t, objectives) for t in ok}

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [t for t in ok if not any(dominates(losses[o.number], losses[t.number]) for o in ok
                                     if o.number != t.number)]


def pick_best(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> TrialRecord | None:
    """The feasible trial best on the first objective; ties go to the later objectives, then to
    accuracy."""
    ok = [t for t in trials if t.feasible]
    if not ok:
        return None
    return min(ok, key=lambda t: (_signed(t, objectives)[1:] + [-float(t.accuracy)]))


def pick_closest(trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The done trial that misses its constraints by the least (then the most accurate)."""
    done = [t for t in trials if t.status == "done"]
    if not done:
        return None
    return min(done, key=lambda t: (t.excess, -float(t.accuracy or 0)))


def sentence(target: str, best: TrialRecord | None, closest: TrialRecord | None,
             trials: Sequence[TrialRecord], max_accuracy_drop: float,
             objectives: Sequence[Objective]) -> str:
    """One plain sentence: what won, or that nothing met the constraints and what came closest."""
    if best is not None:
        figures = ", ".join(fmt_metric(o.name, best) for o in objectives)
        return (f"{target}: trial {best.number} ({best.description}) meets the constraints "
                f"(accuracy {best.accuracy:.4f}, {figures}).")
    if closest is not None:
        misses = "; ".join(v["reason"] for v in closest.violations)
        drop = closest.constraints.get("accuracy")
        if drop is not None and drop > 0:
            misses = (f"it loses {drop + max_accuracy_drop:.2f} accuracy points where "
                      f"{max_accuracy_drop:g} are allowed" + (f"; {misses}" if misses else ""))
        return (f"{target}: no variant met the constraints; the closest is trial {closest.number} "
                f"({closest.description}): {misses or 'see its violations'}.")
    reasons = sorted({t.reason for t in trials if t.reason and t.status in ("rejected", "failed", "stopped")})
    if reasons:
        return (f"{target}: no variant met the constraints and none finished: "
                f"{'; '.join(reasons[:3])}{' ...' if len(reasons) > 3 else ''}.")
    return f"{target}: no trial has finished yet."


def fmt_metric(name: str, t: TrialRecord) -> str:
    """``latency_ms 0.21 (measured)``"""
    m = t.metrics.get(name, {})
    return f"{name} {m.get('value', float('nan')):.4g} ({m.get('provenance', '?')})"


def hypervolume(fronts: dict[str, Sequence[TrialRecord]], objectives: Sequence[Objective]) -> dict[str, float]:
    """Hypervolume of each front in one shared frame, so the numbers compare.

    Every objective (accuracy maximized, the rest as directed) is scaled to [0, 1] over the union
    of the fronts' points, and the reference point is 1.1 in every coordinate (the worst point
    seen plus 10%). Uses Optuna's exact WFG implementation (While et al. 2012, "A Fast Way of
    Calculating Exact Hypervolumes"). An empty front has hypervolume 0.
    """
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    points = {k: np.array([_signed(t, objectives) for t in f if t.feasible], dtype=float).reshape(
        -1, len(objectives) + 1) for k, f in fronts.items()}
    union = np.concatenate([p for p in points.values()]) if points else np.zeros((0, 1))
    if len(union) == 0:
        return {k: 0.0 for k in fronts}
    low, high = union.min(axis=0), union.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    ref = np.full(union.shape[1], 1.1)
    out = {}
    for k, p in points.items():
        if len(p) == 0:
            out[k] = 0.0
            continue
        scaled = np.minimum((p - low) / span, ref)
        out[k] = float(compute_hypervolume(scaled, ref))
    return out
