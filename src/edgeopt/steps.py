"""The recipe-step interface: a technique is a small pass with a typed config.

A recipe is an ordered list of steps, e.g. ``prune,cluster,qat,int8``. Steps of kind
"keras" take a Keras model and return a Keras model (training-time techniques); at most one
step of kind "convert" ends the recipe and turns the Keras model into a deployable artifact.
A step declares what the runner needs to know about it, so the runner has no
technique-specific branches:

- ``config``: its pydantic config class (``edgeopt.techniques.configs``);
- ``closing``: for training steps, the conversion a recipe that ends with it needs (``qat``
  declares ``int8``; a chain without a conversion ends with the last declared one, else float32);
- ``produces``: for conversion steps, the artifact's ``precision`` and ``format``.

Steps transform; they never measure the artifact themselves. When a step has to score
candidates (mixed precision, latency targets) it asks the oracles in its ``StepContext``
(``evaluate``, ``select``, ``latency_ms``, ``paired_latency_us``, ``predict``), never a runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Protocol


@dataclass
class StepContext:
    dataset: Any  # edgeopt.data.Dataset
    work_dir: Path  # a private scratch folder for this variant (artifacts are written here)
    # the step's options: its validated config as a dict (the runner sets it), or plain
    # key/values when a step is called directly (validated by ``step_config``)
    options: dict[str, Any] = field(default_factory=dict)
    # evaluate(artifact_path) -> quality on the eval split (accuracy in [0, 1], or -MAE)
    evaluate: Callable[[Path], float] | None = None
    # select(artifact_path) -> the same quality on the validation split: what steps choose among
    # candidates with (never the eval split they report on)
    select: Callable[[Path], float] | None = None
    # float32 accuracy of the baseline artifact, for steps that respect an accuracy budget
    baseline_accuracy: float | None = None
    log: Callable[[str], None] = print
    seed: int = 0
    config: Any = None  # the step's typed config (a techniques.configs.StepConfig), set by the runner
    # latency_ms(artifact_path, x1) -> median batch-1 latency in ms on input x1 (1, ...), 1 thread
    latency_ms: Callable[[Path, Any], float] | None = None
    # paired_latency_us(path_a, path_b, x1) -> (median us of a, median us of b), measured alternately
    paired_latency_us: Callable[[Path, Path, Any], tuple[float, float]] | None = None
    # facts earlier steps of the chain handed on (StepResult.hints), e.g. try_sparse_encoding
    hints: dict[str, Any] = field(default_factory=dict)
    # predict(artifact_path, x) -> the artifact's outputs on inputs x (n, ...), run in its format's
    # runtime: how a technique compares candidate files with a reference (never a runtime itself)
    predict: Callable[[Path, Any], Any] | None = None
    # on_epoch(epoch, val_accuracy) after every fine-tuning epoch (the search's pruner; it may raise
    # to stop the step); epochs count up across the steps of one chain
    on_epoch: Callable[[int, float], None] | None = None

    def __post_init__(self):
        oracles = ("evaluate", "latency_ms", "paired_latency_us", "predict")
        if any(getattr(self, name) is None for name in oracles):
            defaults = default_oracles(self.dataset)
            for name in oracles:
                setattr(self, name, getattr(self, name) or defaults[name])
        y_val = getattr(self.dataset, "y_val", None)
        if self.select is None and y_val is not None and len(y_val) > 0:
            from edgeopt.engine import oracles
            self.select = oracles.accuracy_oracle(self.dataset, split="val")


def default_oracles(dataset=None) -> dict[str, Callable | None]:
    """The engine's oracles (measured in the runtime of the artifact's format), for contexts
    built without them (direct calls of a step)."""
    from edgeopt.engine import oracles

    return {"evaluate": oracles.accuracy_oracle(dataset), "latency_ms": oracles.latency_ms,
            "paired_latency_us": oracles.paired_latency_us, "predict": oracles.predict}


def int8_settings_chooser() -> Callable:
    """The engine's measured choice of ONNX Runtime / OpenVINO int8 settings
    (``engine.int8_settings.choose_int8_settings``), an oracle for steps whose config asks for
    settings chosen by measurement (techniques do not import the engine themselves)."""
    from edgeopt.engine.int8_settings import choose_int8_settings

    return choose_int8_settings


@dataclass
class StepResult:
    model: Any = None  # a keras.Model for "keras" steps
    artifact: Path | None = None  # the deployable file for "convert" steps
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the variant (JSON-able)
    # per-tensor quantization error rows: {"tensor": str, "op": str, "snr_db": float, "cosine": float}
    quant_errors: list[dict[str, Any]] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)  # facts for later steps (StepContext.hints)


class Step(Protocol):
    name: str
    kind: Literal["keras", "convert"]
    config: ClassVar[type]  # a techniques.configs.StepConfig subclass
    closing: ClassVar[str | None]  # keras steps: the conversion a chain ending with it needs
    produces: ClassVar[dict[str, str]]  # convert steps: {"precision": ..., "format": ...}
    inputs: ClassVar[tuple[str, ...]]  # model formats it takes: "keras" (default), "onnx", "tflite"

    def run(self, ctx: StepContext, model: Any) -> StepResult: ...


def step_config(ctx: StepContext, cls):
    """The typed config of a step: ``ctx.config`` when the runner set it, else one validated from
    ``ctx.options`` (keys of other steps ignored; ``{step: {...}}`` sub-dicts applied).
    Raises UserError for a bad value."""
    if isinstance(ctx.config, cls):
        return ctx.config
    from edgeopt.recipes import make_config

    opts = dict(ctx.options or {})
    scoped = opts.get(cls.step)
    if isinstance(scoped, dict):
        opts.update(scoped)
    return make_config(cls, {k: v for k, v in opts.items() if k in cls.model_fields})


_REGISTRY: dict[str, Callable[[], Step]] = {}
_ALIASES: dict[str, list[str]] = {}  # a recipe name that expands to several recipes


def register(name: str):
    def deco(factory):
        from edgeopt.techniques.configs import CONFIGS

        own = vars(factory)  # declared on the class itself, not inherited from another step
        factory.config = own.get("config") or CONFIGS[name]
        factory.closing = own.get("closing")
        factory.produces = own.get("produces") or {}
        factory.inputs = tuple(getattr(factory, "inputs", None) or ("keras",))  # inherited is fine
        factory.one_input = bool(getattr(factory, "one_input", False))  # calibrates/measures on one array
        _REGISTRY[name] = factory
        return factory
    return deco


def register_alias(name: str, recipes: list[str]) -> None:
    _ALIASES[name] = recipes


# Modules that register steps when imported. A new technique adds its module here.
STEP_MODULES = [
    "edgeopt.techniques.convert",  # float32 baseline
    "edgeopt.techniques.ptq",  # dynamic, int8, float16, int16x8, int4-weights, mixed (alias ptq)
    "edgeopt.techniques.prune",  # prune
    "edgeopt.techniques.structured",  # prune-structured
    "edgeopt.techniques.cluster",  # cluster
    "edgeopt.techniques.qat",  # qat
    "edgeopt.techniques.distill",  # distill
    "edgeopt.techniques.file_ptq",  # ort-*, onnx-float16, nncf-int8, tflite-* (models given as files)
]


def load_all() -> None:
    import importlib

    for mod in STEP_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside the module
                raise


def get_step(name: str) -> Step:
    load_all()
    if name not in _REGISTRY:
        from edgeopt.errors import UserError
        raise UserError(f"unknown recipe step {name!r}; known steps: {', '.join(sorted(_REGISTRY))}"
                        + (f"; recipes: {', '.join(sorted(_ALIASES))}" if _ALIASES else ""))
    return _REGISTRY[name]()


def expand_recipes(names: list[str]) -> list[list[str]]:
    """Recipe arguments to lists of step names: 'prune,int8' is one chain; an alias such as 'ptq'
    expands to several recipes."""
    load_all()
    out: list[list[str]] = []
    for name in names:
        for part in [name] if "," in name else _ALIASES.get(name, [name]):
            chain = [s.strip() for s in part.split(",") if s.strip()]
            if chain and chain not in out:
                out.append(chain)
    return out


# A model that arrives as a file: what the usual step names and aliases mean for it.
FORMAT_STEPS: dict[str, dict[str, list[str]]] = {
    "onnx": {"ptq": ["ort-int8", "ort-dynamic", "onnx-float16", "nncf-int8"], "int8": ["ort-int8"],
             "dynamic": ["ort-dynamic"], "float16": ["onnx-float16"]},
    "tflite": {"ptq": ["tflite-dynamic", "tflite-int8", "tflite-float16", "tflite-int16x8", "tflite-int4",
                       "tflite-mixed"],
               "dynamic": ["tflite-dynamic"], "int8": ["tflite-int8"], "float16": ["tflite-float16"],
               "int16x8": ["tflite-int16x8"], "int4-weights": ["tflite-int4"], "mixed": ["tflite-mixed"]},
}
FORMAT_NAMES = {"keras": "a Keras", "onnx": "an ONNX", "tflite": "a float .tflite"}


def model_format(path) -> str:
    """"onnx", "tflite" or "keras" from a model path's suffix (nothing is loaded)."""
    suffix = Path(str(path)).suffix.lower()
    return {".onnx": "onnx", ".tflite": "tflite"}.get(suffix, "keras")


def for_format(recipes: list, fmt: str) -> list:
    """Recipe strings rewritten for a model format: on an .onnx, ``ptq`` is the four ONNX steps and
    ``int8`` is ``ort-int8``; on a .tflite ``int8`` is ``tflite-int8``. Configs and other recipe forms
    pass unchanged (their steps are checked by :func:`check_format`)."""
    names = FORMAT_STEPS.get(fmt)
    if not names:
        return list(recipes)
    out: list = []
    for item in recipes:
        if not isinstance(item, str):
            out.append(item)
        elif "," not in item and item.strip() in names:
            out += names[item.strip()]
        else:
            out.append(",".join(names.get(s.strip(), [s.strip()])[0] for s in item.split(",")))
    return out


def check_format(chains, fmt: str, filename: str) -> None:
    """UserError (one line) for the first step of ``chains`` that cannot take a ``fmt`` model."""
    load_all()
    for chain in chains:
        for cfg in chain.steps:
            takes = _REGISTRY[cfg.step].inputs
            if fmt in takes:
                continue
            from edgeopt.errors import UserError

            usable = sorted(n for n, f in _REGISTRY.items() if fmt in f.inputs)
            what = " or ".join(FORMAT_NAMES[t] for t in takes)
            raise UserError(f"step {cfg.step} needs {what} model; {filename} is {FORMAT_NAMES[fmt]} model: use "
                            f"{', '.join(usable)} (-r ptq runs them all), or give the Keras model to {cfg.step}")


def for_inputs(recipes: list, fmt: str, n_inputs: int) -> tuple[list, list[str]]:
    """(recipes, dropped steps): for a model with ``n_inputs`` > 1 the ``ptq`` alias (of ``fmt``)
    leaves out the steps that take one input only. Other recipes pass unchanged
    (:func:`check_inputs` refuses them)."""
    if n_inputs <= 1:
        return list(recipes), []
    load_all()
    alias = FORMAT_STEPS.get(fmt, {}).get("ptq") or _ALIASES["ptq"]
    one = [r for r in alias if any(getattr(_REGISTRY.get(s.strip()), "one_input", False) for s in r.split(","))]
    out: list = []
    dropped: list[str] = []
    for item in recipes:
        if isinstance(item, str) and item.strip() == "ptq":
            out += [r for r in alias if r not in one]
            dropped += [r for r in one if r not in dropped]
        else:
            out.append(item)
    return out, dropped


def check_inputs(chains, n_inputs: int, filename: str, fmt: str = "keras") -> None:
    """UserError (one line) when ``chains`` hold a step that takes one input only and the model
    ``filename`` (a ``fmt`` model) has ``n_inputs`` > 1."""
    if n_inputs <= 1:
        return
    load_all()
    bad = sorted({cfg.step for chain in chains for cfg in chain.steps if _REGISTRY[cfg.step].one_input})
    if bad:
        from edgeopt.errors import UserError

        many = len(bad) > 1
        raise UserError(f"step{'s' if many else ''} {', '.join(bad)} take{'' if many else 's'} a model with "
                        f"one input; {filename} has {n_inputs}: leave {'them' if many else 'it'} out "
                        f"(-r ptq runs the steps that work)"
                        f"{'' if fmt == 'keras' else ', or optimize the Keras model'}")
