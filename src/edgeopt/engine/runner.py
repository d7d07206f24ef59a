"""The chain runner: runs a recipe's typed steps on a model and caches shared prefixes.

Every training ("keras") step's output is stored in the run directory under
``.cache/<key>/`` (the model as .keras plus the step's details and hints), where ``key`` hashes
the parent's key (the model and data digest for the first step) with the step's name and exact
config. A later chain with the same prefix (``prune,int8`` then ``prune,float16``), or a resumed
run, loads the stored model instead of training again; its step record says ``"cached": true``.

A chain that does not end with a conversion gets the one its training steps declare
(``Step.closing``: the last declared, else float32). The runner knows no technique by name.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgeopt.engine.faults import crash_point
from edgeopt.errors import UserError, one_line
from edgeopt.fsutil import atomic_path, atomic_write_json
from edgeopt.recipes import Chain, make_config
from edgeopt.steps import StepContext, get_step

BASELINE = "float32"
_ERROR_LINE = re.compile(r"(?:^|\W)error:\s*(\S.*)", re.IGNORECASE)  # "<unknown>:0: error: ..." in converter output
MODEL_FILE = "model.keras"
META_FILE = "step.json"


@dataclass
class ChainResult:
    artifact: Path
    steps: list[dict]  # {"step", "config"}: the exact steps run (closing conversion included)
    details: dict[str, Any] = field(default_factory=lambda: {"steps": []})
    quant_errors: list = field(default_factory=list)
    cache_hits: int = 0


def closed(chain: Chain) -> Chain:
    """The chain with its closing conversion appended when it has none."""
    if chain.steps and get_step(chain.steps[-1].step).kind == "convert":
        return chain
    closing = BASELINE
    for cfg in chain.steps:
        closing = get_step(cfg.step).closing or closing
    return Chain(chain.name, [*chain.steps, make_config(closing)])


def chain_key(parent: str, record: dict) -> str:
    text = parent + json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ChainRunner:
    """Runs chains for one run directory.

    ``load_model(path | None)`` loads the original Keras model (None) or a cached .keras file;
    ``base_ctx`` is the context every step's context is copied from (dataset, oracles, log);
    ``root_digest`` identifies the model, data and seed the chains start from."""

    def __init__(self, cache_dir: Path, load_model: Callable[[Path | None], Any], base_ctx: StepContext,
                 root_digest: str):
        self.cache_dir = Path(cache_dir)
        self.load_model = load_model
        self.base_ctx = base_ctx
        self.root = root_digest

    def run(self, chain: Chain, work_dir: Path) -> ChainResult:
        chain = closed(chain)
        result = ChainResult(artifact=Path(), steps=chain.records())
        key, model, model_key, hints = self.root, None, None, {}
        for cfg in chain.steps:
            step, record = get_step(cfg.step), cfg.to_record()
            self.base_ctx.log(f"{chain.name}: {cfg.step}")
            t0 = time.perf_counter()
            need = key  # the model this step starts from
            if step.kind == "keras":
                key = chain_key(key, record)
                meta = self._cached(key)
                if meta is not None:
                    result.cache_hits += 1
                    hints.update(meta.get("hints", {}))
                    result.details["steps"].append({"step": cfg.step, "cached": True, "seconds": 0.0,
                                                    **meta.get("details", {})})
                    continue
            if model_key != need:
                model, model_key = self.load_model(self._model_file(need)), need
            ctx = replace(self.base_ctx, work_dir=work_dir, options=cfg.model_dump(), config=cfg,
                          hints=dict(hints))
            out = step.run(ctx, model)
            crash_point("fine-tune" if step.kind == "keras" else "conversion")
            result.details["steps"].append({"step": cfg.step, "seconds": round(time.perf_counter() - t0, 2),
                                            **(out.details or {})})
            result.quant_errors = out.quant_errors or result.quant_errors
            hints.update(out.hints or {})
            if step.kind == "keras":
                model, model_key = out.model, key
                self._store(key, model, out.details or {}, out.hints or {})
            else:
                result.artifact = Path(out.artifact)
                result.details["produces"] = dict(step.produces)  # precision and format of the artifact
        return result

    # -- the cache
    def _model_file(self, key: str) -> Path | None:
        if key == self.root:
            return None
        path = self.cache_dir / key / MODEL_FILE
        return path if path.exists() else None

    def _cached(self, key: str) -> dict | None:
        folder = self.cache_dir / key
        if not ((folder / MODEL_FILE).exists() and (folder / META_FILE).exists()):
            return None
        try:
            return json.loads((folder / META_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _store(self, key: str, model, details: dict, hints: dict) -> None:
        folder = self.cache_dir / key
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(folder / MODEL_FILE) as tmp:
                model.save(tmp)
        except Exception as e:  # e.g. a subclassed model Keras cannot serialise: run without the cache
            self.base_ctx.log(f"note: the cache cannot store this model ({one_line(e, 120)}); "
                              f"chains that share this prefix will train it again")
            return
        atomic_write_json(folder / META_FILE, {"details": details, "hints": hints})


def failure_record(name: str, chain: Chain, err: BaseException) -> dict:
    """The record of a variant that failed: ``error`` is a readable one-line reason, ``error_detail``
    the full text (converter or runtime output, several lines), plus a short traceback for
    anything that is not a UserError."""
    full = str(err)
    rec = {"name": name, "recipe": chain.step_names, "steps": chain.records(), "status": "failed",
           "error": failure_reason(err), "error_detail": full if isinstance(err, UserError) else
           f"{type(err).__name__}: {full}"}
    if not isinstance(err, UserError):
        rec["traceback"] = traceback.format_exc(limit=6)
    return rec


def failure_reason(err: BaseException, limit: int = 200) -> str:
    """One readable line for a failure: a UserError's message; otherwise the exception type and the
    line of its text that says what went wrong (the first ``error:`` line of converter output, else
    the first non-empty line)."""
    if isinstance(err, UserError):
        return one_line(err, 400)
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    said = [m.group(1) for ln in lines if (m := _ERROR_LINE.search(ln))]
    text = one_line((said or lines or [""])[0], limit)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
