"""The search space: which techniques, in which order, with which parameter ranges.

A space is an ordered list of slots; each slot picks one of its step choices (or none when it
is optional), and each chosen step suggests its tunable parameters. The slot order is the
chain order (shrink before sparsify before quantize), so every sampled chain is a valid recipe.
Parameter names in the Optuna study are ``<slot>`` for the choice and ``<step>.<field>`` for a
field, so a trial's params read as a recipe.

The ranges use the same vocabulary as the typed step configs' ``search`` ranges
(``{"low", "high", "log"}`` or ``{"choices"}``): :meth:`Param.from_range` adapts one, and
:meth:`StepChoice.from_config` a whole config class.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from edgeopt.errors import UserError

NONE = "none"  # the choice of an optional slot that adds no step


@dataclass(frozen=True)
class Param:
    """One tunable field: a float or int range (optionally log-scaled) or a list of choices."""

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    default: Any = None

    def __post_init__(self):
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"parameter {self.name}: a categorical parameter needs choices")
        elif self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError(f"parameter {self.name}: needs low <= high (got {self.low}, {self.high})")
        elif self.log and self.low <= 0:
            raise ValueError(f"parameter {self.name}: a log range needs low > 0 (got {self.low})")

    @classmethod
    def from_range(cls, name: str, search: dict, *, integer: bool = False, default: Any = None) -> "Param":
        """From a step config's search range: ``{"low", "high", "log"?}`` or ``{"choices"}``."""
        if "choices" in search:
            return cls(name, "categorical", choices=tuple(search["choices"]), default=default)
        return cls(name, "int" if integer else "float", low=search["low"], high=search["high"],
                   log=bool(search.get("log", False)), default=default)

    def suggest(self, trial, key: str) -> Any:
        """Ask an Optuna trial for a value under ``key``."""
        if self.kind == "categorical":
            return trial.suggest_categorical(key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
        if self.default is not None:
            out["default"] = self.default
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Param":
        d = dict(d)
        if "choices" in d:
            d["choices"] = tuple(d["choices"])
        return cls(**d)


@dataclass(frozen=True)
class StepChoice:
    """One step a slot may pick: its tunable params, its fixed config values, and the choices
    it forces on later slots (QAT closes with int8: ``then={"precision": "int8"}``)."""

    step: str
    params: tuple[Param, ...] = ()
    fixed: dict = field(default_factory=dict)
    then: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config_cls, fields: list[str] | None = None, **kw) -> "StepChoice":
        """From a typed step config class with ``search_space()`` (field -> search range)."""
        ranges = config_cls.search_space()
        params = []
        for name in fields if fields is not None else list(ranges):
            info = config_cls.model_fields[name]
            integer = info.annotation is int or info.annotation == "int"
            params.append(Param.from_range(name, ranges[name], integer=integer, default=info.default))
        return cls(config_cls.step, tuple(params), **kw)

    def to_dict(self) -> dict:
        return {"step": self.step, "params": [p.to_dict() for p in self.params],
                "fixed": dict(self.fixed), "then": dict(self.then)}

    @classmethod
    def from_dict(cls, d: dict) -> "StepChoice":
        return cls(d["step"], tuple(Param.from_dict(p) for p in d.get("params", [])),
                   dict(d.get("fixed", {})), dict(d.get("then", {})))


@dataclass(frozen=True)
class Slot:
    """A position in the chain; picks one choice, or adds no step when optional."""

    name: str
    choices: tuple[StepChoice, ...]
    optional: bool = True

    def names(self) -> list[str]:
        return ([NONE] if self.optional else []) + [c.step for c in self.choices]

    def get(self, step: str) -> StepChoice:
        return next(c for c in self.choices if c.step == step)


@dataclass(frozen=True)
class StepSpec:
    """One step of a sampled chain: its name and the config values chosen for it."""

    step: str
    config: dict

    def to_record(self) -> dict:
        return {"step": self.step, "config": dict(self.config)}


@dataclass(frozen=True)
class SearchSpace:
    slots: tuple[Slot, ...]

    def __post_init__(self):
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"slot names must be unique: {names}")
        for i, slot in enumerate(self.slots):
            later = {s.name: s for s in self.slots[i + 1:]}
            for choice in slot.choices:
                for target, step in choice.then.items():
                    if target not in later or step not in later[target].names():
                        raise ValueError(f"{choice.step}: 'then' names {target}={step}, which is not "
                                         f"a later slot's choice")

    def sample(self, trial) -> list[StepSpec]:
        """Suggest a chain on an Optuna trial (conditional: only chosen steps suggest fields)."""
        forced: dict[str, str] = {}
        chain = []
        for slot in self.slots:
            if slot.name in forced:
                name = forced[slot.name]
                trial.set_user_attr(f"forced.{slot.name}", name)
            else:
                names = slot.names()
                name = names[0] if len(names) == 1 else trial.suggest_categorical(slot.name, names)
            if name == NONE:
                continue
            choice = slot.get(name)
            config = dict(choice.fixed)
            for p in choice.params:
                config[p.name] = p.suggest(trial, f"{choice.step}.{p.name}")
            forced.update(choice.then)
            chain.append(StepSpec(choice.step, config))
        return chain

    def without(self, steps) -> "SearchSpace":
        """This space less the choices named in ``steps`` (and any choice that forces one of them,
        e.g. qat, which closes with int8). Raises UserError when a slot that must pick a step is
        left with none."""
        drop = set(steps)
        slots = []
        for slot in self.slots:
            kept = tuple(c for c in slot.choices if c.step not in drop and not drop & set(c.then.values()))
            if not kept and not slot.optional:
                raise UserError(f"no {slot.name} step is left to search (left out: {', '.join(sorted(drop))})")
            if kept:
                slots.append(Slot(slot.name, kept, slot.optional))
        return SearchSpace(tuple(slots))

    def size(self) -> float:
        """Number of distinct points (chains with their field values); ``math.inf`` when a float
        field makes the space continuous."""
        def count(i: int, forced: dict) -> float:
            if i == len(self.slots):
                return 1
            slot = self.slots[i]
            total = 0.0
            for name in [forced[slot.name]] if slot.name in forced else slot.names():
                if name == NONE:
                    total += count(i + 1, forced)
                    continue
                choice = slot.get(name)
                n = 1.0
                for p in choice.params:
                    n *= (len(p.choices) if p.kind == "categorical" else
                          int(p.high) - int(p.low) + 1 if p.kind == "int" else math.inf)
                total += n * count(i + 1, {**forced, **choice.then})
            return total
        return count(0, {})

    def params_for(self, recipe: dict[str, dict | None]) -> dict[str, Any]:
        """Optuna params for a fixed recipe (for ``enqueue_trial``): ``{step: {field: value}}``;
        slots not named pick none; unnamed fields take their default (or the range middle)."""
        params: dict[str, Any] = {}
        forced: dict[str, str] = {}
        left = dict(recipe)
        for slot in self.slots:
            name = next((c.step for c in slot.choices if c.step in left), NONE)
            if name == NONE and not slot.optional and slot.name not in forced:
                raise UserError(f"recipe {list(recipe)} names no step for slot {slot.name} "
                                f"({', '.join(slot.names())})")
            if slot.name in forced:
                if name not in (NONE, forced[slot.name]):
                    raise UserError(f"recipe {list(recipe)}: slot {slot.name} is {forced[slot.name]} here")
                name = forced[slot.name]
            elif len(slot.names()) > 1:
                params[slot.name] = name
            if name == NONE:
                continue
            choice = slot.get(name)
            given = left.pop(name, None) or {}
            unknown = set(given) - {p.name for p in choice.params}
            if unknown:
                raise UserError(f"{name}: {sorted(unknown)} are not searched fields "
                                f"({', '.join(p.name for p in choice.params) or 'none'})")
            for p in choice.params:
                params[f"{name}.{p.name}"] = given.get(p.name, _default_value(p))
            forced.update(choice.then)
        if left:
            raise UserError(f"steps {sorted(left)} are not in this search space or not in its order "
                            f"({' -> '.join(s.name for s in self.slots)})")
        return params

    def to_dict(self) -> dict:
        return {"slots": [{"name": s.name, "optional": s.optional,
                           "choices": [c.to_dict() for c in s.choices]} for s in self.slots]}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(tuple(Slot(s["name"], tuple(StepChoice.from_dict(c) for c in s["choices"]),
                              bool(s.get("optional", True))) for s in d["slots"]))


def _default_value(p: Param):
    if p.default is not None:
        return p.default
    if p.kind == "categorical":
        return p.choices[0]
    if p.log:
        mid = (p.low * p.high) ** 0.5
    else:
        mid = (p.low + p.high) / 2
    return int(round(mid)) if p.kind == "int" else mid


def recipe_name(chain: list[StepSpec]) -> str:
    """``prune-structured+int8``: the step names joined as in run.json variant names."""
    return "+".join(s.step for s in chain) or "float32"


def describe(chain: list[StepSpec]) -> str:
    """``prune-structured(ratio=0.5)+int8(calibration=minmax)``: the chain with its values."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return "+".join(s.step + (f"({', '.join(f'{k}={fmt(v)}' for k, v in s.config.items())})"
                              if s.config else "") for s in chain) or "float32"


def default_space(max_accuracy_drop: float = 1.0, *, training: bool = True) -> SearchSpace:
    """The space over today's steps, built from the typed step configs' search ranges (the one
    place ranges are written), in chain order:
    distill (width) -> prune-structured (ratio) -> prune (sparsity, scope) -> cluster (clusters)
    -> qat -> int8 | float16 | dynamic | mixed (calibration for int8 and mixed).

    ``mixed`` keeps ops float within the search's own accuracy budget (``max_accuracy_drop``
    points). ``training=False`` keeps the post-training steps only, the conversions (int8, float16,
    dynamic, mixed): no step that trains or fine-tunes, structured pruning included (a quick
    search, e.g. the demo)."""
    from edgeopt.techniques import configs as c

    mixed = StepChoice.from_config(c.Mixed, ["calibration"], fixed={"max_accuracy_drop": float(max_accuracy_drop)})
    precision = Slot("precision", (StepChoice.from_config(c.Int8, ["calibration"]), StepChoice("float16"),
                                   StepChoice("dynamic"), mixed), optional=False)
    if not training:  # prune-structured is a training-time step (README): without fine-tuning it is left out
        return SearchSpace((precision,))
    return SearchSpace((
        # compare_baseline would train the student a second time without the teacher (a report, not
        # the variant): twice the cost, and its epochs would reach the pruner as the trial's curve
        Slot("distill", (StepChoice.from_config(c.Distill, ["width"], fixed={"compare_baseline": False}),)),
        Slot("structure", (StepChoice.from_config(c.PruneStructured, ["ratio"]),)),
        Slot("sparsify", (StepChoice.from_config(c.Prune, ["sparsity", "scope"]),)),
        Slot("cluster", (StepChoice.from_config(c.Cluster, ["clusters"]),)),
        Slot("training", (StepChoice("qat", then={"precision": "int8"}),)),
        precision,
    ))


# Known good recipes, tried first (Optuna ``enqueue_trial``): plain int8 (the cheapest trial and
# the reference the others are read against), mixed precision, and structured pruning at half the
# channels followed by int8 (2.75x faster, 3.5x smaller on a small CNN here: shared/MEASURED.md).
SEED_RECIPES: list[dict[str, dict]] = [
    {"int8": {}},
    {"mixed": {}},
    {"prune-structured": {"ratio": 0.5}, "int8": {}},
]

# Known good recipes per objective (``accuracy``, maximized by every search, or a metric name), the
# cheapest first where two reach the same figure.
# accuracy: quantization-aware training (Jacob et al. 2018, "Quantization and Training of Integer-Arithmetic-
#   Only Inference"): one more fine-tune of the whole model with int8 fake-quantized, so the int8 model
#   keeps (or, with a baseline trained briefly, gains) float32 accuracy; benchmarks/search.py measured it
#   as the most accurate of the cheap fine-tuning recipes on the Fashion-MNIST CNN (BENCHMARKS.md, Search).
#   Without fine-tuning (a post-training space), mixed precision: the most accurate post-training seed
#   there (0.897 vs int8 0.896, in 23 s).
# gzip_bytes: Deep Compression (Han et al. 2016, "Deep Compression: Compressing Deep Neural Networks
#   with Pruning, Trained Quantization and Huffman Coding"): magnitude pruning to high sparsity, weight
#   sharing (clustering) to a few centroids, 8-bit storage; gzip stands in for the entropy coder. One
#   global magnitude threshold, so that the small first convolutions keep their few weights and the
#   large dense layer takes the sparsity (global beat layer-wise magnitude pruning in Blalock et al.
#   2020, "What is the State of Neural Network Pruning?").
# latency_ms / size_bytes: fewer channels make a model both faster and smaller, unstructured zeros make
#   it neither: structured pruning and a narrower distilled student (Hinton et al. 2015). Structured
#   pruning at half the channels comes first: it reached the student's speed-up (8.0x) in half its time
#   (59 s vs 117 s, BENCHMARKS.md, Search). The student is seeded with int8 and with float16, because
#   which precision runs fastest depends on the CPU and the runtime (shared/MEASURED.md): the search
#   measures both, and the second costs only a conversion since the fine-tuned student comes from the
#   prefix cache.
OBJECTIVE_SEEDS: dict[str, list[dict[str, dict]]] = {
    "accuracy": [
        {"qat": {}, "int8": {}},
        {"mixed": {}},
    ],
    "gzip_bytes": [
        {"prune": {"sparsity": 0.93, "scope": "global"}, "cluster": {"clusters": 16}, "int8": {}},
        {"prune": {"sparsity": 0.95, "scope": "global"}, "cluster": {"clusters": 8}, "int8": {}},
    ],
    "latency_ms": [
        {"prune-structured": {"ratio": 0.5}, "int8": {}},
        {"distill": {"width": 0.5}, "int8": {}},
        {"distill": {"width": 0.5}, "float16": {}},
        {"distill": {"width": 0.35}, "int8": {}},
    ],
    "size_bytes": [
        {"prune-structured": {"ratio": 0.5}, "int8": {}},
        {"distill": {"width": 0.5}, "int8": {}},
        {"distill": {"width": 0.35}, "int8": {}},
    ],
}
ACCURACY = "accuracy"  # the objective every search maximizes, next to its metric objectives


def seed_recipes(space: SearchSpace, objectives: Sequence[str] = ()) -> list[dict[str, dict]]:
    """The recipes a search tries first, in order: plain int8; then the objectives' known good
    recipes (``OBJECTIVE_SEEDS``) in rounds, one from each objective per round, accuracy included,
    so that every objective the study optimizes gets an early trial; within a round the shorter
    chains (fewer fine-tuning steps, so cheaper) first; then the rest of ``SEED_RECIPES``.
    Duplicates and recipes outside ``space`` (e.g. fine-tuning steps in a post-training space) are
    left out before the rounds are formed, so a dropped recipe does not leave its objective out.

    objectives: metric names (``gzip_bytes``, ``latency_ms``, ``size_bytes``, ``energy_mj``);
    ``accuracy`` is added first when missing (every search maximizes it)."""
    return [r for rnd in _seed_rounds(space, objectives) for r in rnd]


def first_round(space: SearchSpace, objectives: Sequence[str] = ()) -> int:
    """How many of ``seed_recipes(space, objectives)`` come before the second round: plain int8 and
    the first seed of each objective (accuracy included): the seeds a search always runs."""
    rounds = _seed_rounds(space, objectives)
    return sum(len(r) for r in rounds[:2])


def _seed_rounds(space: SearchSpace, objectives: Sequence[str]) -> list[list[dict[str, dict]]]:
    """[[plain int8], first round, second round, ..., [the rest of SEED_RECIPES]], each recipe
    once (where it first appears) and only recipes that fit ``space``."""
    names = [ACCURACY] + [o for o in objectives if o != ACCURACY]
    lists = [[r for r in OBJECTIVE_SEEDS.get(o, []) if _fits(space, r)] for o in names]
    rounds = [[SEED_RECIPES[0]]]
    rounds += [sorted((lst[i] for lst in lists if i < len(lst)), key=len)  # stable: objective order
               for i in range(max(map(len, lists), default=0))]
    rounds.append(SEED_RECIPES[1:])
    seen: list[dict] = []
    out = []
    for rnd in rounds:
        kept = [r for r in rnd if _fits(space, r) and r not in seen]
        kept = [r for i, r in enumerate(kept) if r not in kept[:i]]
        seen += kept
        out.append(kept)
    return out


def _fits(space: SearchSpace, recipe: dict) -> bool:
    try:
        space.params_for(recipe)
        return True
    except UserError:
        return False
