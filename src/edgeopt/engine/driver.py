"""Runs an optimization into a run directory: the baseline, then one variant per chain, each made
by the chain runner, measured in its runtime, compared with the baseline and recorded.

``optimize_run`` is what ``edgeopt.api.optimize`` calls once recipes are planned and the model
and data are loaded. It holds the run directory's lock for its whole duration, keeps variants
already done (same steps and configs, intact artifact), and times every new variant alternately
with the baseline in this process (``oracles.paired_speed``), so a speed ratio never compares
measurements taken minutes apart, even when the baseline comes from an earlier, resumed run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from edgeopt.engine import store
from edgeopt.engine.analysis import compare_to_baseline
from edgeopt.engine.faults import crash_point
from edgeopt.engine.oracles import accuracy_oracle, load_average, paired_speed
from edgeopt.engine.runner import BASELINE, ChainRunner, chain_key, closed, failure_record

Log = Callable[[str], None]


def optimize_run(m, ds, chains: list, *, out: Path, header: dict, threads: int = 1, runs: int = 200,
                 unsafe: bool = False, fresh: bool = False, log: Log | None = None,
                 progress: Callable[[str, int, int], None] | None = None, measure: dict | None = None,
                 load_model: Callable | None = None) -> Path:
    """Make and measure the baseline and ``chains`` for model ``m`` (a LoadedModel) on ``ds`` into
    the run directory ``out``; returns its path. ``header``: run.json's model/data/settings block.
    ``measure``: how variants are scored (``reference`` float outputs for fidelity, a custom
    ``metric``, the ``output`` to score, the ``input_shape`` given, the accuracy ``budget``).
    ``load_model(path or None)``: the Keras loader (None = the input model; default load_keras).
    Raises UserError when another process holds ``out`` or it holds an incompatible run."""
    from edgeopt.model_io import load_keras
    from edgeopt.recipes import Chain, Float32
    from edgeopt.steps import StepContext

    log = log or (lambda msg: None)
    with store.RunDir.open(out, header, fresh=fresh) as run:
        for note in run.notes:
            log(f"note: {note}")
        measure = dict(measure or {})
        if getattr(ds, "task_reason", None):  # after the run directory is ours: errors stay one line
            log(task_line(ds, measure.get("output")))
        given = measure.get("input_shape")
        note = record_static_shapes(run, m, ds, given)
        if note:
            log(f"input shape: {note}")
        base_ctx = StepContext(dataset=ds, work_dir=run.path, log=log, evaluate=accuracy_oracle(ds, threads),
                               options={"input_shape": given} if given is not None else {})
        root = chain_key(header["model"]["sha256"], {"data": header["data"]["fingerprint"], "seed": base_ctx.seed})
        # a model given as a file (.onnx, .tflite): its steps take the file's path (Step.inputs)
        if m.kind == "keras":
            loader = load_model or (lambda p: load_keras(p or m.path, unsafe=unsafe))
        else:
            loader = lambda p: m.path  # noqa: E731
        engine = ChainRunner(run.cache_dir, loader, base_ctx, root)
        baseline = Chain(BASELINE, [Float32()])
        todo = [baseline] + [c for c in chains if c.name != baseline.name]
        for i, chain in enumerate(todo):
            if progress:
                progress(chain.name, i, len(todo))
            steps = [] if copied(m, chain) else closed(chain).records()
            if run.is_done(chain.name, steps):
                log(f"{chain.name}: kept from the earlier run")
                continue
            run.put(make_variant(run, engine, m, ds, chain, threads, runs, log, measure))
        summarize(run)
        if progress:
            progress("done", len(todo), len(todo))
        return run.path


def summarize(run: store.RunDir) -> dict:
    """Mark ``over_budget`` on every done variant and store the budget verdict as ``budget``:
    ``{"points", "met", "smallest", "fastest", "closest", "summary"}`` (``summary``: one sentence
    for the table and the report; the budget is ``settings.options.max_accuracy_drop``, else
    ``analysis.DEFAULT_BUDGET_POINTS``). Saves run.json; returns the verdict."""
    from edgeopt.engine.analysis import best_within_budget

    budget = ((run.record.get("settings") or {}).get("options") or {}).get("max_accuracy_drop")
    best = best_within_budget(run.variants, budget)
    verdict = {"points": best.get("budget_points"), "met": best.get("budget_met", False),
               "smallest": best.get("smallest"), "fastest": best.get("fastest"), "closest": best.get("closest"),
               "summary": best.get("summary", "no variant is done, so none can be recommended")}
    run.record["budget"] = verdict
    run.save()
    return verdict


def task_line(ds, output=None) -> str:
    """The printed task line: the task of the scored output (``--output``), named when the model
    has several outputs, and why it was inferred."""
    task, why, name = ds.scored_task(output)
    return f"task: {task}" + (f" for output {name!r}" if name else "") + (f" ({why})" if why else "")


def make_header(m, ds, out: Path, chains: list, options: dict, threads: int, runs: int,
                warnings: list[str], output=None) -> dict:
    """run.json's header: the model (with its sha256 and its output names in model order), the
    data (with a fingerprint; ``task``/``task_reason`` and ``scored`` (``{"output", "task",
    "reason"}``) are the scored output's, ``tasks`` one per labelled output), the settings.
    ``output``: ``--output``."""
    from edgeopt.measure.env import environment
    from edgeopt.recipes import options_json

    names = [o.name for o in (m.outputs or [])]
    task, why, name = ds.scored_task(output)
    data = {"source": ds.name, **ds.summary()}
    data.pop("task_reason", None)  # the first output's; the scored output's replaces it
    data.update(task=task, **({"task_reason": why} if why else {}))
    return {
        "name": Path(out).name,
        "model": {"path": str(m.path), "kind": m.kind, "name": m.name, "input_shape": list(m.input_shape),
                  "sha256": store.file_digest(m.path), **m.info, **({"outputs": names} if names else {})},
        "data": {**data, "fingerprint": data_fingerprint(ds), "scored": {"output": name, "task": task, "reason": why}},
        "settings": {"threads": threads, "runs": runs, "recipes": [c.name for c in chains],
                     "options": options_json(options)},
        "environment": environment(),
        "warnings": warnings,
    }


def data_fingerprint(ds) -> str:
    """16 hex digits identifying the data (``Dataset.fingerprint``; the same as ``api.optimize``'s)."""
    return ds.fingerprint()


def make_variant(run: store.RunDir, engine: ChainRunner, m, ds, chain, threads: int, runs: int,
                 log: Log, measure: dict | None = None) -> dict[str, Any]:
    """One variant's record: made in ``run.variant_dir``, measured (task metric, fidelity against
    ``measure["reference"]``, latency, sizes), compared with the baseline by a paired timing; a
    failure record (``put`` removes its folder) when anything fails. ``measure``: see optimize_run;
    for a .tflite/.onnx input the baseline's own outputs become the fidelity reference."""
    from edgeopt.errors import one_line
    from edgeopt.measure.bench import bench_artifact, multilabel_thresholds
    from edgeopt.runtimes.registry import runtime_for

    measure = measure if measure is not None else {}
    work = run.variant_dir(chain.name)
    base = run.get(BASELINE)
    base_done = base if base and run.is_done(BASELINE) else None
    engine.base_ctx.baseline_accuracy = ((base_done or {}).get("metrics") or {}).get("accuracy")
    t0 = time.perf_counter()
    try:
        if not copied(m, chain):
            result = engine.run(chain, work)
            artifact, steps, details, quant_errors = result.artifact, result.steps, result.details, \
                result.quant_errors
        else:
            artifact, steps, details, quant_errors = _copy_artifact(m.path, work), [], {"steps": []}, []
        check_before_measuring(artifact, ds)
        runtime = runtime_for(artifact)
        thresholds = multilabel_thresholds(artifact, ds, runtime=runtime, threads=threads,
                                           output_name=measure.get("output"))
        kept: dict = {}
        metrics = bench_artifact(artifact, ds, runtime=runtime, threads=threads, runs=runs,
                                 output_name=measure.get("output"), metric=measure.get("metric"),
                                 thresholds=thresholds, reference=measure.get("reference"), keep_outputs=kept,
                                 budget=_budget(run))
        if measure.get("reference") is None and chain.name == BASELINE:
            measure["reference"] = kept.get("eval")  # a .tflite/.onnx model: fidelity vs its baseline
        if thresholds is not None:
            metrics["thresholds"] = thresholds
        metrics["loadavg_1m"] = load_average()
        metrics["provenance"] = store.provenance(metrics.get("how") or {})
        crash_point("measurement")
        vs = None
        if base_done and chain.name != BASELINE:
            paired = paired_speed(run.path / base_done["artifact"], artifact, ds.x_eval[:1], threads, runs)
            vs = compare_to_baseline(metrics, base_done["metrics"], ds.task, paired=paired)
        graph = graph_summary(artifact) if Path(artifact).suffix.lower() != ".xml" else \
            _ir_graph_summary(m.path, details)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one failing variant must not lose the others
        rec = failure_record(chain.name, chain if copied(m, chain) else closed(chain), err)
        log(f"{chain.name}: failed: {rec.get('error') or one_line(err)}")
        return rec
    variant = {"name": chain.name, "recipe": [s["step"] for s in steps] or [BASELINE], "steps": steps,
               "status": "done", "artifact": str(Path(artifact).relative_to(run.path)), "metrics": metrics,
               "graph": graph, "details": details, "quant_errors": quant_errors,
               "seconds": round(time.perf_counter() - t0, 2)}
    if m.kind == "keras":
        variant["input_shapes"], note = _static_shapes(m, ds, measure.get("input_shape"))
        if note:
            variant["input_shape_note"] = note
    if vs is not None:
        variant["vs_baseline"] = vs
        why = _collapse_explained(run, ds, variant, base_done["metrics"], measure.get("budget"))
        if why:
            variant["numerics"] = why
    return variant


def record_static_shapes(run: store.RunDir, m, ds, given) -> str:
    """For a Keras model with open (None) axes: the static shapes every variant is converted at,
    recorded once in run.json (``model.conversion_input_shapes``, ``model.input_shape_note``);
    returns the note (empty when no axis is open or the model is a file)."""
    if m.kind != "keras":
        return ""
    shapes, note = _static_shapes(m, ds, given)
    if note:
        run.record["model"].update({"conversion_input_shapes": shapes, "input_shape_note": note})
    return note


def _static_shapes(m, ds, given) -> tuple[dict, str]:
    """({input name: [1, ...]} the variant was converted with, a note when an open axis was fixed)."""
    from edgeopt.convert import conversion_shape, static_input_shapes

    shape = conversion_shape(m.keras, given, ds.input_shape)
    shapes = {k: list(v) for k, v in static_input_shapes(m.keras, shape).items()}
    if not m.open_axes and not any(None in i.shape for i in m.inputs):
        return shapes, ""
    source = "--input-shape" if given is not None else "the data"
    return shapes, "open axes fixed from " + source + ": " + \
        ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())


def _collapse_explained(run: store.RunDir, ds, variant: dict, base_metrics: dict,
                        budget: float | None) -> dict | None:
    """For an int8 variant whose accuracy drops past the budget (points; default 1): which tensor
    ranges outliers stretch and which calibration fixes it (``numerics.explain_outliers``)."""
    acc, base = variant["metrics"].get("accuracy"), base_metrics.get("accuracy")
    if acc is None or base is None or "int8" not in str(variant.get("graph", {}).get("precision")):
        return None
    if (base - acc) * 100 <= (budget if budget is not None else 1.0) or hasattr(ds.x_train, "names"):
        return None
    from edgeopt.numerics import explain_outliers

    float_file = run.path / run.get(BASELINE)["artifact"]
    try:
        report = explain_outliers(float_file.read_bytes(), ds.calibration(300))
    except Exception as err:  # the explanation is a help; the variant is measured and kept
        from edgeopt.errors import one_line

        return {"summary": f"could not explain the drop: {type(err).__name__}: {one_line(err)}"}
    return {"summary": report.summary(), **report.to_dict()} if report.found else None


def copied(m, chain) -> bool:
    """The float32 baseline of a model given as a file (.onnx, .tflite) is the file itself."""
    return m.kind != "keras" and chain.name == BASELINE


def check_before_measuring(artifact: Path, ds) -> None:
    """Load the artifact in its runtime and run one eval sample; ArtifactCheckFailed (the runtime's
    whole message) when that fails, so a broken artifact is "failed", never measured."""
    import numpy as np

    from edgeopt.techniques.artifact_check import ArtifactCheckFailed, check_artifact

    x = ds.x_eval
    if not isinstance(x, np.ndarray):  # several inputs: the runtime session checks them when measuring
        return
    reason = check_artifact(artifact, x[:1] if len(x) else None)
    if reason:
        raise ArtifactCheckFailed(reason)


def _budget(run: store.RunDir) -> float | None:
    """The accuracy budget as a fraction (``max_accuracy_drop`` is in points), for the eval-resolution flag."""
    drop = ((run.record.get("settings") or {}).get("options") or {}).get("max_accuracy_drop")
    return float(drop) / 100 if isinstance(drop, (int, float)) and drop > 0 else None


def _ir_graph_summary(source: Path, details: dict) -> dict:
    """An OpenVINO IR has no graph reader here: MACs and parameters are its source model's (the
    quantizer keeps the graph), the precision is the step's."""
    graph = graph_summary(source)
    return {**graph, "precision": (details.get("produces") or {}).get("precision", graph["precision"]),
            "peak_activation_bytes": None, "tflm_arena_bytes": None,
            "tflm_arena_note": "OpenVINO IR: MACs and parameters of the source model; no TFLite Micro arena"}


def _copy_artifact(src: Path, work: Path) -> Path:
    from edgeopt.fsutil import atomic_write_bytes

    return atomic_write_bytes(work / src.name, Path(src).read_bytes())


def graph_summary(artifact: Path) -> dict:
    """MACs, parameters, peak activation memory and the TFLite Micro arena of the artifact."""
    from edgeopt.measure.graph import profile_path

    prof = profile_path(Path(artifact))
    return {"macs": prof.total_macs, "params": prof.total_params, "precision": prof.precision,
            "peak_activation_bytes": prof.peak_activation_bytes, "tflm_arena_bytes": prof.arena_bytes,
            "tflm_arena_note": prof.arena_note}
