"""`edgeopt compare`: one model in every runtime at every precision, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        model: Path = typer.Argument(..., help="a .keras/.h5 file, SavedModel folder, .onnx or .tflite"),
        data: str = typer.Option(..., "--data", "-d",
                                 help="digits | fashion-mnist | blobs2d | a .npz/.npy/.csv file | an image folder"),
        runtimes: Optional[str] = typer.Option(None, help="comma-separated runtimes (default: every registered "
                                               "runtime: litert, onnxruntime, openvino, tflm)"),
        precisions: str = typer.Option("float32,float16,int8",
                                       help="comma-separated: float32, float16, int8, dynamic (fp32, fp16, "
                                            "int8-dynamic also accepted)"),
        threads: int = typer.Option(1, min=1, help="runtime threads"),
        runs: int = typer.Option(100, min=1, help="timed batch-1 runs per row"),
        batch: int = typer.Option(32, min=2, help="batch size of the throughput column"),
        calibration: int = typer.Option(300, min=1, help="calibration samples for int8"),
        limit: Optional[int] = typer.Option(None, help="use at most N samples of the data"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="keep the artifacts and compare.json here"),
    ):
        """Run MODEL in every runtime at every precision, side by side (latency, throughput, size,
        accuracy, agreement with the float model). Each runtime quantizes with its own tools and
        every row is measured on its own artifact; a runtime that cannot run a row says why."""
        from edgeopt.cli import print_json
        from edgeopt.compare import compare as run_compare, parse_compare_precisions, render_table, to_json
        from edgeopt.data import load_data
        from edgeopt.errors import UserError
        from edgeopt.runtimes.registry import parse_runtimes

        names = parse_runtimes(runtimes)
        try:
            precs = parse_compare_precisions([p for p in precisions.split(",") if p.strip()])
        except UserError as e:
            raise UserError(f"--precisions {precisions!r}: {e}") from None
        if out is not None:
            from edgeopt.fsutil import ensure_writable_dir
            ensure_writable_dir(out)
        dataset = load_data(data, **({"limit": limit} if limit else {}))
        progress = None if json_out else _progress()
        rows = run_compare(model, dataset, names, precs, threads=threads, runs=runs, batch=batch,
                           out_dir=out, calibration=calibration, progress=progress)
        result = to_json(rows, model=str(model), data=dataset.summary(), threads=threads, runs=runs)
        if out is not None:
            from edgeopt.fsutil import atomic_write_json
            atomic_write_json(out / "compare.json", result)
        if json_out:
            print_json(result)
            return
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
            console = Console(width=160)
        console.print(render_table(rows, title=f"{model.name} on {dataset.name}"))
        for precision, runtime in result["fastest"].items():
            console.print(f"fastest at {precision}: [bold]{runtime}[/]")
        if out is not None:
            console.print(f"artifacts and compare.json in {out}")


def _progress():
    import sys

    def report(row) -> None:
        state = "ok" if row.ok else row.status
        sys.stderr.write(f"  {row.runtime:<12} {row.precision.value:<13} {state}\n")
        sys.stderr.flush()

    return report
