"""Measure a deployable artifact in a real runtime: accuracy, latency, throughput, size, memory.

Every figure records how it was obtained (runtime and version, threads, CPU model and flags).
"""
from __future__ import annotations

import gzip
import time
from dataclasses import asdict
from pathlib import Path

from edgeopt.measure.env import cpu_info
from edgeopt.measure.latency import measure_latency, measure_throughput
from edgeopt.measure.metrics import task_metrics  # also importable from here, as before


def file_sizes(path: Path) -> dict:
    data = Path(path).read_bytes() if Path(path).is_file() else _dir_bytes(Path(path))
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9))}


def _dir_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def bench_artifact(path: Path, dataset, *, runtime: str = "litert", threads: int = 1, runs: int = 200,
                   warmup: int = 20, batch: int = 32, eval_limit: int | None = None) -> dict:
    """Accuracy on the full eval split (batched), latency at batch 1, throughput, sizes, RSS."""
    import psutil

    from edgeopt.runtimes.registry import get_runtime

    rt = get_runtime(runtime)
    info = rt.info()
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    session = rt.load(Path(path), threads=threads)
    x, y = dataset.x_eval, dataset.y_eval
    if eval_limit:
        x, y = x[:eval_limit], y[:eval_limit]
    t0 = time.perf_counter()
    pred = session.predict(x)
    eval_seconds = time.perf_counter() - t0
    metrics = task_metrics(pred, y, dataset.task)
    lat = measure_latency(session, x[:1], runs=runs, warmup=warmup)
    tput = measure_throughput(session, x, batch=batch, seconds=1.0)
    rss_after = proc.memory_info().rss
    result = {
        **metrics,
        "eval_samples": int(len(x)),
        "latency_ms": {k: round(v, 5) for k, v in asdict(lat).items() if k.endswith("_ms") and k != "samples_ms"},
        "latency_runs": lat.runs,
        "throughput_batch1_ips": round(lat.throughput_ips, 2),
        f"throughput_batch{batch}_ips": round(tput, 2),
        **file_sizes(path),
        "load_ms": round(session.load_seconds * 1000, 3),
        "rss_delta_bytes": int(max(0, rss_after - rss_before)),
        "peak_rss_bytes": _peak_rss(),
        "eval_seconds": round(eval_seconds, 3),
        "how": {"runtime": info.name, "runtime_version": info.version, "threads": threads,
                "latency": f"batch 1, {warmup} warm-up runs, median of {lat.runs} timed runs",
                "accuracy": f"{len(x)} eval samples, batched",
                "cpu": cpu_info()["model"], "cpu_flags": cpu_info()["flags"]},
    }
    return result


def _peak_rss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
