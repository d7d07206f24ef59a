"""Former home of run directories and analysis, kept for existing importers.

New code imports from ``edgeopt.engine.store`` (run.json), ``edgeopt.engine.analysis``
(baseline comparison, Pareto front, budget) and ``edgeopt.engine.runner`` (chains).
"""
from __future__ import annotations

from pathlib import Path

from edgeopt.core.types import SCHEMA_VERSION
from edgeopt.engine import store
from edgeopt.engine.analysis import (PARETO_OBJECTIVES, best_within_budget, compare_to_baseline,
                                     objective_values, pareto_front)
from edgeopt.engine.runner import BASELINE
from edgeopt.engine.store import RUN_FILE, RunDir, file_digest, read_run

__all__ = ["SCHEMA_VERSION", "RUN_FILE", "BASELINE", "RunDir", "load_run", "read_run", "file_digest",
           "compare_to_baseline", "pareto_front", "objective_values", "best_within_budget",
           "PARETO_OBJECTIVES"]


def load_run(path: Path) -> dict:
    """run.json as readers written for schema version 1 expect it: each variant's graph facts
    (``graph``) are also visible under ``metrics``. New readers use ``engine.store.load_run``
    (or ``read_run``), which keeps them apart. Raises UserError like ``engine.store.load_run``."""
    record = store.load_run(path)
    for v in record.get("variants", []):
        if isinstance(v.get("metrics"), dict) and v.get("graph"):
            v["metrics"] = {**v["graph"], **v["metrics"]}
    return record
