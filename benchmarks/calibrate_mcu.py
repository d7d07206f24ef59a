"""Calibrate the microcontroller cycle rates of the hardware estimator on MLPerf Tiny, and validate them.

Inputs (read-only): the int8 reference models and results_calibration.csv (published median latencies
and energies, mlcommons/tiny_results_v1.0..v1.3, every submitter) in --data-dir; which board and which
inference engine each CSV system is (src/edgeopt/hardware/mlperf_systems.yaml); board core and clock
(devices.yaml); engines (engines.yaml).

Model (log space, one row = one published latency):
    cycles per unit of op class c = exp(core[k] + engine[e] + class[c] + class_engine[e, c] + interaction[k, e])
    latency = sum_c work_c(model) x cycles per unit_c / clock
work_c = MACs for conv, pointwise, depthwise, fc; elements read + written for elementwise, pooling, other
(edgeopt.hardware.estimator.work_by_class; pointwise = convolutions whose windows do not overlap, 1x1:
no im2col, a different kernel and rate from kxk convolutions). Fitted with scipy.optimize.least_squares on
log(estimate) - log(published), with ridge penalties pulling class, class_engine and interaction
terms to 0 (RIDGE; class[conv] = 0 is the reference, class_engine[e, conv] is shrunk like the rest): four
reference models cannot pin seven op classes per engine, and an unseen
core x engine pair then falls back to core effect + engine effect ("composed").

Intervals: within the fitted rows, every board is left out in turn (leave-one-board-out); the 5th-95th
percentile of published/estimate over those predictions is the interval of an engine (pooled over
engines when an engine has fewer than MIN_RESIDUALS), and of composed pairs. Engines without rows are
estimated like a related engine with the range widened by the largest published spread between
engines on one board and model (engine_spread_factor).

Validation (written to BENCHMARKS.md and benchmarks/results/hardware.md): the whole calibration
(fit + intervals + factors) is redone without one submitter (leave-one-submitter-out, LOSO) or one
board (LOBO) and predicts the held-out rows: share within +-30%, median estimate/published per model
and per engine, and how often the published value falls inside the stated interval.

    .venv/bin/python benchmarks/calibrate_mcu.py [--data-dir ../shared/mlperf_tiny] [--rows extra.csv]

--rows adds your own measurements (same columns as results_calibration.csv; map their `system` in
mlperf_systems.yaml or pass --map).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares, nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgeopt.hardware.catalogue import core_info, data_file, load_devices  # noqa: E402
from edgeopt.hardware.estimator import CLASSES, mcu_latency, work_by_class  # noqa: E402
from edgeopt.hardware.tflite_stats import measure_tflm_arena  # noqa: E402
from edgeopt.measure.graph import profile_path  # noqa: E402
from edgeopt.measure.tflm import measure_arena  # noqa: E402

MODELS = {  # benchmark column in the CSV -> reference model file
    "kws": "kws_ref_model.tflite",
    "vww": "vww_96_int8.tflite",
    "ic": "pretrainedResnet_quant.tflite",
    "ad": "ad01_int8.tflite",
}
ARENA_MODELS = list(MODELS.values()) + ["pretrainedResnet_large_int8.tflite", "str_ww_ref_model.tflite"]
# TFLM planner bookkeeping held in the arena while planning (64-bit host build): AllocationInfo per
# tensor (size_t bytes, void** ptr, 3 ints, bool -> 32 B) and, per planned buffer, the greedy planner's
# requirements (16 B), two sort arrays (8 B), a list entry (12 B) and an offset (4 B) = 40 B.
# Struct sizes from tensorflow/lite/micro (micro_allocation_info.h, greedy_memory_planner.h); they
# explain ad01's 648-byte gap between the recorded total and the smallest working arena.
PLANNER_SCRATCH = {"per_tensor": 32, "per_activation_tensor": 40}
# ridge weights (per log unit) on: core/engine effects (identifiability only), the shared class
# effects, per-engine class effects, core x engine interactions. The weights were fixed before validating;
# class_engine_conv (the per-engine conv term shrunk like the other classes', so every class of an engine
# is pulled towards the shared class profile around the engine's level) and the pointwise class were
# chosen on leave-one-submitter-out among the --ablation variants, whose numbers BENCHMARKS.md lists.
RIDGE = {"effect": 1e-3, "class": 1.0, "class_engine": 1.0, "class_engine_conv": 1.0, "interaction": 1.0}
QUANTILES = (5.0, 95.0)
MIN_RESIDUALS = 6
TOLERANCE = 0.30
NON_CONV = CLASSES[1:]
BENCH_BY_FILE = {v: k for k, v in MODELS.items()}


@dataclass(frozen=True)
class Point:
    """One published latency with the board and engine it was measured on."""
    round: str
    submitter: str
    system: str
    bench: str
    latency_ms: float
    energy_uj: float | None
    device: str
    engine: str
    core: str
    clock_mhz: float

    @property
    def text(self) -> str:
        return f"{self.round} {self.submitter} {self.system} {self.bench} {self.latency_ms:g} ms"


def _match(entry: dict, row: dict) -> bool:
    return (entry["system"] == row["system"] and entry.get("submitter", row["submitter"]) == row["submitter"]
            and row["round"] in entry.get("rounds", [row["round"]]))


def load_points(csv_paths: list[Path], systems: list[dict], devices) -> tuple[list[Point], list[str]]:
    """Rows with a latency for kws/vww/ic/ad mapped to (device, engine); and why others were skipped."""
    points, skipped = [], []
    for path in csv_paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            if not r.get("latency_ms") or r["benchmark"] not in MODELS:
                continue
            entry = next((e for e in systems if _match(e, r)), None)
            label = f"{r['round']} {r['submitter']} {r['system']} {r['benchmark']}"
            if entry is None:
                skipped.append(f"{label}: system not in mlperf_systems.yaml")
                continue
            if entry.get("exclude"):
                skipped.append(f"{label}: {' '.join(entry['exclude'].split())}")
                continue
            dev = devices[entry["device"]]
            points.append(Point(r["round"], r["submitter"], r["system"], r["benchmark"], float(r["latency_ms"]),
                                float(r["energy_uJ"]) if r.get("energy_uJ") else None, dev.name,
                                entry["engine"], core_info(dev).get("calibration_core", dev.core),
                                float(dev.clock_mhz)))
    return points, skipped


# --------------------------------------------------------------------------- fit
def fit(points: list[Point], works: dict[str, dict[str, float]]) -> dict:
    """Least squares in log space; returns core_effect and per-engine effect, class_effect, interaction."""
    cores = sorted({p.core for p in points})
    engines = sorted({p.engine for p in points})
    pairs = sorted({(p.core, p.engine) for p in points})
    nk, ne, nc, npair, ncl = len(cores), len(engines), len(NON_CONV), len(pairs), len(CLASSES)
    ik = np.array([cores.index(p.core) for p in points])
    ie = np.array([engines.index(p.engine) for p in points])
    ip = np.array([pairs.index((p.core, p.engine)) for p in points])
    work = np.array([[works[p.bench][c] for c in CLASSES] for p in points])
    log_obs = np.log([p.latency_ms * p.clock_mhz * 1e3 for p in points])  # observed cycles
    sizes = [nk, ne, nc, ne * ncl, npair]
    cuts = np.cumsum([0] + sizes)

    def split(x):
        a, b, h, u, d = (x[cuts[i]:cuts[i + 1]] for i in range(5))
        return a, b, h, u.reshape(ne, ncl), d

    def shares(x):
        """Each class's share of a row's predicted cycles (n x classes) and log predicted cycles."""
        a, b, h, u, d = split(x)
        cls = np.zeros((ne, len(CLASSES)))
        cls[:, 1:] = h[None, :]
        cls += u
        parts = work * np.exp((a[ik] + b[ie] + d[ip])[:, None] + cls[ie])
        total = parts.sum(axis=1)
        return parts / total[:, None], np.log(total)

    ridge = np.concatenate([np.full(nk + ne, RIDGE["effect"]), np.full(nc, RIDGE["class"]),
                            np.tile([RIDGE["class_engine_conv"]] + [RIDGE["class_engine"]] * nc, ne),
                            np.full(npair, RIDGE["interaction"])])
    rows = np.arange(len(points))

    def residuals(x):
        return np.concatenate([shares(x)[1] - log_obs, ridge * x])

    def jacobian(x):
        """d log(sum_c work_c exp(L_c)) / d theta = sum_c share_c x d L_c / d theta."""
        s = shares(x)[0]
        jac = np.zeros((len(points), cuts[-1]))
        jac[rows, cuts[0] + ik] = 1.0
        jac[rows, cuts[1] + ie] = 1.0
        jac[:, cuts[2]:cuts[3]] = s[:, 1:]
        for i in range(ncl):
            jac[rows, cuts[3] + ie * ncl + i] = s[:, i]
        jac[rows, cuts[4] + ip] = 1.0
        return np.vstack([jac, np.diag(ridge)])

    x0 = np.zeros(cuts[-1])
    x0[nk:nk + ne] = math.log(2.0)  # about 2 cycles per MAC
    sol = least_squares(residuals, x0, jac=jacobian, method="lm")  # unbounded: Levenberg-Marquardt, ~50x faster than trf here
    a, b, h, u, d = split(sol.x)
    out_engines = {}
    for j, e in enumerate(engines):
        shared = np.concatenate([[0.0], h])
        class_effect = {c: float(shared[i] + u[j, i]) for i, c in enumerate(CLASSES)}
        inter = {k: float(d[pairs.index((k, e))]) for k in cores if (k, e) in pairs}
        out_engines[e] = {"effect": float(b[j]), "class_effect": class_effect, "interaction": inter}
    return {"core_effect": {k: float(a[i]) for i, k in enumerate(cores)}, "engines": out_engines}


def predict(cal: dict, p: Point, profiles, devices):
    """The estimator's own MCU latency (edgeopt.hardware.estimator.mcu_latency) for one row."""
    return mcu_latency(profiles[p.bench], devices[p.device], p.engine, cal)


def _interval(ratios: list[float], what: str) -> dict:
    lo, hi = np.percentile(ratios, QUANTILES)
    return {"low": round(float(min(lo, 1.0)), 4), "high": round(float(max(hi, 1.0)), 4), "n": len(ratios),
            "basis": f"{QUANTILES[0]:g}th-{QUANTILES[1]:g}th percentile of published/estimate over {len(ratios)} "
                     f"held-out {what} (one run or one board left out of the fitted rows)"}


def spread_factors(points: list[Point], profiles) -> dict:
    """engine_spread_factor: largest max/min of published latency between engines on one board and model;
    single_throughput_factor: largest max/min of MACs/s between the models on one board and engine."""
    by_board = defaultdict(lambda: defaultdict(list))
    by_engine = defaultdict(lambda: defaultdict(list))
    for p in points:
        by_board[(p.device, p.bench)][p.engine].append(p.latency_ms)
        by_engine[(p.device, p.engine)][p.bench].append(profiles[p.bench].total_macs / p.latency_ms)
    eng = [(max(m) / min(m), key) for key, d in by_board.items()
           for m in [[statistics.median(v) for v in d.values()]] if len(m) > 1]
    thr = [(max(m) / min(m), key) for key, d in by_engine.items()
           for m in [[statistics.median(v) for v in d.values()]] if len(m) > 2]
    f_eng, at_eng = max(eng) if eng else (4.0, "none: no board with two engines; 4.0 assumed")
    # cores: filled in by calibrate() from the fitted core effects
    f_thr, at_thr = max(thr) if thr else (2.0, "none: no board and engine with three models; 2.0 assumed")
    return {"engine_spread_factor": round(f_eng, 3), "engine_spread_at": str(at_eng),
            "single_throughput_factor": round(f_thr, 3), "single_throughput_at": str(at_thr)}


def _has_twin(p: Point, pool: list[Point]) -> bool:
    """A row of `pool` on the same board, engine and model within 1% of p (a reproduced measurement)."""
    return any((q.device, q.engine, q.bench) == (p.device, p.engine, p.bench)
               and abs(q.latency_ms / p.latency_ms - 1) <= 0.01 for q in pool)


def _run(p: Point) -> str:
    """One submitted system of one round: the four models measured in one configuration."""
    return f"{p.round} {p.submitter} {p.system}"


def calibrate(points: list[Point], works, profiles, devices) -> dict:
    """Fit + intervals + factors for uncalibrated engines: a calibration dict.

    Interval of an engine: published/estimate over held-out predictions that kept the core x engine
    pair (leave one run out, skipping rows another run reproduced within 1%, and leave one board out
    where another board has the same core);
    composed interval: over leave-one-board-out predictions of pairs the fit no longer had."""
    cal = {**fit(points, works), "uncalibrated": spread_factors(points, profiles)}
    effects = list(cal["core_effect"].values())
    cal["uncalibrated"]["core_spread_factor"] = round(math.exp(max(effects) - min(effects)), 3) if len(effects) > 1 \
        else 2.0
    placeholder = {"low": 1.0, "high": 1.0, "n": 0}
    for e in cal["engines"].values():
        e["interval"] = e["composed_interval"] = placeholder
    seen, composed = defaultdict(list), []
    groups = [("device", g) for g in sorted({p.device for p in points})]
    groups += [("run", g) for g in sorted({_run(p) for p in points})]
    for kind, group in groups:
        held = [p for p in points if (p.device if kind == "device" else _run(p)) == group]
        rest = [p for p in points if p not in held]
        if not rest:
            continue
        sub = {**fit(rest, works), "uncalibrated": cal["uncalibrated"]}
        for e in sub["engines"].values():
            e["interval"] = e["composed_interval"] = placeholder
        for p in held:
            if kind == "run" and _has_twin(p, rest):  # a reproduced row: its residual says nothing new
                continue
            iv = predict(sub, p, profiles, devices)
            if iv is None or iv.basis not in ("calibrated", "composed"):
                continue
            ratio = p.latency_ms / iv.value
            (seen[p.engine] if iv.basis == "calibrated" else composed).append(ratio)
    pooled = [r for v in seen.values() for r in v]
    for name, e in cal["engines"].items():
        mine = seen.get(name, [])
        if len(mine) >= MIN_RESIDUALS:
            e["interval"] = _interval(mine, f"predictions of {name} rows")
        elif len(pooled) >= 2:
            e["interval"] = _interval(pooled, f"predictions pooled over engines ({name} has {len(mine)})")
        else:
            e["interval"] = {"low": 0.5, "high": 2.0, "n": 0, "basis": "no held-out predictions: x/÷2 assumed"}
        if len(composed) >= MIN_RESIDUALS:
            e["composed_interval"] = _interval(composed, "predictions of core x engine pairs absent from the fit")
        elif len(composed + pooled) >= 2:
            e["composed_interval"] = _interval(composed + pooled, "predictions (composed and calibrated pooled)")
        else:
            e["composed_interval"] = e["interval"]
    return cal


# --------------------------------------------------------------------------- validation
def validate(points: list[Point], by: str, works, profiles, devices) -> list[dict]:
    """Redo the whole calibration without each group (submitter or device) and predict its rows."""
    out = []
    for group in sorted({getattr(p, by) for p in points}):
        train = [p for p in points if getattr(p, by) != group]
        cal = calibrate(train, works, profiles, devices)
        trained_engines = {p.engine for p in train}
        for p in points:
            if getattr(p, by) != group:
                continue
            iv = predict(cal, p, profiles, devices)
            out.append({"group": group, "point": p, "estimate": iv.value if iv else None,
                        "low": iv.low if iv else None, "high": iv.high if iv else None,
                        "basis": iv.basis if iv else "no estimate (core not in the remaining rows)",
                        "engine_calibrated": p.engine in trained_engines})
    return out


def _stats(items: list[dict]) -> dict:
    n = len(items)
    est = [c for c in items if c["estimate"] is not None]
    within = sum(abs(c["estimate"] / c["point"].latency_ms - 1) <= TOLERANCE for c in est)
    inside = sum(c["low"] <= c["point"].latency_ms and (c["high"] is None or c["point"].latency_ms <= c["high"])
                 for c in est)
    ratios = [c["estimate"] / c["point"].latency_ms for c in est]
    return {"n": n, "within": within, "inside": inside,
            "median_ratio": statistics.median(ratios) if ratios else None}


def pair_stats(results: list[dict]) -> dict:
    """The same held-out predictions per model x board x engine pair (medians over its rows)."""
    groups = defaultdict(list)
    for c in results:
        groups[(c["point"].bench, c["point"].device, c["point"].engine)].append(c)
    n = within = inside = 0
    for items in groups.values():
        est = [c for c in items if c["estimate"] is not None]
        n += 1
        if not est:
            continue
        pub = statistics.median(c["point"].latency_ms for c in items)
        ratio = statistics.median(c["estimate"] for c in est) / pub
        within += abs(ratio - 1) <= TOLERANCE
        inside += statistics.median(c["low"] for c in est) <= pub <= statistics.median(
            c["high"] if c["high"] is not None else math.inf for c in est)
    return {"n": n, "within": within, "inside": inside}


def summarize(results: list[dict]) -> dict:
    """Overall, per model and per engine: within +-30%, median estimate/published, interval coverage."""
    out = {"all": _stats(results),
           "engine_calibrated": _stats([c for c in results if c["engine_calibrated"]]),
           "by_model": {b: _stats([c for c in results if c["point"].bench == b]) for b in MODELS},
           "by_model_engine_kept_rows": {b: _stats([c for c in results if c["point"].bench == b
                                                    and c["engine_calibrated"]]) for b in MODELS},
           "by_engine": {}, "misses_without_engine_rows": defaultdict(int), "pairs": pair_stats(results)}
    for c in results:
        miss = c["estimate"] is None or abs(c["estimate"] / c["point"].latency_ms - 1) > TOLERANCE
        if miss and not c["engine_calibrated"]:
            out["misses_without_engine_rows"][f"{c['point'].engine} ({c['group']} held out)"] += 1
    for e in sorted({c["point"].engine for c in results}):
        out["by_engine"][e] = _stats([c for c in results if c["point"].engine == e])
    return out


def _frac(s: dict, key: str) -> str:
    return f"{s[key]}/{s['n']} ({100 * s[key] / s['n']:.0f}%)" if s["n"] else "-"


def _ratio(s: dict) -> str:
    return f"{s['median_ratio']:.2f}" if s["median_ratio"] is not None else "-"


def summary_table(name: str, s: dict) -> list[str]:
    lines = [f"| {name} | rows | within ±30% | median estimate/published | published inside interval |",
             "|---|---:|---:|---:|---:|",
             f"| all rows | {s['all']['n']} | {_frac(s['all'], 'within')} | {_ratio(s['all'])} | "
             f"{_frac(s['all'], 'inside')} |",
             f"| rows whose engine kept other rows | {s['engine_calibrated']['n']} | "
             f"{_frac(s['engine_calibrated'], 'within')} | {_ratio(s['engine_calibrated'])} | "
             f"{_frac(s['engine_calibrated'], 'inside')} |"]
    for kind, label in (("by_model", "model"), ("by_model_engine_kept_rows", "engine kept rows, model"),
                        ("by_engine", "engine")):
        for key, v in s[kind].items():
            lines.append(f"| {label} {key} | {v['n']} | {_frac(v, 'within')} | {_ratio(v)} | {_frac(v, 'inside')} |")
    return lines


def energy_check(results: list[dict], devices) -> list[str]:
    """Held-out energy: catalogue active power x estimated latency (interval) vs the published energy,
    on rows measured with the engine the catalogue's power figure belongs to."""
    rows = []
    for c in results:
        p, dev = c["point"], devices[c["point"].device]
        if p.energy_uj is None or c["estimate"] is None or dev.engine != p.engine or dev.active_power_w is None:
            continue
        uj = lambda ms: None if ms is None else dev.active_power_w * ms * 1e3  # noqa: E731
        rows.append((p, uj(c["estimate"]), uj(c["low"]), uj(c["high"])))
    if not rows:
        return []
    within = sum(abs(e / p.energy_uj - 1) <= TOLERANCE for p, e, _, _ in rows)
    inside = sum(lo <= p.energy_uj and (hi is None or p.energy_uj <= hi) for p, _, lo, hi in rows)
    ratio = statistics.median(e / p.energy_uj for p, e, _, _ in rows)
    return [f"Energy per inference, same held-out predictions (catalogue active power x latency, on the {len(rows)} "
            f"rows measured with the engine that power figure comes from): {within}/{len(rows)} within ±30%, "
            f"median estimate/published {ratio:.2f}, {inside}/{len(rows)} inside the interval."]


def reproductions(results: list[dict], points: list[Point]) -> list[str]:
    """Held-out rows that another submitter measured on the same board, engine and model within 1%:
    for those the held-out fit still had (nearly) the same measurement."""
    def twin(p):
        return _has_twin(p, [q for q in points if q.submitter != p.submitter])
    hits = [c for c in results if c["estimate"] is not None
            and abs(c["estimate"] / c["point"].latency_ms - 1) <= TOLERANCE]
    twins = [c for c in hits if twin(c["point"])]
    by = defaultdict(int)
    for c in twins:
        by[c["point"].submitter] += 1
    return [f"{len(twins)} of the {len(hits)} held-out rows within ±30% have a row within 1% from another "
            "submitter on the same board, engine and model (reproduced or resubmitted measurements: "
            + ", ".join(f"{n} of {s}" for s, n in sorted(by.items())) + "); without them: "
            f"{len(hits) - len(twins)}/{len(results) - len(twins)} within ±30%."] if twins else []


def done_when(loso: dict, gaps: list[str] = ()) -> list[str]:
    """The issue's targets, checked on the leave-one-submitter-out numbers, with the reason for a miss."""
    a = loso["all"]
    ok_within = a["within"] >= 0.8 * a["n"]
    ratios = {b: v["median_ratio"] for b, v in loso["by_model"].items()}
    ok_ratio = all(r is not None and 0.9 <= r <= 1.1 for r in ratios.values())
    ok_cover = a["inside"] >= 0.8 * a["n"]
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = ["### Done-when targets (leave-one-submitter-out)", "",
             f"- ≥ 80% of held-out rows within ±30%: {_frac(a, 'within')}: **{verdict(ok_within)}**.",
             "- median estimate/published within 0.9–1.1 for kws, vww, ic, ad: "
             + ", ".join(f"{b} {r:.2f}" if r is not None else f"{b} -" for b, r in ratios.items())
             + f": **{verdict(ok_ratio)}**.",
             f"- published value inside the stated interval for ≥ 80%: {_frac(a, 'inside')}: **{verdict(ok_cover)}**."]
    pairs = loso["pairs"]
    lines.append(f"- per model × board × engine pair (median of its rows' estimate/published): "
                 f"{pairs['within']}/{pairs['n']} within ±30%, {pairs['inside']}/{pairs['n']} inside the interval.")
    misses = loso["misses_without_engine_rows"]
    if misses:
        k = loso["engine_calibrated"]
        lines += ["", f"{sum(misses.values())} of the {a['n'] - a['within']} rows outside ±30% belong to an engine "
                  "that no other submitter measured, so the held-out fit has no rows of it and estimates it like "
                  "its `fallback` / `assumed_like` engine (engines.yaml) with the widened range: " + ", ".join(f"{n} rows of {g}" for g, n in misses.items()) + ". "
                  f"On the rows whose engine kept rows from other submitters: {_frac(k, 'within')} within ±30%, "
                  f"median ratio {_ratio(k)}, {_frac(k, 'inside')} inside the interval."]
    return lines + (["", *gaps] if gaps else [])


def _merge_pointwise(works: dict) -> dict:
    return {b: {**w, "conv": w["conv"] + w["pointwise"], "pointwise": 0.0} for b, w in works.items()}


# model variants re-validated by --ablation: (label, work transform, ridge overrides)
ABLATIONS = (
    ("as fitted", None, {}),
    ("no pointwise class (1x1 convolutions costed like kxk ones)", _merge_pointwise, {}),
    ("per-engine conv term fixed at the shared conv rate (ridge class_engine_conv 1e4)", None,
     {"class_engine_conv": 1e4}),
    ("both: the model before the pointwise class (intervals as now)", _merge_pointwise, {"class_engine_conv": 1e4}),
    ("per-engine class effects shrunk 10x less (ridge class_engine 0.1)", None, {"class_engine": 0.1}),
    ("per-engine class effects shrunk 3x more (ridge class_engine 3)", None, {"class_engine": 3.0}),
)


def ablation(points: list[Point], works, profiles, devices) -> list[str]:
    """Leave-one-submitter-out of each model variant in ABLATIONS (a markdown table)."""
    lines = ["| variant | LOSO within ±30% | inside interval | median estimate/published kws, vww, ic, ad |",
             "|---|---:|---:|---|"]
    saved = dict(RIDGE)
    try:
        for label, transform, ridge in ABLATIONS:
            RIDGE.update(saved, **ridge)
            s = summarize(validate(points, "submitter", transform(works) if transform else works, profiles, devices))
            lines.append(f"| {label} | {_frac(s['all'], 'within')} | {_frac(s['all'], 'inside')} | "
                         + ", ".join(_ratio(v) for v in s["by_model"].values()) + " |")
    finally:
        RIDGE.update(saved)
    return lines


def identifiability(works: dict) -> str:
    """Which class rates the four models can tell apart: each class's share of a model's MACs."""
    share = {b: {c: w[c] / sum(w[k] for k in ("conv", "pointwise", "depthwise", "fc")) for c in w}
             for b, w in works.items()}
    dw = {b: s["depthwise"] for b, s in share.items() if s["depthwise"]}
    return ("Share of MACs by class: " + "; ".join(
        f"{b} " + ", ".join(f"{c} {100 * v:.0f}%" for c, v in s.items() if c in ("conv", "pointwise", "depthwise", "fc")
                            and v >= 0.005) for b, s in share.items())
            + ". Only " + ", ".join(dw) + " have depthwise MACs, at nearly the same share ("
            + ", ".join(f"{100 * v:.0f}%" for v in dw.values()) + "), so these rows cannot separate the depthwise "
            "rate from the pointwise one: the fit (ridge towards the shared class profile) puts most of their common "
            "slowdown on the larger pointwise share; a model with a very different depthwise share is estimated less surely.")


def unseen_engine_gaps(results: list[dict], points: list[Point]) -> list[str]:
    """Why held-out rows of an engine nobody else measured miss: the latency that engine's stand-in
    (engines.yaml `fallback` / `assumed_like`) was published with by other submitters on the same board
    and model, over the row's own; and the share within +-30% reachable without hitting those rows."""
    unseen = [c for c in results if not c["engine_calibrated"]]
    if not unseen:
        return []
    spec = data_file("engines.yaml").get("engines", {})
    gaps, like_of = defaultdict(list), {}
    for c in unseen:
        p = c["point"]
        like = spec.get(p.engine, {}).get("fallback") or spec.get(p.engine, {}).get("assumed_like")
        like_of[p.engine] = like
        other = [q.latency_ms for q in points if q.engine == like and q.submitter != p.submitter
                 and (q.device, q.bench) == (p.device, p.bench)]
        if other:
            gaps[p.bench].append(statistics.median(other) / p.latency_ms)
    n, best = len(results), len(results) - len(unseen)
    pairs = ", ".join(f"{e} (stand-in {like})" for e, like in like_of.items())
    text = (f"Rows of {pairs}: {len(unseen)} held-out rows whose engine the held-out fit never saw. "
            f"Published stand-in latency (other submitters, same board and model) / the row's latency: "
            + ", ".join(f"{b} {min(v):.2f}–{max(v):.2f}" for b, v in gaps.items())
            + f" ({sum(len(v) for v in gaps.values())} of the rows have such a row). The engine versions differ by "
            f"more than ±30% on most of them, so a rate model fitted without them cannot place them within ±30% "
            f"except by chance; with every other row within ±30% the LOSO share would be {best}/{n} "
            f"({100 * best / n:.0f}%).")
    return [text]


def validation_yaml(s: dict) -> dict:
    def one(v):
        return {"rows": v["n"], "within_30pct": v["within"], "inside_interval": v["inside"],
                "median_estimate_over_published": None if v["median_ratio"] is None else round(v["median_ratio"], 3)}
    return {"all": one(s["all"]), "engine_kept_rows": one(s["engine_calibrated"]),
            "by_model": {k: one(v) for k, v in s["by_model"].items()},
            "by_engine": {k: one(v) for k, v in s["by_engine"].items()}}


# --------------------------------------------------------------------------- TFLM arena
def measured_arena(path: Path) -> int:
    """The smallest arena the TFLM host interpreter allocates and invokes with."""
    arena, note = measure_arena(path)
    if arena is None:
        raise RuntimeError(f"{path}: {note}")
    return int(arena)


def fit_arena(data_dir: Path):
    """Persistent TFLM arena bytes = fixed + per_tensor*n + per_op*n + per_channel*n (non-negative LSQ)."""
    from edgeopt.hardware.estimator import arena_counts, estimate_arena
    from edgeopt.hardware.tflite_stats import tflm_planned_bytes

    rows = []
    for name in ARENA_MODELS:
        path = data_dir / name
        prof = profile_path(path, measure_arena=False)
        measured = {**measure_tflm_arena(path), "arena": measured_arena(path)}
        rows.append((name, prof, measured, arena_counts(prof), tflm_planned_bytes(path)))
    def head(c, planned):
        return max(planned, PLANNER_SCRATCH["per_tensor"] * c["tensors"]
                   + PLANNER_SCRATCH["per_activation_tensor"] * c["activation_tensors"])

    a = np.array([[1.0, c["tensors"], c["ops"], c["per_channel"]] for _, _, _, c, _ in rows])
    b = np.array([m["arena"] - head(c, planned) for _, _, m, c, planned in rows], dtype=float)

    def coef_of(idx):
        sol, _ = nnls(a[idx], b[idx])
        return dict(zip(("fixed", "per_tensor", "per_op", "per_channel"), (round(float(v), 3) for v in sol)))

    coef = coef_of(list(range(len(rows))))
    report = []
    for i, (name, prof, measured, _, _) in enumerate(rows):
        loo = coef_of([j for j in range(len(rows)) if j != i])
        est_in = estimate_arena(prof, {"arena": {"persistent_bytes": coef,
                                                 "planner_scratch_bytes": PLANNER_SCRATCH}})[0]
        est_loo = estimate_arena(prof, {"arena": {"persistent_bytes": loo,
                                                  "planner_scratch_bytes": PLANNER_SCRATCH}})[0]
        report.append({"model": name, "measured": measured["arena"], "recorded": measured["total"],
                       "head": measured["head"],
                       "peak_activation": prof.peak_activation_bytes, "estimate": est_in, "estimate_loo": est_loo})
    return coef, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=ROOT.parent / "shared" / "mlperf_tiny", type=Path)
    ap.add_argument("--rows", type=Path, action="append", default=[],
                    help="extra CSV of your own measurements (results_calibration.csv columns)")
    ap.add_argument("--map", type=Path, help="extra systems YAML (mlperf_systems.yaml format) for --rows")
    ap.add_argument("--devices-file", type=Path, help="your device YAML (boards named in --map)")
    ap.add_argument("--out", default=ROOT / "src/edgeopt/hardware/calibration.yaml", type=Path)
    ap.add_argument("--table", default=ROOT / "benchmarks/results/hardware.md", type=Path)
    ap.add_argument("--benchmarks-md", default=ROOT / "BENCHMARKS.md", type=Path)
    ap.add_argument("--skip-arena", action="store_true", help="keep the arena constants already in --out")
    ap.add_argument("--ablation", action="store_true",
                    help="also re-validate the model variants in ABLATIONS (slower) and add their table")
    args = ap.parse_args(argv)

    devices = load_devices(args.devices_file, include_host=False)
    systems = list(data_file("mlperf_systems.yaml")["systems"])
    if args.map:
        systems = yaml.safe_load(args.map.read_text())["systems"] + systems
    points, skipped = load_points([args.data_dir / "results_calibration.csv", *args.rows], systems, devices)
    profiles = {b: profile_path(args.data_dir / f, measure_arena=False) for b, f in MODELS.items()}
    works = {b: work_by_class(p) for b, p in profiles.items()}

    cal = calibrate(points, works, profiles, devices)
    loso_rows = validate(points, "submitter", works, profiles, devices)
    lobo_rows = validate(points, "device", works, profiles, devices)
    loso, lobo = summarize(loso_rows), summarize(lobo_rows)
    loso["energy"], lobo["energy"] = energy_check(loso_rows, devices), energy_check(lobo_rows, devices)
    loso["unseen_gaps"] = unseen_engine_gaps(loso_rows, points) + ["", identifiability(works)]
    loso["ablation"] = ablation(points, works, profiles, devices) if args.ablation else []
    loso["energy"] = reproductions(loso_rows, points) + [""] + loso["energy"]
    in_sample = summarize([{"point": p, **_pred_row(cal, p, profiles, devices)} for p in points])
    for name, e in cal["engines"].items():
        e["rows"] = sorted(p.text for p in points if p.engine == name)
        e["rates"] = {k: {c: round(math.exp(-(cal["core_effect"][k] + e["effect"] + e["class_effect"][c] + inter)), 5)
                          for c in CLASSES} for k, inter in e["interaction"].items()}
    if args.skip_arena:
        arena_coef, arena_report = data_file("calibration.yaml")["arena"], []
    else:
        coef, arena_report = fit_arena(args.data_dir)
        arena_coef = {"persistent_bytes": coef, "planner_scratch_bytes": PLANNER_SCRATCH}
    out = {
        "provenance": {
            "generated_by": "benchmarks/calibrate_mcu.py",
            "date": date.today().isoformat(),
            "data": ["shared/mlperf_tiny/results_calibration.csv (mlcommons/tiny_results_v1.0..v1.3, all submitters)",
                     *map(str, args.rows)],
            "systems": "src/edgeopt/hardware/mlperf_systems.yaml (board and engine of each CSV system)",
            "models": MODELS,
            "skipped_rows": skipped,
            "fit": "scipy.optimize.least_squares on log latency; ridge " + str(RIDGE),
        },
        "model": "cycles per unit of class c on core k with engine e = exp(core_effect[k] + engines[e].effect + "
                 "engines[e].class_effect[c] + engines[e].interaction[k]); units: MACs (conv, pointwise, depthwise, fc), "
                 "elements read + written (elementwise, pooling, other); latency = sum work x cycles / clock",
        "core_effect": {k: round(v, 5) for k, v in cal["core_effect"].items()},
        "engines": {n: {"effect": round(e["effect"], 5),
                        "class_effect": {c: round(v, 5) for c, v in e["class_effect"].items()},
                        "interaction": {k: round(v, 5) for k, v in e["interaction"].items()},
                        "interval": e["interval"], "composed_interval": e["composed_interval"],
                        "rates_macs_or_elements_per_cycle": e["rates"], "rows": e["rows"]}
                    for n, e in cal["engines"].items()},
        "uncalibrated": cal["uncalibrated"],
        "arena": arena_coef,
        "validation": {"in_sample": validation_yaml(in_sample),
                       "leave_one_submitter_out": validation_yaml(loso),
                       "leave_one_board_out": validation_yaml(lobo)},
    }
    _write_atomic(args.out, "# Generated by benchmarks/calibrate_mcu.py; do not edit by hand.\n"
                  + yaml.safe_dump(out, sort_keys=False, width=110, allow_unicode=True))
    text = _markdown(out, in_sample, loso, lobo, skipped, arena_report)
    _write_atomic(args.table, text)
    _update_benchmarks(args.benchmarks_md, text)
    print(text)
    return 0


def _pred_row(cal, p, profiles, devices) -> dict:
    iv = predict(cal, p, profiles, devices)
    return {"estimate": iv.value, "low": iv.low, "high": iv.high, "basis": iv.basis, "engine_calibrated": True}


def _markdown(out, in_sample, loso, lobo, skipped, arena_report) -> str:
    lines = ["## Microcontroller estimates vs published MLPerf Tiny results", "",
             "Generated by `.venv/bin/python benchmarks/calibrate_mcu.py` from every submitter's rows in",
             "`shared/mlperf_tiny/results_calibration.csv` (published medians, mlcommons/tiny_results_v1.0..v1.3).",
             "Each row = one model on one board with one engine. Estimates are the estimator's own",
             "(`edgeopt.hardware.estimator.mcu_latency`). LOSO/LOBO: the whole calibration (fit, intervals,",
             "uncalibrated-engine factors) is redone without one submitter / one board, then predicts its rows;",
             "an engine left with no rows is estimated like its `fallback` / `assumed_like` engine (engines.yaml)",
             "with the widened range. Units: one row = one published latency (model × board × engine × run).",
             ""] + done_when(loso, loso["unseen_gaps"]) + ["", "### Leave-one-submitter-out", ""] \
        + summary_table("LOSO", loso)
    if loso["ablation"]:
        lines += ["", "Model variants, each re-validated the same way (`--ablation`):", "", *loso["ablation"]]
    lines += ["", *loso["energy"], "", "### Leave-one-board-out", ""] + summary_table("LOBO", lobo)
    lines += ["", *lobo["energy"]]
    lines += ["", "### In sample (all rows fitted)", ""] + summary_table("in sample", in_sample)
    lines += ["", "### Fitted rates (MACs/cycle; elementwise/pooling/other: elements read+written per cycle)", "",
              "| engine | core | " + " | ".join(CLASSES) + " | interval (published/estimate) |",
              "|---|---|" + "---:|" * len(CLASSES) + "---|"]
    for name, e in out["engines"].items():
        for core, r in e["rates_macs_or_elements_per_cycle"].items():
            iv = e["interval"]
            lines.append(f"| {name} | {core} | " + " | ".join(f"{r[c]:.3g}" for c in CLASSES)
                         + f" | {iv['low']:.2f}–{iv['high']:.2f} (n={iv['n']}) |")
    u = out["uncalibrated"]
    lines += ["", f"Engines without rows: range x/÷{u['engine_spread_factor']} (largest spread between engines, "
                  f"{u['engine_spread_at']}); one published throughput: x/÷{u['single_throughput_factor']} "
                  f"({u['single_throughput_at']}).", "", "Rows not fitted:", ""]
    by_reason = defaultdict(list)
    for s in skipped:
        label, reason = s.split(": ", 1)
        by_reason[reason].append(label)
    lines += [f"- {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()] or ["- none"]
    if arena_report:
        lines += ["", "### TFLite Micro arena (bytes)", "",
                  "measured = smallest arena the tflite-micro host interpreter allocates and invokes with;",
                  "estimate = greedy-planner replay + fitted persistent overhead; LOO = overhead refitted without that model.",
                  "", "| model | measured | estimate | error | LOO estimate | LOO error |", "|---|---:|---:|---:|---:|---:|"]
        for a in arena_report:
            lines.append(f"| {a['model']} | {a['measured']:,} | {a['estimate']:,} | "
                         f"{100 * (a['estimate'] / a['measured'] - 1):+.1f}% | {a['estimate_loo']:,} | "
                         f"{100 * (a['estimate_loo'] / a['measured'] - 1):+.1f}% |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- calibrate_mcu:begin -->", "<!-- calibrate_mcu:end -->"


def _update_benchmarks(path: Path, text: str) -> None:
    """Replace the generated block of BENCHMARKS.md (between the markers) with `text`."""
    if not path.exists():
        return
    doc = path.read_text()
    if BEGIN not in doc:
        return
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    _write_atomic(path, f"{head}{BEGIN}\n{text}{END}{tail}")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
