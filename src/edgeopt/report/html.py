"""A self-contained, offline HTML report of a run.

Sections: summary (baseline against the variant to pick per target, and why), interactive trade-off
plots (plotly, its JavaScript inlined), the device-fit matrix (estimates), a per-layer view per
variant, fine-tuning curves with their diagnosis, the search history (when the run has one), how
each variant was made, and the environment. Everything from the run is HTML-escaped (Jinja
autoescape; figure JSON is embedded with ``<``, ``>`` and ``&`` as JSON escapes).
"""
from __future__ import annotations

import math
from pathlib import Path

from edgeopt.fsutil import atomic_write_text
from edgeopt.report import view
from edgeopt.report.format import fmt_bytes, fmt_count, fmt_hours, fmt_interval
from edgeopt.report.devices import DEFAULT_BATTERY_MAH, DEFAULT_INFERENCES_PER_HOUR


def build_context(run_dir: Path, record: dict, *, devices_file=None, device_names=None,
                  battery_mah: float | None = DEFAULT_BATTERY_MAH,
                  inferences_per_hour: float | None = DEFAULT_INFERENCES_PER_HOUR) -> dict:
    """Everything the template shows, computed from the run record and the variants' artifacts."""
    from edgeopt.report import layers, plots
    from edgeopt.report.devices import device_matrix
    from edgeopt.run import pareto_front

    front = set(pareto_front(record["variants"]))
    profiles, profile_problems = layers.profile_variants(run_dir, record)
    matrix = device_matrix(record, profiles, devices_file=devices_file, device_names=device_names,
                           battery_mah=battery_mah, inferences_per_hour=inferences_per_hour) if profiles else None
    per_layer = []
    for v in view.done(record):
        if v["name"] in profiles:
            sparsity = layers.weight_sparsity(layers.artifact_path(run_dir, v))
            per_layer.append({"variant": v, "profile": profiles[v["name"]],
                              "rows": layers.layer_rows(v, profiles[v["name"]], sparsity),
                              "profiled_ops": bool(layers.op_latency_ms(v))})
    training = [{"variant": v["name"], "hist": h, "figure": plots.training_figure(h)}
                for v in view.done(record) for h in view.fine_tune_histories(v)]
    search = view.search_history(record)
    return {"run": record, "front": front, "summary": view.summary(record),
            "plots": plots.tradeoff_figures(record, front, matrix), "matrix": matrix,
            "per_layer": per_layer, "profile_problems": profile_problems, "training": training,
            "search": search, "search_figure": plots.search_figure(search) if search else None,
            "environment": view.environment_rows(record), "view": view}


def render_report(run_dir: Path, out: Path | None = None, **options) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default RUN_DIR/report.html); return its path.

    ``options`` go to :func:`build_context` (devices_file, device_names, battery_mah,
    inferences_per_hour). Raises UserError for a missing or unreadable run directory."""
    record = view.read_run(run_dir)
    html = render_html(Path(run_dir), record, **options)
    out = Path(out) if out else Path(run_dir) / "report.html"
    return atomic_write_text(out, html)


def render_html(run_dir: Path, record: dict, **options) -> str:
    """The report as one HTML string (plotly.js inlined: nothing is fetched when it is opened)."""
    import jinja2
    from plotly.offline import get_plotlyjs

    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeopt", "report/templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.ChainableUndefined)  # a missing key shows as "?"
    env.filters.update(basename=lambda p: Path(str(p)).name, bytes=fmt_bytes, count=fmt_count,
                       num=fmt_num, pct=fmt_pct, interval=_interval_filter, first_clause=lambda t: str(t).split(" (")[0], hours=fmt_hours, json_script=json_for_script)
    env.tests["mapping"] = lambda x: isinstance(x, dict)
    env.tests["sequence_of_scalars"] = lambda x: isinstance(x, (list, tuple)) and all(
        not isinstance(i, (dict, list, tuple)) for i in x)
    ctx = build_context(run_dir, record, **options)
    return env.get_template("run.html.j2").render(plotly_js=get_plotlyjs(), inf=math.inf, **ctx)


def _interval_filter(value, rng=None, digits: int = 3) -> str:
    """``{{ x | interval(cell.x_range) }}``: the figure with its (low, high) range (report.format)."""
    low, high = rng if rng else (None, None)
    return fmt_interval(value, low, high, digits)


def json_for_script(text: str) -> str:
    """JSON text safe inside <script type="application/json">: no '<', '>' or '&' left to parse."""
    from markupsafe import Markup

    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


# ------------------------------------------------------------------ formatting
def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt_num(x, digits: int = 4) -> str:
    """Numbers to ``digits`` significant digits; other values as text."""
    if not _is_number(x):
        return ("" if x is None else str(x)) or "–"  # None and missing keys (undefined) alike
    if isinstance(x, float) and not math.isfinite(x):
        return "∞" if x > 0 else "–"
    return f"{x:,}" if isinstance(x, int) else f"{x:.{digits}g}"


def fmt_pct(x, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f}%" if _is_number(x) else "–"
