"""A self-contained HTML report of a run: the variants table, Pareto plots, how each was made."""
from __future__ import annotations

import base64
import io
from pathlib import Path

from edgeopt.fsutil import atomic_write_text
from edgeopt.run import load_run, objective_values, pareto_front


def _plot(variants: list[dict], front: set[str], x_key: str, x_label: str) -> str:
    """A scatter of quality against one cost; the 3-objective Pareto front is drawn in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    done = [v for v in variants if v.get("status") == "done"]
    for v in done:
        vals = objective_values(v)
        y = vals["accuracy"] * 100 if "accuracy" in v["metrics"] else vals["accuracy"]
        on_front = v["name"] in front
        ax.scatter(vals[x_key], y, s=60 if on_front else 30, c="tab:red" if on_front else "tab:gray", zorder=3)
        ax.annotate(v["name"], (vals[x_key], y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel("accuracy (%)" if all("accuracy" in v["metrics"] for v in done) else "-MAE")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_report(run_dir: Path, out: Path | None = None) -> Path:
    import jinja2

    record = load_run(run_dir)
    front = set(pareto_front(record["variants"]))
    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeopt", "report/templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.filters.update(basename=lambda p: Path(p).name, kb=lambda n: f"{n / 1024:.1f} KB",
                       quality=_quality, short=lambda x: str(x) if len(str(x)) < 120 else str(x)[:117] + "...")
    plots = [("Quality vs file size", _plot(record["variants"], front, "size_bytes", "file size (bytes)")),
             ("Quality vs latency", _plot(record["variants"], front, "latency_p50_ms", "p50 latency (ms)"))]
    runtime = next((v["metrics"]["how"]["runtime"] for v in record["variants"] if v.get("status") == "done"), "")
    html = env.get_template("run.html.j2").render(run=record, front=front, plots=plots, runtime=runtime)
    out = Path(out) if out else Path(run_dir) / "report.html"
    return atomic_write_text(out, html)


def _quality(m: dict) -> str:
    if "accuracy" in m:
        return f"{m['accuracy'] * 100:.2f}%"
    return f"MAE {m.get('mae', float('nan')):.4g}"
