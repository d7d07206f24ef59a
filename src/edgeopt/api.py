"""The public Python API; the CLI is a thin layer over it.

    import edgeopt
    model = edgeopt.load_model("model.keras")
    data = edgeopt.load_data("fashion-mnist")
    edgeopt.bench(model, data)
    run = edgeopt.optimize(model, data, recipes=["ptq", [edgeopt.Prune(epochs=2), edgeopt.Int8()]])
    run.to_frame()                               # a pandas DataFrame, one row per variant
    run.best(by="size", max_accuracy_drop=0.5)   # the smallest variant within 0.5 points
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeopt.data import Dataset, check_against_model, load_data, quantized_input_range
from edgeopt.errors import UserError
from edgeopt.model_io import LoadedModel, load_keras, load_model

if TYPE_CHECKING:
    from edgeopt.core.types import Run

__all__ = ["load_model", "load_data", "profile", "bench", "optimize", "UserError"]

Log = Callable[[str], None]


def _as_model(model, unsafe: bool = False) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, unsafe=unsafe)
    raise UserError(f"expected a model path or a LoadedModel, got {type(model).__name__}")


def _as_data(data, **kwargs) -> Dataset:
    if isinstance(data, Dataset):
        return data
    return load_data(data, **kwargs)


def prepare(model, data, *, unsafe: bool = False, **data_kwargs) -> tuple[LoadedModel, Dataset, list[str]]:
    """Load a model and data and check one against the other (shape, classes)."""
    m = _as_model(model, unsafe)
    if isinstance(data, (str, Path)) and str(data) not in ("digits", "blobs2d", "fashion-mnist"):
        data_kwargs.setdefault("image_size", _image_size(m.input_shape))
        data_kwargs.setdefault("grayscale", m.input_shape[-1] == 1 if len(m.input_shape) == 3 else None)
    ds = _as_data(data, **data_kwargs)
    in_range = quantized_input_range(m.info.get("input_scale"), m.info.get("input_zero_point"), m.input_dtype)
    warnings = check_against_model(ds, m.input_shape, m.output_units, in_range)
    return m, ds, warnings


def _image_size(shape) -> tuple[int, int] | None:
    if len(shape) == 3 and shape[0] and shape[1]:
        return int(shape[0]), int(shape[1])
    return None


def profile(model, *, unsafe: bool = False, measure_arena: bool = True):
    """Per-layer/per-op graph statistics (params, MACs, memory) of a Keras, .tflite or .onnx model."""
    from edgeopt.measure import graph

    m = _as_model(model, unsafe)
    if m.kind == "keras":
        prof = graph.profile_keras(m.keras)
        prof.path = str(m.path)
        return prof
    if m.kind == "tflite":
        return graph.profile_tflite(m.path, measure_arena=measure_arena)
    return graph.profile_onnx(m.path)


def to_artifact(m: LoadedModel, work_dir: Path) -> Path:
    """The float32 deployable for a model: Keras is converted to .tflite; files are used as they are."""
    if m.kind != "keras":
        return m.path
    from edgeopt.convert import keras_to_tflite
    from edgeopt.fsutil import atomic_write_bytes

    return atomic_write_bytes(Path(work_dir) / f"{m.path.stem}.tflite", keras_to_tflite(m.keras))


def _runtime_for(path: Path) -> str:
    from edgeopt.runtimes.registry import runtime_for

    return runtime_for(path)


def bench(model, data, *, threads: int = 1, runs: int = 200, warmup: int = 20, unsafe: bool = False,
          keep_artifact: Path | None = None, **data_kwargs) -> dict:
    """Convert (Keras -> float32 .tflite) and measure the artifact in its runtime."""
    from edgeopt.measure.bench import bench_artifact
    from edgeopt.measure.env import environment

    _check_counts(threads, runs)
    m, ds, warnings = prepare(model, data, unsafe=unsafe, **data_kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = to_artifact(m, Path(keep_artifact or tmp))
        metrics = bench_artifact(artifact, ds, runtime=_runtime_for(artifact), threads=threads,
                                 runs=runs, warmup=warmup)
    return {"model": str(m.path), "artifact": artifact.name, "data": ds.summary(), "warnings": warnings,
            "metrics": metrics, "environment": environment()}


def _check_counts(threads: int, runs: int) -> None:
    if threads < 1:
        raise UserError(f"--threads must be at least 1 (got {threads})")
    if runs < 1:
        raise UserError(f"--runs must be at least 1 (got {runs})")


def plan_recipes(recipes: list | None, options: dict[str, Any] | None = None,
                 recipe_file: str | Path | None = None) -> tuple[list, dict[str, Any]]:
    """(validated chains, merged options) for ``optimize``: the recipe file's recipes come first,
    its options are overridden by ``options``. Loads nothing heavy; UserError on a bad recipe."""
    from edgeopt.recipes import load_recipe_file, plan

    recipes, options = list(recipes or []), dict(options or {})
    if recipe_file is not None:
        file_recipes, file_options = load_recipe_file(recipe_file)
        recipes, options = file_recipes + recipes, {**file_options, **options}
    return plan(recipes, options), options


def optimize(model, data, *, recipes: list | None = None, recipe_file: str | Path | None = None,
             out: str | Path | None = None, options: dict[str, Any] | None = None, threads: int = 1,
             runs: int = 200, unsafe: bool = False, fresh: bool = False, log: Log | None = None,
             progress: Callable[[str, int, int], None] | None = None, **data_kwargs) -> "Run":
    """Baseline + one variant per recipe, each measured on its artifact; returns the typed ``Run``
    (``run.path`` is the run directory, ``run.to_frame()`` a table, ``run.best(...)`` a choice).

    ``recipes``: chains such as ``"int8"``, ``"prune,cluster,int8"``, aliases such as ``"ptq"``, or
    lists of configs such as ``[Prune(sparsity=0.5), Int8(calibration="percentile")]`` (see
    ``edgeopt.recipes``). ``recipe_file``: a YAML file of recipes (and options) added before them.
    ``options``: step options, scoped (``{"prune.epochs": 2}``) or unscoped (``{"epochs": 2}``: every
    step with that field). Recipes and options are validated (UserError) before anything loads.
    """
    from edgeopt.engine import runner as enginerun
    from edgeopt.engine import store
    from edgeopt.engine.oracles import accuracy_oracle
    from edgeopt.measure.env import environment
    from edgeopt.recipes import Chain, Float32, options_json
    from edgeopt.steps import StepContext

    _check_counts(threads, runs)
    chains, options = plan_recipes(recipes, options, recipe_file)  # before any model or data loads
    log = log or (lambda msg: None)
    m, ds, warnings = prepare(model, data, unsafe=unsafe, **data_kwargs)
    if chains and m.kind != "keras":
        raise UserError(f"recipes need a Keras model; {m.path.name} is a .{m.kind} file (edgeopt can "
                        f"measure it: edgeopt bench {m.path.name} --data ...)")
    out = Path(out) if out else Path("runs") / m.path.stem
    header = {
        "name": out.name,
        "model": {"path": str(m.path), "kind": m.kind, "name": m.name, "input_shape": list(m.input_shape),
                  "sha256": store.file_digest(m.path), **m.info},
        "data": {"source": ds.name, **ds.summary(), "fingerprint": _data_fingerprint(ds)},
        "settings": {"threads": threads, "runs": runs, "recipes": [c.name for c in chains],
                     "options": options_json(options)},
        "environment": environment(),
        "warnings": warnings,
    }
    run = store.RunDir.open(out, header, fresh=fresh)
    base_ctx = StepContext(dataset=ds, work_dir=run.path, log=log, evaluate=accuracy_oracle(ds, threads))
    root = enginerun.chain_key(header["model"]["sha256"], {"data": header["data"]["fingerprint"],
                                                           "seed": base_ctx.seed})
    engine = enginerun.ChainRunner(run.cache_dir, lambda p: load_keras(p or m.path, unsafe=unsafe),
                                   base_ctx, root)
    baseline = Chain(enginerun.BASELINE, [Float32()])
    todo = [baseline] + [c for c in chains if c.name != baseline.name]
    for i, chain in enumerate(todo):
        if progress:
            progress(chain.name, i, len(todo))
        steps = enginerun.closed(chain).records() if m.kind == "keras" else []
        if run.is_done(chain.name, steps):
            log(f"{chain.name}: kept from the earlier run")
            continue
        run.put(_make_variant(run, engine, m, ds, chain, threads, runs, log))
    if progress:
        progress("done", len(todo), len(todo))
    return store.read_run(run.path)


def _make_variant(run, engine, m: LoadedModel, ds: Dataset, chain, threads: int, runs: int, log: Log) -> dict:
    from edgeopt.engine import store
    from edgeopt.engine.analysis import compare_to_baseline
    from edgeopt.engine.runner import BASELINE, closed, failure_record
    from edgeopt.measure.bench import bench_artifact

    work = run.variant_dir(chain.name)
    base = run.get(BASELINE)
    base_metrics = base.get("metrics") if base and base.get("status") == "done" else None
    engine.base_ctx.baseline_accuracy = (base_metrics or {}).get("accuracy")
    t0 = time.perf_counter()
    try:
        if m.kind == "keras":
            result = engine.run(chain, work)
            artifact, steps, details, quant_errors = result.artifact, result.steps, result.details, \
                result.quant_errors
        else:
            artifact, steps, details, quant_errors = _copy_artifact(m.path, work), [], {"steps": []}, []
        metrics = bench_artifact(artifact, ds, runtime=_runtime_for(artifact), threads=threads, runs=runs)
        metrics["provenance"] = store.provenance(metrics.get("how") or {})
        graph = _graph_summary(artifact)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one failing variant must not lose the others
        log(f"{chain.name}: failed: {err}")
        return failure_record(chain.name, closed(chain) if m.kind == "keras" else chain, err)
    variant = {"name": chain.name, "recipe": [s["step"] for s in steps] or [BASELINE], "steps": steps,
               "status": "done", "artifact": str(Path(artifact).relative_to(run.path)), "metrics": metrics,
               "graph": graph, "details": details, "quant_errors": quant_errors,
               "seconds": round(time.perf_counter() - t0, 2)}
    if base_metrics and chain.name != BASELINE:
        variant["vs_baseline"] = compare_to_baseline(metrics, base_metrics, ds.task)
    return variant


def _copy_artifact(src: Path, work: Path) -> Path:
    import shutil

    dst = work / src.name
    shutil.copyfile(src, dst)
    return dst


def _graph_summary(artifact: Path) -> dict:
    """MACs, parameters, peak activation memory and the TFLite Micro arena of the artifact."""
    from edgeopt.measure.graph import profile_path

    prof = profile_path(Path(artifact))
    return {"macs": prof.total_macs, "params": prof.total_params, "precision": prof.precision,
            "peak_activation_bytes": prof.peak_activation_bytes, "tflm_arena_bytes": prof.arena_bytes,
            "tflm_arena_note": prof.arena_note}


def _data_fingerprint(ds: Dataset) -> str:
    import hashlib

    h = hashlib.sha256()
    for arr in (ds.x_eval, ds.y_eval, ds.x_train[:256]):
        h.update(arr.tobytes())
    h.update(str((len(ds.x_train), len(ds.x_val))).encode())
    return h.hexdigest()[:16]


def search(model, data, *, targets: list[str] | None = None, max_accuracy_drop: float = 1.0,
           objectives=("latency", "size"), time_budget: str | float | None = "30m", trials: int | None = None,
           storage: str | None = None, study: str | None = None, workers: int = 1, out: str | Path | None = None,
           random_baseline: bool = False, training: bool = True, threads: int = 1, runs: int = 50,
           unsafe: bool = False, log: Log | None = None,
           progress: Callable[[str, Any], None] | None = None, **data_kwargs):
    """Search the recipe space for each target device; return a typed ``edgeopt.tuner.SearchResult``.

    Per target (``targets``: device names from ``edgeopt devices``; None = this machine,
    ``host-cpu``) the result holds the best variant that loses at most ``max_accuracy_drop``
    points of float32 accuracy and fits the device, the Pareto front, or, when none meets the
    constraints, the closest one with a plain sentence saying so (``result.targets[t].sentence``).
    ``objectives``: minimized with accuracy maximized, from ``latency`` (ms; measured on this
    machine for host-cpu, estimated for other devices), ``size`` (bytes of the artifact), ``gzip``
    (bytes gzipped) and ``energy`` (mJ per inference, estimated). ``time_budget``: ``"30m"``,
    ``"1h"`` or seconds (no trial starts after it; None = none); ``trials``: trials per target
    (None = as many as the time allows, at most 1000). ``storage``: an Optuna RDB URL (default:
    SQLite in the run directory); ``study``: the search's name (default: the run directory's);
    re-running with the same arguments resumes. ``workers`` > 1 starts that many - 1
    ``edgeopt worker`` processes on the same storage. ``training=False`` searches post-training
    steps only. ``random_baseline``: also a random-search study per target with the same budget
    (its hypervolume lands in ``result.targets[t].baseline``).

    Writes into ``out`` (default ``runs/<model stem>-search``): run.json with the float32
    baseline, one variant per target's winner and the search history (key ``search``), the
    winner's deployables under ``deploy/<target>/`` (MCU targets: C array + Arduino sketch), and
    the study database. ``progress(line, snapshot)`` gets each trial's line and the results so
    far. Raises UserError for bad arguments before anything heavy loads.
    """
    from edgeopt.tuner.options import check_targets, parse_duration, parse_objectives
    from edgeopt.tuner.storage import check_url

    metrics = parse_objectives(objectives)
    budget_s = None if time_budget is None else parse_duration(time_budget)
    devices = check_targets(targets, metrics)
    if trials is not None and trials < 1:
        raise UserError(f"--trials must be at least 1 (got {trials})")
    if trials is None and budget_s is None:
        raise UserError("give --trials or --time-budget (or both): a search needs a budget")
    if max_accuracy_drop < 0:
        raise UserError(f"--max-accuracy-drop must be 0 or more points (got {max_accuracy_drop})")
    if workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    if storage is not None:
        check_url(storage)
    if study is not None and (":" in study or not study.strip()):
        raise UserError(f"--study {study!r} must be non-empty and without ':'")
    _check_counts(threads, runs)
    from edgeopt.tuner import searching

    return searching.run(model, data, devices=devices, metrics=metrics, max_accuracy_drop=max_accuracy_drop,
                         budget_s=budget_s, trials=trials, storage=storage, study=study, workers=workers,
                         out=out, random_baseline=random_baseline, training=training, threads=threads,
                         runs=runs, unsafe=unsafe, log=log, progress=progress, data_kwargs=data_kwargs)
