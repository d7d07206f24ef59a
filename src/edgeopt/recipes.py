"""Recipes as data: chains of typed step configs, checked before any model or data is loaded.

A recipe is a chain of steps. It can be written as

- a string: ``"int8"``, ``"prune,cluster,int8"`` or an alias such as ``"ptq"`` (several chains);
- a list of steps, each a name, a config (``Int8(calibration="percentile")``), a one-key
  mapping ``{"prune": {"sparsity": 0.5}}`` or a step record of run.json
  (``{"step": "prune", "config": {...}}``: a variant's ``steps`` rebuild it exactly);
- a mapping ``{"name": "prune50", "steps": [...]}`` to name the variant;
- a YAML recipe file (``load_recipe_file``) holding ``recipes:`` (a list of the above) and
  optionally ``options:``.

Options (``-o`` on the command line) are scoped (``prune.epochs=5``: the prune step of every
chain) or unscoped (``epochs=5``: every step that has the field; an error when none has it).
Options override the values written in a recipe. Every problem is one ``UserError`` line that
names the valid fields, the range or the order.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from edgeopt.errors import UserError, yaml_error
from edgeopt.techniques.configs import (QAT, Cluster, Distill, Dynamic, Float16, Float32, Int4Weights,
                                        Int8, Int16x8, Mixed, Prune, PruneStructured, StepConfig)

__all__ = ["Chain", "plan", "load_recipe_file", "describe_field", "field_rows", "make_config",
           "RUN_OPTIONS", "catalogue", "Float32", "Dynamic", "Float16", "Int8", "Int16x8", "Int4Weights", "Mixed",
           "Prune", "PruneStructured", "Cluster", "QAT", "Distill", "StepConfig"]

# Options that belong to the run (the budget of the "best within budget" verdict) as well as to
# any step that has a field of that name; they are never an "unknown option".
RUN_OPTIONS = ("max_accuracy_drop", "input_shape")


@dataclass
class Chain:
    """One recipe: a variant name and its steps' configs, in order (conversion last, if any)."""

    name: str
    steps: list[StepConfig] = field(default_factory=list)

    @property
    def step_names(self) -> list[str]:
        return [s.step for s in self.steps]

    def records(self) -> list[dict]:
        return [s.to_record() for s in self.steps]


# ---------------------------------------------------------------- fields: types, defaults, ranges

def _registry() -> dict[str, Any]:
    from edgeopt import steps

    steps.load_all()
    return steps._REGISTRY


def _config_cls(step: str) -> type[StepConfig]:
    from edgeopt.steps import _ALIASES

    reg = _registry()
    if step not in reg:
        raise UserError(f"unknown recipe step {step!r}{_did_you_mean(step, list(reg) + list(_ALIASES))}; "
                        f"known steps: {', '.join(sorted(reg))}"
                        + (f"; recipes: {', '.join(sorted(_ALIASES))}" if _ALIASES else ""))
    return reg[step].config


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    text = text or str(annotation).replace("typing.", "")
    text = re.sub(r"Literal\[(.*)\]", lambda m: " | ".join(a.strip().strip("'") for a in m.group(1).split(",")),
                  text)
    return text.replace("NoneType", "None")


def _range(f) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in f.metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, lo_open = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi, hi_open = m.lt, True
    if lo is None and hi is None:
        return ""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"


def _default(f) -> Any:
    return f.default_factory() if f.default_factory is not None else f.default


def describe_field(cls: type[StepConfig], name: str) -> str:
    """``"float in [0, 1), default 0.75"``: a field's type, range and default in words."""
    f = cls.model_fields[name]
    rng = _range(f)
    return f"{_type_name(f.annotation)}{' in ' + rng if rng else ''}, default {_default(f)!r}"


def field_rows(cls: type[StepConfig]) -> list[dict]:
    """One row per field: name, type, default, range, search range, description."""
    search = cls.search_space()
    return [{"field": n, "type": _type_name(f.annotation), "default": _default(f), "range": _range(f),
             "search": search.get(n), "description": f.description or ""}
            for n, f in cls.model_fields.items()]


def catalogue() -> dict[str, Any]:
    """Every step (kind, summary, fields with type/default/range/search) and every alias."""
    from edgeopt.steps import _ALIASES

    from edgeopt.steps import FORMAT_STEPS

    _registry()  # loads the technique modules, which register the aliases
    out: dict[str, Any] = {"steps": {}, "aliases": dict(_ALIASES),
                           "format_aliases": {f: names.get("ptq", []) for f, names in FORMAT_STEPS.items()}}
    for name, factory in sorted(_registry().items()):
        summary = " ".join((factory.__doc__ or "").strip().split("\n\n")[0].split())
        out["steps"][name] = {"kind": factory.kind, "summary": summary,
                              "closing": factory.closing, "produces": factory.produces,
                              "inputs": list(factory.inputs),
                              "fields": field_rows(factory.config)}
    return out


def _fields(cls: type[StepConfig]) -> str:
    return ", ".join(cls.model_fields) or "none"


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def make_config(step: str | type[StepConfig], values: dict | None = None) -> StepConfig:
    """Validated config of ``step`` from ``values``; a UserError line names what is wrong."""
    from pydantic import ValidationError

    cls = step if isinstance(step, type) else _config_cls(step)
    try:
        return cls(**(values or {}))
    except ValidationError as e:
        raise UserError(_validation_message(cls, e)) from None


def _validation_message(cls: type[StepConfig], e) -> str:
    err = e.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    got = err.get("input")
    if err["type"] == "extra_forbidden":
        return (f"{cls.step} has no field {name!r}{_did_you_mean(name, cls.model_fields)}; its fields: "
                f"{_fields(cls)} (see: edgeopt recipes)")
    if name not in cls.model_fields:
        return f"{cls.step}: {err['msg']}"
    return f"{cls.step}.{name} must be {_expected(cls.model_fields[name], err['type'])} (got {got!r})"


_KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false", "list": "a list of names",
               "dict": "a mapping of name: value", "string": "a string"}


def _expected(f, error_type: str) -> str:
    """What a field accepts, in words: 'in [0, 1)', '> 0', 'one of minmax, percentile', 'a number'."""
    if error_type == "literal_error":
        return "one of " + ", ".join(_literal_words(f.annotation))
    if error_type.startswith(("greater", "less")):
        rng = _range(f)
        lo, hi = rng[1:-1].split(", ")
        if hi == "inf":
            return f"{'>' if rng[0] == '(' else '>='} {lo}"
        if lo == "-inf":
            return f"{'<' if rng[-1] == ')' else '<='} {hi}"
        return f"in {rng}"
    return _KIND_WORDS.get(error_type.split("_")[0], _type_name(f.annotation))


def _literal_words(annotation) -> list[str]:
    """The allowed values of a Literal field, also inside a union with a list of literals
    (``auto | none | a comma-separated list of cle, bias_correction...``)."""
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    words = []
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is list:
            words.append("a comma-separated list of " + ", ".join(_literal_words(typing.get_args(arg)[0])))
        else:
            words.extend(_literal_words(arg))
    return words


# ---------------------------------------------------------------- options

def _split_options(options: dict[str, Any]) -> tuple[dict[str, dict], dict[str, Any]]:
    """(scoped {step: {field: value}}, unscoped {field: value}) from ``prune.epochs``-style keys or
    ``{"prune": {...}}`` dicts."""
    scoped: dict[str, dict] = {}
    unscoped: dict[str, Any] = {}
    reg = _registry()
    for key, value in (options or {}).items():
        key = str(key).replace("-", "_") if "." not in str(key) else str(key)
        if "." in key:
            step, _, name = key.partition(".")
            scoped.setdefault(step, {})[name.replace("-", "_")] = value
        elif key in reg and isinstance(value, dict):
            scoped.setdefault(key, {}).update(value)
        else:
            unscoped[key] = value
    return scoped, unscoped


def _apply_options(chains: list[list[tuple[str, dict]]], options: dict) -> None:
    scoped, unscoped = _split_options(options)
    present = {s for chain in chains for s, _ in chain}
    for step, values in scoped.items():
        cls = _config_cls(step)
        if step not in present:
            raise UserError(f"option {step}.{next(iter(values))}: no recipe has a {step} step "
                            f"(recipes: {', '.join(','.join(s for s, _ in c) for c in chains) or 'none'})")
        for name in values:
            if name not in cls.model_fields:
                raise UserError(f"option {step}.{name}: {step} has no field {name!r}"
                                f"{_did_you_mean(name, cls.model_fields)}; its fields: {_fields(cls)} "
                                f"(see: edgeopt recipes)")
    for name in unscoped:
        if name in RUN_OPTIONS:
            continue
        if not any(name in _config_cls(s).model_fields for s in present):
            having = sorted(s for s, f in ((s, _config_cls(s).model_fields) for s in _registry()) if name in f)
            where = f"; steps with {name}: {', '.join(having)}" if having else ""
            fields = sorted({f for s in present for f in _config_cls(s).model_fields})
            raise UserError(f"option {name!r} matches no field of the steps in the recipes "
                            f"({', '.join(sorted(present)) or 'float32 baseline only'})"
                            f"{_did_you_mean(name, fields)}; their fields: {', '.join(fields) or 'none'}{where}")
    for chain in chains:
        for step, values in chain:
            fields = _config_cls(step).model_fields
            values.update({k: v for k, v in unscoped.items() if k in fields})
            values.update(scoped.get(step, {}))


# ---------------------------------------------------------------- recipes

def _parse_step(item) -> tuple[str, dict]:
    if isinstance(item, StepConfig):
        return item.step, item.model_dump(exclude_unset=True)
    if isinstance(item, type) and issubclass(item, StepConfig):
        return item.step, {}
    if isinstance(item, str):
        return item.strip(), {}
    if isinstance(item, dict) and set(item) == {"step", "config"}:  # a step record of run.json
        return str(item["step"]), dict(item["config"] or {})
    if isinstance(item, dict) and len(item) == 1:
        (step, values), = item.items()
        if values is not None and not isinstance(values, dict):
            raise UserError(f"recipe step {step!r}: its config must be a mapping of fields, got {values!r}")
        return str(step), dict(values or {})
    raise UserError(f"a recipe step is a name, a config or a one-key mapping name: {{fields}}; got {item!r}")


def _parse_recipe(item) -> list[tuple[str | None, list[tuple[str, dict]]]]:
    """One recipe argument -> [(variant name or None, [(step, values)])] (aliases give several)."""
    from edgeopt.steps import _ALIASES, load_all

    load_all()  # the technique modules register the aliases (ptq)
    if isinstance(item, str):
        if "," not in item and item.strip() in _ALIASES:
            return [(None, [(s, {}) for s in part.split(",")]) for part in _ALIASES[item.strip()]]
        return [(None, [_parse_step(s) for s in item.split(",") if s.strip()])]
    if isinstance(item, dict) and "steps" in item:
        unknown = set(item) - {"name", "steps"}
        if unknown:
            raise UserError(f"a named recipe has the keys name and steps; unknown: {', '.join(sorted(unknown))}")
        steps = item["steps"]
        inner = _parse_recipe(steps) if isinstance(steps, str) else [(None, [_parse_step(s) for s in steps])]
        return [(str(item["name"]) if item.get("name") else None, chain) for _, chain in inner]
    if isinstance(item, (StepConfig, dict)) or (isinstance(item, type) and issubclass(item, StepConfig)):
        return [(None, [_parse_step(item)])]
    if isinstance(item, (list, tuple)):
        return [(None, [_parse_step(s) for s in item])]
    raise UserError(f"a recipe is a string like prune,int8, a list of steps or {{name, steps}}; got {item!r}")


def _check_order(steps: list[str]) -> None:
    kinds = [(s, _registry()[s].kind) for s in steps]
    converts = [s for s, k in kinds if k == "convert"]
    if len(converts) > 1:
        raise UserError(f"recipe {','.join(steps)}: it has {len(converts)} conversion steps "
                        f"({', '.join(converts)}); a recipe ends with at most one")
    if converts and kinds[-1][1] != "convert":
        training = [s for s, k in kinds if k == "keras"]
        raise UserError(f"recipe {','.join(steps)}: the conversion step {converts[0]} must come last, "
                        f"after the training steps ({', '.join(training)}): "
                        f"{','.join(training + converts)}")


def plan(recipes: Iterable[Any] | None, options: dict[str, Any] | None = None) -> list[Chain]:
    """Recipes and options -> validated chains (no duplicates), without loading anything heavy.

    Raises UserError (one line) for an unknown step or alias, a conversion step that is not last,
    an unknown field, an out-of-range value, or an option that matches no step."""
    parsed: list[tuple[str | None, list[tuple[str, dict]]]] = []
    for item in recipes or []:
        found = [(n, c) for n, c in _parse_recipe(item) if c]
        if not found:  # -r '' would otherwise run the baseline alone and exit 0
            raise UserError(f"recipe {item!r} has no steps; give steps like int8 or prune,int8 (see: edgeopt "
                            f"recipes), or leave --recipe out to measure the baseline only")
        parsed += found
    for _, chain in parsed:
        for step, _ in chain:
            _config_cls(step)
        _check_order([s for s, _ in chain])
    _apply_options([c for _, c in parsed], options or {})
    out: list[Chain] = []
    for name, chain in parsed:
        configs = [make_config(step, values) for step, values in chain]
        built = Chain(name or "+".join(c.step for c in configs), configs)
        same = next((c for c in out if c.name == built.name), None)
        if same is None:
            out.append(built)
        elif same.records() != built.records():
            raise UserError(f"two recipes are both named {built.name!r} with different configs; give "
                            f"one a name (recipe file: {{name: ..., steps: [...]}})")
    return out


def load_recipe_file(path: str | Path) -> tuple[list[Any], dict[str, Any]]:
    """(recipes, options) from a YAML recipe file::

        recipes:
          - int8
          - [prune, int8]
          - name: prune50-int8
            steps:
              - prune: {sparsity: 0.5, epochs: 2}
              - int8: {calibration: percentile}
        options: {max_accuracy_drop: 1.0}

    Raises UserError for a missing file, bad YAML or another top-level key."""
    import yaml

    from edgeopt.validate import input_file

    path = Path(path)
    input_file(path, "--recipe-file", what="recipe file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise yaml_error(path, e, "--recipe-file ") from None
    if isinstance(doc, list):
        doc = {"recipes": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("recipes"), list):
        raise UserError(f"{path}: expected a mapping with a 'recipes' list (and optionally 'options')")
    unknown = set(doc) - {"recipes", "options"}
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                        f"use recipes and options")
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise UserError(f"{path}: options must be a mapping of field: value")
    return doc["recipes"], options


def options_json(options: dict[str, Any]) -> dict[str, Any]:
    """Options as JSON-able values (arrays and models described), for run.json settings."""
    def plain(v):
        try:
            json.dumps(v)
            return v
        except TypeError:
            return f"{type(v).__name__}{tuple(getattr(v, 'shape', ()))}"
    return {k: ({kk: plain(vv) for kk, vv in v.items()} if isinstance(v, dict) else plain(v))
            for k, v in (options or {}).items()}
