"""`edgeopt search` (find the best variant for a device) and `edgeopt worker` (join a search)."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import List, Optional

import typer

DATA_HELP = "dataset: digits, blobs2d, fashion-mnist, an .npz/.npy/.csv file or an image folder"


def register(app: typer.Typer) -> None:
    @app.command()
    def search(
        model: Path = typer.Argument(..., help="a Keras model (.keras/.h5/SavedModel)"),
        data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
        target: List[str] = typer.Option([], "--target", "-t",
                                         help="device to optimize for (see: edgeopt devices); repeatable; "
                                              "default: this machine (host-cpu)"),
        max_accuracy_drop: float = typer.Option(1.0, help="accuracy points a variant may lose vs float32"),
        objectives: str = typer.Option("latency,size", help="minimized with accuracy: latency, size, gzip, energy"),
        time_budget: str = typer.Option("30m", help="no new trial after this long: 90s, 30m, 1h"),
        trials: Optional[int] = typer.Option(None, help="trials per target (default: as many as the budget allows)"),
        storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: SQLite in the run "
                                                         "directory; postgresql://... for many workers)"),
        study: Optional[str] = typer.Option(None, help="search name in the storage (default: the run directory's)"),
        workers: int = typer.Option(1, help="processes working on the search (N-1 edgeopt worker subprocesses)"),
        out: Optional[Path] = typer.Option(None, help="run directory (default runs/<model name>-search)"),
        post_training: bool = typer.Option(False, "--post-training", help="search post-training conversions only (int8, float16, dynamic, mixed): "
                                                 "no pruning or other training-time step"),
        random_baseline: bool = typer.Option(False, "--random-baseline",
                                             help="also run random search with the same budget (hypervolume)"),
        runs: int = typer.Option(50, help="timed runs at batch 1 per trial"),
        json_out: bool = typer.Option(False, "--json", help="print the result as JSON only"),
        unsafe: bool = typer.Option(False, "--unsafe", help="allow Lambda layers (runs code from the file)"),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", metavar="FILE",
                                                    help="your own device YAML (same fields as the catalogue); "
                                                         "its devices can be --target"),
    ):
        """Search recipes for each target: the best variant within the accuracy budget that fits the
        device, the Pareto front, and the winner's deployables in the run directory."""
        from edgeopt import api
        from edgeopt.cli import print_json

        live = _Live(enabled=not json_out)
        with _interrupted_says_resume(), live:
            result = api.search(model, data, targets=target or None, max_accuracy_drop=max_accuracy_drop,
                                objectives=objectives, time_budget=time_budget, trials=trials, storage=storage,
                                study=study, workers=workers, out=out, random_baseline=random_baseline,
                                training=not post_training, runs=runs, unsafe=unsafe, log=live.log,
                                devices_file=devices_file, progress=live.update)
        if json_out:
            print_json(result.to_dict())
        else:
            _print_result(result)
        if any(tr.best is None and tr.closest is None for tr in result.targets.values()):
            raise typer.Exit(code=1)  # a target got no finished trial at all (its sentence says why)

    @app.command()
    def worker(
        storage: str = typer.Option(..., help="the search's storage URL (postgresql://... or sqlite:///...)"),
        study: str = typer.Option(..., help="the search's name (edgeopt search --study NAME)"),
        work_dir: Optional[Path] = typer.Option(None, help="scratch folder for trials (default ./edgeopt-worker)"),
        time_budget: Optional[str] = typer.Option(None, help="start no trial after this long: 90s, 30m, 1h"),
    ):
        """Join a search from this process or machine and work on its trials until its budget is spent."""
        from edgeopt.tuner.options import parse_duration
        from edgeopt.tuner.storage import check_url

        from edgeopt.validate import output_dir

        check_url(storage)
        output_dir(work_dir, "--work-dir")
        budget = None if time_budget is None else parse_duration(time_budget)
        from edgeopt.tuner import make_evaluate, make_precheck, run_worker

        with _interrupted_says_resume():
            result = run_worker(storage, study, make_evaluate=make_evaluate, make_precheck=make_precheck,
                                work_dir=work_dir, time_budget_s=budget, log=_stderr)
        for tr in result.targets.values():
            _stderr(tr.sentence)


@contextlib.contextmanager
def _interrupted_says_resume():
    """Ctrl-C: one line saying how to go on, exit code 130 (typer would exit 130 silently)."""
    try:
        yield
    except KeyboardInterrupt:
        _stderr("interrupted; re-run the same command to resume")
        raise typer.Exit(code=130) from None


def _stderr(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class _Live:
    """A live table of trials and a best-so-far line, on stderr (rich)."""

    def __init__(self, enabled: bool):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled
        self._live = None
        self.best = "best so far: -"
        self.rows: list = []

    def __enter__(self):
        if self.enabled and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)

    def log(self, msg: str) -> None:
        if self.enabled and self._live is None:
            self.console.print(msg, highlight=False, markup=False)

    def update(self, line: str, snapshot) -> None:
        if "| best so far:" in line:
            self.best = "best so far:" + line.split("| best so far:", 1)[1]
        if snapshot is not None:
            self.rows = [(tr.target, t) for tr in snapshot.targets.values() for t in tr.trials]
        if self._live is not None:
            self._live.update(self._render())
        elif self.enabled:
            self.console.print(line, highlight=False, markup=False)

    def _render(self):
        from rich.console import Group
        from rich.table import Table

        table = Table(title="trials", title_justify="left")
        for col in ("target", "#", "status", "recipe", "accuracy", "objectives"):
            table.add_column(col)
        for target, t in self.rows[-15:]:
            figures = ", ".join(f"{k} {v['value']:.4g}" + (" (est.)" if v.get("provenance") == "estimated" else "")
                                for k, v in t.metrics.items() if k in ("latency_ms", "size_bytes", "energy_mj"))
            table.add_row(target, str(t.number), t.status, t.description or t.recipe,
                          "" if t.accuracy is None else f"{t.accuracy:.4f}", figures or (t.reason or "")[:60])
        return Group(table, self.best)


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for target, tr in result.targets.items():
        console.rule(f"[bold]{target}")
        console.print(tr.sentence, highlight=False)
        table = Table(title="Pareto front (accuracy and objectives)", title_justify="left")
        for col in ["trial", "variant", "accuracy"] + [o.name for o in tr.objectives]:
            table.add_column(col)
        for t in tr.front:
            table.add_row(str(t.number), t.description, f"{t.accuracy:.4f}",
                          *[f"{t.value(o.name):.4g} ({t.metrics[o.name]['provenance']})" for o in tr.objectives])
        console.print(table)
        if tr.baseline:
            console.print(f"hypervolume: search {tr.hypervolume:.4f}, random {tr.baseline['hypervolume']:.4f}")
        for p in result.exports.get(target, []):
            console.print(f"exported {p}", highlight=False)
        for note in tr.export_notes:
            console.print(Text(note, style="bold yellow" if "does NOT meet" in note else ""))
    console.print(f"run directory: {result.path}  (edgeopt report {result.path})", highlight=False)
