"""Terminal views (rich): bench results, run tables, variant explanations, progress."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgeopt.engine.analysis import DEFAULT_BUDGET_POINTS  # points a variant may lose by default
from edgeopt.engine.analysis import error_metric, unquantized_warning
from edgeopt.report.format import (fmt_bytes, fmt_count, fmt_hours, fmt_int, fmt_ms, fmt_power,  # noqa: F401
                                   fmt_range, fmt_time)

# Results go to stdout; progress, spinners, logs and warnings to stderr (so `--json` and pipes get
# only the result). Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 150, log_path=False)
err_console = Console(stderr=True, log_path=False)


def _quality(metrics: dict) -> str:
    if "accuracy" in metrics:
        ci = metrics.get("accuracy_ci95")
        interval = f" [{ci[0] * 100:.1f}-{ci[1] * 100:.1f}]" if ci else ""
        return f"{metrics['accuracy'] * 100:.2f}%{interval}"
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
    table.caption = (f"{_inputs_line(profile)} | "
                     f"weights: {weights or 'none'} | peak activations "
                     f"{fmt_bytes(profile.peak_activation_bytes)}"
                     + (f" | file {fmt_bytes(profile.file_bytes)}" if profile.file_bytes else "")
                     + f"\n{arena}" + (f" ({profile.arena_note})" if profile.arena_note else "")
                     + "".join(f"\nnote: {n}" for n in profile.notes))
    return table


def _inputs_line(profile: GraphProfile) -> str:
    """'input 1x4 float32', or every input by name for a model with several: 'inputs a 1x4 float32, b ...'."""
    if len(profile.inputs) > 1:
        return "inputs " + ", ".join(f"{io['name']} {'x'.join(map(str, io['shape']))} {io['dtype']}" for io in profile.inputs)
    return f"input {'x'.join(map(str, profile.input_shape))} {profile.input_dtype}"


def print_bench(result: dict) -> None:
    m = result["metrics"]
    how = m["how"]
    for w in result.get("warnings", []):
        warn(w)
    if m.get("nonfinite_outputs"):
        warn(f"{m['nonfinite_outputs']} eval sample(s) gave NaN/inf outputs (scored as wrong)")
    table = Table(title=f"{Path(result['model']).name} on {result['data']['name']} "
                        f"({how['runtime']} {how['runtime_version']}, {how['threads']} thread(s))")
    for col in ("metric", "value"):
        table.add_column(col)
    lat = m["latency_ms"]
    rows = [
        (m["metric"] + (f" ({m['output']})" if m.get("output") and m.get("per_output") else ""),
         _quality(m) + f"  ({m['eval_samples']} eval samples)"),
        *[(f"{o.get('metric', 'score')} ({name})", _quality(o)) for name, o in (m.get("per_output") or {}).items()
          if name != m.get("output")],
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


def short_reason(error: str, width: int = 70) -> str:
    """One readable line of a failure reason for a table cell (the whole reason is printed below
    the table and kept in run.json): the first sentence, cut at a word with an ellipsis."""
    text = " ".join(error.split())
    if len(text) <= width:
        return text
    cut = text[:width].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " ..."


def eval_note(record: dict) -> str | None:
    """A warning when the eval set is too small to tell variants apart (Wilson 95% interval)."""
    for v in record.get("variants", []):
        res = (v.get("metrics") or {}).get("eval_resolution")
        if v.get("status") == "done" and res:
            if res.get("too_small"):
                return (f"eval set too small to tell variants apart: {res['why']}; give a larger "
                        f"--eval-data file")
            return None
    return None


def run_table(record: dict) -> Table:
    table = Table(title=f"run {record.get('name')}: {Path(record['model']['path']).name} on "
                        f"{record['data']['source']}")
    from edgeopt.engine.analysis import pareto_front

    front = set(pareto_front(record["variants"]))
    done = [v for v in record["variants"] if v.get("status") == "done"]
    interval = any(v["metrics"].get("accuracy_ci95") for v in done)
    others = any(_other_outputs(v["metrics"]) for v in done)
    table.caption = ("* = on the Pareto front of " + ("accuracy" if not error_metric(done) else "MAE")
                     + ", size and p50 latency" + ("; \\[low-high] = 95% Wilson interval" if interval else "")
                     + "\n" + TIMING_NOTE.format(runs=(record.get("settings") or {}).get("runs", "N")))
    cols = ["variant", "status", _quality_header(record), "Δ vs float32"] + (["other outputs"] if others else []) \
        + ["size", "gzip", "x smaller", "p50 ms (own runs)", "speed vs float32 (paired)", "TFLM arena"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("variant", "status", "other outputs")
                         or col.startswith("speed") else "right")
    budget = run_budget(record)
    for v in record["variants"]:
        if v.get("status") != "done":
            table.add_row(v["name"], "[red]failed[/]", "-", "-", *(["-"] if others else []), "-", "-", "-", "-",
                          short_reason(v.get("error") or ""), "-")
            continue
        m, d = v["metrics"], v.get("vs_baseline", {})
        table.add_row(
            v["name"] + (" *" if v["name"] in front else ""),
            f"[yellow]over budget (>{budget:g} pts)[/]" if over_budget(v, budget) else "done", _quality(m),
            _delta(d), *([_other_outputs(m) or "-"] if others else []),
            fmt_bytes(m["size_bytes"]), fmt_bytes(m["gzip_bytes"]),
            "-" if "size_ratio" not in d else f"{d['size_ratio']:.2f}",
            fmt_ms(m["latency_ms"]["p50_ms"], 4),
            _speed(d),
            fmt_bytes(arena) if (arena := (v.get("graph") or m).get("tflm_arena_bytes")) else "-",
        )
    return table


TIMING_NOTE = ("p50 ms (own runs) = the median of each variant's own {runs} timed runs, taken one variant "
               "after another; speed vs float32 (paired) = the variant and float32 timed alternately in one "
               "process (their medians shown: variant/float32 µs), so load from other processes falls on both "
               "alike. Under load the two columns can disagree: read speed from the paired column.")


def _other_outputs(metrics: dict) -> str:
    """The scores of the outputs that are not the headline, 'digit 90.53%; angle MAE 0.31' ('' for
    a one-output model)."""
    per = metrics.get("per_output") or {}
    return "; ".join(f"{name} {_quality(m)}" for name, m in per.items() if name != metrics.get("output"))


def _quality_header(record: dict) -> str:
    """The quality column's header: 'accuracy / error', naming the scored output ('(reg)') when the
    model has several."""
    scored = ((record.get("data") or {}).get("scored") or {}).get("output")
    return "accuracy / error" + (f" ({scored})" if scored else "")


def _delta(d: dict) -> str:
    """The scored output's change against float32: accuracy in points, or the MAE change (regression)."""
    if d.get("accuracy_delta_points") is not None:
        return f"{d['accuracy_delta_points']:+.2f} pts"
    if d.get("mae_delta") is not None:
        return f"MAE {d['mae_delta']:+.4g}"
    return "-"


def _speed(d: dict) -> str:
    """'1.12x slower on litert (0.846/0.752 µs)': the speed statement and the measured medians it comes from
    (paired timing); a ratio of separate p50s says so."""
    if not d:
        return "baseline"
    speed = d.get("speed", "-").replace(" than float32", "")
    paired = d.get("paired_latency") or {}
    if d.get("speed_basis") == "paired" and paired.get("variant_us") is not None:
        return f"{speed} ({paired['variant_us']:.3g}/{paired['baseline_us']:.3g} µs)"
    return f"{speed} (ratio of p50s)" if "speed" in d else "-"


def run_budget(record: dict) -> float:
    """The run's accuracy budget in points (``--max-accuracy-drop``; 1 point when none was given)."""
    budget = (record.get("settings") or {}).get("options", {}).get("max_accuracy_drop")
    return DEFAULT_BUDGET_POINTS if budget is None else float(budget)


def over_budget(v: dict, budget: float) -> bool:
    """A done variant that loses more than ``budget`` accuracy points against float32 (the
    record's own ``over_budget`` flag when the engine set one)."""
    if "over_budget" in v:
        return bool(v["over_budget"])
    return -float((v.get("vs_baseline") or {}).get("accuracy_delta_points", 0.0)) > budget


def print_run(record: dict, path: Path) -> None:
    for w in record.get("warnings", []):
        warn(w)
    console.print(run_table(record))
    from edgeopt.engine.analysis import best_within_budget

    budget = run_budget(record)
    within = [v for v in record["variants"] if v.get("status") == "done" and not over_budget(v, budget)]
    best = best_within_budget(within, budget) if within else {}
    over = [v["name"] for v in record["variants"] if v.get("status") == "done" and over_budget(v, budget)]
    points = f"{budget:g} point{'s' if budget != 1 else ''}"
    if over and not [v for v in within if v["name"] != "float32"]:
        console.print(f"[yellow]no optimized variant stays within {points} of float32's accuracy[/] "
                      f"({', '.join(over)} over the budget): keep float32, or allow more with "
                      f"--max-accuracy-drop", highlight=False)
    elif best and error_metric(within):
        console.print(f"best: {best['summary']}", highlight=False)
    elif best:
        console.print(f"best within {points} of float32's accuracy: smallest [bold]{best['smallest']}[/], "
                      f"fastest [bold]{best['fastest']}[/]" + (f" ({', '.join(over)} over the budget)" if over else ""))
    small = eval_note(record)
    if small:
        console.print(f"[yellow]note:[/] {small}", highlight=False)
    note = _bigger_note(record)
    if note:
        console.print(note, highlight=False)
    failed = [v for v in record["variants"] if v.get("status") != "done"]
    for v in failed:
        console.print(f"[red]{v['name']} failed:[/] {v.get('error')}")
    console.print(f"run directory: {path}  (details: edgeopt explain {path} VARIANT)")
    if (Path(path) / "report.html").exists():
        console.print(f"report: {Path(path) / 'report.html'}")


def _bigger_note(record: dict) -> str | None:
    """Why a compressed variant can be larger than float32: on a tiny model the file's structure
    (graph, tensor names and shapes, quantization parameters) outweighs the weights it saves."""
    done = [v for v in record["variants"] if v.get("status") == "done"]
    base = next((v for v in done if v["name"] == "float32"), None)
    if base is None:
        return None
    base_size = base["metrics"].get("size_bytes") or 0
    bigger = [v["name"] for v in done if v is not base and (v["metrics"].get("size_bytes") or 0) > base_size]
    params = (base.get("graph") or base["metrics"]).get("params")
    if not bigger or not params:
        return None
    weights = params * 4
    return (f"note: {', '.join(bigger)} {'is' if len(bigger) == 1 else 'are'} larger than float32: this model has "
            f"{fmt_int(params)} parameters ({fmt_bytes(weights)} of float32 weights in a {fmt_bytes(base_size)} "
            f"file), so the file's structure (graph, tensor metadata, quantization scales and zero points) "
            f"outweighs what quantizing the weights saves; on a model with more weights it shrinks the file.")


def print_variant(v: dict) -> None:
    console.print(f"[bold]{v['name']}[/]  recipe: {' -> '.join(v.get('recipe', []))}  status: {v.get('status')}")
    if v.get("status") != "done":
        console.print(f"error: {v.get('error')}", markup=False, highlight=False)
        if v.get("error_detail") and v.get("error_detail") != v.get("error"):
            console.print(f"full text:\n{v['error_detail']}", markup=False, highlight=False)
        return
    if v.get("input_shape_note"):
        console.print(f"input shapes: {v['input_shape_note']}", markup=False, highlight=False)
    if (v.get("numerics") or {}).get("summary"):
        console.print(f"why int8 dropped: {v['numerics']['summary']}", markup=False, highlight=False)
    for step in v.get("details", {}).get("steps", []):
        extra = {k: val for k, val in step.items() if k not in ("step", "seconds")}
        console.print(f"- {step['step']} ({step.get('seconds', '-')} s): " +
                      ", ".join(f"{k}={_short(val)}" for k, val in extra.items()))
        for kept in step.get("kept_float", []) or []:
            console.print(f"    kept float: {kept.get('op')} — {kept.get('reason')}")
    if unquantized_warning(v):
        console.print(unquantized_warning(v), markup=False, highlight=False, style="yellow")
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


def plain_text(text: str) -> str:
    """Docstring markup (reST) to plain text: ``x`` -> x, :func:`f` -> f, `x` -> x."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", str(text or ""))
    return re.sub(r"``?([^`]+)``?", r"\1", text)


def print_recipes(catalogue: dict) -> None:
    """The steps (``edgeopt.recipes.catalogue()``): what each does and its fields."""
    table = Table(title="recipe steps (chain with commas: prune,cluster,int8; set a field with "
                        "-o step.field=value)")
    for col in ("step / field", "kind / type", "default", "range", "what it does"):
        table.add_column(col)
    for name, step in catalogue["steps"].items():
        takes = [i for i in step.get("inputs", ["keras"]) if i != "keras"]
        summary = (f"(a .{' or .'.join(takes)} model) " if takes else "") + step["summary"]
        table.add_row(f"[bold]{name}[/]", step["kind"], "", "", plain_text(summary),
                      end_section=not step["fields"])
        for i, f in enumerate(step["fields"]):
            table.add_row(f"  {f['field']}", f["type"], repr(f["default"]), f["range"] or "-",
                          plain_text(f["description"]), end_section=i == len(step["fields"]) - 1)
    for alias, items in sorted(catalogue["aliases"].items()):
        per_format = "".join(f"; on a .{f} model: {', '.join(n)}"
                             for f, n in catalogue.get("format_aliases", {}).items() if alias == "ptq" and n)
        table.add_row(alias, "alias", "", "", "runs: " + ", ".join(items) + per_format)
    console.print(table)


def warn(message: str) -> None:
    """One warning line on stderr."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(disable: bool = False, noun: str = "variant"):
    """Yield (log, step) callbacks driving a progress bar on stderr: ``step(name, done, total)``,
    ``log(message)`` prints a line above the bar. ``disable``: both do nothing (e.g. ``--json``).
    When stderr is not a terminal (CI logs, files) there is no bar, only the log lines."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if disable:
        yield (lambda msg: None), (lambda name, i, n: None)
        return
    if not err_console.is_terminal:
        yield (lambda msg: err_console.print(msg, highlight=False, markup=False, soft_wrap=True)), \
            (lambda name, i, n: None)
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=err_console, transient=False)
    task = progress.add_task(f"{noun}s", total=1)

    def started() -> Progress:  # the bar appears with the first message, i.e. after validation passed
        if not progress.live.is_started:
            progress.start()
        return progress

    def step(name: str, i: int, n: int) -> None:
        started().update(task, total=n, completed=i, description=f"{noun} {name}")

    def log(msg: str) -> None:
        started().console.print(msg, highlight=False, markup=False, soft_wrap=True)

    try:
        yield log, step
    finally:
        if progress.live.is_started:
            progress.stop()


@contextlib.contextmanager
def spinner(text: str, disable: bool = False):
    """A spinner with ``text`` on stderr while the block runs (only when stderr is a terminal).
    Yields ``progress(what, done, total)``, which updates the text."""
    if disable or not err_console.is_terminal:
        yield lambda what, i=0, n=0: None
        return
    with err_console.status(text) as status:
        def progress(what: str, i: int = 0, n: int = 0) -> None:
            status.update(f"{text}: {what}" + (f" ({i}/{n})" if n > 1 else ""))

        yield progress


# --------------------------------------------------------------------------- compare
def print_compare(result, title: str) -> None:
    """``edgeopt.compare`` result: the table, one note per row, the fastest runtime per precision."""
    from edgeopt.compare import render_table

    out = console if console.is_terminal else Console(width=160)  # piped: don't squeeze the table
    out.print(render_table(result.rows, title=title))
    for precision, runtime in result.fastest.items():
        out.print(f"fastest at {precision}: [bold]{runtime}[/]")
    if result.out is not None:
        out.print(f"artifacts and compare.json in {result.out}")


# --------------------------------------------------------------------------- hardware
def _throughput(dev) -> str:
    if dev.effective_gmacs:
        p, v = next(iter(dev.effective_gmacs.items()))
        return f"{v:g} GMAC/s {p}"
    if dev.peak_gops:
        p, v = next(iter(dev.peak_gops.items()))
        return f"peak {v:g} GOPS {p}"
    if dev.device_class == "mcu" and dev.clock_mhz:
        from edgeopt.hardware.catalogue import data_file
        from edgeopt.hardware.estimator import choose_engine, mcu_rates

        engine = choose_engine(dev)[0]
        r = mcu_rates(dev, engine, data_file("calibration.yaml"))
        if r.rates:
            return f"{r.basis} {r.rates['conv'] * dev.clock_mhz / 1e3:.3g} GMAC/s conv int8 ({engine})"
    return "-"


def _kb(kb) -> str:
    return fmt_bytes(None if kb is None else kb * 1024)


def print_devices(devs: list) -> None:
    """The device catalogue (``edgeopt.devices()``), one row per device."""
    table = Table(title="edgeopt devices (sources: edgeopt/hardware/devices.yaml; --json for all fields)")
    show_origin = any(d.origin != "catalogue" for d in devs if d.origin != "host")
    cols = ["name", "class", "core", "clock", "RAM", "flash", "throughput", "power", "price"]
    for col in cols + (["from"] if show_origin else []):
        table.add_column(col)
    for d in devs:
        row = [d.name, d.device_class, f"{d.cores}x {d.core}" if d.cores > 1 else d.core,
               f"{d.clock_mhz:g} MHz" if d.clock_mhz else "-", _kb(d.ram_kb), _kb(d.flash_kb),
               _throughput(d), fmt_power(d.active_power_w), f"${d.price_usd:g}" if d.price_usd is not None else "-"]
        table.add_row(*row, *([d.origin] if show_origin else []))
    console.print(table)


def _latency(est) -> str:
    r = est.latency_range_ms or {}
    return fmt_range(est.latency_ms, r.get("low"), r.get("high"))


def _life(est) -> str:
    rng = est.battery_life_range_h
    if not rng:
        return "-"
    lo, hi = fmt_hours(rng.get("low")), fmt_hours(rng.get("high"))
    if rng.get("low") is None:
        return f"≤{hi}"
    if est.battery_life_h is None:
        return f"{lo}–{hi} (range: a figure is unknown)"
    return fmt_hours(est.battery_life_h) + ("" if lo == hi else f" ({lo}–{hi})")


def _power_range(est) -> str:
    p = est.power
    if not p:
        return "-"
    lo, hi = p["average_w_range"]
    if hi is None:
        return f"≥{fmt_power(lo)}"
    if p["average_w"] is None:
        return f"{fmt_power(lo)}–{fmt_power(hi)}"
    return fmt_power(p["average_w"]) + f" ({fmt_power(lo)}–{fmt_power(hi)})"


def _traffic(est) -> str:
    t = est.memory_traffic
    if not t:
        return "-"
    out = fmt_bytes(t.get("link_bytes", t["total_bytes"]))
    if t.get("needed_gbs") is not None:
        out += f"; needs {t['needed_gbs']:.2g} GB/s"
        out += f" of {t['device_bandwidth_gbs']:g}" if t.get("device_bandwidth_gbs") else " (device: ?)"
    if t.get("bound") == "memory-bound":
        out += " MEMORY-BOUND"
    return out


def _need_has(figure: dict) -> str:
    return f"{fmt_bytes(figure.get('needed_bytes'))} / {fmt_bytes(figure.get('capacity_bytes'))}"


def estimates_title(rows) -> str:
    """The estimate table's title: rows whose latency basis is "measured" (the host's run p50) are
    named as measurements; everything else is an estimate."""
    measured = list(dict.fromkeys(r.estimate.device for r in rows if r.estimate.basis == "measured"))
    if not measured:
        return "Estimates (not measurements; --json shows every input)"
    return (f"Estimates ({', '.join(measured)} latency: measured on this machine by the run; every other "
            "figure is an estimate, not a measurement; --json shows every input)")


def print_estimates(result) -> None:
    """``edgeopt.estimate()``: one row per variant x device, every figure an estimate with its basis."""
    table = Table(title=estimates_title(result.rows))
    cols = ["variant", "device (engine)", "runs?", "RAM need / has", "flash need / has",
            "latency ms (basis)", "energy mJ", "bytes moved / inference"]
    if result.inferences_per_hour is not None:
        cols += ["avg power"] + (["battery"] if result.battery_mah is not None else [])
    for col in cols + ["blockers / missing"]:
        table.add_column(col)
    for row in result.rows:
        e = row.estimate
        fits = "NO" if not e.runnable else {True: "yes", False: "NO", None: "?"}[e.fits]
        basis_note = [e.latency_range_ms["basis"].split(" (")[0]] if e.basis in ("assumed", "composed") else []
        notes = e.blockers + ([e.accelerator] if e.accelerator else []) + basis_note + \
            [f"missing {m.split(' (')[0]}" for m in dict.fromkeys(e.missing)]
        energy = e.energy_range_mj or {}
        cells = [row.variant, e.device + (f"\n{e.engine} ({e.engine_choice})" if e.engine else ""), fits,
                 _need_has(e.ram), _need_has(e.flash), f"{_latency(e)}\n{e.basis}",
                 fmt_range(e.energy_mj, energy.get("low"), energy.get("high")), _traffic(e)]
        if result.inferences_per_hour is not None:
            cells += [_power_range(e)] + ([_life(e)] if result.battery_mah is not None else [])
        table.add_row(*cells, "; ".join(notes) or "-")
    console.print(table)
    console.print("latency/energy: estimate (interval from the calibration residuals of the core and engine; "
                  "basis says where it comes from). ≥ = peak-throughput lower bound, not a latency. "
                  "Ranges in power/battery = a figure is unknown (see --json: power.assumptions). "
                  "RAM = TFLM arena (measured when the profile has it); runtime code/RAM not included.")


def print_recommendations(result) -> None:
    """``edgeopt.recommend()``: devices ranked, each with its best variant and the reasons."""
    table = Table(title="Recommended devices (estimates)")
    for col in ("#", "device", "ok", "best variant", "accuracy", "latency ms", "basis", "reasons"):
        table.add_column(col)
    for i, r in enumerate(result.items, 1):
        acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
        table.add_row(str(i), r.device, r.fit, r.variant or "-", acc,
                      _latency(r.estimate) if r.estimate else "?", r.estimate.basis if r.estimate else "-",
                      "; ".join(r.reasons))
    console.print(table)
    console.print("Ranked: feasible first, then accuracy, then how the latency is known (measured or calibrated "
                  "above published-throughput, assumed and peak lower bounds), then energy and latency.")


# --------------------------------------------------------------------------- footprint
def _figure(value: float, unit: str) -> str:
    text = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def print_footprint(result, variant: str) -> None:
    """``edgeopt.footprint()``: device against cloud per year, then how each figure was computed."""
    table = Table(title=f"{variant}: {result.inferences_per_day:,.0f} inferences/day for a year "
                        f"({result.grid} grid, {result.grid_kg_per_kwh:.3g} kg CO2e/kWh)")
    table.add_column("")
    for side in (result.device, result.cloud):
        table.add_column(side.name + (" (lower bound)" if side.lower_bound else ""), justify="right")
    for label, attr, unit in (("energy", "energy_kwh_per_year", "kWh"), ("CO2e", "co2e_kg_per_year", "kg"),
                              ("cost", "cost_usd_per_year", "USD")):
        table.add_row(label, _figure(getattr(result.device, attr), unit), _figure(getattr(result.cloud, attr), unit))
    console.print(table)
    for side in (result.device, result.cloud):
        lines = Table(title=f"how: {side.name}", show_header=True)
        for col in ("item", "value", "formula", "source"):
            lines.add_column(col)
        for ln in side.lines:
            lines.add_row(ln.item, _figure(ln.value, ln.unit), ln.formula, ln.source)
        console.print(lines)
        for note in side.notes:
            console.print(f"  note: {note}")
    context = Table(title="for context: CO2e of familiar things (Strubell et al. 2019, Table 1)")
    context.add_column("")
    context.add_column("kg CO2e", justify="right")
    for ln in result.context:
        context.add_row(ln.item, f"{ln.value:,.0f}")
    console.print(context)
