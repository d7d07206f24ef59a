"""The engine: shared chain prefixes trained once (and reused on resume), typed run records,
run.json schema version 2 (JSON Schema, v1 migration)."""
import json

import jsonschema
import pytest

import edgeopt
from edgeopt.engine.store import SCHEMA_FILE, json_schema, load_run, read_run
from edgeopt.errors import UserError


@pytest.fixture
def fine_tunes(monkeypatch):
    """Counts calls of the shared fine-tuning loop (every training step goes through it)."""
    import edgeopt.techniques.finetune as ft

    calls = []
    real = ft.fine_tune

    def counting(model, ctx, **kw):
        calls.append(ctx.config.step if ctx.config is not None else None)
        return real(model, ctx, **kw)

    monkeypatch.setattr(ft, "fine_tune", counting)
    return calls


@pytest.mark.slow
def test_shared_prefix_fine_tunes_once_and_resume_reuses_the_cache(slide_mlp_path, tmp_path, fine_tunes):
    out = tmp_path / "run"
    run = edgeopt.optimize(slide_mlp_path, "blobs2d", recipes=["prune,int8", "prune,float16"],
                           options={"prune.epochs": 1, "prune.report_size": False}, runs=5, out=out)
    assert fine_tunes == ["prune"]  # two chains, one fine-tuning
    assert [v.name for v in run.variants] == ["float32", "prune+int8", "prune+float16"]
    assert all(v.done for v in run.variants), [v.error for v in run.variants]
    cached = [[s.get("cached", False) for s in v.details["steps"]] for v in run.variants[1:]]
    assert cached == [[False, False], [True, False]]
    # the exact configs are recorded, and identical for the shared step
    steps = [v.steps for v in run.variants[1:]]
    assert steps[0][0] == steps[1][0] and steps[0][0].config["epochs"] == 1
    assert steps[0][1].step == "int8" and steps[0][1].config["calibration"] == "minmax"
    # resume with one more chain on the same prefix: done variants kept, the prefix not retrained
    run2 = edgeopt.optimize(slide_mlp_path, "blobs2d", recipes=["prune,int8", "prune,float16", "prune,dynamic"],
                            options={"prune.epochs": 1, "prune.report_size": False}, runs=5, out=out)
    assert fine_tunes == ["prune"]
    assert run2.variant("prune+dynamic").details["steps"][0]["cached"] is True
    assert run2.variant("prune+int8").metrics.size_bytes == run.variant("prune+int8").metrics.size_bytes
    # a changed config is a different variant: redone, not kept
    edgeopt.optimize(slide_mlp_path, "blobs2d", recipes=["prune,int8"],
                     options={"prune.epochs": 1, "prune.sparsity": 0.5, "prune.report_size": False},
                     runs=5, out=out)
    assert fine_tunes == ["prune", "prune"]
    assert load_run(out)["variants"][1]["steps"][0]["config"]["sparsity"] == 0.5


@pytest.mark.slow
def test_optimize_returns_a_typed_run(slide_mlp_path, tmp_path):
    run = edgeopt.optimize(slide_mlp_path, "blobs2d", recipes=["float16", "dynamic"], runs=5,
                           out=tmp_path / "run")
    assert isinstance(run, edgeopt.Run) and run.path == tmp_path / "run"
    frame = run.to_frame()
    assert list(frame.index) == ["float32", "float16", "dynamic"]
    assert frame.loc["float16", "precision"] == "float16" and frame.loc["float32", "macs"] > 0
    assert (frame["size_bytes"] > 0).all() and frame.loc["float32", "runtime"] == "litert"
    smallest = run.best(by="size", max_accuracy_drop=5.0)
    assert smallest.metrics.size_bytes == frame["size_bytes"].min()
    fastest = run.best(by="latency")
    assert fastest.metrics.latency_ms["p50_ms"] == frame["latency_p50_ms"].min()
    assert run.best(max_size_bytes=1) is None
    v = run.variant("float32")
    assert v.graph.params > 0 and v.metrics.provenance.runtime == "litert" and v.metrics.provenance.threads == 1
    # run.json matches the JSON Schema shipped in the repository
    record = json.loads((run.path / "run.json").read_text())
    assert record["schema_version"] == 2 and "macs" not in record["variants"][0]["metrics"]
    jsonschema.validate(record, json.loads(SCHEMA_FILE.read_text()))


def test_schema_file_is_generated_from_the_types():
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(json.dumps(json_schema())), \
        "regenerate src/edgeopt/engine/run.schema.json from edgeopt.engine.store.json_schema()"
    bad = {"schema_version": 2, "name": "r", "variants": [{"name": "x", "status": "maybe"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schema())


def _v1_record():
    return {"schema_version": 1, "name": "old", "model": {"path": "m.keras"}, "data": {"source": "digits"},
            "settings": {}, "variants": [
                {"name": "float32", "recipe": ["float32"], "status": "done", "artifact": "float32/model.tflite",
                 "metrics": {"accuracy": 0.9, "size_bytes": 400, "gzip_bytes": 300,
                             "latency_ms": {"p50_ms": 1.0}, "macs": 184, "params": 211, "precision": "float32",
                             "tflm_arena_bytes": 2192,
                             "how": {"runtime": "litert", "runtime_version": "2.3.0", "threads": 1,
                                     "cpu": "AMD EPYC", "cpu_flags": ["avx2"]}}},
                {"name": "int8", "recipe": ["int8"], "status": "failed", "error": "boom"}]}


def test_v1_runs_are_migrated_and_unknown_versions_refused(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(_v1_record()))
    run = read_run(tmp_path)
    f32 = run.variant("float32")
    assert f32.graph.macs == 184 and f32.graph.tflm_arena_bytes == 2192
    assert "macs" not in f32.metrics.model_dump()
    assert f32.metrics.provenance.version == "2.3.0" and f32.metrics.provenance.flags == ["avx2"]
    assert f32.steps[0].step == "float32" and f32.steps[0].config is None
    jsonschema.validate(load_run(tmp_path), json_schema())
    (tmp_path / "run.json").write_text(json.dumps({**_v1_record(), "schema_version": 7}))
    with pytest.raises(UserError, match="schema version 7; this edgeopt reads versions 1, 2"):
        load_run(tmp_path)


@pytest.mark.slow
def test_compare_int8_litert_row_is_the_int8_step(digits, digits_cnn_path, tmp_path):
    from edgeopt.compare import Artifacts, load_model_file
    from edgeopt.model_io import load_keras
    from edgeopt.steps import StepContext, get_step
    from edgeopt.techniques.configs import Int8

    arts = Artifacts(load_model_file(digits_cnn_path), digits, tmp_path, calibration=300, cpu_flags=[])
    path, settings = arts.get("tflite", "int8")
    assert settings["step"] == Int8(calibration_samples=300).to_record()
    ctx = StepContext(dataset=digits, work_dir=tmp_path, options={"calibration_samples": 300},
                      log=lambda m: None)
    step_artifact = get_step("int8").run(ctx, load_keras(digits_cnn_path)).artifact
    assert path.read_bytes() == step_artifact.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.tflite", "model.tflite"]
