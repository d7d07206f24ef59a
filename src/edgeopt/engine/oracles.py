"""Measurement oracles handed to techniques through ``StepContext``: techniques ask these to score
candidate artifacts and never import a runtime themselves.

All of them measure in the runtime that the artifact's format maps to (LiteRT for .tflite), on
one thread, so candidates are compared the same way the run measures variants.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

PAIRED_ROUNDS = 7  # alternating rounds of the paired latency measurement


def runtime_for(path: Path) -> str:
    """The runtime that measures an artifact of this format: the runtimes registry's preferred one
    (.tflite -> litert, .onnx -> onnxruntime, .xml -> openvino)."""
    from edgeopt.runtimes.registry import runtime_for as preferred

    return preferred(Path(path))


def _session(path: Path, threads: int = 1):
    from edgeopt.runtimes.registry import get_runtime

    return get_runtime(runtime_for(Path(path))).load(Path(path), threads=threads)


def accuracy_oracle(dataset, threads: int = 1, split: str = "eval") -> Callable[[Path], float] | None:
    """``evaluate(path) -> quality`` on the ``split`` ("eval", or "val" for choosing among
    candidates): accuracy in [0, 1] for classification, -MAE for regression (higher is better in
    both). None when there is no dataset."""
    if dataset is None:
        return None
    x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")

    def evaluate(path: Path) -> float:
        from edgeopt.core.metrics import task_metrics

        metrics = task_metrics(_session(path, threads).predict(x), y, dataset.task)
        return float(metrics.get("accuracy", -metrics.get("mae", 0.0)))
    return evaluate


def predict(path: Path, x: np.ndarray, threads: int = 1):
    """Outputs of an artifact on inputs ``x`` (shape (n, ...)), run in the runtime its format maps
    to: what techniques compare candidate files with (``StepContext.predict``). An array for one
    output; NamedArrays (model-output order) for several."""
    out = _session(Path(path), threads).predict(x)
    return out if hasattr(out, "as_list") else np.asarray(out)


def latency_ms(path: Path, x1: np.ndarray, runs: int = 100) -> float:
    """Median batch-1 latency in ms of an artifact on input ``x1`` (shape (1, ...)), 1 thread,
    10 warm-up runs."""
    from edgeopt.measure.latency import measure_latency

    return float(measure_latency(_session(path), x1, runs=runs, warmup=10).p50_ms)


def paired_latency_us(path_a: Path, path_b: Path, x1: np.ndarray, threads: int = 1,
                      runs: int = 200, max_seconds: float = 2.0) -> tuple[float, float]:
    """Median batch-1 latency (us) of two artifacts, measured alternately in this process
    (``PAIRED_ROUNDS`` rounds of ``runs`` timed calls each, ``max_seconds`` at most per round and
    artifact) so load from other processes hits both alike."""
    from edgeopt.measure.latency import measure_latency

    sessions = [_session(path_a, threads), _session(path_b, threads)]
    samples: list[list[float]] = [[], []]
    for _ in range(PAIRED_ROUNDS):
        for i, s in enumerate(sessions):
            samples[i].append(measure_latency(s, x1, runs=runs, warmup=20, max_seconds=max_seconds).p50_ms * 1000)
    return float(np.median(samples[0])), float(np.median(samples[1]))


def load_average() -> float | None:
    """The 1-minute load average of this machine (None where the OS has none), recorded beside
    every latency so a reader can see how busy the machine was."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def paired_speed(baseline: Path, artifact: Path, x1: np.ndarray, threads: int = 1, runs: int = 200) -> dict:
    """The baseline and a variant timed alternately in this process: ``{"baseline_us", "variant_us",
    "rounds", "threads", "loadavg_1m_before", "loadavg_1m_after"}`` (the ``paired`` argument of
    ``analysis.compare_to_baseline``)."""
    before = load_average()
    base_us, var_us = paired_latency_us(baseline, artifact, x1, threads, runs=min(runs, 200), max_seconds=1.0)
    return {"baseline_us": round(base_us, 3), "variant_us": round(var_us, 3), "rounds": PAIRED_ROUNDS,
            "threads": threads, "loadavg_1m_before": before, "loadavg_1m_after": load_average()}
