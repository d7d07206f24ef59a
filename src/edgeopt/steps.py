"""The recipe-step interface: a technique is a small pass with a typed config.

A recipe is an ordered list of steps, e.g. ``prune,cluster,qat,int8``. Steps of kind
"keras" take a Keras model and return a Keras model (training-time techniques); at most one
step of kind "convert" ends the recipe and turns the Keras model into a deployable artifact
(if a recipe has none, ``float32`` is appended, or ``int8`` after ``qat``). Steps transform; they never measure the
artifact: the run measures every variant the same way afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol


@dataclass
class StepContext:
    dataset: Any  # edgeopt.data.Dataset
    work_dir: Path  # a private scratch folder for this variant (artifacts are written here)
    options: dict[str, Any] = field(default_factory=dict)  # user options (e.g. max_accuracy_drop)
    # evaluate(artifact_path) -> accuracy on the eval split (a fraction in [0, 1]), measured in LiteRT
    evaluate: Callable[[Path], float] | None = None
    # float32 accuracy of the baseline artifact, for steps that respect an accuracy budget
    baseline_accuracy: float | None = None
    log: Callable[[str], None] = print
    seed: int = 0


@dataclass
class StepResult:
    model: Any = None  # a keras.Model for "keras" steps
    artifact: Path | None = None  # the deployable file for "convert" steps
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the variant (JSON-able)
    # per-tensor quantization error rows: {"tensor": str, "op": str, "snr_db": float, "cosine": float}
    quant_errors: list[dict[str, Any]] = field(default_factory=list)


class Step(Protocol):
    name: str
    kind: Literal["keras", "convert"]

    def run(self, ctx: StepContext, model: Any) -> StepResult: ...


_REGISTRY: dict[str, Callable[[], Step]] = {}
_ALIASES: dict[str, list[str]] = {}  # a recipe name that expands to several recipes


def register(name: str):
    def deco(factory):
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
