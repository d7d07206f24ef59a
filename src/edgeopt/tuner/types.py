"""What the search hands to an objective and what it gets back, and the typed results.

The objective is any callable ``evaluate(spec: TrialSpec) -> TrialOutcome``: it builds the
variant the spec describes (fine-tune, convert), measures it, and says which device
constraints the artifact breaks. The search never imports a technique or a runtime.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from edgeopt.tuner.space import StepSpec, describe, recipe_name

Provenance = Literal["measured", "estimated"]


class TrialStopped(Exception):
    """Raised inside ``evaluate`` (by ``TrialSpec.report`` or ``TrialSpec.check_artifact``) to end a
    trial early: the search records it as stopped with ``reason`` and moves on."""

    def __init__(self, reason: str, status: str = "stopped"):
        super().__init__(reason)
        self.reason = reason
        self.status = status  # "stopped" (accuracy out of reach) | "rejected" (device constraint)


@dataclass
class Metric:
    """One objective value with where it came from. ``provenance``: measured on the artifact in a
    runtime, or estimated (device model); ``source`` says which (runtime + version, estimator)."""

    value: float
    provenance: Provenance
    unit: str = ""
    source: str = ""


@dataclass
class Violation:
    """A broken constraint: ``constraint`` is a short key (ram, flash, ops, precision, accuracy),
    ``reason`` a plain sentence."""

    constraint: str
    reason: str


@dataclass
class TrialOutcome:
    """The measured result of one trial.

    accuracy: the task metric on the eval split, a fraction in [0, 1] (higher is better).
    metrics: objective name -> Metric (e.g. latency_ms, size_bytes, energy_mj).
    violations: device constraints the artifact breaks (empty: it fits and runs).
    artifact: the deployable file; uploaded to the artifact store when the trial completes.
    """

    accuracy: float
    metrics: dict[str, Metric] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    artifact: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialSpec:
    """One trial as the objective sees it: the chain to build, for which target, and two hooks.

    report(step, accuracy): call from the fine-tune loop after each epoch (accuracy: a fraction);
        raises TrialStopped when the pruner decides the accuracy constraint is out of reach.
    check_artifact(path): call right after conversion, before the costly measurements; raises
        TrialStopped(status="rejected") when the device check rejects the artifact.
    """

    number: int
    target: str
    steps: list[StepSpec]
    params: dict[str, Any]
    work_dir: Path
    report: Callable[[int, float], None] = lambda step, accuracy: None
    check_artifact: Callable[[Path], None] = lambda path: None

    @property
    def recipe(self) -> str:
        return recipe_name(self.steps)

    @property
    def description(self) -> str:
        return describe(self.steps)

    def has(self, step: str) -> bool:
        return any(s.step == step for s in self.steps)

    def config(self, step: str) -> dict | None:
        return next((dict(s.config) for s in self.steps if s.step == step), None)


@dataclass(frozen=True)
class Objective:
    """An objective read from ``TrialOutcome.metrics[name]``; accuracy is always maximized too."""

    name: str
    direction: Literal["minimize", "maximize"] = "minimize"


@dataclass
class TrialRecord:
    """One finished (or stopped/failed) trial as read back from the study."""

    number: int
    status: str  # done | stopped | rejected | failed | repeat | skipped | lost (heartbeat) | running | waiting
    recipe: str
    description: str
    steps: list[dict]
    params: dict[str, Any]
    accuracy: float | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    violations: list[dict] = field(default_factory=list)
    constraints: dict[str, float] = field(default_factory=dict)
    artifact_id: str | None = None
    artifact_name: str | None = None
    reason: str | None = None
    retry_of: int | None = None
    worker: str | None = None
    seconds: float | None = None
    seed: bool = False
    repeat_of: int | None = None  # a repeat carries this earlier trial's measurement; never on the front

    @property
    def feasible(self) -> bool:
        return self.status == "done" and all(v <= 0 for v in self.constraints.values())

    @property
    def excess(self) -> float:
        """How far the trial misses its constraints (0 when it meets them)."""
        return sum(max(0.0, v) for v in self.constraints.values())

    def value(self, name: str) -> float | None:
        if name == "accuracy":
            return self.accuracy
        m = self.metrics.get(name)
        return None if m is None else m["value"]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Accounting:
    """Every trial of a study by state. ``counted`` is what the budget counts: trials that ended
    with a result (done, stopped, rejected, failed); a trial lost with a killed worker is not
    counted, its retry is; a ``repeat`` (a point the study had already measured) is not counted."""

    done: int = 0
    stopped: int = 0
    rejected: int = 0
    failed: int = 0
    lost: int = 0
    skipped: int = 0
    repeat: int = 0
    running: int = 0
    waiting: int = 0
    retried: int = 0

    @property
    def counted(self) -> int:
        return self.done + self.stopped + self.rejected + self.failed

    def to_dict(self) -> dict:
        return {**asdict(self), "counted": self.counted}


@dataclass
class TargetResult:
    """Per target: the best variant that meets the constraints (or the closest, and a sentence
    saying none met them), the Pareto front of the feasible trials, and the accounting."""

    target: str
    study: str
    objectives: list[Objective]
    met: bool
    best: TrialRecord | None
    closest: TrialRecord | None
    front: list[TrialRecord]
    sentence: str
    accounting: Accounting
    trials: list[TrialRecord]
    hypervolume: float | None = None
    baseline: dict | None = None  # random-search comparison: {"study", "hypervolume", "front"}
    export_notes: list[str] = field(default_factory=list)  # what a user must know about the exported files

    def to_dict(self) -> dict:
        return {"target": self.target, "study": self.study,
                "objectives": [asdict(o) for o in self.objectives], "met": self.met,
                "best": self.best.to_dict() if self.best else None,
                "closest": self.closest.to_dict() if self.closest else None,
                "front": [t.number for t in self.front], "sentence": self.sentence,
                "accounting": self.accounting.to_dict(), "hypervolume": self.hypervolume,
                "baseline": self.baseline, "export_notes": list(self.export_notes),
                "trials": [t.to_dict() for t in self.trials]}


@dataclass
class SearchResult:
    """Every target's result. ``path``: the run directory (``edgeopt.search``; None for a bare
    ``run_search``); ``exports``: target -> the winner's exported files (artifact, C array, sketch)."""

    name: str
    storage: str
    targets: dict[str, TargetResult]
    path: Path | None = None
    exports: dict[str, list[Path]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "storage": self.storage, "path": str(self.path) if self.path else None,
                "targets": {k: v.to_dict() for k, v in self.targets.items()},
                "exports": {k: [str(p) for p in v] for k, v in self.exports.items()}}
