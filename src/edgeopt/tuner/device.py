"""Device constraints first: reject a candidate before fine-tuning when that can be predicted,
otherwise right after conversion.

``DeviceCheck(device, baseline)`` is the search's ``precheck(spec, target, artifact)`` hook:

* before any fine-tuning (``artifact is None``) it rejects only what is certain: a precision the
  device cannot run (dynamic range on TFLite Micro, float16 on an MCU without FPU, anything but
  full int8 on a full-int8 accelerator), and a model whose smallest possible size already
  exceeds the device's flash or RAM. The bounds are lower bounds from the float32 baseline's
  graph: a width multiplier ``w`` or a structured-prune ratio ``r`` leaves at least
  ``params * w^2 * (1-r)^2`` weights and ``peak_activation * w * (1-r)`` activation bytes (each
  layer keeps at least that share of its input and output channels); sparsity and clustering do
  not shrink a .tflite file. So nothing that could fit is rejected early.
* after conversion it runs the device estimator on the artifact (arena, flash, ops, precision)
  and rejects on its blockers.
"""
from __future__ import annotations

from pathlib import Path

from edgeopt.tuner.types import Metric, TrialSpec

# bytes per weight / activation of each closing step's result (the lower bound: mixed keeps
# some ops float, so it is at least int8)
_WEIGHT_BYTES = {"int8": 1, "mixed": 1, "qat": 1, "dynamic": 1, "float16": 2, "float32": 4}
_ACTIVATION_BYTES = {"int8": 1, "mixed": 1, "qat": 1, "dynamic": 4, "float16": 4, "float32": 4}


def closing_step(spec: TrialSpec) -> str:
    for name in ("qat", "int8", "mixed", "dynamic", "float16"):
        if spec.has(name):
            return "int8" if name == "qat" else name
    return "float32"


class DeviceCheck:
    """precheck hook for one device; ``baseline``: the GraphProfile of the float32 model."""

    def __init__(self, device, baseline):
        self.device = device
        self.baseline = baseline

    def __call__(self, spec: TrialSpec, target: str, artifact: Path | None = None) -> str | None:
        if artifact is None:
            return self.before(spec)
        return self.after(Path(artifact))

    def before(self, spec: TrialSpec) -> str | None:
        reason = self._precision(closing_step(spec))
        return reason or self._size_bounds(spec)

    def unsupported(self, closings=("int8", "mixed", "dynamic", "float16")) -> dict[str, str]:
        """The closing steps this device cannot run, each with the reason: the search leaves them
        out of the target's space (``SearchSpace.without``), so they are never sampled."""
        return {c: r for c in closings if (r := self._precision(c))}

    def _precision(self, closing: str) -> str | None:
        from edgeopt.hardware.catalogue import data_file, has_fpu

        dev = self.device
        tflm = dev.constraints.op_list == "tflm" or (dev.device_class == "mcu" and "tflm" in dev.runtimes)
        not_runnable = data_file("ops.yaml")["op_lists"]["tflm"].get("precisions_not_runnable", {})
        if tflm and closing in not_runnable:  # the same table the estimator's blockers read
            return f"{not_runnable[closing]}; use full int8"
        if closing in ("float16", "float32") and dev.device_class == "mcu" and not has_fpu(dev):
            return f"{closing} model on an MCU without FPU ({dev.core})"
        if dev.constraints.requires_full_int8 and closing in ("float16", "float32", "dynamic"):
            return f"{dev.name} needs a full-int8 model ({closing} is not)"
        return None

    def _size_bounds(self, spec: TrialSpec) -> str | None:
        dev, base = self.device, self.baseline
        keep = (spec.config("distill") or {}).get("width", 1.0)
        keep *= 1.0 - ((spec.config("prune-structured") or {}).get("ratio") or 0.0)
        closing = closing_step(spec)
        flash = base.total_params * keep ** 2 * _WEIGHT_BYTES[closing]
        ram = base.peak_activation_bytes / 4 * keep * _ACTIVATION_BYTES[closing]
        if dev.device_class == "mcu" and dev.flash_kb is not None and flash > dev.flash_kb * 1024:
            return (f"does not fit: at least {flash / 1024:,.0f} KB of weights > "
                    f"{dev.flash_kb:,.0f} KB flash")
        if dev.ram_kb is not None and not dev.bandwidth_is_host_link and ram > dev.ram_kb * 1024:
            return f"does not fit: at least {ram / 1024:,.0f} KB of activations > {dev.ram_kb:,.0f} KB RAM"
        return None

    def after(self, artifact: Path) -> str | None:
        est = self.estimate(artifact)
        return "; ".join(est.blockers) or None

    def estimate(self, artifact: Path):
        from edgeopt.hardware.estimator import estimate
        from edgeopt.measure.graph import profile_path

        return estimate(profile_path(artifact), self.device)


def estimated_metrics(est) -> dict[str, Metric]:
    """latency_ms and energy_mj of a device estimate as objective metrics (provenance estimated,
    unless the estimator says the latency was measured on this machine)."""
    out = {}
    if est.latency_ms is not None:
        measured = "measured" in (est.label or "")
        out["latency_ms"] = Metric(float(est.latency_ms), "measured" if measured else "estimated", "ms",
                                   f"edgeopt estimator for {est.device}" + (" (lower bound)"
                                                                            if est.latency_is_lower_bound else ""))
    if est.energy_mj is not None:
        out["energy_mj"] = Metric(float(est.energy_mj), "estimated", "mJ", f"edgeopt estimator for {est.device}")
    return out
