"""Measure a deployable artifact in a real runtime: accuracy, latency, throughput, size, memory.

Every figure records how it was obtained (runtime and version, threads, CPU model and flags).
"""
from __future__ import annotations

import gzip
import time
from dataclasses import asdict
from pathlib import Path

from edgeopt.measure.env import cpu_info
from edgeopt.measure.latency import TIMED, measure_latency, measure_throughput, prepared_batch
from edgeopt.core.metrics import task_metrics


def file_sizes(path: Path) -> dict:
    data = Path(path).read_bytes() if Path(path).is_file() else _dir_bytes(Path(path))
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9))}


def _dir_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def bench_artifact(path: Path, dataset, *, runtime: str = "litert", threads: int = 1, runs: int = 200,
                   warmup: int = 20, batch: int = 32, eval_limit: int | None = None,
                   output_name: str | int | None = None, metric=None, thresholds=None, reference=None,
                   budget: float | None = None, keep_outputs: dict | None = None) -> dict:
    """Accuracy on the full eval split (batched), latency at batch 1, throughput, sizes, RSS.

    Several inputs are all fed (``dataset.x_eval`` as NamedArrays); several outputs are each scored
    (``per_output``), the headline on ``output_name`` (``--output``; default the first labelled).
    ``metric``: a ``CustomMetric`` (``--metric``); ``thresholds``: multilabel per-label thresholds.
    ``reference``: the float model's outputs on the same eval samples; adds ``fidelity``
    (top-1 agreement, SNR, cosine) and is the whole score for ``task == "fidelity"``.
    ``budget``: the accuracy budget (fraction) for the eval-resolution flag. Accuracies carry
    ``accuracy_ci95`` (Wilson). ``keep_outputs``: a dict that receives ``{"eval": outputs}``.
    """
    import psutil

    from edgeopt.core.metrics import fidelity, with_confidence
    from edgeopt.runtimes.registry import get_runtime

    rt = get_runtime(runtime)
    info = rt.info()
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    session = rt.load(Path(path), threads=threads)
    x, y = dataset.x_eval, dataset.y_eval
    if eval_limit:
        x, y = x[:eval_limit], (y[:eval_limit] if y is not None else None)
    t0 = time.perf_counter()
    pred = model_named(session.predict(x), dataset)
    eval_seconds = time.perf_counter() - t0
    reference = model_named(reference, dataset) if reference is not None else None
    if keep_outputs is not None:
        keep_outputs["eval"] = pred
    metrics = score(pred, y, dataset, output_name=output_name, metric=metric, thresholds=thresholds,
                    reference=reference[:len(x)] if reference is not None else None)
    metrics = with_confidence(metrics, budget)
    if reference is not None and dataset.task != "fidelity":
        metrics["fidelity"] = fidelity(_chosen(pred, metrics), _chosen(reference[:len(x)], metrics),
                                       getattr(dataset, "output_reading", "auto"))
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
                "latency": f"batch 1, {warmup} warm-up runs, median of {lat.runs} timed runs; {TIMED}",
                "throughput": f"batch {batch} (a call infers {prepared_batch(session, batch)}); {TIMED}",
                "accuracy": f"{len(x)} eval samples, batched",
                "cpu": cpu_info()["model"], "cpu_flags": cpu_info()["flags"]},
    }
    if len(session.inputs) > 1:
        result["how"]["inputs"] = f"{len(session.inputs)} inputs matched by {session.input_match}: " + \
            ", ".join(f"{i.name} {list(i.shape[1:])}" for i in session.inputs)
    return result


def multilabel_thresholds(path: Path, dataset, *, runtime: str = "litert", threads: int = 1,
                          output_name: str | int | None = None) -> list[float] | None:
    """Per-label thresholds for a multilabel task, chosen on the validation split with the
    artifact's own outputs (``metrics.choose_thresholds``); None for other tasks or no validation
    data. Pass them to ``bench_artifact(thresholds=...)`` and record them with the variant."""
    from edgeopt.core.arrays import NamedArrays
    from edgeopt.core.metrics import choose_thresholds
    from edgeopt.runtimes.registry import get_runtime

    if dataset.task != "multilabel" or len(dataset.x_val) == 0:
        return None
    pred = model_named(get_runtime(runtime).load(Path(path), threads=threads).predict(dataset.x_val), dataset)
    y = dataset.y_val
    if isinstance(pred, NamedArrays):
        name = output_name if output_name is not None else (dataset.label_outputs or pred.names)[0]
        pred = pred[name] if isinstance(name, str) else pred.as_list()[int(name)]
        y = y[name] if isinstance(y, NamedArrays) and isinstance(name, str) and name in y else \
            (y.as_list()[0] if isinstance(y, NamedArrays) else y)
    return [float(t) for t in choose_thresholds(pred, y, getattr(dataset, "output_reading", "auto"))]


def score(pred, y, dataset, *, output_name=None, metric=None, thresholds=None, reference=None) -> dict:
    """The task metric of outputs ``pred`` against labels ``y`` for ``dataset``'s task(s), or the
    fidelity to ``reference`` for the label-free task "fidelity" (headline ``top1_agreement``)."""
    from edgeopt.core.metrics import fidelity

    if dataset.task == "fidelity" or y is None:
        if reference is None:
            return {"metric": "fidelity", "note": "no labels and no float reference to compare with"}
        return {**fidelity(pred, reference, getattr(dataset, "output_reading", "auto")), "metric": "top1_agreement"}
    tasks = dataset.tasks if len(getattr(dataset, "tasks", []) or []) > 1 else dataset.task
    pred = model_named(pred, dataset)
    labelled = getattr(dataset, "label_outputs", []) or []
    if output_name is None and len(labelled) == 1 and hasattr(pred, "names"):
        output_name = labelled[0]
    return task_metrics(pred, y, tasks, getattr(dataset, "output_reading", "auto"), output_name=output_name,
                        thresholds=thresholds, metric=metric)


def model_named(outputs, dataset):
    """Several outputs keyed by the model's output names (``dataset.output_names``, in model order)
    instead of the artifact's (``output_0``, ``Identity_1``...); anything else unchanged."""
    names = getattr(dataset, "output_names", []) or []
    if hasattr(outputs, "names") and len(names) == len(outputs.names):
        from edgeopt.core.arrays import NamedArrays

        return NamedArrays(dict(zip(names, outputs.as_list())))
    return outputs


def _chosen(outputs, metrics: dict):
    """The scored output of several (``metrics["output"]``), or the outputs themselves."""
    if hasattr(outputs, "names") and metrics.get("output") in outputs.names:
        return outputs[metrics["output"]]
    return outputs


def _peak_rss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
