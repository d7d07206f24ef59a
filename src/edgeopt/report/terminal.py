"""Terminal views (rich): bench results, run tables, variant explanations, progress."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgeopt.report.format import fmt_bytes, fmt_count, fmt_int, fmt_ms, fmt_time  # noqa: F401  (re-exported)

# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 150)


def _quality(metrics: dict) -> str:
    if "accuracy" in metrics:
        return f"{metrics['accuracy'] * 100:.2f}%"
    if "mae" in metrics:
        return f"MAE {metrics['mae']:.4g}"
    return "-"


def print_profile(prof) -> None:
    console.print(format_profile_table(prof))


def _short_name(name: str, width: int = 36) -> str:
    """Converter names join fused ops with ';' under the model's scope: keep the first, unscoped."""
    first = name.split(";")[0]
    if first.count("/") >= 2:
        first = first.split("/", 1)[1]
    return first if len(first) <= width else first[:width - 1] + "…"


def format_profile_table(profile: GraphProfile):
    """A rich Table with one row per op and a totals row; its caption summarises memory and precision."""
    table = Table(title=f"{Path(profile.path).name or profile.source} ({profile.source}, {profile.precision})",
                  show_footer=False)
    for col, justify in (("op", "left"), ("type", "left"), ("output shape", "left"), ("params", "right"),
                         ("MACs", "right"), ("weight bytes", "right"), ("activation bytes", "right"),
                         ("dtype", "left")):
        table.add_column(col, justify=justify)
    for op in profile.ops:
        table.add_row(_short_name(op.name), op.op_type, "x".join(map(str, op.output_shape)), fmt_int(op.params),
                      fmt_int(op.macs), fmt_bytes(sum(op.weight_bytes.values())),
                      fmt_bytes(op.activation_bytes), op.dtype + (f" ({op.quantization})" if op.quantization else ""))
    table.add_section()
    weights = ", ".join(f"{d} {fmt_bytes(b)}" for d, b in sorted(profile.weight_bytes.items()))
    table.add_row("total", f"{len(profile.ops)} ops", "", fmt_int(profile.total_params),
                  fmt_int(profile.total_macs), fmt_bytes(sum(profile.weight_bytes.values())),
                  f"peak {fmt_bytes(profile.peak_activation_bytes)}", profile.precision)
    arena = (f"TFLite Micro arena {fmt_bytes(profile.arena_bytes)} ({profile.arena_bytes:,} B)"
             if profile.arena_bytes is not None else "TFLite Micro arena: n/a")
    table.caption = (f"input {'x'.join(map(str, profile.input_shape))} {profile.input_dtype} | "
                     f"weights: {weights or 'none'} | peak activations "
                     f"{fmt_bytes(profile.peak_activation_bytes)}"
                     + (f" | file {fmt_bytes(profile.file_bytes)}" if profile.file_bytes else "")
                     + f"\n{arena}" + (f" ({profile.arena_note})" if profile.arena_note else "")
                     + "".join(f"\nnote: {n}" for n in profile.notes))
    return table


def print_bench(result: dict) -> None:
    m = result["metrics"]
    how = m["how"]
    for w in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    if m.get("nonfinite_outputs"):
        console.print(f"[yellow]warning:[/] {m['nonfinite_outputs']} eval sample(s) gave NaN/inf outputs "
                      "(scored as wrong)")
    table = Table(title=f"{Path(result['model']).name} on {result['data']['name']} "
                        f"({how['runtime']} {how['runtime_version']}, {how['threads']} thread(s))")
    for col in ("metric", "value"):
        table.add_column(col)
    lat = m["latency_ms"]
    rows = [
        (m["metric"], _quality(m) + f"  ({m['eval_samples']} eval samples)"),
        ("latency p50 / p90 / p99", " / ".join(fmt_time(lat[k] / 1e3) for k in ("p50_ms", "p90_ms", "p99_ms"))),
        ("throughput batch 1", f"{m['throughput_batch1_ips']:.0f} inf/s"),
    ]
    rows += [(k.replace("_ips", "").replace("_", " "), f"{v:.0f} inf/s") for k, v in m.items()
             if k.startswith("throughput_batch") and k != "throughput_batch1_ips"]
    rows += [
        ("size / gzip", f"{fmt_bytes(m['size_bytes'])} / {fmt_bytes(m['gzip_bytes'])}"),
        ("load time", fmt_time(m["load_ms"] / 1e3)),
        ("RSS growth / process peak", f"{fmt_bytes(m['rss_delta_bytes'])} / {fmt_bytes(m['peak_rss_bytes'])}"),
        ("CPU", f"{how['cpu']} [{', '.join(how['cpu_flags'])}]"),
    ]
    for r in rows:
        table.add_row(*r)
    console.print(table)


def run_table(record: dict) -> Table:
    table = Table(title=f"run {record.get('name')}: {Path(record['model']['path']).name} on "
                        f"{record['data']['source']}")
    from edgeopt.engine.analysis import pareto_front

    front = set(pareto_front(record["variants"]))
    table.caption = "* = on the Pareto front of accuracy, size and p50 latency"
    for col in ("variant", "status", "accuracy", "Δ pts", "size", "gzip", "x smaller", "p50 ms",
                "speed vs float32", "TFLM arena"):
        table.add_column(col, justify="left" if col in ("variant", "status", "speed vs float32") else "right")
    for v in record["variants"]:
        if v.get("status") != "done":
            table.add_row(v["name"], "[red]failed[/]", "-", "-", "-", "-", "-", "-",
                          (v.get("error") or "")[:60], "-")
            continue
        m, d = v["metrics"], v.get("vs_baseline", {})
        delta = d.get("accuracy_delta_points")
        table.add_row(
            v["name"] + (" *" if v["name"] in front else ""), "done", _quality(m),
            "-" if delta is None else f"{delta:+.2f}",
            fmt_bytes(m["size_bytes"]), fmt_bytes(m["gzip_bytes"]),
            "-" if "size_ratio" not in d else f"{d['size_ratio']:.2f}",
            fmt_ms(m["latency_ms"]["p50_ms"], 4),
            d.get("speed", "baseline"),
            fmt_bytes(arena) if (arena := (v.get("graph") or m).get("tflm_arena_bytes")) else "-",
        )
    return table


def print_run(record: dict, path: Path) -> None:
    for w in record.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    console.print(run_table(record))
    from edgeopt.engine.analysis import best_within_budget

    budget = record.get("settings", {}).get("options", {}).get("max_accuracy_drop")
    best = best_within_budget(record["variants"], budget)
    if best:
        within = f"within {budget} points of float32" if budget is not None else "of all variants"
        if not best["budget_met"]:
            within = f"no variant is within {budget} points; the most accurate"
        console.print(f"best {within}: smallest [bold]{best['smallest']}[/], fastest [bold]{best['fastest']}[/]")
    failed = [v for v in record["variants"] if v.get("status") != "done"]
    for v in failed:
        console.print(f"[red]{v['name']} failed:[/] {v.get('error')}")
    console.print(f"run directory: {path}  (details: edgeopt explain {path} VARIANT)")


def print_variant(v: dict) -> None:
    console.print(f"[bold]{v['name']}[/]  recipe: {' -> '.join(v.get('recipe', []))}  status: {v.get('status')}")
    if v.get("status") != "done":
        console.print(f"error: {v.get('error')}")
        return
    for step in v.get("details", {}).get("steps", []):
        extra = {k: val for k, val in step.items() if k not in ("step", "seconds")}
        console.print(f"- {step['step']} ({step.get('seconds', '-')} s): " +
                      ", ".join(f"{k}={_short(val)}" for k, val in extra.items()))
        for kept in step.get("kept_float", []) or []:
            console.print(f"    kept float: {kept.get('op')} — {kept.get('reason')}")
    if v.get("vs_baseline"):
        console.print(f"vs float32: {v['vs_baseline']}")
    rows = v.get("quant_errors") or []
    if rows:
        table = Table(title="per-tensor quantization error (vs the float model)")
        for col in ("tensor", "op", "SNR dB", "cosine"):
            table.add_column(col, justify="right" if col in ("SNR dB", "cosine") else "left")
        for r in rows:
            table.add_row(str(r.get("tensor")), str(r.get("op", "")), f"{r.get('snr_db', float('nan')):.1f}",
                          f"{r.get('cosine', float('nan')):.5f}")
        console.print(table)


def _short(val) -> str:
    text = str(val)
    return text if len(text) <= 80 else text[:77] + "..."


def print_recipes(catalogue: dict) -> None:
    """The steps (``edgeopt.recipes.catalogue()``): what each does and its fields."""
    table = Table(title="recipe steps (chain with commas: prune,cluster,int8; set a field with "
                        "-o step.field=value)")
    for col in ("step / field", "kind / type", "default", "range", "what it does"):
        table.add_column(col)
    for name, step in catalogue["steps"].items():
        table.add_row(f"[bold]{name}[/]", step["kind"], "", "", step["summary"], end_section=not step["fields"])
        for i, f in enumerate(step["fields"]):
            table.add_row(f"  {f['field']}", f["type"], repr(f["default"]), f["range"] or "-", f["description"],
                          end_section=i == len(step["fields"]) - 1)
    for alias, items in sorted(catalogue["aliases"].items()):
        table.add_row(alias, "alias", "", "", "runs: " + ", ".join(items))
    console.print(table)


@contextlib.contextmanager
def progress_bar(disable: bool = False):
    """Yield (log, step) callbacks driving a rich progress bar over variants."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if disable:
        yield (lambda msg: None), (lambda name, i, n: None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("variants", total=1)

        def step(name: str, i: int, n: int) -> None:
            progress.update(task, total=n, completed=i, description=f"variant {name}")

        def log(msg: str) -> None:
            progress.console.log(msg)

        yield log, step
