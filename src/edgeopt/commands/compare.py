"""`edgeopt compare`: one model in every runtime at every precision, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeopt.commands.core import (CALIB_HELP, DATA_HELP, EVAL_HELP, OUTPUT_HELP, RESHAPE_HELP, SHAPE_HELP, TASK_HELP,
                                   TRAIN_HELP, _check_early, _data_kwargs, role_kwargs)


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        model: Path = typer.Argument(..., metavar="MODEL", help="a .keras/.h5 file, SavedModel folder, .onnx or .tflite"),
        data: Optional[str] = typer.Option(None, "--data", "-d", metavar="DATA", help=DATA_HELP),
        train_data: Optional[Path] = typer.Option(None, "--train-data", metavar="FILE", help=TRAIN_HELP),
        calib_data: Optional[Path] = typer.Option(None, "--calib-data", metavar="FILE", help=CALIB_HELP),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", metavar="FILE", help=EVAL_HELP),
        reshape: Optional[str] = typer.Option(None, "--reshape", metavar="SHAPE", help=RESHAPE_HELP),
        x_key: str = typer.Option("x", metavar="KEY", help=".npz key(s) of the inputs (a,b for several, in input order)"),
        y_key: str = typer.Option("y", metavar="KEY", help=".npz key(s) of the labels (a,b for several outputs)"),
        label_column: str = typer.Option("-1", metavar="COLUMN", help="CSV label column (name or index)"),
        input_shape: Optional[str] = typer.Option(None, "--input-shape", metavar="SHAPE", help=SHAPE_HELP),
        task: Optional[str] = typer.Option(None, "--task", metavar="TASK", help=TASK_HELP),
        output: Optional[str] = typer.Option(None, "--output", metavar="NAME", help=OUTPUT_HELP),

        runtimes: Optional[str] = typer.Option(None, metavar="NAMES",
                                               help="comma-separated runtimes (default: every registered "
                                                    "runtime: litert, onnxruntime, openvino, tflm)"),
        precisions: str = typer.Option("float32,float16,int8", metavar="NAMES",
                                       help="comma-separated: float32, float16, int8, dynamic (fp32, fp16, "
                                            "int8-dynamic also accepted)"),
        threads: int = typer.Option(1, min=1, metavar="N", help="runtime threads"),
        runs: int = typer.Option(100, min=1, metavar="N", help="timed batch-1 runs per row"),
        batch: int = typer.Option(32, min=2, metavar="N", help="batch size of the throughput column"),
        calibration: int = typer.Option(300, min=1, metavar="N", help="calibration samples for int8"),
        limit: Optional[int] = typer.Option(None, metavar="N", help="use at most N samples of the data"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="keep the artifacts and compare.json here"),
    ):
        """Run MODEL in every runtime at every precision, side by side (latency, throughput, size,
        accuracy, agreement with the float model). Each runtime quantizes with its own tools and
        every row is measured on its own artifact; a runtime that cannot run a row says why."""
        from edgeopt import api
        from edgeopt.report.terminal import progress_bar

        _check_early(input_shape, None, task)
        roles = role_kwargs(train_data, calib_data, eval_data, reshape)
        with progress_bar(disable=json_out, noun="row") as (_, step):
            result = api.compare(model, data, runtimes=runtimes, precisions=precisions, threads=threads, runs=runs,
                                 batch=batch, calibration=calibration, out=out, progress=step,
                                 input_shape=input_shape, output=output,
                                 **_data_kwargs(x_key, y_key, label_column, limit, task), **roles)
        if json_out:
            from edgeopt.cli import print_json

            print_json(result.to_dict())
        else:
            from edgeopt.report.terminal import print_compare

            print_compare(result, title=f"{model.name} on {result.data['name']}")
        if any(r.status == "failed" for r in result.rows):  # n/a (not applicable) and unavailable rows are not failures
            raise typer.Exit(code=1)
