"""Every model of tests/model_corpus.py through the API: profile, optimize (float32 baseline +
int8, a cheaper chain than the full ``ptq`` alias so the file stays within a few minutes on two
cores), and the float32 .tflite outputs checked against Keras computed here. A model that
cannot convert must fail with one line naming its blocker. A few CLI calls check the same path."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import model_corpus as mc

pytestmark = pytest.mark.slow

NAMES = sorted(mc.CORPUS)


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
    try:
        run = api.optimize(path, data, recipes=["int8"], out=tmp_path / "r", runs=2, html_report=False)
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


@pytest.mark.parametrize("name", ["varlen_lstm", "two_inputs_image_vector"])
def test_corpus_model_through_the_cli(name, tmp_path):
    _save(name, tmp_path / "m")
    path, data = tmp_path / "m" / "model.keras", tmp_path / "m" / "data.npz"
    out = subprocess.run([sys.executable, "-m", "edgeopt.cli", "optimize", str(path), "-d", str(data), "-r",
                          "int8", "--out", str(tmp_path / "r"), "--runs", "2", "--no-report"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "failed" not in out.stdout, out.stdout
