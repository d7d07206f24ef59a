"""A cheap synthetic objective for the search tests, and a worker entry point.

The "model" is a formula: accuracy falls with narrower students, structured pruning, high
sparsity, few clusters and lower precision; size and latency fall with them. Each trial sleeps a
little (SEARCH_TEST_SLEEP seconds) so that workers overlap, writes a small artifact file and may
report a learning curve.

    python tests/search_synthetic.py worker STORAGE_URL SEARCH_NAME WORK_DIR   # join a search
    python tests/search_synthetic.py search RUN_DIR N_TRIALS                   # run one (SQLite)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from edgeopt.tuner import Metric, TrialOutcome, TrialSpec, Violation

BYTES = {"int8": 1, "mixed": 1.3, "dynamic": 1, "float16": 2, "float32": 4}


def closing(spec: TrialSpec) -> str:
    for name in ("int8", "mixed", "dynamic", "float16"):
        if spec.has(name):
            return name
    return "float32"


def facts(spec: TrialSpec) -> tuple[float, float, float]:
    width = (spec.config("distill") or {}).get("width", 1.0)
    ratio = (spec.config("prune-structured") or {}).get("ratio", 0.0)
    sparsity = (spec.config("prune") or {}).get("sparsity", 0.0)
    clusters = (spec.config("cluster") or {}).get("clusters", 256)
    prec = closing(spec)
    acc = 0.90 - 0.06 * (1 - width) ** 2 - 0.04 * ratio ** 2 - 0.05 * max(0.0, sparsity - 0.7)
    acc -= 0.02 / clusters ** 0.5 + {"int8": 0.004, "mixed": 0.001, "dynamic": 0.003}.get(prec, 0.0)
    acc += 0.003 if spec.has("qat") else 0.0
    keep = width * (1 - ratio)
    size = 100_000 * keep ** 2 * BYTES[prec]
    latency = 2.0 * keep ** 2 * (0.6 if prec in ("int8", "mixed") else 1.0)
    return acc, size, latency


def evaluate(spec: TrialSpec) -> TrialOutcome:
    acc, size, latency = facts(spec)
    marks = os.environ.get("SEARCH_TEST_MARKS")
    if marks:  # lets a test see which process runs which trial, and when
        Path(marks, f"{os.getpid()}-{spec.number}.started").touch()
    steps = int(os.environ.get("SEARCH_TEST_EPOCHS", "0"))
    for epoch in range(steps):  # a fake fine-tune: accuracy climbs to its final value
        spec.report(epoch, acc - 0.02 * (steps - 1 - epoch))
    time.sleep(float(os.environ.get("SEARCH_TEST_SLEEP", "0")))
    artifact = spec.work_dir / "model.tflite"
    artifact.write_bytes(b"x" * int(size // 100 + 1))
    spec.check_artifact(artifact)
    limit = float(os.environ.get("SEARCH_TEST_FLASH", "inf"))
    violations = [Violation("flash", f"model {size:.0f} B > {limit:.0f} B flash")] if size > limit else []
    return TrialOutcome(accuracy=acc, artifact=artifact, violations=violations,
                        metrics={"latency_ms": Metric(latency, "measured", "ms", "synthetic"),
                                 "size_bytes": Metric(size, "measured", "B", "synthetic")})


HEARTBEAT_FOR_TESTS = dict(interval=1, grace=3, max_retry=3)

if __name__ == "__main__":
    from edgeopt.tuner import Heartbeat, default_space, run_search, run_worker

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    hb = Heartbeat(**HEARTBEAT_FOR_TESTS)
    if sys.argv[1] == "worker":
        url, name, work = sys.argv[2:5]
        run_worker(url, name, evaluate=evaluate, work_dir=work, heartbeat=hb, log=log)
    else:
        run_dir, n = sys.argv[2], int(sys.argv[3])
        run_search(default_space(), evaluate, ["host-cpu"], run_dir=run_dir, baseline_accuracy=0.9,
                   n_trials=n, heartbeat=hb, log=log)
