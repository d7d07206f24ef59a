"""Typed run records: ``Run`` holds ``Variant``s; a variant's measured ``Metrics`` (with their
``Provenance``) are kept apart from its ``GraphSummary`` (facts about the graph, not measurements).

These are the shapes of run.json (schema version 2; ``edgeopt.engine.store`` reads and writes
it, and ``engine/run.schema.json`` is generated from ``Run``). Unknown keys are kept (``extra``),
so records written by a newer edgeopt still load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

SCHEMA_VERSION = 2
GRAPH_KEYS = ("macs", "params", "precision", "peak_activation_bytes", "tflm_arena_bytes", "tflm_arena_note")


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Provenance(_Record):
    """How a figure was measured."""

    runtime: str | None = Field(None, description="runtime name, e.g. litert")
    version: str | None = Field(None, description="runtime version")
    threads: int | None = Field(None, description="runtime threads")
    cpu: str | None = Field(None, description="CPU model")
    flags: list[str] = Field(default_factory=list, description="CPU feature flags that matter (avx2, vnni...)")


class Metrics(_Record):
    """Measured on the artifact in a real runtime. Units: bytes, milliseconds, fractions."""

    accuracy: float | None = Field(None, description="top-1 accuracy on the eval split, in [0, 1]")
    mae: float | None = Field(None, description="mean absolute error (regression)")
    size_bytes: int | None = Field(None, description="artifact file size")
    gzip_bytes: int | None = Field(None, description="artifact size after gzip -9")
    latency_ms: dict[str, float] = Field(default_factory=dict, description="batch-1 latency percentiles")
    provenance: Provenance = Field(default_factory=Provenance)


class GraphSummary(_Record):
    """Facts read from the artifact's graph: MACs, parameters, precision, memory."""

    macs: int | None = None
    params: int | None = None
    precision: str | None = None
    peak_activation_bytes: int | None = None
    tflm_arena_bytes: int | None = Field(None, description="TFLite Micro arena measured on the host")
    tflm_arena_note: str | None = None


class StepRecord(_Record):
    """A step of the recipe with its exact config (None: not recorded, e.g. a migrated v1 run)."""

    step: str
    config: dict[str, Any] | None = None


class Variant(_Record):
    name: str
    recipe: list[str] = Field(default_factory=list, description="step names in order")
    steps: list[StepRecord] = Field(default_factory=list, description="steps with their exact configs")
    status: Literal["done", "failed"]
    artifact: str | None = Field(None, description="artifact path relative to the run directory")
    metrics: Metrics | None = None
    graph: GraphSummary | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    quant_errors: list[dict[str, Any]] = Field(default_factory=list)
    vs_baseline: dict[str, Any] | None = None
    seconds: float | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    def quality(self) -> float | None:
        """Accuracy, or -MAE for regression (higher is better); None when not measured."""
        if self.metrics is None:
            return None
        if self.metrics.accuracy is not None:
            return self.metrics.accuracy
        return None if self.metrics.mae is None else -self.metrics.mae

    def accuracy_drop_points(self) -> float:
        return -float((self.vs_baseline or {}).get("accuracy_delta_points", 0.0))

    def row(self) -> dict[str, Any]:
        """One flat table row: name, status, quality, sizes, latency, graph facts, vs float32."""
        m = self.metrics or Metrics()
        g = self.graph or GraphSummary()
        vs = self.vs_baseline or {}
        return {"variant": self.name, "status": self.status, "recipe": "+".join(self.recipe),
                "accuracy": m.accuracy, "mae": m.mae, "size_bytes": m.size_bytes, "gzip_bytes": m.gzip_bytes,
                "latency_p50_ms": m.latency_ms.get("p50_ms"), "latency_p99_ms": m.latency_ms.get("p99_ms"),
                "runtime": m.provenance.runtime, "precision": g.precision, "macs": g.macs, "params": g.params,
                "tflm_arena_bytes": g.tflm_arena_bytes,
                "accuracy_delta_points": vs.get("accuracy_delta_points"), "speedup": vs.get("speedup"),
                "size_ratio": vs.get("size_ratio"), "error": self.error}


class Run(_Record):
    """A run directory's record: the model, the data, the settings and every variant."""

    schema_version: Literal[2] = SCHEMA_VERSION
    name: str
    created: str | None = None
    updated: str | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=list)
    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The run directory this record was read from or written to."""
        return self._path

    def variant(self, name: str) -> Variant:
        """The variant called ``name``; KeyError (listing the names) when there is none."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")

    def to_frame(self):
        """A pandas DataFrame, one row per variant (see ``Variant.row`` for the columns)."""
        import pandas as pd

        return pd.DataFrame([v.row() for v in self.variants]).set_index("variant")

    def best(self, *, by: Literal["size", "latency", "accuracy"] = "size",
             max_accuracy_drop: float | None = None, max_size_bytes: int | None = None,
             max_latency_ms: float | None = None) -> Variant | None:
        """The done variant that is smallest (``by="size"``), fastest (p50, ``"latency"``) or most
        accurate (``"accuracy"``) among those within every given constraint: accuracy drop vs
        float32 in points, file size in bytes, p50 latency in ms. None when none qualifies;
        UserError for an unknown ``by``."""
        def ok(v: Variant) -> bool:
            m = v.metrics or Metrics()
            return (v.done and (max_accuracy_drop is None or v.accuracy_drop_points() <= max_accuracy_drop)
                    and (max_size_bytes is None or (m.size_bytes or 0) <= max_size_bytes)
                    and (max_latency_ms is None or m.latency_ms.get("p50_ms", float("inf")) <= max_latency_ms))

        keys = {"size": lambda v: v.metrics.size_bytes,
                "latency": lambda v: v.metrics.latency_ms.get("p50_ms", float("inf")),
                "accuracy": lambda v: -(v.quality() or float("-inf"))}
        if by not in keys:
            from edgeopt.errors import UserError

            raise UserError(f"best(by=...) must be one of {', '.join(keys)}, got {by!r}")
        return min((v for v in self.variants if ok(v)), key=keys[by], default=None)
