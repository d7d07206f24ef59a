"""Typed step configs, recipes and options: validated in one line before anything heavy loads."""
import json
import subprocess
import sys
import textwrap

import pytest

from edgeopt.errors import UserError
from edgeopt.recipes import load_recipe_file, plan
from edgeopt.techniques.configs import CONFIGS, Int8, Prune

# The model path does not exist: had edgeopt opened it before checking the recipe, the error
# would be "model not found". The child reports its exit code, the time main() took, the error
# line and whether a framework was imported.
_PROBE = textwrap.dedent("""
    import contextlib, io, json, sys, time
    from edgeopt.cli import main
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["optimize", "/no/such/dir/huge_model.keras", "--data", "blobs2d"] + sys.argv[1:])
    heavy = [m for m in ("tensorflow", "keras", "ai_edge_litert") if m in sys.modules]
    print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "err": err.getvalue(), "heavy": heavy}))
""")


def _probe(args) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args, words", [
    (["-r", "prune", "-o", "sparsty=0.5"], ["sparsty", "did you mean sparsity", "their fields:"]),
    (["-r", "prune", "-o", "prune.sparsity=7"], ["prune.sparsity must be in [0, 1)", "got 7"]),
    (["--recipe", "int9"], ["unknown recipe step 'int9'", "did you mean int8", "known steps:"]),
    (["--recipe", "int8,prune"], ["int8 must come last", "prune,int8"]),
    (["-r", "int8", "-o", "epochs=5"], ["'epochs' matches no field", "steps with epochs:"]),
    (["-r", "int8", "-o", "prune.epochs=5"], ["no recipe has a prune step"]),
    (["-r", "prune", "-o", "prune.epoch=5"], ["prune has no field 'epoch'", "did you mean epochs"]),
])
def test_bad_recipes_and_options_fail_in_one_line_before_any_model_loads(args, words):
    res = _probe(args)
    lines = [ln for ln in res["err"].splitlines() if ln.strip()]
    assert res["rc"] == 2 and len(lines) == 1 and lines[0].startswith("error: "), res
    for w in words:
        assert w in lines[0], lines[0]
    assert "model not found" not in lines[0]
    assert res["heavy"] == [], res  # no framework loaded: the speed itself is measured in benchmarks/startup.py


def test_scoped_and_unscoped_options():
    chains = plan(["prune,int8", "cluster,float16"], {"epochs": 2, "prune.sparsity": 0.5,
                                                      "calibration": "percentile"})
    prune, int8 = chains[0].steps
    cluster, f16 = chains[1].steps
    assert (prune.epochs, cluster.epochs) == (2, 2)  # unscoped: every step that has the field
    assert prune.sparsity == 0.5 and int8.calibration == "percentile"
    assert chains[0].name == "prune+int8" and chains[1].step_names == ["cluster", "float16"]
    # the budget is a run setting too: accepted without a step that has it
    assert plan([], {"max_accuracy_drop": 1.0}) == []


def test_python_configs_and_shorthand_are_the_same_step():
    [a], [b] = plan(["int8"]), plan([[Int8()]])
    assert a.records() == b.records()
    [c] = plan([[Prune(sparsity=0.5, epochs=1), Int8(calibration="percentile")]], {"prune.lr": 1e-3})
    assert c.records()[0]["config"]["sparsity"] == 0.5 and c.steps[0].lr == 1e-3
    assert c.records()[1] == {"step": "int8", "config": {**Int8().model_dump(mode="json"),
                                                         "calibration": "percentile"}}
    with pytest.raises(Exception):
        Int8(calibraton="minmax")  # typo in Python: pydantic refuses the unknown field


def test_alias_expands_and_named_recipes_must_not_collide():
    assert [c.name for c in plan(["ptq"])] == ["dynamic", "int8", "float16", "int16x8", "int4-weights", "mixed"]
    with pytest.raises(UserError, match="give one a name"):
        plan([[{"prune": {"sparsity": 0.5}}, "int8"], "prune,int8"])
    named = plan([{"name": "half", "steps": [{"prune": {"sparsity": 0.5}}, "int8"]}, "prune,int8"])
    assert [c.name for c in named] == ["half", "prune+int8"]


def test_recipe_file(tmp_path):
    path = tmp_path / "recipes.yaml"
    path.write_text(textwrap.dedent("""
        recipes:
          - int8
          - [prune, float16]
          - name: prune50-int8
            steps:
              - prune: {sparsity: 0.5, epochs: 2}
              - int8: {calibration: percentile}
        options: {max_accuracy_drop: 1.0}
    """))
    recipes, options = load_recipe_file(path)
    chains = plan(recipes, options)
    assert [c.name for c in chains] == ["int8", "prune+float16", "prune50-int8"]
    assert chains[2].steps[0].sparsity == 0.5 and chains[2].steps[1].calibration == "percentile"
    path.write_text("recipes:\n  - [prune: {sparsity: 2}]\n")
    with pytest.raises(UserError, match=r"prune.sparsity must be in \[0, 1\)"):
        plan(*load_recipe_file(path))
    path.write_text("recipe: [int8]\n")
    with pytest.raises(UserError, match="'recipes' list"):
        load_recipe_file(path)


def test_every_tunable_field_has_a_search_range_inside_its_bounds():
    from edgeopt.recipes import field_rows

    for name, cls in CONFIGS.items():
        cls()  # every default is valid
        for row in field_rows(cls):
            s = row["search"]
            if s and "low" in s:
                cls(**{row["field"]: s["low"]})
                cls(**{row["field"]: s["high"]})
            elif s:
                for choice in s["choices"]:
                    cls(**{row["field"]: choice})
    assert set(Prune.search_space()) >= {"sparsity", "epochs", "lr"}


def test_recipes_command_lists_fields_with_type_default_and_range(capsys):
    from edgeopt.cli import main

    assert main(["recipes", "--json"]) == 0
    cat = json.loads(capsys.readouterr().out)
    fields = {f["field"]: f for f in cat["steps"]["prune"]["fields"]}
    assert fields["sparsity"]["type"] == "float" and fields["sparsity"]["default"] == 0.75
    assert fields["sparsity"]["range"] == "[0, 1)"
    assert cat["steps"]["qat"]["closing"] == "int8" and cat["steps"]["int8"]["produces"]["precision"] == "int8"
    assert main(["recipes"]) == 0
    text = capsys.readouterr().out
    assert "sparsity" in text and "calibration" in text and "[0, 1)" in text


def test_a_variants_recorded_steps_rebuild_the_same_chain():
    [chain] = plan([[Prune(sparsity=0.6, epochs=1), "int8"]])
    [again] = plan([chain.records()])
    assert again.records() == chain.records() and again.name == "prune+int8"


def test_recipe_file_errors_on_the_command_line(tmp_path, capsys):
    from edgeopt.cli import main

    path = tmp_path / "r.yaml"
    path.write_text("recipes:\n  - name: fast\n    steps: [{cluster: {clusters: 1}}, int8]\n")
    code = main(["optimize", str(tmp_path / "missing.keras"), "-d", "blobs2d", "--recipe-file", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: cluster.clusters must be in [2, 65536] (got 1)"
    code = main(["optimize", str(tmp_path / "missing.keras"), "-d", "blobs2d", "--recipe-file",
                 str(tmp_path / "nope.yaml")])
    assert code == 2 and "recipe file not found" in capsys.readouterr().err
