"""Targets to estimate (a model file or a run directory's variants) and the device recommender."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.errors import UserError
from edgeopt.hardware.catalogue import HOST_NAME
from edgeopt.hardware.estimator import Estimate, estimate
from edgeopt.hardware.schema import Device
from edgeopt.measure.graph_types import GraphProfile

from edgeopt.engine.store import RUN_FILE


@dataclass
class Variant:
    """A model to estimate. metrics: the run's measured metrics (edgeopt.core.types.Metrics as a dict:
    accuracy, mae, size_bytes, latency_ms {p50_ms, ...}); graph: its graph facts (engine.store.graph_of)."""
    name: str
    path: Path
    metrics: dict
    profile: GraphProfile
    graph: dict = field(default_factory=dict)


def load_run_variants(run_dir: str | Path) -> list[tuple[str, Path, dict, dict]]:
    """(name, artifact path, metrics, graph facts) of the finished variants of a run directory, read
    through edgeopt.engine.store (schema 1 records are migrated). Variants that failed, have no artifact,
    or whose artifact file is gone are skipped. Raises UserError for a missing/unreadable run.json or a
    run without any finished variant on disk."""
    from edgeopt.engine.store import graph_of, read_run

    run = read_run(Path(run_dir))
    out = []
    for v in run.variants:
        if not v.done or not v.artifact:
            continue
        path = Path(v.artifact)
        path = path if path.is_absolute() else run.path / path
        if not path.exists():
            continue
        metrics = v.metrics.model_dump() if v.metrics else {}
        out.append((v.name, path, metrics, graph_of(v.model_dump())))
    if not out:
        raise UserError(f"{Path(run_dir) / RUN_FILE}: no finished variant with an artifact on disk")
    return out


def load_targets(target: str | Path) -> list[Variant]:
    """A model file -> one variant; a run directory -> its finished variants, each profiled (the TFLite
    Micro arena the run measured is reused, not measured again)."""
    from edgeopt.measure.graph import profile_path

    target = Path(target)
    if target.is_dir() and (target / RUN_FILE).exists():
        out = []
        for name, path, metrics, graph in load_run_variants(target):
            arena = graph.get("tflm_arena_bytes")
            profile = profile_path(path, measure_arena=arena is None)
            if arena is not None and path.suffix == ".tflite":
                profile.arena_bytes, profile.arena_note = int(arena), graph.get("tflm_arena_note") or ""
            out.append(Variant(name, path, metrics, profile, graph))
        return out
    if target.exists():
        return [Variant(target.stem, target, {}, profile_path(target))]
    raise UserError(f"not found: {target} (pass a model file or a run directory with {RUN_FILE})")


@dataclass
class Recommendation:
    device: str
    device_title: str
    feasible: bool
    variant: str | None
    estimate: Estimate | None
    reasons: list[str] = field(default_factory=list)
    accuracy: float | None = None
    fit: str = "no"  # yes | unknown (runs, meets the limits, but a capacity is missing) | no

    def to_dict(self) -> dict:
        return {"device": self.device, "device_title": self.device_title, "feasible": self.feasible,
                "fit": self.fit,
                "variant": self.variant, "accuracy": self.accuracy, "reasons": self.reasons,
                "estimate": self.estimate.to_dict() if self.estimate else None}


def _check(est: Estimate, max_latency_ms, max_power_w, max_price) -> list[str]:
    """Reasons this estimate breaks the user's limits (empty when it meets them all)."""
    bad = list(est.blockers)
    if max_latency_ms is not None:
        if est.latency_ms is None:
            why = [m for m in est.missing if "throughput" in m or "MACs" in m or "clock" in m]
            bad.append("latency unknown" + (f" (missing {'; '.join(why)})" if why else ""))
        elif est.latency_ms > max_latency_ms and not est.latency_is_lower_bound:
            bad.append(f"latency {est.latency_ms:.3g} ms > {max_latency_ms:g} ms")
        elif est.latency_is_lower_bound and est.latency_ms > max_latency_ms:
            bad.append(f"even the peak-throughput bound {est.latency_ms:.3g} ms > {max_latency_ms:g} ms")
    if max_power_w is not None:
        if est.active_power_w is None:
            bad.append("active power unknown")
        elif est.active_power_w > max_power_w:
            bad.append(f"active power {est.active_power_w:g} W > {max_power_w:g} W")
    if max_price is not None:
        if est.price_usd is None:
            bad.append("price unknown")
        elif est.price_usd > max_price:
            bad.append(f"price ${est.price_usd:g} > ${max_price:g}")
    return bad


def _merits(est: Estimate, max_latency_ms) -> list[str]:
    out = []
    ram = est.ram
    if ram.get("capacity_bytes"):
        out.append(f"RAM {ram['needed_bytes'] / 1024:,.0f} of {ram['capacity_bytes'] / 1024:,.0f} KB")
    if est.latency_ms is not None:
        lr = est.latency_range_ms
        if est.latency_is_lower_bound:
            out.append(f"latency ≥ {est.latency_ms:.3g} ms: a peak-throughput lower bound, not a latency "
                       "(ranked below calibrated estimates)")
        else:
            limit = f" <= {max_latency_ms:g} ms" if max_latency_ms is not None else ""
            if max_latency_ms is not None and (lr.get("high") or 0) > max_latency_ms:
                limit += f" (the interval's upper end {lr['high']:.3g} ms is not)"
            span = f" ({lr['low']:.2g}–{lr['high']:.2g})" if lr.get("low") is not None and lr.get("high") else ""
            out.append(f"latency {est.latency_ms:.3g} ms{span}{limit} ({est.basis})")
    if est.energy_mj is not None:
        out.append(f"{est.energy_mj:.3g} mJ/inference")
    life = est.battery_life_range_h
    if life:
        if est.battery_life_h is not None:
            out.append(f"battery {est.battery_life_h / 24:,.1f} days")
        elif life.get("low") is not None:
            out.append(f"battery at least {life['low'] / 24:,.1f} days (upper end unknown: "
                       f"{'; '.join(est.power.get('assumptions', []))})")
    if est.accelerator:
        out.append(est.accelerator)
    return out


def _sort_key(rec: Recommendation):
    """Feasible first, then accuracy, then how well the latency is known (measured/calibrated before
    published throughput, assumed, lower bounds), then energy and latency."""
    est = rec.estimate
    energy = est.energy_mj if est and est.energy_mj is not None else float("inf")
    latency = est.latency_ms if est and est.latency_ms is not None else float("inf")
    acc = rec.accuracy if rec.accuracy is not None else -1.0
    return (FIT_ORDER.index(rec.fit), -acc, est.rank if est else 5, energy, latency)


FIT_ORDER = ("yes", "unknown", "no")


def _unknown_fit(est: Estimate) -> str:
    """What keeps the fit check open (est.fits is None): the capacities the catalogue lacks."""
    what = [m for m in est.missing if m.startswith(("RAM size", "flash size", "on-chip memory"))]
    return "fit unknown: " + ("; ".join(what) if what else "a capacity") + " not in the catalogue"



def _pick(good: list) -> tuple:
    """A device's variant: among those within the default accuracy budget (1 point) of the most
    accurate, the one whose latency is best known (Estimate.rank), then fastest."""
    from edgeopt.engine.analysis import DEFAULT_BUDGET_POINTS

    top = max((_accuracy(v) or -1.0) for v, _ in good)
    near = [(v, e) for v, e in good if (_accuracy(v) or -1.0) >= top - DEFAULT_BUDGET_POINTS / 100]
    return min(near, key=lambda ve: (ve[1].rank, ve[1].latency_ms if ve[1].latency_ms is not None
                                     else float("inf"), -(_accuracy(ve[0]) or -1.0)))


def recommend(variants: list[Variant], devices: dict[str, Device], *, max_latency_ms=None, max_power_w=None,
              max_price=None, battery_mah=None, inferences_per_hour=None,
              engine: str | None = None) -> list[Recommendation]:
    """Devices ranked: feasible first (``fit`` yes; then ``unknown``: no blocker but a RAM/flash
    capacity the catalogue lacks, so ``feasible`` is False), then by the accuracy of the best variant that fits, then by how
    the latency is known (Estimate.rank: measured/calibrated above lower bounds), then energy per
    inference, then latency. Each device gets its best feasible variant and the reasons.
    engine: inference engine for the microcontrollers (None: each device's own)."""
    recs = []
    for dev in devices.values():
        if dev.name == HOST_NAME:  # where edgeopt runs, not a deployment target
            continue
        options = []
        for v in variants:
            est = estimate(v.profile, dev, engine=engine, battery_mah=battery_mah,
                           inferences_per_hour=inferences_per_hour)
            options.append((v, est, _check(est, max_latency_ms, max_power_w, max_price)))
        good = [(v, e) for v, e, bad in options if not bad and e.fits is not None]
        unsure = [(v, e) for v, e, bad in options if not bad and e.fits is None]
        if good or unsure:
            v, est = _pick(good or unsure)
            head = [] if good else [_unknown_fit(est)]
            recs.append(Recommendation(dev.name, dev.title or dev.name, bool(good), v.name, est,
                                       head + _merits(est, max_latency_ms)
                                       + [f"missing {m.split(' (')[0]}" for m in dict.fromkeys(est.missing)
                                          if not m.startswith(("sleep power", "idle power", "wake-up"))],
                                       _accuracy(v), "yes" if good else "unknown"))
        else:
            v, est, bad = min(options, key=lambda o: len(o[2]))
            recs.append(Recommendation(dev.name, dev.title or dev.name, False, None, est,
                                       [f"{v.name}: {b}" for b in bad], None))
    return sorted(recs, key=_sort_key)


def measured_host_latency(metrics: dict) -> float | None:
    """p50 latency (ms) a run measured on this machine (metrics.latency_ms.p50_ms), if there is one."""
    lat = (metrics.get("latency_ms") or {}).get("p50_ms")
    return float(lat) if isinstance(lat, (int, float)) else None


def _accuracy(v: Variant) -> float | None:
    """The run's quality measure, higher is better: accuracy, else -MAE (as core.types.Variant.quality)."""
    acc, mae = v.metrics.get("accuracy"), v.metrics.get("mae")
    if isinstance(acc, (int, float)):
        return float(acc)
    return -float(mae) if isinstance(mae, (int, float)) else None
