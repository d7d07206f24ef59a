"""Latency at batch 1 after warm-up: percentiles over N timed runs."""
from __future__ import annotations

import time

import numpy as np

from edgeopt.runtimes.base import LatencyStats


def measure_latency(session, x1: np.ndarray, runs: int = 200, warmup: int = 20,
                    max_seconds: float = 20.0) -> LatencyStats:
    """Time ``runs`` single-sample inferences (stopping early after ``max_seconds``).

    Uses the session's ``invoke_prepared`` when it has one, so input copies are not timed. ``x1``
    is an array or NamedArrays (a several-input model gets every input).
    """
    x1 = x1[:1]
    call = session.invoke_prepared(x1) if hasattr(session, "invoke_prepared") else (lambda: session.predict(x1))
    for _ in range(warmup):
        call()
    samples = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000.0)
        if t0 > deadline and len(samples) >= 10:
            break
    arr = np.array(samples)
    p50 = float(np.percentile(arr, 50))
    return LatencyStats(p50, float(np.percentile(arr, 90)), float(np.percentile(arr, 99)),
                        float(arr.mean()), len(samples), 1000.0 / p50 if p50 > 0 else float("inf"),
                        [round(s, 5) for s in samples])


def measure_throughput(session, x: np.ndarray, batch: int, seconds: float = 2.0) -> float:
    """Inferences per second at a given batch size (the batch repeated for ~``seconds``); ``x`` is an
    array or NamedArrays (every input of a several-input model fed)."""
    if hasattr(x, "map"):  # NamedArrays: resize every input alike
        xb = x.map(lambda a: np.resize(a, (batch,) + a.shape[1:]).astype(np.float32))
    else:
        xb = np.resize(x, (batch,) + x.shape[1:]).astype(np.float32)
    session.predict(xb, batch_size=batch) if _accepts_batch(session) else session.predict(xb)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        session.predict(xb, batch_size=batch) if _accepts_batch(session) else session.predict(xb)
        n += batch
    return n / (time.perf_counter() - t0)


def _accepts_batch(session) -> bool:
    import inspect
    return "batch_size" in inspect.signature(session.predict).parameters
