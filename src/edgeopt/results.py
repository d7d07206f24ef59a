"""Typed results of the public API functions (``edgeopt.compare``, ``estimate``, ``recommend``,
``export``, ``report``); ``optimize`` returns ``edgeopt.Run``, ``explain`` a ``Variant``,
``footprint`` a ``Footprint``. Each has ``to_dict()`` (plain JSON types) and ``to_json()``.

Light module: the records they hold (compare rows, device estimates) are imported only for typing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from edgeopt.compare import Row
    from edgeopt.hardware.estimator import Estimate
    from edgeopt.hardware.recommend import Recommendation

# progress(what, done, total): called before each unit of work and once at the end (done == total)
Progress = Callable[[str, int, int], None]


def _plain(obj: Any) -> Any:
    """Dataclasses, Paths, enums and numpy scalars to JSON types."""
    from edgeopt.fsutil import _json_default

    return json.loads(json.dumps(obj, default=_json_default))


class _Result:
    def to_dict(self) -> dict:
        return _plain(asdict(self) if is_dataclass(self) else vars(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@dataclass
class CompareResult(_Result):
    """One model in every runtime at every precision: ``rows`` (``edgeopt.compare.Row``, one per
    runtime x precision, measured or with the reason it was not) and the fastest runtime per precision."""
    model: str
    data: dict
    threads: int
    runs: int
    rows: list["Row"]
    fastest: dict[str, str]
    environment: dict = field(default_factory=dict)
    out: Path | None = None  # where artifacts and compare.json were kept, if anywhere

    def to_dict(self) -> dict:
        d = {"model": self.model, "data": self.data, "threads": self.threads, "runs": self.runs,
             "environment": self.environment, "fastest": self.fastest, "rows": [asdict(r) for r in self.rows]}
        return _plain(d)


@dataclass
class EstimateRow(_Result):
    """One variant (a model file, or a run's variant) on one device."""
    variant: str
    estimate: "Estimate"

    def to_dict(self) -> dict:
        return _plain({"variant": self.variant, **self.estimate.to_dict()})


@dataclass
class Estimates(_Result):
    """Per-device estimates (never measurements) of each variant; units ms, mJ, W, h, bytes."""
    target: str
    rows: list[EstimateRow]
    inferences_per_hour: float | None = None
    battery_mah: float | None = None

    def to_dict(self) -> dict:
        return {"target": self.target, "inferences_per_hour": self.inferences_per_hour,
                "battery_mah": self.battery_mah, "rows": [r.to_dict() for r in self.rows]}


@dataclass
class Recommendations(_Result):
    """Devices ranked for a model or run (feasible first), each with its best variant and reasons."""
    target: str
    items: list["Recommendation"]

    def to_dict(self) -> dict:
        return {"target": self.target, "items": [_plain(r.to_dict()) for r in self.items]}


@dataclass
class ExportResult(_Result):
    """A deploy bundle: the artifact it was made from, the target and the files written."""
    artifact: Path
    target: str
    out: Path
    name: str
    files: list[Path]
    sample: str  # where the bundle's sample input came from


@dataclass
class ReportResult(_Result):
    """The HTML report written for a run directory."""
    run_dir: Path
    path: Path
    size_bytes: int
