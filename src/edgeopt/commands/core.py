"""Core commands: profile, bench, optimize, explain, recipes, demo."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

DATA_HELP = "data: digits | fashion-mnist | blobs2d | a .npz/.npy/.csv file | an image folder"


def _data_kwargs(x_key, y_key, label_column, limit) -> dict:
    kw = {"x_key": x_key, "y_key": y_key, "label_column": label_column}
    if limit:
        kw["limit"] = limit
    return kw


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
        except json.JSONDecodeError:
            out[_option_key(key)] = value
    return out


def _option_key(key: str) -> str:
    """'prune.skip-layers' -> 'prune.skip_layers' (the step name keeps its dashes)."""
    step, dot, name = key.strip().rpartition(".")
    return f"{step}{dot}{name.replace('-', '_')}"


def register(app: typer.Typer) -> None:
    @app.command()
    def profile(
        model: Path = typer.Argument(..., help="a .keras/.h5 file, SavedModel folder, .tflite or .onnx"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        no_arena: bool = typer.Option(False, "--no-arena", help="skip the TFLite Micro arena measurement"),
        unsafe: bool = typer.Option(False, "--unsafe", help="allow Lambda layers (runs code from the file)"),
    ):
        """Per-layer/per-op parameters, MACs, weight and activation memory, and the TFLM arena."""
        from edgeopt import api
        from edgeopt.cli import print_json

        prof = api.profile(model, unsafe=unsafe, measure_arena=not no_arena)
        if json_out:
            print_json(prof.to_dict())
            return
        from edgeopt.report.terminal import print_profile

        print_profile(prof)

    @app.command()
    def bench(
        model: Path = typer.Argument(..., help="a .keras/.h5 file, SavedModel folder, .tflite or .onnx"),
        data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
        threads: int = typer.Option(1, help="runtime threads"),
        runs: int = typer.Option(200, help="timed runs at batch 1 (after 20 warm-up runs)"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        x_key: str = typer.Option("x", help=".npz key of the inputs"),
        y_key: str = typer.Option("y", help=".npz key of the labels"),
        label_column: str = typer.Option("-1", help="CSV label column (name or index)"),
        limit: Optional[int] = typer.Option(None, help="use at most N samples of the data"),
        unsafe: bool = typer.Option(False, "--unsafe", help="allow Lambda layers (runs code from the file)"),
    ):
        """Convert to float32 LiteRT and measure accuracy, latency, throughput, size and memory."""
        from edgeopt import api
        from edgeopt.cli import print_json

        result = api.bench(model, data, threads=threads, runs=runs, unsafe=unsafe,
                           **_data_kwargs(x_key, y_key, label_column, limit))
        if json_out:
            print_json(result)
            return
        from edgeopt.report.terminal import print_bench

        print_bench(result)

    @app.command()
    def optimize(
        model: Path = typer.Argument(..., help="a Keras model (.keras/.h5/SavedModel) or a .tflite/.onnx"),
        data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
        recipe: List[str] = typer.Option([], "--recipe", "-r",
                                         help="a step chain like int8 or prune,cluster,int8, or an alias "
                                              "like ptq; repeat for several (see: edgeopt recipes)"),
        recipe_file: Optional[Path] = typer.Option(None, "--recipe-file",
                                                   help="YAML file of recipes with per-step configs "
                                                        "(and options); see README"),
        out: Optional[Path] = typer.Option(None, help="run directory (default runs/<model name>)"),
        max_accuracy_drop: Optional[float] = typer.Option(
            None, help="accuracy budget in points on the eval split (mixed precision, search)"),
        calibration_samples: Optional[int] = typer.Option(None, help="representative samples for int8"),
        option: List[str] = typer.Option([], "--option", "-o",
                                         help="step field: step.field=value (that step) or field=value "
                                              "(every step with the field); repeatable"),
        threads: int = typer.Option(1, help="runtime threads for measurements"),
        runs: int = typer.Option(200, help="timed runs at batch 1 per variant"),
        fresh: bool = typer.Option(False, "--fresh", help="start over instead of resuming the run directory"),
        json_out: bool = typer.Option(False, "--json", help="print run.json only"),
        x_key: str = typer.Option("x", help=".npz key of the inputs"),
        y_key: str = typer.Option("y", help=".npz key of the labels"),
        label_column: str = typer.Option("-1", help="CSV label column (name or index)"),
        limit: Optional[int] = typer.Option(None, help="use at most N samples of the data"),
        unsafe: bool = typer.Option(False, "--unsafe", help="allow Lambda layers (runs code from the file)"),
    ):
        """Baseline + a variant per recipe, each measured on its artifact, into a run directory."""
        from edgeopt import api
        from edgeopt.cli import print_json
        from edgeopt.engine.store import load_run
        from edgeopt.report.terminal import progress_bar

        options = _parse_options(option)
        if max_accuracy_drop is not None:
            options["max_accuracy_drop"] = max_accuracy_drop
        if calibration_samples is not None:
            options["calibration_samples"] = calibration_samples
        api.plan_recipes(list(recipe), options, recipe_file)  # one error line before any output
        with progress_bar(disable=json_out) as (log, step):
            run = api.optimize(model, data, recipes=list(recipe), recipe_file=recipe_file, out=out,
                               options=options, threads=threads, runs=runs, unsafe=unsafe, fresh=fresh,
                               log=log, progress=step, **_data_kwargs(x_key, y_key, label_column, limit))
        path = run.path
        record = load_run(path)
        if json_out:
            print_json(record)
            return
        from edgeopt.report.terminal import print_run

        print_run(record, path)

    @app.command()
    def explain(
        run_dir: Path = typer.Argument(..., help="a run directory made by edgeopt optimize"),
        variant: str = typer.Argument(..., help="variant name, e.g. int8 or prune+int8"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """How a variant was made: its steps, kept-float ops and per-tensor quantization error."""
        from edgeopt.cli import print_json
        from edgeopt.errors import UserError
        from edgeopt.engine.store import load_run

        record = load_run(run_dir)
        found = next((v for v in record["variants"] if v["name"] == variant), None)
        if found is None:
            names = ", ".join(v["name"] for v in record["variants"])
            raise UserError(f"no variant {variant!r} in {run_dir}; variants: {names}")
        if json_out:
            print_json(found)
            return
        from edgeopt.report.terminal import print_variant

        print_variant(found)

    @app.command()
    def report(
        run_dir: Path = typer.Argument(..., help="a run directory made by edgeopt optimize"),
        out: Optional[Path] = typer.Option(None, help="HTML file to write (default RUN_DIR/report.html)"),
    ):
        """Write a self-contained HTML report: variants, Pareto plots, how each variant was made."""
        from edgeopt.report.html import render_report

        path = render_report(run_dir, out)
        typer.echo(f"wrote {path}")

    @app.command()
    def export(
        source: Path = typer.Argument(..., help="a .tflite/.onnx file, or a run directory"),
        variant_arg: Optional[str] = typer.Argument(None, metavar="[VARIANT]", help="variant of the run directory"),
        out: Path = typer.Option(..., help="folder for the bundle"),
        target: str = typer.Option("arduino", help="arduino | zephyr | linux-litert | onnx | openvino | ethos-u"),
        variant: Optional[str] = typer.Option(None, help="variant of the run directory (same as VARIANT)"),
        name: Optional[str] = typer.Option(None, help="C identifier / file stem of the model"),
        data: Optional[str] = typer.Option(None, "--data", "-d",
                                           help="data whose first eval sample the bundle carries (default: zeros)"),
        npu: str = typer.Option("ethos-u55-128", help="Ethos-U target for --target ethos-u (see hardware/npu.yaml)"),
    ):
        """Deploy bundle of a model or run variant: MCU sketch, Zephyr app, Linux/ONNX/OpenVINO script, Ethos-U."""
        from edgeopt.errors import UserError
        from edgeopt.engine.store import load_run
        from edgeopt.export.bundles import check_target, export_bundle

        check_target(target)
        variant = variant or variant_arg
        artifact = source
        if source.is_dir():
            record = load_run(source)
            chosen = next((v for v in record["variants"] if v["name"] == variant and v.get("status") == "done"),
                          None)
            if chosen is None:
                names = ", ".join(v["name"] for v in record["variants"] if v.get("status") == "done")
                raise UserError(f"give the variant to export, one of: {names}")
            artifact = source / chosen["artifact"]
            name = name or f"{record.get('name', 'model')}_{chosen['name']}"
        elif not source.exists():
            raise UserError(f"not found: {source}")
        sample = None
        if data is not None:
            from edgeopt.data import load_data

            sample = load_data(data).x_eval[0]
        for path in export_bundle(artifact, target, out, name, sample=sample, npu=npu):
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
        out: Path = typer.Option(Path("runs/demo"), help="where the demo's run directories go"),
        quick: bool = typer.Option(False, "--quick", help="smaller training (for tests)"),
    ):
        """Train the slide MLP and a small CNN, then profile, bench and optimize each."""
        from edgeopt.demo import run_demo

        run_demo(out, quick=quick)
