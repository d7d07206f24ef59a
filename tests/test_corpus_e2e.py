"""Every model of tests/model_corpus.py through profile, optimize, compare and export, each on
the same small data (16 samples) and one optimize run per model that the other checks share:

- ``profile`` with the data;
- ``optimize``: the whole ``ptq`` alias (float32 + dynamic, int8, float16, int16x8, int4-weights,
  mixed) on one model per kind (``PTQ_SUBSET``: conv, RNN, open axis, nested, several inputs and
  outputs, regression, attention); float32 + int8 on the others, since ``ptq`` costs about 4x int8
  (mixed precision ranks ops) and 48 x ``ptq`` would add ~15 minutes on two cores. The float32
  .tflite outputs are checked against Keras computed here;
- ``compare`` on the run's float32 deployable in every runtime that takes a .tflite (LiteRT and
  TFLite Micro; label-free, against LiteRT): TFLite Micro's float kernels match it to 1e-4, or the
  row is "failed" with TFLM's reason (an op it lacks), never "n/a". Compare from the Keras model
  in every runtime (ONNX Runtime, OpenVINO rows) is checked on the several-input model in
  tests/test_compare.py and on case 05 in tests/test_cases.py: ONNX and OpenVINO artifacts for 48
  models would add ~10 minutes;
- ``export``: the Linux (LiteRT) bundle of the float32 variant, its ``infer.py`` run here and its
  outputs checked against Keras on the bundle's own sample; the Arduino program of the int8
  variant for every one-input one-output model (TFLite Micro kernels for every op, or one line
  naming the op it lacks; always built for the ``tflm``-tagged models).

A model that cannot convert must fail with one line naming its blocker. A few CLI calls check
the same path."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import model_corpus as mc

pytestmark = pytest.mark.slow

NAMES = sorted(mc.CORPUS)
# one model per kind gets the whole `ptq` alias (see the module docstring)
PTQ_SUBSET = ("conv2d_bn_relu", "lstm", "varlen_conv1d", "nested_sequential_base", "two_in_two_out",
              "regression_one", "attention_block")
PTQ_VARIANTS = {"float32", "dynamic", "int8", "float16", "int16x8", "int4-weights", "mixed"}


def _save(name: str, folder):
    """model.keras + data.npz (one key per input and per output, named like them)."""
    model, x, task = mc.build(name)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    arrays = {}
    if isinstance(x, dict):
        arrays.update(x)
    else:
        arrays["x"] = x
    if isinstance(task.y, dict):
        arrays.update(task.y)
    else:
        arrays["y"] = task.y
    np.savez(folder / "data.npz", **arrays)
    return model, x


def _tflite_outputs(path, x) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    ins, outs = interp.get_input_details(), interp.get_output_details()
    arrays = x.as_list() if hasattr(x, "as_list") else [x]
    rows = [[] for _ in outs]
    for i in range(len(arrays[0])):
        for d, a in zip(ins, arrays):
            interp.set_tensor(d["index"], a[i:i + 1].astype(d["dtype"]))
        interp.invoke()
        for k, d in enumerate(outs):
            rows[k].append(interp.get_tensor(d["index"]))
    return [np.concatenate(r) for r in rows]


@pytest.mark.parametrize("name", NAMES)
def test_corpus_model_profile_optimize_and_numbers(name, tmp_path):
    from edgeopt import api
    from edgeopt.errors import UserError

    entry = mc.CORPUS[name]
    if "blocker" in entry.tags:  # a custom layer (not loadable from a file): the conversion is refused
        from edgeopt.convert import keras_to_tflite

        model, x, _ = mc.build(name)
        with pytest.raises(UserError) as err:
            keras_to_tflite(model, input_shape=tuple(x.shape[1:]))
        assert "\n" not in str(err.value) and entry.blocker.lower() in str(err.value).lower(), str(err.value)
        return
    model, _ = _save(name, tmp_path / "m")
    path, data = tmp_path / "m" / "model.keras", tmp_path / "m" / "data.npz"
    prof = api.profile(path, data=data)
    assert prof.total_macs > 0 and prof.ops
    recipes = ["ptq"] if name in PTQ_SUBSET else ["int8"]
    try:
        run = api.optimize(path, data, recipes=recipes, out=tmp_path / "r", runs=2, html_report=False)
    except UserError as err:  # refused before any variant: one line naming the blocker
        assert "\n" not in str(err) and entry.blocker and entry.blocker.lower() in str(err).lower(), str(err)
        return
    base = run.variant("float32")
    if "blocker" in entry.tags:
        assert base.status == "failed" and entry.blocker.lower() in base.error.lower(), base.error
        return
    assert base.status == "done", base.error
    _, ds, _ = api.prepare(path, data, check_numerics=False)
    feed = ds.x_eval.as_list() if hasattr(ds.x_eval, "as_list") else ds.x_eval
    want = model.predict(feed, verbose=0)
    want = list(want.values()) if isinstance(want, dict) else (want if isinstance(want, list) else [want])
    got = _tflite_outputs(run.path / base.artifact, ds.x_eval)
    assert len(got) == len(want)
    by_shape = sorted(got, key=lambda a: a.shape[1:]), sorted(want, key=lambda a: a.shape[1:])
    for g, w in zip(*by_shape):  # the .tflite may order several outputs differently
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)
    assert base.metrics.fidelity["top1_agreement"] == 1.0
    int8 = run.variant("int8")
    assert int8.status == "done" or (int8.error and "\n" not in int8.error), int8.error
    if int8.status == "done":
        assert int8.graph.precision in ("int8", "mixed")
        assert "fidelity" in int8.metrics.model_dump()
    if name in PTQ_SUBSET:
        assert {v.name for v in run.variants} == PTQ_VARIANTS
        for v in run.variants:  # done, or failed with one line
            assert v.status == "done" or (v.status == "failed" and v.error and "\n" not in v.error), (v.name, v.error)
    _compare_float_deployable(entry, run.path / base.artifact, data, tmp_path)
    _export_linux_bundle(run, model, data, tmp_path / "linux")
    _export_mcu_program(entry, run, int8, data, tmp_path / "mcu")


def _compare_float_deployable(entry, artifact, data, tmp_path) -> None:
    from edgeopt import api
    from edgeopt.compare import compare

    loaded, ds, _ = api.prepare(artifact, data, task="fidelity", check_numerics=False)
    rows = compare(loaded, ds, runtimes=["litert", "tflm"], precisions=["float32"], runs=2,
                   throughput_seconds=0.02, out_dir=tmp_path / "cmp")
    lit, tflm = rows
    assert lit.ok and lit.max_abs_diff == 0.0 and lit.p50_ms > 0, lit.reason
    if tflm.ok:
        assert tflm.max_abs_diff < 1e-4 and tflm.arena_bytes > 0
    else:  # TFLite Micro runs float32 .tflite: a row that does not run is a failure with its reason
        assert tflm.status == "failed" and tflm.reason and "\n" not in tflm.reason, tflm.reason
        assert "tflm" not in entry.tags, tflm.reason


def _export_linux_bundle(run, model, data, out) -> None:
    """The float32 Linux bundle's infer.py, run here, gives Keras's outputs on the bundle's sample."""
    import contextlib
    import io
    import json
    import runpy

    from edgeopt import api

    api.export(run.path, variant="float32", target="linux-litert", out=out, data=data)
    spec = json.loads((out / "io.json").read_text())
    if (out / "sample_input.npz").exists():
        with np.load(out / "sample_input.npz") as f:
            feed = [f[s["name"]] for s in spec["inputs"]]
        by_name = dict(zip([s["name"] for s in spec["inputs"]], feed))
        feed = [by_name.get(t.name.split(":")[0], feed[k]) for k, t in enumerate(model.inputs)]
    else:
        feed = np.load(out / "sample_input.npy")
    printed = io.StringIO()
    argv = sys.argv
    try:
        sys.argv = [str(out / "infer.py")]
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(out / "infer.py"), run_name="__main__")
    finally:
        sys.argv = argv
    got = [np.asarray(v) for v in json.loads(printed.getvalue().strip().splitlines()[-1])["outputs"].values()]
    want = model.predict(feed, verbose=0)
    want = list(want.values()) if isinstance(want, dict) else (want if isinstance(want, list) else [want])
    want = [np.asarray(w).reshape(-1) for w in want]
    assert len(got) == len(want)
    for g, w in zip(sorted(got, key=len), sorted(want, key=len)):  # outputs may come in another order
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


def _export_mcu_program(entry, run, int8, data, out) -> None:
    """The int8 variant's Arduino program, or one line naming why it cannot be built."""
    from edgeopt import api
    from edgeopt.errors import UserError

    if int8.status != "done":
        return
    one_io = "multi_input" not in entry.tags and "multi_output" not in entry.tags
    try:
        result = api.export(run.path, variant="int8", target="arduino", out=out, data=data)
    except UserError as err:
        text = str(err)
        assert "\n" not in text and ("no kernel for" in text or "does not run on TFLite Micro" in text
                                     or (not one_io and "inputs and" in text)), text
        assert "tflm" not in entry.tags, text
        return
    assert one_io
    sketch = next(p for p in result.files if p.suffix == ".ino").read_text()
    assert "resolver.Add" in sketch and "kArenaSize = " in sketch


@pytest.mark.parametrize("name", ["varlen_lstm", "two_inputs_image_vector"])
def test_corpus_model_through_the_cli(name, tmp_path):
    _save(name, tmp_path / "m")
    path, data = tmp_path / "m" / "model.keras", tmp_path / "m" / "data.npz"
    out = subprocess.run([sys.executable, "-m", "edgeopt.cli", "optimize", str(path), "-d", str(data), "-r",
                          "int8", "--out", str(tmp_path / "r"), "--runs", "2", "--no-report"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "failed" not in out.stdout, out.stdout
    if name == "two_inputs_image_vector":  # export's data flags: one .npz key per input
        out = subprocess.run([sys.executable, "-m", "edgeopt.cli", "export", str(tmp_path / "r"), "float32", "--target",
                              "onnx", "--out", str(tmp_path / "b"), "-d", str(data), "--x-key", "image,vector"],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        with np.load(tmp_path / "b" / "sample_input.npz") as f:
            assert sorted(f) == ["image", "vector"]
