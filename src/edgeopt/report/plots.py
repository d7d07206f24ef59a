"""Interactive plots of the report (plotly figures as JSON; plotly.js is inlined by html.py).

Names shown in hover text are HTML-escaped: plotly.js renders a subset of HTML in text."""
from __future__ import annotations

import html
import math

from edgeopt.report import view

_FRONT_SYMBOL, _OTHER_SYMBOL = "star", "circle"
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22")


def _layout(x_title: str, y_title: str, *, log_x: bool = False, height: int = 340) -> dict:
    return {"template": "plotly_white", "height": height, "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
            "xaxis": {"title": {"text": x_title}, "type": "log" if log_x else "linear",
                      **({"dtick": 1, "exponentformat": "power"} if log_x else {})},
            "yaxis": {"title": {"text": y_title}}, "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.22, "font": {"size": 11}},
            "font": {"family": "system-ui, sans-serif", "size": 12}}


def _pad(values: list[float], log: bool = False, frac: float = 0.08) -> list[float] | None:
    """An axis range around ``values`` with room for the markers (log axes: in decades)."""
    vals = [math.log10(v) for v in values if v > 0] if log else list(values)
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or (abs(hi) * 0.1 if hi else 1.0)
    return [lo - frac * span, hi + frac * span]


def _to_json(fig) -> str:
    import plotly.io as pio

    return pio.to_json(fig, validate=True, pretty=False)


def _quality_axis(record: dict) -> tuple[str, float]:
    """(y-axis title, factor) for the quality metric: accuracy in %, else -MAE."""
    if all("accuracy" in (v.get("metrics") or {}) for v in view.done(record)):
        return "accuracy (%)", 100.0
    return "−MAE (higher is better)", 1.0


def tradeoff_figures(record: dict, front: set[str], matrix: dict | None) -> list[tuple[str, str, str]]:
    """[(id, title, figure JSON)]: quality against file size, measured latency and estimated energy."""
    import plotly.graph_objects as go

    y_title, factor = _quality_axis(record)
    done = view.done(record)
    if not done:
        return []
    colors = {v["name"]: _PALETTE[i % len(_PALETTE)] for i, v in enumerate(done)}
    figs = []
    for fid, title, x_title, xval, log_x in (
            ("plot-size", "Quality against file size", "file size (KB)",
             lambda v: v["metrics"]["size_bytes"] / 1024, False),
            ("plot-latency", "Quality against latency (measured here)", "p50 latency (ms, batch 1)",
             view.p50_ms, False)):
        fig = go.Figure(layout=_layout(x_title, y_title, log_x=log_x))
        xs = [xval(v) for v in done if xval(v) is not None and view.quality(v) is not None]
        fig.update_xaxes(range=_pad(xs, log_x))
        fig.update_yaxes(range=_pad([view.quality(v) * factor for v in done if view.quality(v) is not None]))
        for v in done:
            x = xval(v)
            if x is None or view.quality(v) is None:
                continue
            on_front = v["name"] in front
            name = html.escape(v["name"])
            fig.add_trace(go.Scatter(
                x=[x], y=[view.quality(v) * factor], mode="markers", name=name + (" ★" if on_front else ""),
                marker={"size": 16 if on_front else 11, "color": colors[v["name"]],
                        "symbol": _FRONT_SYMBOL if on_front else _OTHER_SYMBOL,
                        "line": {"width": 1, "color": "#333"}},
                customdata=[[name]],  # names go through customdata: a '%{' in a name stays text
                hovertemplate=f"<b>%{{customdata[0]}}</b><br>{x_title}: %{{x:.4g}}<br>{y_title}: %{{y:.2f}}"
                              "<extra></extra>"))
        figs.append((fid, title, _to_json(fig)))
    if matrix:
        figs.append(("plot-energy", "Quality against energy per inference (estimated, per device)",
                     _energy_figure(record, matrix, y_title, factor)))
    return figs


def _energy_figure(record: dict, matrix: dict, y_title: str, factor: float) -> str:
    """One marker per (variant, device) with an energy estimate, whiskers over its interval (an unknown
    end has none); one trace per variant; hover gives the interval and how the latency is known."""
    import plotly.graph_objects as go

    from edgeopt.report.format import fmt_interval

    fig = go.Figure(layout=_layout("energy per inference (mJ, log scale)", y_title, log_x=True))
    by_name = {v["name"]: v for v in view.done(record)}
    energies = [c["energy_mj"] for r in matrix["rows"] for c in r["cells"].values() if (c["energy_mj"] or 0) > 0]
    fig.update_xaxes(range=_pad(energies, log=True))
    fig.update_yaxes(range=_pad([view.quality(v) * factor for v in by_name.values() if view.quality(v) is not None]))
    for i, name in enumerate(matrix["variants"]):
        cells = [(r["device"], r["cells"][name]) for r in matrix["rows"]
                 if r["cells"][name]["energy_mj"] is not None and r["cells"][name]["energy_mj"] > 0]
        q = view.quality(by_name[name])
        if not cells or q is None:
            continue
        esc = html.escape(name)
        x = [c["energy_mj"] for _, c in cells]
        ends = [c["energy_range"] or (None, None) for _, c in cells]  # an unknown end: no whisker that side
        fig.add_trace(go.Scatter(
            x=x, y=[q * factor] * len(cells), mode="markers", name=esc,
            error_x={"type": "data", "symmetric": False, "thickness": 1, "width": 3,
                     "array": [0 if hi is None else hi - e for e, (_, hi) in zip(x, ends)],
                     "arrayminus": [0 if lo is None else e - lo for e, (lo, _) in zip(x, ends)]},
            customdata=[[esc, html.escape(dev), "runs" if c["runs"] else "does not run",
                         fmt_interval(c["energy_mj"], *(c["energy_range"] or (None, None))),
                         html.escape(c["basis_word"])] for dev, c in cells],
            marker={"size": 10, "color": _PALETTE[i % len(_PALETTE)], "opacity": 0.8,
                    "symbol": ["circle" if c["runs"] else "x" for _, c in cells]},
            hovertemplate=("<b>%{customdata[0]}</b> on %{customdata[1]} (%{customdata[2]})<br>"
                           "energy: %{customdata[3]} mJ (latency %{customdata[4]})<br>"
                           + y_title + ": %{y:.2f}<extra></extra>")))
    return _to_json(fig)


def training_figure(hist: dict) -> str:
    """Loss and accuracy (or MAE) per epoch, train solid and validation dashed, side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    h = hist["history"]
    metric = "accuracy" if "accuracy" in h else "mae" if "mae" in h else None
    fig = make_subplots(rows=1, cols=2 if metric else 1, horizontal_spacing=0.12,
                        subplot_titles=["loss"] + ([metric] if metric else []))
    for col, key in enumerate(["loss"] + ([metric] if metric else []), start=1):
        for prefix, dash, label in (("", "solid", "train"), ("val_", "dash", "validation")):
            series = h.get(prefix + key)
            if not series:
                continue
            fig.add_trace(go.Scatter(x=list(range(1, len(series) + 1)), y=series, mode="lines+markers",
                                     name=f"{label} {key}", line={"dash": dash},
                                     hovertemplate=f"epoch %{{x}}<br>{label} {key}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=col)
    if hist.get("best_epoch"):
        fig.add_vline(x=hist["best_epoch"], line={"dash": "dot", "color": "#888"})
    fig.update_layout(template="plotly_white", height=320, margin={"l": 50, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.25}, font={"family": "system-ui, sans-serif", "size": 12})
    return _to_json(fig)


def search_figure(search: dict) -> str:
    """The first objective per trial (by state), or the first two objectives against each other."""
    import plotly.graph_objects as go

    objs = search["objectives"]
    two = len(objs) >= 2
    x_title = html.escape(objs[1]) if two else "trial"
    fig = go.Figure(layout=_layout(x_title, html.escape(objs[0]) if objs else "value"))
    points = [t for t in search["trials"] if objs and objs[0] in t["values"] and (not two or objs[1] in t["values"])]
    fig.update_yaxes(range=_pad([t["values"][objs[0]] for t in points]))
    fig.update_xaxes(range=_pad([t["values"][objs[1]] if two else t["number"] for t in points]))
    for state in sorted({t["state"] for t in search["trials"]}):
        ts = [t for t in points if t["state"] == state]
        if not ts:
            continue
        fig.add_trace(go.Scatter(
            x=[t["values"][objs[1]] if two else t["number"] for t in ts], y=[t["values"][objs[0]] for t in ts],
            mode="markers", name=html.escape(str(state)), marker={"size": 9},
            customdata=[[t["number"], html.escape(", ".join(f"{k}={v}" for k, v in t["params"].items()))]
                        for t in ts],
            hovertemplate="trial %{customdata[0]}<br>%{customdata[1]}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    return _to_json(fig)
