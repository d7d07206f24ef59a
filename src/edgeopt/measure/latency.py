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


# What the throughput and latency figures time (shown in tables/footers next to them).
TIMED = "the runtime call only, inputs already set (no copy, quantize or output gathering)"


def measure_throughput(session, x: np.ndarray, batch: int, seconds: float = 2.0) -> float:
    """Inferences per second at a given batch size: the runtime call alone (``invoke_prepared``,
    inputs set once, as ``measure_latency`` times batch 1), repeated for ~``seconds``. ``x`` is an
    array or NamedArrays (every input of a several-input model fed). A model stored with a fixed
    batch smaller than ``batch`` runs at that batch (a call infers ``prepared_batch`` samples).
    Sessions without ``invoke_prepared`` fall back to timing ``predict`` on the whole batch."""
    if hasattr(x, "map"):  # NamedArrays: resize every input alike
        xb = x.map(lambda a: np.resize(a, (batch,) + a.shape[1:]).astype(np.float32))
    else:
        xb = np.resize(x, (batch,) + x.shape[1:]).astype(np.float32)
    if hasattr(session, "invoke_prepared"):
        per_call = prepared_batch(session, batch)
        call = session.invoke_prepared(xb[:per_call])
    else:
        call = (lambda: session.predict(xb, batch_size=batch)) if _accepts_batch(session) else \
            (lambda: session.predict(xb))
        per_call = batch
    call()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        call()
        n += per_call
    return n / (time.perf_counter() - t0)


def prepared_batch(session, batch: int) -> int:
    """Samples one prepared call infers: ``batch``, or the model's fixed batch axis when that is a
    smaller positive number (a static-batch graph cannot be resized: it runs its stored batch)."""
    shape = session.inputs[0].shape if getattr(session, "inputs", None) else ()
    fixed = shape[0] if shape and isinstance(shape[0], (int, np.integer)) and shape[0] > 0 else None
    if getattr(session, "_static", None) is False:  # LiteRT reports the allocated batch; it resizes
        fixed = None
    return int(fixed) if fixed and fixed < batch else batch
