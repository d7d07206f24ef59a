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

from edgeopt import validate
from edgeopt.data import Dataset, check_against_model, load_data, quantized_input_range
from edgeopt.errors import UserError
from edgeopt.model_io import LoadedModel, load_keras, load_model

if TYPE_CHECKING:
    from edgeopt.core.types import Run, Variant
    from edgeopt.footprint import Footprint
    from edgeopt.results import CompareResult, Estimates, ExportResult, Progress, Recommendations, ReportResult

__all__ = ["load_model", "load_data", "profile", "bench", "optimize", "compare", "devices", "estimate",
           "recommend", "explain", "export", "report", "footprint", "UserError"]

Log = Callable[[str], None]


def _as_model(model, unsafe: bool = False) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model, unsafe=unsafe)
    raise UserError(f"expected a model path or a LoadedModel, got {type(model).__name__}")


ROLE_KEYWORDS = ("train_data", "calib_data", "eval_data")
NO_DATA = "no data: give --data DATA (or --eval-data FILE, with --train-data or --calib-data to optimize)"


def _as_data(data, **kwargs) -> Dataset:
    """A Dataset from ``data`` (a Dataset, built-in name or path) and the data roles in ``kwargs``."""
    roles = {k: kwargs.pop(k) for k in ROLE_KEYWORDS if kwargs.get(k) is not None}
    for k in ROLE_KEYWORDS:
        kwargs.pop(k, None)
    if isinstance(data, Dataset) and not roles:
        return data
    if roles:
        from edgeopt.data import load_data_roles

        if isinstance(data, Dataset):
            raise UserError("give the data roles (train_data, calib_data, eval_data) with a data path, not a Dataset")
        return load_data_roles(data, train=roles.get("train_data"), calib=roles.get("calib_data"),
                               eval=roles.get("eval_data"), **kwargs)
    if data is None:
        raise UserError(NO_DATA)
    return load_data(data, **kwargs)


def prepare(model, data, *, unsafe: bool = False, input_shape=None, check_numerics: bool = True,
            **data_kwargs) -> tuple[LoadedModel, Dataset, list[str]]:
    """Load a model and data and check one against the other (inputs matched by name, shapes,
    classes; the task inferred from the output layer and labels: ``ds.task``, ``ds.task_reason``).

    A Keras model with nested models as layers is flattened (``keras_graph.flatten``) so every
    step sees the inner layers. ``input_shape``: ``--input-shape`` (text or parsed) for open
    axes. ``check_numerics``: run the float Keras model on the eval data and raise UserError when
    it gives NaN/inf (``numerics.check_finite``). ``data_kwargs`` go to ``load_data`` (``x_key``,
    ``y_key``, ``task``, ``output``...) and may hold the data roles ``train_data``, ``calib_data``,
    ``eval_data`` (files; see ``edgeopt.data.load_data_roles``) and ``reshape`` (one sample's
    shape for flat rows)."""
    if data is None and data_kwargs.get("eval_data") is None and data_kwargs.get("train_data") is None:
        raise UserError(NO_DATA)  # before the model loads
    m = _as_model(model, unsafe)
    _flatten_nested(m)
    _check_output_name(m, data_kwargs.get("output"))  # before the data loads
    given = parse_shape_option(input_shape)
    if given is not None and m.kind != "keras":
        check_shape_against_file(m, given)  # before the data loads
    if not isinstance(data, Dataset):
        if str(data) not in ("digits", "blobs2d", "fashion-mnist"):
            data_kwargs.setdefault("image_size", _image_size(m.input_shape))
            data_kwargs.setdefault("grayscale", m.input_shape[-1] == 1 if len(m.input_shape) == 3 else None)
        data_kwargs.setdefault("model", m)
    ds = _as_data(data, **data_kwargs)
    in_range = quantized_input_range(m.info.get("input_scale"), m.info.get("input_zero_point"), m.input_dtype)
    want = {i.name: i.shape for i in m.inputs} if len(m.inputs) > 1 else m.input_shape
    warnings = check_against_model(ds, want, m.output_units, in_range)
    if given is not None and m.kind == "keras":
        _check_shape_against_data(m, given, ds.input_shape)  # one line, before any work
    elif given is not None:  # an .onnx/.tflite runs at the data's shape: a contradicting one is refused
        check_file_shape_against_data(m, given, ds.input_shape)
    if check_numerics and m.kind == "keras":
        from edgeopt.numerics import check_finite

        x, source = checked_samples(ds, data, data_kwargs)
        check_finite(m.keras, _keras_feed(x), source=source)
    return m, ds, warnings


def _check_output_name(m: LoadedModel, output) -> None:
    """UserError (listing the outputs) unless ``output`` (``--output``: name or index) is one of the
    model's outputs; None passes."""
    names = [o.name for o in (m.outputs or [])]
    if output is not None and names:
        from edgeopt.core.metrics import resolve_output

        resolve_output(names, output)


def _check_shape_against_data(m: LoadedModel, given, data_shape) -> None:
    """UserError unless ``given`` (``--input-shape``) fits the Keras model and is the data's sample
    shape (``data_shape``) on every input: the data is fed at that shape, so any other one fails
    in every variant."""
    from edgeopt.convert import static_input_shapes

    wanted = static_input_shapes(m.keras, given)
    try:
        fed = static_input_shapes(m.keras, data_shape)
    except UserError:  # the data does not fit the model: check_against_model says so
        return
    for name, shape in wanted.items():
        if fed.get(name, shape) != shape:
            _refuse_disagreement(name, _shape_text(shape), {k: _shape_text(v) for k, v in fed.items()})


def _refuse_disagreement(name: str, given: str, fed: dict[str, str]) -> None:
    """The one UserError for an ``--input-shape`` (``given``, text) that is not the data's sample
    shape on input ``name`` (``fed``: every input's data shape, as text)."""
    shown = ";".join(f"{k}:{v}" for k, v in fed.items()) if len(fed) > 1 else fed[name]
    raise UserError(f"--input-shape {given} (input {name!r}) disagrees with the data's sample shape "
                    f"{fed[name]}; give --input-shape {shown}, or drop it (open axes then take the data's)")


def check_shape_against_file(m: LoadedModel, given, fix: str = "or drop it") -> None:
    """UserError unless ``given`` (``--input-shape``, parsed: one shape, a list in input order, or
    {input name: shape}; one sample, no batch axis) fits the .tflite/.onnx file's inputs: as many
    shapes as inputs, known names, the same rank and every fixed size. The message lists the
    file's input shapes (``?`` = an open axis) and ``fix``."""
    from edgeopt.core.arrays import canonical_name

    have = {canonical_name(i.name): tuple(i.shape) for i in m.inputs}
    if isinstance(given, dict):
        want = {canonical_name(str(k)): tuple(v) for k, v in given.items()}
    else:
        shapes = [tuple(s) for s in given] if isinstance(given, list) else [tuple(given)]
        want = dict(zip(have, shapes)) if len(shapes) == len(have) else {}
    if want and set(want) == set(have) and all(_shape_fits(want[k], have[k]) for k in have):
        return
    shown = (_open_text(next(iter(have.values()))) if len(have) == 1
             else ";".join(f"{k}:{_open_text(v)}" for k, v in have.items()))
    given_text = _open_text(given) if isinstance(given, tuple) else (
        ";".join(f"{k}:{_open_text(v)}" for k, v in given.items()) if isinstance(given, dict)
        else ";".join(map(_open_text, given)))
    hint = f"give --input-shape {shown}" + (" with a size in place of each ? (an open axis)" if "?" in shown else "")
    raise UserError(f"--input-shape {given_text} does not fit {m.path.name}, whose input"
                    f"{'s are' if len(have) > 1 else ' is'} {shown}; {hint}, {fix}")


def _shape_text(shape) -> str:
    """(1, 16, 4) -> "16,4" (one sample, as --input-shape takes it)."""
    return ",".join(str(d) for d in tuple(shape)[1:])


def checked_samples(ds: Dataset, data, roles: dict) -> tuple:
    """Every sample the float model is checked on (the train, validation and eval splits, and the
    --calib-data file), concatenated, and what they are, for ``numerics.check_finite``'s message."""
    from edgeopt.core.arrays import concat_outputs

    parts = [("train", ds.x_train), ("validation", ds.x_val), ("eval", ds.x_eval), ("calibration", ds.x_calib)]
    parts = [(name, x) for name, x in parts if x is not None and len(x)]
    files = [f"--{k.replace('_', '-')} {roles[k]}" for k in ROLE_KEYWORDS if roles.get(k) is not None]
    given = ([f"--data {data}"] if isinstance(data, (str, Path)) else
             [f"data {ds.name}"] if data is not None else []) + files
    names = [n for n, _ in parts]
    splits = ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]
    return concat_outputs([x for _, x in parts]), f"{', '.join(given)} ({splits} split{'s' if len(names) > 1 else ''})"


def parse_shape_option(value):
    """``--input-shape`` text (``16,4`` or ``image:8,8,1;vector:4``) parsed
    (``convert.parse_input_shape``); a parsed shape or None is returned as it is."""
    if value is None or not isinstance(value, str):
        return value
    from edgeopt.convert import parse_input_shape

    return parse_input_shape(value)


def _keras_feed(x):
    """Arrays as a Keras model takes them: a dict by input name for several inputs."""
    return x.as_list() if hasattr(x, "as_list") else x  # data arrays are in model input order


def _flatten_nested(m: LoadedModel) -> None:
    """Inline nested models in place (``m.keras``), so profiles and techniques see inner layers."""
    if m.kind != "keras":
        return
    from edgeopt.keras_graph import flatten, graph_of, nested_models

    try:
        nested = graph_of(m.keras) is not None and nested_models(m.keras)
    except (AttributeError, ValueError):  # an unbuilt model (no defined inputs): profiled as it is
        return
    if nested:
        m.keras = flatten(m.keras)
        m.info["flattened"] = True


def load_flat_keras(path, *, unsafe: bool = False):
    """``load_keras`` with nested models inlined (``keras_graph.flatten``)."""
    from edgeopt.keras_graph import flatten, graph_of, nested_models

    model = load_keras(path, unsafe=unsafe)
    return flatten(model) if graph_of(model) is not None and nested_models(model) else model


def _image_size(shape) -> tuple[int, int] | None:
    if len(shape) == 3 and shape[0] and shape[1]:
        return int(shape[0]), int(shape[1])
    return None


def profile(model, *, unsafe: bool = False, measure_arena: bool = True, data=None, input_shape=None,
            **data_kwargs):
    """Per-layer/per-op graph statistics (params, MACs, memory) of a Keras, .tflite or .onnx model.

    Open input axes (a ``None`` time axis, dynamic ONNX height/width) are profiled at
    ``input_shape`` (``--input-shape``), else at the shape of ``data``'s samples, else at 1 with
    a note in ``profile.notes`` saying so. A Keras model's nested models are inlined."""
    from edgeopt.measure import graph

    _check_model(model)
    given = parse_shape_option(input_shape)
    m = _as_model(model, unsafe)
    _flatten_nested(m)
    if given is not None and m.kind == "keras":
        from edgeopt.convert import static_input_shapes

        static_input_shapes(m.keras, given)  # names, rank and fixed axes checked: one error line
    elif given is not None:
        check_shape_against_file(m, given)
    if given is None and data is not None:
        given = prepare(m, data, check_numerics=False, **data_kwargs)[1].input_shape
    if m.kind == "keras":
        prof = graph.profile_keras(m.keras, input_shape=given)
        prof.path = str(m.path)
        return prof
    if m.kind == "tflite":
        return graph.profile_tflite(m.path, measure_arena=measure_arena)
    return graph.profile_onnx(m.path, input_shape=given)


def to_artifact(m: LoadedModel, work_dir: Path, input_shape=None, data_shape=None) -> Path:
    """The float32 deployable for a model: Keras is converted to .tflite (batch 1; open axes from
    ``input_shape``, else ``data_shape``: ``convert.conversion_shape``); files are used as they are."""
    if m.kind != "keras":
        return m.path
    from edgeopt.convert import conversion_shape, keras_to_tflite
    from edgeopt.fsutil import atomic_write_bytes

    shape = conversion_shape(m.keras, parse_shape_option(input_shape), data_shape)
    return atomic_write_bytes(Path(work_dir) / f"{m.path.stem}.tflite", keras_to_tflite(m.keras, input_shape=shape))


def _load_metric(metric):
    """``--metric module:function`` loaded and checked (UserError), or None / a loaded metric as is."""
    if metric is None or not isinstance(metric, str):
        return metric
    from edgeopt.core.metrics import load_metric

    validate.metric_file(metric)
    return load_metric(metric)


def _float_reference(m: LoadedModel, ds: Dataset):
    """The float Keras model's outputs on the eval split (the fidelity reference), named like the
    model's outputs when there are several; None for .tflite/.onnx models."""
    if m.kind != "keras":
        return None
    out = m.keras.predict(_keras_feed(ds.x_eval), batch_size=256, verbose=0)
    if isinstance(out, dict):
        out = [out[k] for k in out]
    if isinstance(out, (list, tuple)):
        from edgeopt.data import NamedArrays

        names = ds.output_names or [o.name for o in m.outputs]
        return NamedArrays(dict(zip(names, [o for o in out])))
    return out


def _runtime_for(path: Path) -> str:
    from edgeopt.runtimes.registry import runtime_for

    return runtime_for(path)


def bench(model, data, *, threads: int = 1, runs: int = 200, warmup: int = 20, unsafe: bool = False,
          keep_artifact: Path | None = None, input_shape=None, metric=None, output: str | int | None = None,
          **data_kwargs) -> dict:
    """Convert (Keras -> float32 .tflite, batch 1, open axes from ``input_shape`` or the data) and
    measure the artifact in its runtime: the task metric (``metric``: ``--metric module:function``;
    ``output``: the scored output of several) and, for Keras models, fidelity to the Keras model."""
    from edgeopt.measure.bench import bench_artifact, multilabel_thresholds
    from edgeopt.measure.env import environment

    _check_counts(threads, runs)
    _check_model(model)
    _check_data(data, data_kwargs)
    custom = _load_metric(metric)
    if output is not None:
        data_kwargs["output"] = output
    m, ds, warnings = prepare(model, data, unsafe=unsafe, input_shape=input_shape, **data_kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = to_artifact(m, Path(keep_artifact or tmp), input_shape, ds.input_shape)
        runtime = _runtime_for(artifact)
        thresholds = multilabel_thresholds(artifact, ds, runtime=runtime, threads=threads, output_name=output)
        metrics = bench_artifact(artifact, ds, runtime=runtime, threads=threads, runs=runs, warmup=warmup,
                                 output_name=output, metric=custom, thresholds=thresholds,
                                 reference=_float_reference(m, ds))
    if thresholds is not None:
        metrics["thresholds"] = thresholds
    return {"model": str(m.path), "artifact": artifact.name, "data": ds.summary(), "warnings": warnings,
            "metrics": metrics, "environment": environment()}


def _check_counts(threads: int, runs: int) -> None:
    validate.count(threads, "--threads")
    validate.count(runs, "--runs")


def _check_model(model, kinds: tuple[str, ...] = ("keras", "tflite", "onnx")) -> None:
    """A model path exists and looks like a model (a loaded model passes); nothing heavy loads."""
    if isinstance(model, (str, Path)):
        validate.model_path(model, kinds)


def _check_data(data, data_kwargs: dict) -> None:
    validate.data_source(data)
    validate.count(data_kwargs.get("limit"), "--limit")


def _check_target(target) -> None:
    """A run directory (with run.json) or a model file, for estimate and recommend."""
    path = Path(target)
    if path.is_dir() and not (path / "saved_model.pb").exists():
        validate.run_dir(path)
    else:
        validate.model_path(path)


def plan_recipes(recipes: list | None, options: dict[str, Any] | None = None,
                 recipe_file: str | Path | None = None, model: str | Path | None = None,
                 n_inputs: int = 1, notes: list[str] | None = None) -> tuple[list, dict[str, Any]]:
    """(validated chains, merged options) for ``optimize``: the recipe file's recipes come first,
    its options are overridden by ``options``. ``model``: the model path; for an .onnx or .tflite
    the recipe names mean that format's steps (``steps.for_format``) and a step that needs Keras is
    refused. ``n_inputs`` > 1 (the ``--x-key`` count): ``ptq`` leaves out the one-input steps (a line
    saying so is appended to ``notes``) and a one-input step asked for by name is refused.
    Loads nothing heavy; UserError on a bad recipe."""
    from edgeopt.recipes import load_recipe_file, plan
    from edgeopt.steps import check_format, check_inputs, for_format, for_inputs, model_format

    recipes, options = list(recipes or []), dict(options or {})
    if recipe_file is not None:
        file_recipes, file_options = load_recipe_file(recipe_file)
        recipes, options = file_recipes + recipes, {**file_options, **options}
    fmt = model_format(model) if isinstance(model, (str, Path)) else getattr(model, "kind", "keras")
    name = Path(str(getattr(model, "path", model))).name
    recipes, dropped = for_inputs(recipes, fmt, n_inputs)
    if dropped and notes is not None:
        notes.append(f"ptq leaves out {', '.join(dropped)}: {'they take' if len(dropped) > 1 else 'it takes'} "
                     f"a model with one input; {name} has {n_inputs}")
    chains = plan(for_format(recipes, fmt), options)
    if fmt != "keras":
        check_format(chains, fmt, name)
    check_inputs(chains, n_inputs, name, fmt)
    return chains, options


def optimize(model, data, *, recipes: list | None = None, recipe_file: str | Path | None = None,
             out: str | Path | None = None, options: dict[str, Any] | None = None, threads: int = 1,
             runs: int = 200, unsafe: bool = False, fresh: bool = False, log: Log | None = None,
             progress: Callable[[str, int, int], None] | None = None, html_report: bool = True,
             input_shape=None, metric=None, output: str | int | None = None, **data_kwargs) -> "Run":
    """Baseline + one variant per recipe, each measured on its artifact; returns the typed ``Run``
    (``run.path`` is the run directory, ``run.to_frame()`` a table, ``run.best(...)`` a choice).

    ``recipes``: chains such as ``"int8"``, ``"prune,cluster,int8"``, aliases such as ``"ptq"``, or
    lists of configs such as ``[Prune(sparsity=0.5), Int8(calibration="percentile")]`` (see
    ``edgeopt.recipes``). ``recipe_file``: a YAML file of recipes (and options) added before them.
    ``options``: step options, scoped (``{"prune.epochs": 2}``) or unscoped (``{"epochs": 2}``: every
    step with that field). Recipes and options are validated (UserError) before anything loads.
    ``log(message)`` gets progress messages, ``progress(variant, done, total)`` each variant.
    ``html_report``: write RUN_DIR/report.html at the end (a failure there is one warning line).
    ``input_shape``: ``--input-shape`` for open axes (else the data's; each variant records its
    static input shapes); ``metric``: ``--metric module:function``; ``output``: ``--output``;
    ``task`` (in ``data_kwargs``): ``--task`` (else inferred, printed and recorded). Every variant
    records fidelity (top-1 agreement, SNR, cosine) against the float model beside its metric.
    ``model`` may be an .onnx or a float .tflite: the recipes then mean that format's steps
    (``ptq`` on an .onnx: ort-int8, ort-dynamic, onnx-float16, nncf-int8; README: model formats) and
    a step that needs Keras is refused (UserError) before anything loads. ``data`` may be None
    when ``eval_data`` / ``train_data`` are given; ``calib_data`` is the only data calibration
    reads; ``reshape`` gives one sample's shape for flat rows (``edgeopt.data.load_data_roles``).
    Every artifact is run once in its runtime before it is measured: a broken one is a "failed"
    variant with the runtime's whole message.
    """
    from edgeopt.engine import driver, store

    _check_counts(threads, runs)
    _check_model(model)
    _check_data(data, data_kwargs)
    validate.output_dir(out if out is not None or not isinstance(model, (str, Path))
                        else Path("runs") / Path(model).stem)
    given_shape = parse_shape_option(input_shape if input_shape is not None else (options or {}).get("input_shape"))
    if given_shape is not None:
        options = {**(options or {}), "input_shape": given_shape}
    x_key = data_kwargs.get("x_key") or "x"
    notes: list[str] = []
    chains, options = plan_recipes(recipes, options, recipe_file, model,  # before any model or data loads
                                   n_inputs=len([k for k in (x_key.split(",") if isinstance(x_key, str) else x_key)
                                                 if str(k).strip()]), notes=notes)
    validate.options(options)
    custom = _load_metric(metric)
    if output is not None:
        data_kwargs["output"] = output
    log_given = log is not None
    log = log or (lambda msg: None)
    m, ds, warnings = prepare(model, data, unsafe=unsafe, input_shape=given_shape, **data_kwargs)
    warnings = [*warnings, *notes]  # printed as warnings and kept in run.json
    out = Path(out) if out else Path("runs") / m.path.stem
    header = driver.make_header(m, ds, out, chains, options, threads, runs, warnings, output=output)
    measure = {"reference": _float_reference(m, ds), "metric": custom, "output": output,
               "input_shape": given_shape, "budget": options.get("max_accuracy_drop")}
    path = driver.optimize_run(m, ds, chains, out=out, header=header, threads=threads, runs=runs, unsafe=unsafe,
                               fresh=fresh, log=log, progress=progress, measure=measure,
                               load_model=lambda p: load_keras(p, unsafe=unsafe) if p else
                               load_flat_keras(m.path, unsafe=unsafe))
    if html_report:
        write_report_quietly(path, log if log_given else _stderr_line)
    return store.read_run(path)


# ------------------------------------------------------------------ one function per command
# Each returns a typed result (edgeopt.results, edgeopt.core.types); the CLI only parses and renders.

def compare(model, data, *, runtimes: list[str] | str | None = None,
            precisions: list[str] | str = ("float32", "float16", "int8"), threads: int = 1, runs: int = 100,
            batch: int = 32, calibration: int = 300, out: str | Path | None = None,
            progress: "Progress | None" = None, input_shape=None, output: str | int | None = None,
            **data_kwargs) -> "CompareResult":
    """``model`` (.keras/.h5/SavedModel, .onnx or .tflite path) in every runtime at every precision.

    ``runtimes``: registry names or a comma-separated string (default: every registered runtime);
    ``precisions``: float32, float16, int8, dynamic (aliases fp32, fp16, int8-dynamic), list or
    comma-separated. Each row is measured on its own artifact: batch-1 latency over ``runs`` runs,
    throughput at ``batch``, size, accuracy and agreement with the float model; int8 is calibrated on
    ``calibration`` training samples. ``out``: keep the artifacts and compare.json there (else a
    temporary folder). ``progress(row name, done, total)``. The data flags are optimize's:
    ``data_kwargs`` (``x_key``, e.g. "a,b" for several inputs, ``y_key``, ``task``...) go to
    ``prepare``; ``input_shape`` (``--input-shape``) fixes open axes; ``output`` (``--output``) is
    the scored output of several. Raises UserError for an unknown runtime or precision, a missing
    model or data that does not fit the model (checked before measuring)."""
    from edgeopt.compare import compare as compare_rows, fastest, parse_compare_precisions
    from edgeopt.measure.env import environment
    from edgeopt.results import CompareResult
    from edgeopt.runtimes.registry import parse_runtimes

    _check_counts(threads, runs)
    names = parse_runtimes(runtimes if runtimes is None or isinstance(runtimes, str) else ",".join(runtimes))
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    try:
        precs = parse_compare_precisions([p for p in items if str(p).strip()])
    except UserError as e:
        raise UserError(f"--precisions {','.join(map(str, items))!r}: {e}") from None
    _check_model(model)
    _check_data(data, data_kwargs)
    validate.count(batch, "--batch")
    validate.count(calibration, "--calibration")
    validate.output_dir(out)
    given_shape = parse_shape_option(input_shape)
    if output is not None:
        data_kwargs["output"] = output
    m, ds, _ = prepare(model, data, input_shape=given_shape, **data_kwargs)  # inputs matched by name, task inferred
    if out is not None:  # only once the model and data are known good: a refused input leaves no folder
        from edgeopt.fsutil import ensure_writable_dir

        ensure_writable_dir(Path(out))
    total = len(names) * len(precs)
    done = []

    def each_row(row) -> None:
        done.append(row)
        if progress:
            progress(f"{row.runtime} {row.precision.value}", len(done), total)

    if progress:
        progress(f"{names[0]} {precs[0].value}", 0, total)
    rows = compare_rows(m, ds, names, precs, threads=threads, runs=runs, batch=batch, out_dir=out,
                        calibration=calibration, progress=each_row, input_shape=given_shape, output=output)
    result = CompareResult(str(model), ds.summary(), threads, runs, rows, fastest(rows), environment(),
                           Path(out) if out is not None else None)
    if out is not None:
        from edgeopt.fsutil import atomic_write_json

        atomic_write_json(Path(out) / "compare.json", result.to_dict())
    return result


def devices(*, device_class: str | None = None, devices_file: str | Path | None = None) -> list:
    """The device catalogue (``edgeopt.hardware.schema.Device``, each figure sourced), plus the
    devices of ``devices_file``; only ``device_class`` (mcu, sbc, accelerator, npu, cpu) if given."""
    from edgeopt.hardware.catalogue import load_devices

    _check_class(device_class)
    validate.devices_file(devices_file)
    return [d for d in load_devices(devices_file).values() if device_class is None or d.device_class == device_class]


def _check_class(device_class: str | None) -> None:
    from edgeopt.hardware.schema import DEVICE_CLASSES

    if device_class is not None and device_class not in DEVICE_CLASSES:
        raise UserError(f"--class must be one of {', '.join(DEVICE_CLASSES)}, got '{device_class}'")


def _check_power_inputs(engine: str | None, battery_mah, inferences_per_hour) -> None:
    if battery_mah is not None and inferences_per_hour is None:
        raise UserError("battery life needs --inferences-per-hour as well as --battery-mah")
    if engine is not None:
        from edgeopt.hardware.estimator import engine_names

        if engine not in engine_names():
            raise UserError(f"unknown --engine '{engine}'; use one of {', '.join(engine_names())}")


def _targets(target, progress: "Progress | None"):
    """A model file or a run directory's finished variants, each profiled (the slow part)."""
    from edgeopt.hardware.recommend import load_targets

    if progress:
        progress(f"profiling {Path(target).name}", 0, 1)
    variants = load_targets(target)
    if progress:
        progress(f"profiled {len(variants)} variant(s)", 1, 1)
    return variants


def estimate(target: str | Path, devices: list[str] | str, *, engine: str | None = None,
             battery_mah: float | None = None, inferences_per_hour: float | None = None, battery_v: float = 3.7,
             devices_file: str | Path | None = None, progress: "Progress | None" = None) -> "Estimates":
    """Estimates (not measurements) of a model file (.tflite/.onnx/.keras) or of each finished
    variant of a run directory on each named device: fit (RAM, flash), latency and energy with
    intervals and their basis, memory traffic, and with ``inferences_per_hour`` duty-cycle power
    (and battery life with ``battery_mah`` mAh at ``battery_v`` V). ``engine``: the MCU inference
    engine (engines.yaml; default each device's own). Raises UserError for an unknown device
    (with close matches) or engine, battery without a rate, or a missing target."""
    from edgeopt.hardware.catalogue import get_device, load_devices
    from edgeopt.hardware.estimator import estimate as estimate_one
    from edgeopt.hardware.recommend import measured_host_latency
    from edgeopt.results import EstimateRow, Estimates

    _check_power_inputs(engine, battery_mah, inferences_per_hour)
    validate.devices_file(devices_file)
    devs = load_devices(devices_file)
    chosen = [get_device(name, devs) for name in ([devices] if isinstance(devices, str) else devices)]
    if not chosen:
        raise UserError("name at least one device (--device NAME; see: edgeopt devices)")
    for d in chosen if engine is not None else []:
        if d.device_class != "mcu":
            raise UserError(f"--engine {engine} is a microcontroller inference engine; {d.name} is a "
                            f"{d.device_class} device, its runtimes: {', '.join(d.runtimes) or 'none listed'} "
                            "(drop --engine for it)")
    _check_target(target)
    rows = [EstimateRow(v.name, estimate_one(v.profile, d, engine=engine, battery_mah=battery_mah,
                                             inferences_per_hour=inferences_per_hour, battery_v=battery_v,
                                             host_latency_ms=measured_host_latency(v.metrics)))
            for v in _targets(target, progress) for d in chosen]
    return Estimates(str(target), rows, inferences_per_hour, battery_mah)


def recommend(target: str | Path, *, max_latency_ms: float | None = None, max_power_w: float | None = None,
              max_price: float | None = None, battery_mah: float | None = None,
              inferences_per_hour: float | None = None, engine: str | None = None,
              device_class: str | None = None, devices_file: str | Path | None = None,
              progress: "Progress | None" = None) -> "Recommendations":
    """Devices ranked for a model file or a run directory: feasible first (within the latency in ms,
    active power in W and price in USD limits), then the accuracy of the best variant that fits,
    then how the latency is known, energy and latency; each with its reasons (estimates)."""
    from edgeopt.hardware.recommend import recommend as rank
    from edgeopt.results import Recommendations

    _check_power_inputs(engine, battery_mah, inferences_per_hour)
    _check_target(target)
    devs = {d.name: d for d in devices(device_class=device_class, devices_file=devices_file)}
    recs = rank(_targets(target, progress), devs, max_latency_ms=max_latency_ms, max_power_w=max_power_w,
                max_price=max_price, battery_mah=battery_mah, inferences_per_hour=inferences_per_hour,
                engine=engine)
    return Recommendations(str(target), recs)


def explain(run_dir: str | Path, variant: str) -> "Variant":
    """How a variant of a run was made: the typed ``Variant`` (steps with their exact configs,
    per-step details such as ops kept float and why, per-tensor quantization error, metrics).
    Raises UserError for a missing run directory or variant (listing the variants)."""
    from edgeopt.engine.store import read_run

    validate.run_dir(run_dir)
    run = read_run(Path(run_dir))
    try:
        return run.variant(variant)
    except KeyError:
        names = ", ".join(v.name for v in run.variants)
        raise UserError(f"no variant {variant!r} in {run_dir}; variants: {names}") from None


def export(source: str | Path, *, out: str | Path, variant: str | None = None, target: str = "arduino",
           name: str | None = None, data=None, npu: str = "ethos-u55-128",
           progress: "Progress | None" = None, input_shape=None, **data_kwargs) -> "ExportResult":
    """Write the deploy bundle of a model file (.keras/.h5/SavedModel, .tflite, .onnx) or of a run
    directory's ``variant`` to ``out``: ``target`` arduino | zephyr | linux-litert | onnx | openvino |
    ethos-u (``npu``: the Ethos-U target). A Keras model is converted first, float32 at batch 1
    (``_keras_artifact``: ONNX for the onnx/openvino targets, else .tflite; open axes from
    ``input_shape``, else ``data``'s sample shape); ethos-u needs an int8 variant of a run. The
    bundle's sample input is the first eval sample of ``data`` (a dataset name, path or Dataset),
    else zeros; ``data_kwargs`` are optimize's input flags (``x_key``, e.g. "a,b" for one .npz key
    per input; labels are not read), the inputs matched to the artifact's by name. The bundle names
    the outputs like the source model (Keras output names). ``input_shape`` (``--input-shape``) must
    fit a .tflite/.onnx artifact's own shapes; an .onnx with open axes is bundled at
    ``input_shape``, else ``data``'s sample shape, else the shape the run fixed
    (``_artifact_shapes``). ``data``'s samples are checked against the model (``data_kwargs``
    may hold ``reshape`` for flat rows). Raises UserError, before any work, for an unknown target,
    variant or file, a ``variant`` with a model file (it needs a run directory), data or
    ``input_shape`` that do not fit the model or each other, an open axis without a length, or a
    model the target cannot run (nothing is left half-written)."""
    from edgeopt.export.bundles import check_target
    from edgeopt.results import ExportResult

    check_target(target)
    validate.c_identifier(name)
    validate.output_dir(out)
    if data is not None:
        validate.data_source(data)
    source = Path(source)
    if source.is_dir() and not (source / "saved_model.pb").exists():
        validate.run_dir(source)
        kind = "run"
    else:
        kind = validate.model_path(source)
        if variant is not None:
            _refuse_variant_of_file(source, variant, target, out)
    if kind == "keras":
        if target == "ethos-u":
            run = Path("runs") / source.stem
            raise UserError(f"Ethos-U runs full-int8 models and {source.name} is a float Keras model: make the "
                            f"int8 variant first (edgeopt optimize {source} -d DATA -r int8 --out {run}), then "
                            f"edgeopt export {run} int8 --target ethos-u --out {out}")
        return _export_keras(source, out=out, target=target, name=name, data=data, npu=npu, progress=progress,
                             input_shape=parse_shape_option(input_shape), data_kwargs=data_kwargs)
    artifact, output_names, recorded = source, None, None
    if source.is_dir():
        from edgeopt.engine.store import load_run

        record = load_run(source)
        chosen = next((v for v in record["variants"] if v["name"] == variant and v.get("status") == "done"), None)
        if chosen is None:
            names = ", ".join(v["name"] for v in record["variants"] if v.get("status") == "done")
            failed = next((v for v in record["variants"] if v["name"] == variant), None)
            if failed is not None:  # named, but not done: say why rather than "give the variant"
                raise UserError(f"variant {variant} of {source} is {failed.get('status')}: "
                                f"{failed.get('error') or 'no artifact'}; export one of: {names}")
            if variant is not None:
                raise UserError(f"no variant {variant!r}; variants: {names}")
            raise UserError(f"give the variant to export (--variant NAME), one of: {names}")
        artifact = source / chosen["artifact"]
        name = name or f"{record.get('name', 'model')}_{chosen['name']}"
        output_names = (record.get("model") or {}).get("outputs") or (record.get("data") or {}).get("label_outputs")
        shapes = (record.get("model") or {}).get("conversion_input_shapes")  # open axes as the run fixed them
        recorded = {k: tuple(v[1:]) for k, v in shapes.items()} if shapes else None
    elif not source.exists():
        raise UserError(f"not found: {source}")
    fix = "or re-run optimize with --input-shape (shapes are fixed at conversion)" if source.is_dir() else "or drop it"
    label = f"variant {variant} of {source}" if source.is_dir() else source.name
    shapes = _artifact_shapes(artifact, parse_shape_option(input_shape), data, data_kwargs, fix, recorded,
                              mcu=target in ("arduino", "zephyr"), label=label)
    files, origin = _bundle(artifact, target, out, name, data, npu, progress, data_kwargs, output_names, shapes)
    return ExportResult(artifact, target, Path(out), name or artifact.stem, files, origin)


def _refuse_variant_of_file(source: Path, variant: str, target: str, out) -> None:
    """UserError: a VARIANT names a variant of a run directory, and ``source`` is a model file."""
    run = Path("runs") / source.stem
    recipe = variant.replace("+", ",")
    raise UserError(f"variant {variant!r} needs a run directory, and {source.name} is a model file: make the "
                    f"run first (edgeopt optimize {source} -d DATA -r {recipe} --out {run}), then edgeopt export "
                    f"{run} {variant} --target {target} --out {out}; or drop {variant} to export {source.name} "
                    f"as it is (float32)")


def _artifact_shapes(artifact: Path, given, data, data_kwargs: dict, fix: str = "or drop it",
                     recorded: dict | None = None, mcu: bool = False, label: str = "") -> dict | None:
    """One sample's shape per input (``{input name: shape}``, batch excluded) the bundle of a
    .tflite/.onnx ``artifact`` with open axes runs at: ``given`` (``--input-shape``), else
    ``data``'s sample shape, else ``recorded`` (a run's ``conversion_input_shapes``, batch
    dropped); None for an artifact without open axes (its own shapes). UserError,
    before any work, when ``given`` does not fit the artifact or disagrees with the data, when
    the data's samples do not fit the artifact, or when an open axis is left without a length
    (``fix``: the way out the message offers for a shape that does not fit), or, for a
    microcontroller target (``mcu``), when it has several inputs or outputs (``label`` names it)."""
    if artifact.suffix not in (".tflite", ".onnx"):
        return None
    m = load_model(artifact)
    if mcu and (len(m.inputs) > 1 or len(m.outputs) > 1):
        from edgeopt.export.c_array import mcu_io_refusal

        raise mcu_io_refusal(label or artifact.name, len(m.inputs), len(m.outputs))
    if given is not None:
        check_shape_against_file(m, given, fix=fix)
    data_shape = _export_data_shape(m, data, data_kwargs) if data is not None else None
    if given is not None and data_shape is not None:
        check_file_shape_against_data(m, given, data_shape)
    if not any(d is None for i in m.inputs for d in i.shape):
        return None
    fixed = given if given is not None else data_shape if data_shape is not None else recorded
    if fixed is None:
        shown = ";".join(f"{i.name}:{_open_text(i.shape)}" for i in m.inputs) if len(m.inputs) > 1 \
            else _open_text(m.inputs[0].shape)
        raise UserError(f"{artifact.name} has an open axis (its input is {shown}; ? = open): give --input-shape "
                        f"with a length in place of each ? (e.g. --input-shape {shown.replace('?', '16')}), or "
                        f"--data DATA whose samples fix it")
    return _per_input(m, fixed)


def _export_data_shape(m: LoadedModel, data, data_kwargs: dict):
    """``data``'s sample shape (one tuple, or {name: shape}), checked against the model's inputs
    (``check_against_model``: one UserError line naming the file, both shapes and the fix);
    labels are not read."""
    ds = _as_data(data, **_export_data_kwargs(m, data, data_kwargs))
    want = {i.name: i.shape for i in m.inputs} if len(m.inputs) > 1 else m.input_shape
    check_against_model(ds, want, None)
    return ds.input_shape


def _export_data_kwargs(m: LoadedModel, data, data_kwargs: dict) -> dict:
    """``load_data`` keywords for export's data: inputs only (labels are not read), image folders
    read at the model's input size, as ``prepare`` reads them."""
    kw = {k: v for k, v in data_kwargs.items() if v is not None}
    kw.setdefault("model", m)
    kw.setdefault("task", "fidelity")  # inputs only: labels need not match the outputs
    if not isinstance(data, Dataset) and str(data) not in ("digits", "blobs2d", "fashion-mnist"):
        kw.setdefault("image_size", _image_size(m.input_shape))
        kw.setdefault("grayscale", m.input_shape[-1] == 1 if len(m.input_shape) == 3 else None)
    return kw


def _per_input(m: LoadedModel, shape) -> dict:
    """``shape`` (one tuple, a list in input order, or {name: shape}) as {model input name: shape}."""
    from edgeopt.core.arrays import canonical_name

    names = [i.name for i in m.inputs]
    if isinstance(shape, dict):
        by_name = {canonical_name(str(k)): tuple(v) for k, v in shape.items()}
        if all(canonical_name(n) in by_name for n in names):
            return {n: by_name[canonical_name(n)] for n in names}
        return dict(zip(names, by_name.values()))  # data keys are in model input order
    shapes = list(shape) if isinstance(shape, list) else [shape]
    return {n: tuple(s) for n, s in zip(names, shapes)}


def check_file_shape_against_data(m: LoadedModel, given, data_shape) -> None:
    """UserError unless ``given`` (``--input-shape``, parsed) is the data's sample shape
    (``data_shape``) on every input of a .tflite/.onnx model: the data is fed at its own shape, so
    another one would be silently ignored."""
    wanted, fed = _per_input(m, given), _per_input(m, data_shape)
    for name, shape in wanted.items():
        if name in fed and tuple(fed[name]) != tuple(shape):
            _refuse_disagreement(name, _open_text(shape), {k: _open_text(v) for k, v in fed.items()})


def _open_text(shape) -> str:
    return ",".join("?" if d in (None, -1) else str(d) for d in shape)


def _bundle(artifact: Path, target: str, out, name, data, npu: str, progress, data_kwargs: dict,
            output_names: list[str] | None, input_shapes: dict | None = None) -> tuple[list[Path], str]:
    """(files written, where the sample input came from): ``export_bundle`` with ``data``'s first
    sample; ``input_shapes``: {input name: one sample's shape} fixing an artifact's open axes."""
    from edgeopt.export.bundles import export_bundle

    sample, origin = None, "zeros"
    if data is not None:
        sample, origin = _export_sample(artifact, data, data_kwargs), f"first eval sample of {getattr(data, 'name', data)}"
    if progress:
        progress(f"exporting {target}", 0, 1)
    files = export_bundle(artifact, target, out, name, sample=sample, npu=npu, output_names=output_names,
                          input_shapes=input_shapes)
    if progress:
        progress(f"exported {target}", 1, 1)
    return files, origin


def _export_keras(source: Path, *, out, target: str, name, data, npu: str, progress, input_shape,
                  data_kwargs: dict) -> "ExportResult":
    """``export`` of a Keras model: converted in a temporary folder (``_keras_artifact``), then
    bundled like a file; the result's ``artifact`` is the Keras model."""
    from edgeopt.results import ExportResult

    if progress:
        progress(f"converting {source.name}", 0, 1)
    name = name or source.stem
    with tempfile.TemporaryDirectory() as tmp:
        artifact, output_names = _keras_artifact(source, target, Path(tmp), input_shape, data, data_kwargs)
        files, origin = _bundle(artifact, target, out, name, data, npu, progress, data_kwargs, output_names)
    return ExportResult(source, target, Path(out), name, files, origin)


def _keras_artifact(source: Path, target: str, work: Path, given, data, data_kwargs: dict) -> tuple[Path, list[str]]:
    """(the float32 artifact a Keras model is exported as, its Keras output names): an .onnx
    (``export.onnx.keras_to_onnx``) for the onnx/openvino targets when no input has an open
    (None) axis, else a batch-1 .tflite (``convert.keras_to_tflite``) with open axes from ``given``
    (``--input-shape``), else ``data``'s sample shape. UserError for an open axis left without a
    length (``convert.static_input_shapes``), data whose samples do not fit the model, or an
    ``--input-shape`` that disagrees with them."""
    from edgeopt.convert import keras_to_tflite, static_input_shapes
    from edgeopt.fsutil import atomic_write_bytes

    m = load_model(source)
    _flatten_nested(m)
    names = list(m.keras.output_names)
    if target in ("arduino", "zephyr") and (len(m.inputs) > 1 or len(names) > 1):
        from edgeopt.export.c_array import mcu_io_refusal

        raise mcu_io_refusal(source.name, len(m.inputs), len(names))
    is_open = any(d is None for i in m.inputs for d in i.shape)
    if given is not None:
        static_input_shapes(m.keras, given)  # wrong names, ranks or fixed sizes: one line, before the data
    if data is not None:  # the data's samples must fit the model, as in bench: one line, before any work
        data_shape = _export_data_shape(m, data, data_kwargs)
        if given is not None:
            _check_shape_against_data(m, given, data_shape)
        elif is_open:
            given = data_shape
    static_input_shapes(m.keras, given)  # open axes without a length, wrong ranks or sizes: one line
    if target in ("onnx", "openvino") and not is_open:
        from edgeopt.export.onnx import keras_to_onnx

        return keras_to_onnx(m.keras, work / f"{source.stem}.onnx"), names
    return atomic_write_bytes(work / f"{source.stem}.tflite", keras_to_tflite(m.keras, input_shape=given)), names


def _export_sample(artifact: Path, data, data_kwargs: dict):
    """The first eval sample of ``data`` for ``artifact``: an array (batch axis 1 dropped), or
    NamedArrays of one sample per input for several inputs (.npz keys matched to the inputs)."""
    if not isinstance(data, Dataset) and artifact.suffix in (".tflite", ".onnx"):
        data_kwargs = _export_data_kwargs(load_model(artifact), data, data_kwargs)
    x = _as_data(data, **{k: v for k, v in data_kwargs.items() if v is not None}).x_eval
    return x[:1] if hasattr(x, "as_list") else x[0]


def _shape_fits(given: tuple, have: tuple) -> bool:
    return len(given) == len(have) and all(h in (None, -1) or g == h for g, h in zip(given, have))


def report(run_dir: str | Path, out: str | Path | None = None, *, devices_file: str | Path | None = None,
           device_names: list[str] | None = None, battery_mah: float | None = None,
           inferences_per_hour: float | None = None) -> "ReportResult":
    """Write the self-contained HTML report of a run (``out``, default RUN_DIR/report.html):
    summary, trade-off plots, device fit, per-layer view, fine-tuning curves, how each variant was
    made. Raises UserError for a missing or unreadable run directory."""
    from edgeopt.report.html import render_report
    from edgeopt.results import ReportResult

    validate.run_dir(run_dir)
    out = validate.report_file(out)  # a folder (existing, or a path ending in /): report.html inside it
    validate.devices_file(devices_file)
    options = {k: v for k, v in {"devices_file": devices_file, "device_names": device_names,
                                 "battery_mah": battery_mah, "inferences_per_hour": inferences_per_hour}.items()
               if v is not None}
    path = render_report(Path(run_dir), Path(out) if out else None, **options)
    return ReportResult(Path(run_dir), path, path.stat().st_size)


def footprint(run_dir: str | Path, *, device: str, inferences_per_day: float, variant: str = "int8",
              cloud: str = "aws-m7g.large", region: str = "aws-average", device_years: float | None = None,
              devices_file: str | Path | None = None) -> "Footprint":
    """Energy (kWh), CO2e (kg) and cost (USD) per year of ``inferences_per_day`` on ``device`` versus
    on a ``cloud`` instance, each figure with its formula and source (``edgeopt.footprint``)."""
    from edgeopt.footprint import footprint as compute

    validate.run_dir(run_dir)
    validate.positive(inferences_per_day, "--inferences-per-day")
    validate.devices_file(devices_file)
    return compute(run_dir, variant, device, inferences_per_day, cloud=cloud, region=region,
                   device_years=device_years, devices_file=devices_file)


def _stderr_line(message: str) -> None:
    import sys

    sys.stderr.write(message + "\n")


def write_report_quietly(run_dir: Path, log: Log) -> Path | None:
    """``report`` for the end of a run: a failure to render is one warning line, never a failed run."""
    try:
        return report(run_dir).path
    except KeyboardInterrupt:
        raise
    except Exception as err:  # the run itself is complete and saved
        from edgeopt.errors import one_line

        log(f"warning: the HTML report was not written: {type(err).__name__}: {one_line(err)} "
            f"(retry with: edgeopt report {run_dir})")
        return None


def search(model, data, *, targets: list[str] | None = None, max_accuracy_drop: float = 1.0,
           objectives=("latency", "size"), time_budget: str | float | None = "30m", trials: int | None = None,
           storage: str | None = None, study: str | None = None, workers: int = 1, out: str | Path | None = None,
           random_baseline: bool = False, training: bool = True, threads: int = 1, runs: int = 50,
           unsafe: bool = False, log: Log | None = None, devices_file: str | Path | None = None,
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
    (its hypervolume lands in ``result.targets[t].baseline``). ``devices_file``: a YAML of the
    user's own devices (as for ``estimate``), whose names may be ``targets``.

    Writes into ``out`` (default ``runs/<model stem>-search``): run.json with the float32
    baseline, one variant per target's winner and the search history (key ``search``), the
    winner's deployables under ``deploy/<target>/`` (MCU targets: C array + Arduino sketch), and
    the study database. ``progress(line, snapshot)`` gets each trial's line and the results so
    far. Raises UserError for bad arguments before anything heavy loads.
    """
    from edgeopt.tuner.options import check_targets, parse_duration, parse_objectives
    from edgeopt.tuner.storage import check_url

    validate.accuracy_budget(max_accuracy_drop)
    metrics = parse_objectives(objectives)
    budget_s = None if time_budget is None else parse_duration(time_budget)
    devices = check_targets(targets, metrics, devices_file)  # devices_file: user YAML devices, as for estimate
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
    _check_model(model, ("keras",))
    _check_data(data, data_kwargs)
    validate.output_dir(out)
    from edgeopt.tuner import searching

    return searching.run(model, data, devices=devices, metrics=metrics, max_accuracy_drop=max_accuracy_drop,
                         budget_s=budget_s, trials=trials, storage=storage, study=study, workers=workers,
                         out=out, random_baseline=random_baseline, training=training, threads=threads,
                         runs=runs, unsafe=unsafe, log=log, progress=progress, data_kwargs=data_kwargs,
                         devices_file=devices_file)
