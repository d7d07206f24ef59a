"""Search for a target device: accuracy-constrained multi-objective optimization over recipe
chains (Optuna), resumable (SQLite in the run directory) and distributed (PostgreSQL workers).

    from edgeopt.tuner import run_search, default_space, Objective, TrialOutcome, Metric
    result = run_search(default_space(), evaluate, ["host-cpu"], run_dir="runs/s",
                        baseline_accuracy=0.91, max_accuracy_drop=1.0, n_trials=30)
    result.targets["host-cpu"].sentence

Optuna and the database drivers are imported only when a search runs.
"""
from edgeopt.tuner.device import DeviceCheck, estimated_metrics
from edgeopt.tuner.evaluate import make_evaluate, make_precheck
from edgeopt.tuner.pruning import AccuracyPruner
from edgeopt.tuner.space import (OBJECTIVE_SEEDS, SEED_RECIPES, Param, SearchSpace, Slot, StepChoice, StepSpec,
                                 default_space, seed_recipes)
from edgeopt.tuner.storage import Heartbeat, open_artifact_store, open_storage
from edgeopt.tuner.study import collect, create_search, export_artifact, run_search, run_worker, study_name
from edgeopt.tuner.types import (Accounting, Metric, Objective, SearchResult, TargetResult, TrialOutcome,
                                  TrialRecord, TrialSpec, TrialStopped, Violation)

__all__ = ["make_evaluate", "make_precheck", "run_search", "run_worker", "create_search", "collect", "export_artifact", "study_name", "SearchSpace", "Slot",
           "StepChoice", "StepSpec", "Param", "default_space", "SEED_RECIPES", "OBJECTIVE_SEEDS", "seed_recipes",
           "TrialSpec", "TrialOutcome",
           "TrialStopped", "Metric", "Violation", "Objective", "TrialRecord", "TargetResult", "SearchResult",
           "Accounting", "AccuracyPruner", "DeviceCheck", "estimated_metrics", "Heartbeat", "open_storage",
           "open_artifact_store"]
