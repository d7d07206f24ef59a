"""Core commands: profile, bench, optimize, explain, recipes, demo."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

DATA_HELP = "digits | fashion-mnist | blobs2d | a .npz/.npy/.csv file | an image folder (see README: Data)"
MODEL_HELP = "a .keras/.h5 file, SavedModel folder, .tflite or .onnx"
RUN_HELP = "a run directory made by edgeopt optimize"
UNSAFE_HELP = "allow Lambda layers (runs code from the file)"
LIMIT_HELP = "use at most N samples of the data"
SHAPE_HELP = "one sample's shape for open (None) axes, e.g. 16,4 or image:8,8,1;vector:4 (default: the data's)"
TASK_HELP = "classification | binary | multilabel | regression | fidelity (default: inferred, and printed)"
OUTPUT_HELP = "the model output to score (name or index) when it has several"
METRIC_HELP = "a custom metric module:function or file.py:function taking (y_true, y_pred)"


def _data_kwargs(x_key, y_key, label_column, limit, task=None) -> dict:
    kw = {"x_key": x_key, "y_key": y_key, "label_column": label_column}
    if limit is not None:
        kw["limit"] = limit
    if task:
        kw["task"] = task
    return kw


def _check_early(input_shape, metric, task) -> None:
    """--input-shape, --metric and --task checked before anything loads (one error line)."""
    from edgeopt.api import parse_shape_option
    from edgeopt.errors import UserError

    parse_shape_option(input_shape)
    if metric:
        from edgeopt.core.metrics import load_metric
        from edgeopt.validate import metric_file

        metric_file(metric)
        load_metric(metric)
    if task and task not in ("classification", "binary", "multilabel", "regression", "fidelity"):
        raise UserError(f"--task {task!r}: use classification, binary, multilabel, regression or fidelity")


def _check_data_flags(sources, x_key, y_key, label_column) -> None:
    from edgeopt.validate import data_flags

    data_flags(sources, x_key=x_key, y_key=y_key, label_column=label_column)


TRAIN_HELP = "fine-tuning data file (its validation split is carved from it)"
CALIB_HELP = "calibration data file: int8 calibration reads this file only (labels optional)"
EVAL_HELP = "evaluation data file: the numbers in the table, used whole"
RESHAPE_HELP = ("one sample's shape for flat rows, e.g. 8,8,1 for a CSV feeding an 8x8 image model "
                "(several inputs: image:8,8,1;features:5)")


def role_kwargs(train_data, calib_data, eval_data, reshape, data=None) -> dict:
    """The data roles (``--train-data``, ``--calib-data``, ``--eval-data``) and ``--reshape`` as API
    keywords, checked (files, and their combination with ``--data``) before anything loads."""
    from edgeopt import validate
    from edgeopt.errors import UserError

    validate.data_roles(train_data, calib_data, eval_data, data)
    kw = {k: str(v) for k, v in (("train_data", train_data), ("calib_data", calib_data),
                                  ("eval_data", eval_data)) if v is not None}
    if reshape:
        kw["reshape"] = _parse_reshape(reshape)
    return kw


def _parse_reshape(text: str):
    """``8,8,1`` -> (8, 8, 1); ``image:8,8,1;features:5`` -> {"image": (8, 8, 1), "features": (5,)}."""
    from edgeopt.errors import UserError

    def sizes(part: str, whole: str) -> tuple[int, ...]:
        try:
            shape = tuple(int(d) for d in part.split(","))
        except ValueError:
            raise UserError(f"--reshape expects comma-separated sizes like 8,8,1 (or name:8,8,1;name:5 per "
                            f"input), got {whole!r}") from None
        if any(d < 1 for d in shape):
            raise UserError(f"--reshape sizes must be positive, got {whole!r}")
        return shape

    if ":" not in text:
        return sizes(text, text)
    named = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, shape = item.partition(":")
        if not sep or not name.strip():
            raise UserError(f"--reshape per input is name:sizes;name:sizes (e.g. image:8,8,1;features:5), "
                            f"got {text!r}")
        named[name.strip()] = sizes(shape, text)
    return named


def _parse_options(pairs: list[str]) -> dict:
    """key=value pairs to a dict; values parsed as JSON where they can be (numbers, lists, true)."""
    import json

    from edgeopt.errors import UserError

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option expects key=value, got {pair!r}")
        try:
            out[_option_key(key)] = json.loads(value)
        except json.JSONDecodeError as e:
            if value.lstrip().startswith(("{", "[")):  # meant as JSON: a plain string would hide the typo
                raise UserError(f"--option {pair}: the value is not valid JSON ({e.msg} at character "
                                f"{e.pos + 1}); quote it whole, e.g. -o 'int8={{\"per_channel\": false}}'") from None
            out[_option_key(key)] = value
    return out


def _option_key(key: str) -> str:
    """'prune.skip-layers' -> 'prune.skip_layers' (the step name keeps its dashes)."""
    step, dot, name = key.strip().rpartition(".")
    return f"{step}{dot}{name.replace('-', '_')}"


def register(app: typer.Typer) -> None:
    @app.command()
    def profile(
        model: Path = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        no_arena: bool = typer.Option(False, "--no-arena", help="skip the TFLite Micro arena measurement"),
        unsafe: bool = typer.Option(False, "--unsafe", help=UNSAFE_HELP),
        data: Optional[str] = typer.Option(None, "--data", "-d", metavar="DATA",
                                           help="data whose sample shape fixes open axes (optional)"),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", metavar="SHAPE", help=SHAPE_HELP),
        x_key: str = typer.Option("x", metavar="KEY", help=".npz key(s) of the inputs (a,b for several)"),
    ):
        """Per-layer/per-op parameters, MACs, weight and activation memory, and the TFLM arena."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        from edgeopt import validate

        _check_early(input_shape, None, None)
        validate.data_source(data)
        validate.data_flags([data], x_key=x_key)
        with spinner(f"profiling {model.name}", disable=json_out):
            prof = api.profile(model, unsafe=unsafe, measure_arena=not no_arena, data=data,
                               input_shape=input_shape, **({"x_key": x_key} if data else {}))
        if json_out:
            from edgeopt.cli import print_json

            print_json(prof.to_dict())
            return
        from edgeopt.report.terminal import print_profile

        print_profile(prof)

    @app.command()
    def bench(
        model: Path = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
        data: Optional[str] = typer.Option(None, "--data", "-d", metavar="DATA", help=DATA_HELP),
        train_data: Optional[Path] = typer.Option(None, "--train-data", metavar="FILE", help=TRAIN_HELP),
        calib_data: Optional[Path] = typer.Option(None, "--calib-data", metavar="FILE", help=CALIB_HELP),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", metavar="FILE", help=EVAL_HELP),
        reshape: Optional[str] = typer.Option(None, "--reshape", metavar="SHAPE", help=RESHAPE_HELP),
        threads: int = typer.Option(1, metavar="N", help="runtime threads"),
        runs: int = typer.Option(200, metavar="N", help="timed runs at batch 1 (after 20 warm-up runs)"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        x_key: str = typer.Option("x", metavar="KEY", help=".npz key of the inputs"),
        y_key: str = typer.Option("y", metavar="KEY", help=".npz key of the labels"),
        label_column: str = typer.Option("-1", metavar="COLUMN", help="CSV label column (name or index)"),
        limit: Optional[int] = typer.Option(None, metavar="N", help=LIMIT_HELP),
        unsafe: bool = typer.Option(False, "--unsafe", help=UNSAFE_HELP),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", metavar="SHAPE", help=SHAPE_HELP),
        task: Optional[str] = typer.Option(None, "--task", metavar="TASK", help=TASK_HELP),
        output: Optional[str] = typer.Option(None, "--output", metavar="NAME", help=OUTPUT_HELP),
        metric: Optional[str] = typer.Option(None, "--metric", metavar="MODULE:FUNCTION", help=METRIC_HELP),
    ):
        """Convert to float32 LiteRT and measure accuracy, latency, throughput, size and memory."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        _check_early(input_shape, metric, task)
        roles = role_kwargs(train_data, calib_data, eval_data, reshape, data)
        _check_data_flags([data, train_data, calib_data, eval_data], x_key, y_key, label_column)
        with spinner(f"measuring {model.name} on {data or eval_data}", disable=json_out):
            result = api.bench(model, data, threads=threads, runs=runs, unsafe=unsafe, input_shape=input_shape,
                               metric=metric, output=output,
                               **_data_kwargs(x_key, y_key, label_column, limit, task), **roles)
        if json_out:
            from edgeopt.cli import print_json

            print_json(result)
            return
        from edgeopt.report.terminal import print_bench

        print_bench(result)

    @app.command()
    def optimize(
        model: Path = typer.Argument(..., metavar="MODEL", help="a Keras model (.keras/.h5/SavedModel) or a .tflite/.onnx"),
        data: Optional[str] = typer.Option(None, "--data", "-d", metavar="DATA", help=DATA_HELP),
        train_data: Optional[Path] = typer.Option(None, "--train-data", metavar="FILE", help=TRAIN_HELP),
        calib_data: Optional[Path] = typer.Option(None, "--calib-data", metavar="FILE", help=CALIB_HELP),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", metavar="FILE", help=EVAL_HELP),
        reshape: Optional[str] = typer.Option(None, "--reshape", metavar="SHAPE", help=RESHAPE_HELP),

        recipe: List[str] = typer.Option([], "--recipe", "-r", metavar="RECIPE",
                                         help="a step chain like int8 or prune,cluster,int8, or an alias "
                                              "like ptq; repeat for several (see: edgeopt recipes)"),
        recipe_file: Optional[Path] = typer.Option(None, "--recipe-file", metavar="FILE",
                                                   help="YAML file of recipes with per-step configs "
                                                        "(and options); see README"),
        out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                           help="run directory (default runs/<model name>)"),
        max_accuracy_drop: Optional[float] = typer.Option(
            None, metavar="POINTS", help="accuracy budget in points on the eval split (mixed precision, search)"),
        calibration_samples: Optional[int] = typer.Option(None, metavar="N",
                                                          help="representative samples for int8"),
        option: List[str] = typer.Option([], "--option", "-o", metavar="STEP.FIELD=VALUE",
                                         help="step field: step.field=value (that step) or field=value "
                                              "(every step with the field); repeatable"),
        threads: int = typer.Option(1, metavar="N", help="runtime threads for measurements"),
        runs: int = typer.Option(200, metavar="N", help="timed runs at batch 1 per variant"),
        fresh: bool = typer.Option(False, "--fresh", help="start over instead of resuming the run directory"),
        no_report: bool = typer.Option(False, "--no-report", help="do not write RUN_DIR/report.html"),
        json_out: bool = typer.Option(False, "--json", help="print run.json only"),
        x_key: str = typer.Option("x", metavar="KEY", help=".npz key of the inputs"),
        y_key: str = typer.Option("y", metavar="KEY", help=".npz key of the labels"),
        label_column: str = typer.Option("-1", metavar="COLUMN", help="CSV label column (name or index)"),
        limit: Optional[int] = typer.Option(None, metavar="N", help=LIMIT_HELP),
        unsafe: bool = typer.Option(False, "--unsafe", help=UNSAFE_HELP),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", metavar="SHAPE", help=SHAPE_HELP),
        task: Optional[str] = typer.Option(None, "--task", metavar="TASK", help=TASK_HELP),
        output: Optional[str] = typer.Option(None, "--output", metavar="NAME", help=OUTPUT_HELP),
        metric: Optional[str] = typer.Option(None, "--metric", metavar="MODULE:FUNCTION", help=METRIC_HELP),
    ):
        """Baseline + a variant per recipe, each measured on its artifact, into a run directory
        (run.json, the artifacts and report.html)."""
        from edgeopt import api
        from edgeopt.engine.store import load_run
        from edgeopt.report.terminal import progress_bar

        options = _parse_options(option)
        if max_accuracy_drop is not None:
            options["max_accuracy_drop"] = max_accuracy_drop
        if calibration_samples is not None:
            options["calibration_samples"] = calibration_samples
        api.plan_recipes(list(recipe), options, recipe_file, model)  # one error line before any output
        _check_early(input_shape, metric, task)
        roles = role_kwargs(train_data, calib_data, eval_data, reshape, data)
        _check_data_flags([data, train_data, calib_data, eval_data], x_key, y_key, label_column)
        with progress_bar(disable=json_out) as (log, step):
            run = api.optimize(model, data, recipes=list(recipe), recipe_file=recipe_file, out=out,
                               options=options, threads=threads, runs=runs, unsafe=unsafe, fresh=fresh,
                               log=log if not json_out else _warn_only, progress=step, html_report=not no_report,
                               input_shape=input_shape, metric=metric, output=output,
                               **_data_kwargs(x_key, y_key, label_column, limit, task), **roles)
        record = load_run(run.path)
        if json_out:
            from edgeopt.cli import print_json

            print_json(record)
        else:
            from edgeopt.report.terminal import print_run

            print_run(record, run.path)
        if any(v.get("status") != "done" for v in record["variants"]):
            raise typer.Exit(code=1)  # a requested variant or the baseline failed; the table says why

    @app.command()
    def explain(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help=RUN_HELP),
        variant: str = typer.Argument(..., metavar="VARIANT", help="variant name, e.g. int8 or prune+int8"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """How a variant was made: its steps, kept-float ops and per-tensor quantization error."""
        from edgeopt import api

        found = api.explain(run_dir, variant).model_dump(mode="json")
        if json_out:
            from edgeopt.cli import print_json

            print_json(found)
            return
        from edgeopt.report.terminal import print_variant

        print_variant(found)

    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help=RUN_HELP),
        out: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                          help="HTML file to write, or a folder to write report.html into "
                                               "(an existing folder or a path ending in /; missing folders "
                                               "are created; default RUN_DIR/report.html)"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Write a self-contained HTML report: summary, trade-off plots, device fit, per-layer view,
        how each variant was made."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        with spinner(f"writing the report of {run_dir}", disable=json_out):
            result = api.report(run_dir, out)
        if json_out:
            from edgeopt.cli import print_json

            print_json(result.to_dict())
            return
        typer.echo(f"wrote {result.path}")

    @app.command()
    def export(
        source: Path = typer.Argument(..., metavar="MODEL_OR_RUN",
                                      help="a model (.keras/.h5/SavedModel: converted float32 first, .tflite, "
                                           ".onnx) or a run directory"),
        variant_arg: Optional[str] = typer.Argument(None, metavar="VARIANT", help="variant of the run directory"),
        out: Path = typer.Option(..., "--out", metavar="DIR", help="folder for the bundle"),
        target: str = typer.Option("arduino", metavar="TARGET",
                                   help="arduino | zephyr | linux-litert | onnx | openvino | ethos-u"),
        variant: Optional[str] = typer.Option(None, metavar="NAME", help="variant of the run directory (same as VARIANT)"),
        name: Optional[str] = typer.Option(None, metavar="NAME", help="C identifier / file stem of the model"),
        data: Optional[str] = typer.Option(None, "--data", "-d", metavar="DATA",
                                           help="data whose first eval sample the bundle carries (default: zeros)"),
        npu: str = typer.Option("ethos-u55-128", metavar="NPU",
                                help="Ethos-U target for --target ethos-u (see hardware/npu.yaml)"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        x_key: str = typer.Option("x", metavar="KEY", help=".npz key(s) of the inputs (a,b for several, in input order)"),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", metavar="SHAPE",
                                                  help="one sample's shape: the open axes of a Keras model or "
                                                       ".onnx (default: the data's); a fixed .tflite/.onnx or run "
                                                       "variant's is checked against it"),
        reshape: Optional[str] = typer.Option(None, "--reshape", metavar="SHAPE", help=RESHAPE_HELP),
    ):
        """Deploy bundle of a model or run variant: MCU sketch, Zephyr app, Linux/ONNX/OpenVINO script, Ethos-U."""
        from edgeopt import api
        from edgeopt.report.terminal import spinner

        _check_early(input_shape, None, None)
        shape_kw = {"reshape": _parse_reshape(reshape)} if reshape else {}
        with spinner(f"exporting for {target}", disable=json_out):
            result = api.export(source, out=out, variant=variant or variant_arg, target=target, name=name,
                                data=data, npu=npu, input_shape=input_shape, x_key=x_key, **shape_kw)
        if json_out:
            from edgeopt.cli import print_json

            print_json(result.to_dict())
            return
        for path in result.files:
            typer.echo(f"wrote {path}")

    @app.command()
    def recipes(
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """List the recipe steps, each field's type, default and range, and the aliases."""
        from edgeopt.recipes import catalogue

        steps = catalogue()
        if json_out:
            from edgeopt.cli import print_json

            print_json(steps)
            return
        from edgeopt.report.terminal import print_recipes

        print_recipes(steps)

    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", metavar="DIR",
                                 help="where the demo writes its models and run directories"),
        quick: bool = typer.Option(False, "--quick", help="shorter training (for tests)"),
    ):
        """Train two small models and run the whole pipeline on built-in data: the slide MLP on
        blobs2d and a small CNN on Fashion-MNIST (digits when it is not installed) are saved to
        OUT/models/ (slide_mlp.keras, fashion_mnist_cnn.keras or digits_cnn.keras), then each is
        profiled, benchmarked and optimized (dynamic, float16, int8) into OUT/<model name>/
        (run.json, artifacts, report.html). A few minutes on two cores."""
        from edgeopt.demo import run_demo

        run_demo(out, quick=quick)


def _warn_only(message: str) -> None:
    """With --json, only warnings reach stderr (the run's progress messages are dropped)."""
    if message.startswith("warning:"):
        from edgeopt.report.terminal import err_console

        err_console.print(message, highlight=False, markup=False, soft_wrap=True)
