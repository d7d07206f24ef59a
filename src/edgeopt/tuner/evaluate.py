"""The engine-backed objective: build a trial's chain with the engine, check it on the device,
measure the artifact the way ``optimize`` does.

``make_evaluate(settings)`` returns ``evaluate(spec) -> TrialOutcome`` for the search
(``run_search`` / ``run_worker``). ``settings`` is JSON-able (it is stored in the study so that a
remote worker rebuilds the same objective)::

    {"model": "/abs/model.keras", "data": "digits", "data_kwargs": {}, "run_dir": "/abs/runs/x",
     "threads": 1, "runs": 50, "unsafe": false}

Per trial: the spec's steps become typed configs (``config_class(step)(**config)``), the chain
runs in ``ChainRunner`` with the run directory's prefix cache (a trial whose fine-tuned prefix an
earlier trial or an ``optimize`` run already trained loads it), every fine-tuning epoch's
validation accuracy goes to ``spec.report`` (the pruner may stop it), ``spec.check_artifact``
runs right after conversion, then the artifact is measured in its runtime on this machine
(accuracy, sizes, host latency) and, for a target other than this machine, the device estimator
adds latency and energy (provenance ``estimated``) and its blockers as violations.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from edgeopt.errors import UserError
from edgeopt.tuner.types import Metric, TrialOutcome, TrialSpec, Violation

HOST = "host-cpu"  # edgeopt.hardware.catalogue.HOST_NAME (not imported: the catalogue reads YAML)

# user-facing objective names -> the metric each reads from a TrialOutcome
OBJECTIVES = {"latency": "latency_ms", "size": "size_bytes", "gzip": "gzip_bytes", "energy": "energy_mj"}


def objective_metric(name: str) -> str:
    """``latency`` -> ``latency_ms`` (metric names pass through). UserError for an unknown name."""
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if name in OBJECTIVES.values():
        return name
    raise UserError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")


class Evaluator:
    """``evaluate(spec)`` for one model and dataset; loads them once.

    model / dataset: an already loaded LoadedModel / Dataset (else loaded from ``settings``).
    devices: target name -> hardware Device (else read from the catalogue when first needed).
    """

    def __init__(self, settings: dict, *, model=None, dataset=None, log: Callable[[str], None] | None = None):
        from edgeopt import api
        from edgeopt.engine import runner as enginerun
        from edgeopt.engine import store
        from edgeopt.engine.oracles import accuracy_oracle
        from edgeopt.model_io import load_keras
        from edgeopt.steps import StepContext

        self.settings = dict(settings)
        self.threads = int(settings.get("threads", 1))
        self.runs = int(settings.get("runs", 50))
        self.run_dir = Path(settings["run_dir"])
        self.log = log or (lambda msg: None)
        if model is None or dataset is None:
            model, dataset, _ = api.prepare(settings["model"], settings["data"], unsafe=bool(settings.get("unsafe")),
                                            **(settings.get("data_kwargs") or {}))
        if model.kind != "keras":
            raise UserError(f"search needs a Keras model; {model.path.name} is a .{model.kind} file")
        self.model, self.dataset = model, dataset
        unsafe = bool(settings.get("unsafe"))
        self.base_ctx = StepContext(dataset=dataset, work_dir=self.run_dir, log=self.log,
                                    evaluate=accuracy_oracle(dataset, self.threads),
                                    baseline_accuracy=settings.get("baseline_accuracy"))
        root = enginerun.chain_key(store.file_digest(model.path),
                                   {"data": dataset.fingerprint(), "seed": self.base_ctx.seed})
        self._runner_args = (self.run_dir / store.CACHE_DIR, lambda p: load_keras(p or model.path, unsafe=unsafe), root)
        self._devices: dict[str, Any] = {}
        self._baseline_profile = None

    # -- the objective
    def __call__(self, spec: TrialSpec) -> TrialOutcome:
        from edgeopt.recipes import Chain
        from edgeopt.techniques.configs import config_class

        configs = []
        for s in spec.steps:
            cls = config_class(s.step)
            if cls is None:
                raise UserError(f"step {s.step!r} has no config class; it cannot be searched")
            configs.append(cls(**s.config))
        runner = self.runner(replace(self.base_ctx, on_epoch=_counting(spec.report)))
        result = runner.run(Chain(spec.recipe, configs), Path(spec.work_dir))
        spec.check_artifact(result.artifact)
        metrics, details = self.measure(result.artifact, spec.target)
        accuracy = details.pop("accuracy")
        violations = [Violation("device", b) for b in details.pop("blockers", [])]
        details["cache_hits"] = result.cache_hits
        return TrialOutcome(accuracy=accuracy, metrics=metrics, violations=violations,
                            artifact=result.artifact, details=details)

    def runner(self, ctx=None):
        """A ChainRunner on the run directory's prefix cache, with ``ctx`` (default the base context)."""
        from edgeopt.engine.runner import ChainRunner

        cache, load, root = self._runner_args
        return ChainRunner(cache, load, ctx or self.base_ctx, root)

    def measure(self, artifact: Path, target: str) -> tuple[dict[str, Metric], dict]:
        """(objective metrics, details) of an artifact for a target: accuracy, size_bytes and
        gzip_bytes measured; latency_ms measured on this machine for the host, else estimated for
        the device with energy_mj; ``details['blockers']`` the device's blockers."""
        from edgeopt.api import _runtime_for
        from edgeopt.measure.bench import bench_artifact

        bench = bench_artifact(artifact, self.dataset, runtime=_runtime_for(artifact), threads=self.threads,
                               runs=self.runs)
        how = bench["how"]
        source = f"{how['runtime']} {how['runtime_version']}, {how['threads']} thread(s), {how['cpu']}"
        quality = bench.get("accuracy", -bench.get("mae", 0.0))
        metrics = {"size_bytes": Metric(float(bench["size_bytes"]), "measured", "B", "file size"),
                   "gzip_bytes": Metric(float(bench["gzip_bytes"]), "measured", "B", "gzip -9 of the file")}
        host_ms = float(bench["latency_ms"]["p50_ms"])
        details: dict[str, Any] = {"accuracy": float(quality), "host_latency_ms": host_ms, "runtime": source}
        if target == HOST:
            metrics["latency_ms"] = Metric(host_ms, "measured", "ms", source)
            return metrics, details
        from edgeopt.tuner.device import DeviceCheck, estimated_metrics

        est = DeviceCheck(self.device(target), None).estimate(Path(artifact))
        if est.latency_ms is None:  # nothing to compare it by: say why instead of failing the trial
            from edgeopt.tuner.types import TrialStopped

            why = "; ".join(est.blockers or est.missing or est.warnings) or "no rate for its precision"
            raise TrialStopped(f"no latency estimate for this {est.precision} model on {target}: {why}", "rejected")
        metrics.update(estimated_metrics(est))
        details["blockers"] = list(est.blockers)
        details["estimate_basis"] = est.basis
        return metrics, details

    def device(self, name: str):
        if name not in self._devices:
            from edgeopt.hardware.catalogue import get_device, load_devices

            self._devices[name] = get_device(name, load_devices())
        return self._devices[name]


def _counting(report: Callable[[int, float], None]) -> Callable[[int, float], None]:
    """``on_epoch`` for a chain: epochs count up across its fine-tuning steps, so a trial's learning
    curve has one point per epoch of the whole chain."""
    seen = [0]

    def on_epoch(epoch: int, accuracy: float) -> None:
        report(seen[0], accuracy)
        seen[0] += 1
    return on_epoch


def make_evaluate(settings: dict, *, model=None, dataset=None,
                  log: Callable[[str], None] | None = None) -> Evaluator:
    """The engine-backed objective for ``run_search`` / ``run_worker`` (see the module docstring).
    Loads the model and data (unless given); raises UserError when they cannot be loaded."""
    return Evaluator(settings, model=model, dataset=dataset, log=log)


def make_precheck(settings: dict, target: str):
    """The device check of a target (None for this machine), from the stored search settings
    (``settings['baseline_graph']``: the float32 model's params and peak activation bytes;
    ``settings['devices_file']``: the user's device YAML, if the search was given one)."""
    if target == HOST:
        return None
    from types import SimpleNamespace

    from edgeopt.hardware.catalogue import get_device, load_devices
    from edgeopt.tuner.device import DeviceCheck

    graph = settings.get("baseline_graph") or {}
    base = SimpleNamespace(total_params=int(graph.get("params") or 0),
                           peak_activation_bytes=int(graph.get("peak_activation_bytes") or 0))
    return DeviceCheck(get_device(target, load_devices(settings.get("devices_file"))), base)
