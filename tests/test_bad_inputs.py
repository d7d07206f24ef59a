"""Bad input fails fast: a corpus of over 100 bad inputs across every command, each giving exit code 2,
one `error: ...` line on stderr that says what to do, nothing on stdout, and nothing left behind.

The cases run in-process through `edgeopt.cli.main` with TensorFlow, Keras, ONNX Runtime and OpenVINO
made unimportable, so a case that reached for a framework (i.e. did work before validating) fails.
A few subprocess cases check the same from a fresh interpreter and its wall time."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from cli_check import one_error
from edgeopt.cli import main

HEAVY = ("tensorflow", "keras", "tf_keras", "onnxruntime", "openvino", "onnx", "nncf")

# (id, argv with {placeholders} from the world fixture, expected substring of the error line)
CASES = [
    # ---- profile: model files
    ("profile-missing", "profile {w}/nope.keras", "model not found"),
    ("profile-dir-not-savedmodel", "profile {w}/plain_dir", "not a SavedModel"),
    ("profile-unknown-suffix", "profile {w}/model.txt", "use .keras, .h5"),
    ("profile-empty-keras", "profile {w}/empty.keras", "is empty"),
    ("profile-text-as-keras", "profile {w}/text.keras", "not a valid .keras file"),
    ("profile-truncated-keras", "profile {w}/truncated.keras", "re-save it"),
    ("profile-flipped-keras", "profile {w}/flipped.keras", "corrupt, truncated"),
    ("profile-bad-h5", "profile {w}/bad.h5", "not an HDF5 file"),
    ("profile-bad-tflite", "profile {w}/bad.tflite", "not a .tflite flatbuffer"),
    ("profile-empty-onnx", "profile {w}/empty.onnx", "is empty"),
    ("profile-unknown-option", "profile {w}/good.keras --frobnicate", "No such option"),
    ("profile-missing-data", "profile {w}/good.keras -d {w}/nope.npz", "--data: data not found"),
    ("profile-x-key-builtin", "profile {w}/good.keras -d digits --x-key a", "--x-key a picks"),
    # ---- bench
    ("bench-missing-model", "bench {w}/nope.keras -d digits", "model not found"),
    ("bench-runs-0", "bench {w}/good.keras -d digits --runs 0", "--runs must be at least 1"),
    ("bench-runs-negative", "bench {w}/good.keras -d digits --runs -1", "--runs must be at least 1"),
    ("bench-runs-text", "bench {w}/good.keras -d digits --runs abc", "valid integer"),
    ("bench-threads-0", "bench {w}/good.keras -d digits --threads 0", "--threads must be at least 1"),
    ("bench-limit-0", "bench {w}/good.keras -d digits --limit 0", "--limit must be at least 1"),
    ("bench-limit-negative", "bench {w}/good.keras -d digits --limit -5", "--limit must be at least 1"),
    ("bench-missing-data", "bench {w}/good.keras -d {w}/nope.npz", "data not found"),
    ("bench-unknown-data-name", "bench {w}/good.keras -d mnist-digits", "data not found"),
    ("bench-data-txt", "bench {w}/good.keras -d {w}/data.txt", "use .npz, .npy, .csv"),
    ("bench-empty-csv", "bench {w}/good.keras -d {w}/empty.csv", "is empty"),
    ("bench-truncated-keras", "bench {w}/truncated.keras -d digits", "corrupt, truncated"),
    ("bench-no-data", "bench {w}/good.keras", "give --data"),
    ("bench-eval-data-missing", "bench {w}/good.keras --eval-data {w}/nope.npz", "--eval-data: data not found"),
    ("bench-calib-data-empty", "bench {w}/good.keras -d digits --calib-data {w}/empty.csv", "--calib-data: data file"),
    ("bench-builtin-as-eval-data", "bench {w}/good.keras --eval-data digits", "give it as --data digits"),
    ("optimize-builtin-with-train-data", "optimize {w}/good.keras -d digits --train-data {w}/d.csv -r int8 --out {o}/run",
     "the built-in digits comes with its own splits"),
    ("bench-x-key-builtin", "bench {w}/good.keras -d digits --x-key feats", "--x-key feats picks the input array"),
    # ---- optimize
    ("optimize-unknown-recipe", "optimize {w}/good.keras -d digits -r int9 --out {o}/run", "unknown recipe step"),
    ("optimize-order", "optimize {w}/good.keras -d digits -r int8,prune --out {o}/run", "must come last"),
    ("optimize-two-converts", "optimize {w}/good.keras -d digits -r int8,float16 --out {o}/run", "at most one"),
    ("optimize-sparsity-7", "optimize {w}/good.keras -d digits -r prune,int8 -o sparsity=7 --out {o}/run",
     "sparsity"),
    ("optimize-sparsity-negative", "optimize {w}/good.keras -d digits -r prune -o prune.sparsity=-0.5 --out {o}/run",
     "sparsity"),
    ("optimize-unknown-option", "optimize {w}/good.keras -d digits -r int8 -o frobnicate=1 --out {o}/run",
     "frobnicate"),
    ("optimize-option-no-equals", "optimize {w}/good.keras -d digits -r int8 -o sparsity --out {o}/run",
     "key=value"),
    ("optimize-calibration-0", "optimize {w}/good.keras -d digits -r int8 --calibration-samples 0 --out {o}/run",
     "calibration"),
    ("optimize-calibration-negative",
     "optimize {w}/good.keras -d digits -r int8 --calibration-samples -3 --out {o}/run", "calibration"),
    ("optimize-budget-nan", "optimize {w}/good.keras -d digits -r int8 --max-accuracy-drop nan --out {o}/run",
     "from 0 to 100"),
    ("optimize-budget-inf", "optimize {w}/good.keras -d digits -r int8 --max-accuracy-drop inf --out {o}/run",
     "from 0 to 100"),
    ("optimize-budget-negative",
     "optimize {w}/good.keras -d digits -r int8 --max-accuracy-drop -50 --out {o}/run", "from 0 to 100"),
    ("optimize-budget-huge", "optimize {w}/good.keras -d digits -r int8 --max-accuracy-drop 1e9 --out {o}/run",
     "from 0 to 100"),
    ("optimize-budget-101", "optimize {w}/good.keras -d digits --max-accuracy-drop 101 --out {o}/run",
     "from 0 to 100"),
    ("optimize-limit-0", "optimize {w}/good.keras -d digits -r int8 --limit 0 --out {o}/run",
     "--limit must be at least 1"),
    ("optimize-runs-0", "optimize {w}/good.keras -d digits -r int8 --runs 0 --out {o}/run",
     "--runs must be at least 1"),
    ("optimize-threads-0", "optimize {w}/good.keras -d digits -r int8 --threads 0 --out {o}/run",
     "--threads must be at least 1"),
    ("optimize-out-is-file", "optimize {w}/good.keras -d digits -r int8 --out {o}/afile", "is a file"),
    ("optimize-out-under-file", "optimize {w}/good.keras -d digits -r int8 --out {o}/afile/run", "is a file"),
    ("optimize-missing-model", "optimize {w}/nope.keras -d digits -r int8 --out {o}/run", "model not found"),
    ("optimize-flipped-keras", "optimize {w}/flipped.keras -d digits -r int8 --out {o}/run", "re-save it"),
    ("optimize-truncated-keras", "optimize {w}/truncated.keras -d digits -r int8 --out {o}/run", "re-save it"),
    ("optimize-dir-as-model", "optimize {w}/plain_dir -d digits -r int8 --out {o}/run", "not a SavedModel"),
    ("optimize-missing-data", "optimize {w}/good.keras -d {w}/nope.csv -r int8 --out {o}/run", "data not found"),
    ("optimize-recipe-file-missing", "optimize {w}/good.keras -d digits --recipe-file {w}/nope.yaml --out {o}/run",
     "nope.yaml"),
    ("optimize-recipe-file-bad-yaml", "optimize {w}/good.keras -d digits --recipe-file {w}/bad.yaml --out {o}/run",
     "bad.yaml: not valid YAML at line 2, column 3: expected the node content, but found '-'"),
    ("optimize-recipe-file-unclosed-list",
     "optimize {w}/good.keras -d digits --recipe-file {w}/unclosed.yaml --out {o}/run",
     "unclosed.yaml: not valid YAML at line 4, column 8: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence started at line 3, column 5)"),
    ("optimize-recipe-file-is-dir", "optimize {w}/good.keras -d digits --recipe-file {w}/plain_dir --out {o}/run",
     "--recipe-file"),
    ("optimize-calib-data-missing",
     "optimize {w}/good.keras -d digits -r int8 --calib-data {w}/nope.npz --out {o}/run", "--calib-data: data not found"),
    ("optimize-train-data-txt", "optimize {w}/good.keras -d digits -r int8 --train-data {w}/data.txt --out {o}/run",
     "--train-data: unsupported data file"),
    ("optimize-label-column-npz", "optimize {w}/good.keras -d {w}/d.npz -r int8 --label-column 3 --out {o}/run",
     "--label-column 3 picks the label column of a .csv file"),
    ("optimize-y-key-csv", "optimize {w}/good.keras -d {w}/d.csv -r int8 --y-key label --out {o}/run",
     "--y-key label picks the label array"),
    ("optimize-bad-option-value", "optimize {w}/good.keras -d digits -r prune -o prune.epochs=lots --out {o}/run",
     "epochs"),
    ("optimize-unknown-alias", "optimize {w}/good.keras -d digits -r ptqq --out {o}/run", "unknown recipe step"),
    ("optimize-empty-chain-step", "optimize {w}/good.keras -d digits -r prune,,int8x --out {o}/run",
     "unknown recipe step"),
    ("optimize-recipe-only-commas", "optimize {w}/good.keras -d digits -r , --out {o}/run", "has no steps"),
    ("optimize-option-broken-json", "optimize {w}/good.keras -d digits -r int8 -o int8.fixes=[1 --out {o}/run",
     "the value is not valid JSON"),
    ("optimize-metric-not-py", "optimize {w}/good.keras -d digits --metric {w}/data.txt:fn -r int8 --out {o}/run",
     "data.txt is not a .py file"),
    # ---- explain
    ("explain-missing-run", "explain {w}/nope_run int8", "is not a run directory (not found)"),
    ("explain-run-is-file", "explain {w}/model.txt int8", "is a file"),
    ("explain-not-a-run", "explain {w}/plain_dir int8", "no run.json"),
    ("explain-unknown-variant", "explain {w}/run int9", "variants: float32"),
    ("explain-bad-run-json", "explain {w}/broken_run int8", "not valid JSON"),
    # ---- report
    ("report-missing-run", "report {w}/nope_run --out {o}/r.html", "is not a run directory (not found)"),
    ("report-not-a-run", "report {w}/plain_dir --out {o}/r.html", "no run.json"),
    ("report-run-is-file", "report {w}/model.txt", "is a file"),
    ("report-out-under-file", "report {w}/run --out {o}/afile/r.html", "is a file"),
    ("report-bad-run-json", "report {w}/broken_run --out {o}/r.html", "not valid JSON"),
    ("report-out-over-run-json", "report {w}/run --out {w}/run/run.json", "not a report; give a .html path"),
    ("report-out-over-model", "report {w}/run --out {w}/good.keras", "not a report"),
    ("report-out-in-proc", "report {w}/run --out /proc/x.html", "cannot create output file /proc/x.html"),
    # ---- export
    ("export-name-int", "export {w}/good.tflite --out {o}/b --name int", "C/C++ keyword"),
    ("export-name-class", "export {w}/good.tflite --out {o}/b --name class", "C/C++ keyword"),
    ("export-name-digit", "export {w}/good.tflite --out {o}/b --name 9lives", "not a C identifier"),
    ("export-name-dash", "export {w}/good.tflite --out {o}/b --name my-model", "not a C identifier"),
    ("export-name-space", "export {w}/good.tflite --out {o}/b --name", "requires an argument"),
    ("export-unknown-target", "export {w}/good.tflite --out {o}/b --target esp32", "choose one of"),
    ("export-missing-source", "export {w}/nope.tflite --out {o}/b", "model not found"),
    ("export-out-is-file", "export {w}/good.tflite --out {o}/afile", "is a file"),
    ("export-not-a-run", "export {w}/plain_dir --out {o}/b", "no run.json"),
    ("export-bad-tflite", "export {w}/bad.tflite --out {o}/b", "not a .tflite flatbuffer"),
    ("export-keras-to-ethos-u", "export {w}/good.keras --out {o}/b --target ethos-u",
     "Ethos-U runs full-int8 models and good.keras is a float Keras model: make the int8 variant first"),
    ("export-missing-data", "export {w}/good.tflite --out {o}/b --data {w}/nope.npz", "data not found"),
    ("export-no-out", "export {w}/good.tflite", "Missing option '--out'"),
    ("export-unknown-variant", "export {w}/run int9 --out {o}/b", "no variant 'int9'; variants: float32"),
    ("export-no-variant", "export {w}/run --out {o}/b", "give the variant to export (--variant NAME)"),
    # ---- recipes
    ("recipes-unknown-option", "recipes --all", "No such option"),
    ("recipes-extra-argument", "recipes int8", "unexpected extra argument"),
    # ---- demo
    ("demo-out-is-file", "demo --out {o}/afile --quick", "is a file"),
    ("demo-out-under-file", "demo --out {o}/afile/demo --quick", "is a file"),
    ("demo-unknown-option", "demo --fast", "No such option"),
    # ---- devices
    ("devices-unknown-class", "devices --class gpu", "--class must be one of"),
    ("devices-file-missing", "devices --devices-file {w}/nope.yaml", "device file not found"),
    ("devices-file-is-dir", "devices --devices-file {w}/plain_dir", "is a folder"),
    ("devices-file-bad-yaml", "devices --devices-file {w}/bad.yaml",
     "not valid YAML at line 2, column 3: expected the node content"),
    ("devices-file-not-yaml", "devices --devices-file {w}/model.txt", "not a .yaml/.yml file"),
    ("devices-file-missing-field", "devices --devices-file {w}/bad_core.yaml", "required field is missing"),
    ("devices-file-not-a-list", "devices --devices-file {w}/scalar.yaml", "devices:"),
    # ---- estimate
    ("estimate-unknown-device", "estimate {w}/good.tflite --device esp32-s9", "esp32-s9"),
    ("estimate-missing-target", "estimate {w}/nope.tflite --device host-cpu", "model not found"),
    ("estimate-bad-target", "estimate {w}/bad.tflite --device host-cpu", "not a .tflite flatbuffer"),
    ("estimate-dir-not-run", "estimate {w}/plain_dir --device host-cpu", "no run.json"),
    ("estimate-devices-file-missing", "estimate {w}/good.tflite --device host-cpu --devices-file {w}/nope.yaml",
     "device file not found"),
    ("estimate-battery-without-rate", "estimate {w}/good.tflite --device host-cpu --battery-mah 1000",
     "--inferences-per-hour"),
    ("estimate-unknown-engine", "estimate {w}/good.tflite --device host-cpu --engine tvm9", "--engine"),
    ("estimate-negative-battery", "estimate {w}/good.tflite --device host-cpu --battery-mah -1", "--battery-mah"),
    ("estimate-no-device", "estimate {w}/good.tflite", "Missing option '--device'"),
    ("estimate-battery-zero", "estimate {w}/good.tflite --device host-cpu --battery-mah 0 --inferences-per-hour 5",
     "--battery-mah must be a finite number above 0"),
    ("estimate-battery-nan", "estimate {w}/good.tflite --device host-cpu --battery-mah nan --inferences-per-hour 5",
     "--battery-mah must be a finite number above 0"),
    ("estimate-rate-zero", "estimate {w}/good.tflite --device host-cpu --battery-mah 500 --inferences-per-hour 0",
     "--inferences-per-hour must be a finite number above 0"),
    ("estimate-volts-zero", "estimate {w}/good.tflite --device host-cpu --battery-v 0",
     "--battery-v must be a finite number above 0"),
    # ---- recommend
    ("recommend-missing-target", "recommend {w}/nope.tflite", "model not found"),
    ("recommend-unknown-class", "recommend {w}/good.tflite --class gpu", "--class must be one of"),
    ("recommend-devices-file-missing", "recommend {w}/good.tflite --devices-file {w}/nope.yaml",
     "device file not found"),
    ("recommend-unknown-engine", "recommend {w}/good.tflite --engine tvm9", "--engine"),
    ("recommend-negative-latency", "recommend {w}/good.tflite --max-latency-ms -1", "--max-latency-ms"),
    ("recommend-zero-price", "recommend {w}/good.tflite --max-price 0", "--max-price must be a finite number above 0"),
    ("recommend-negative-power", "recommend {w}/good.tflite --max-power-w -2", "--max-power-w must be"),
    ("recommend-zero-latency", "recommend {w}/good.tflite --max-latency-ms 0", "--max-latency-ms must be"),
    ("recommend-battery-inf", "recommend {w}/good.tflite --battery-mah inf --inferences-per-hour 5",
     "--battery-mah must be"),
    ("recommend-battery-without-rate", "recommend {w}/good.tflite --battery-mah 500", "--inferences-per-hour"),
    ("recommend-truncated-keras", "recommend {w}/truncated.keras", "re-save it"),
    # ---- compare
    ("compare-unknown-runtime", "compare {w}/good.tflite -d digits --runtimes tensorrt", "tensorrt"),
    ("compare-unknown-precision", "compare {w}/good.tflite -d digits --precisions int3", "int3"),
    ("compare-missing-model", "compare {w}/nope.onnx -d digits", "model not found"),
    ("compare-runs-0", "compare {w}/good.tflite -d digits --runs 0", "--runs"),
    ("compare-batch-1", "compare {w}/good.tflite -d digits --batch 1", "--batch"),
    ("compare-limit-0", "compare {w}/good.tflite -d digits --limit 0", "--limit must be at least 1"),
    ("compare-out-is-file", "compare {w}/good.tflite -d digits --out {o}/afile", "is a file"),
    ("compare-missing-data", "compare {w}/good.tflite -d {w}/nope.npz", "data not found"),
    ("compare-flipped-keras", "compare {w}/flipped.keras -d digits", "re-save it"),
    ("compare-eval-data-missing", "compare {w}/good.tflite --eval-data {w}/nope.npz", "--eval-data: data not found"),
    # ---- footprint
    ("footprint-missing-run", "footprint {w}/nope_run --device host-cpu --inferences-per-day 10",
     "is not a run directory (not found)"),
    ("footprint-unknown-device", "footprint {w}/run --device esp32-s9 --inferences-per-day 10", "esp32-s9"),
    ("footprint-zero-rate", "footprint {w}/run --device host-cpu --inferences-per-day 0", "--inferences-per-day"),
    ("footprint-nan-rate", "footprint {w}/run --device host-cpu --inferences-per-day nan", "--inferences-per-day"),
    ("footprint-zero-years", "footprint {w}/run --device host-cpu --inferences-per-day 10 --device-years 0",
     "--device-years must be a finite number above 0"),
    ("footprint-unknown-cloud", "footprint {w}/run --device host-cpu --inferences-per-day 10 --cloud gcp-x9",
     "gcp-x9"),
    # ---- search
    ("search-unknown-target", "search {w}/good.keras -d digits -t esp32-s9 --out {o}/s", "esp32-s9"),
    ("search-budget-nan", "search {w}/good.keras -d digits --max-accuracy-drop nan --out {o}/s", "from 0 to 100"),
    ("search-budget-negative", "search {w}/good.keras -d digits --max-accuracy-drop -1 --out {o}/s",
     "from 0 to 100"),
    ("search-trials-0", "search {w}/good.keras -d digits --trials 0 --out {o}/s", "--trials must be at least 1"),
    ("search-bad-budget", "search {w}/good.keras -d digits --time-budget soon --out {o}/s", "not a duration"),
    ("search-unknown-objective", "search {w}/good.keras -d digits --objectives speed --out {o}/s", "speed"),
    ("search-workers-0", "search {w}/good.keras -d digits --workers 0 --out {o}/s", "--workers must be at least 1"),
    ("search-missing-model", "search {w}/nope.keras -d digits --out {o}/s", "model not found"),
    ("search-tflite-model", "search {w}/good.tflite -d digits --out {o}/s", "needs a Keras model"),
    ("search-bad-storage", "search {w}/good.keras -d digits --storage mysql//x --out {o}/s", "storage"),
    ("search-out-is-file", "search {w}/good.keras -d digits --out {o}/afile", "is a file"),
    ("search-missing-data", "search {w}/good.keras -d {w}/nope.npz --out {o}/s", "data not found"),
    ("search-runs-0", "search {w}/good.keras -d digits --runs 0 --out {o}/s", "--runs must be at least 1"),
    # ---- worker
    ("worker-bad-storage", "worker --storage nowhere --study s", "storage"),
    ("worker-bad-budget", "worker --storage sqlite:///{o}/x.db --study s --time-budget -5m", "duration"),
    ("worker-no-study", "worker --storage sqlite:///{o}/x.db", "Missing option '--study'"),
    ("worker-work-dir-file", "worker --storage sqlite:///{o}/x.db --study s --work-dir {o}/afile", "--work-dir"),
    # ---- export: a VARIANT needs a run directory (refused before the model loads)
    ("export-variant-of-keras-file", "export {w}/good.keras int8 --out {o}/b", "needs a run directory"),
    ("export-variant-of-tflite-file", "export {w}/good.tflite int8 --out {o}/b --target onnx",
     "edgeopt optimize"),
]


def _keras_zip(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}) * 20)
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(4000))
    return path.read_bytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Files the cases point at: well-formed containers (never loaded: every case fails before),
    broken ones, a run directory and device files."""
    w = tmp_path_factory.mktemp("world")
    good = _keras_zip(w / "good.keras")
    (w / "truncated.keras").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    at = good.index(b"Sequential") + 3
    flipped[at] ^= 0xFF  # a byte inside config.json: the zip's CRC check fails
    (w / "flipped.keras").write_bytes(bytes(flipped))
    (w / "empty.keras").write_bytes(b"")
    (w / "text.keras").write_text("not a zip\n")
    (w / "bad.h5").write_text("not hdf5\n")
    (w / "bad.tflite").write_text("not a flatbuffer\n")
    (w / "good.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    (w / "empty.onnx").write_bytes(b"")
    (w / "model.txt").write_text("hello\n")
    (w / "data.txt").write_text("1,2,3\n")
    (w / "empty.csv").write_text("")
    (w / "plain_dir").mkdir()
    (w / "bad.yaml").write_text("devices: [\n  - name: x\n    : :\n")
    (w / "unclosed.yaml").write_text("recipes:\n  - int8\n  - [prune, int8\noptions: {max_accuracy_drop: 1.0}\n")
    (w / "d.npz").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: never read, the flags fail first
    (w / "d.csv").write_text("a,b,label\n1,2,0\n")
    (w / "scalar.yaml").write_text("42\n")
    (w / "bad_core.yaml").write_text("devices:\n  - name: my-mcu\n    class: mcu\n    core: cortex-m99\n"
                                     "    clock_mhz: 100\n    sram_kb: 256\n    flash_kb: 1024\n")
    run = w / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "schema_version": 2, "name": "run", "model": {"path": "m.keras"}, "data": {"source": "digits"},
        "settings": {}, "variants": [{"name": "float32", "recipe": ["float32"], "status": "done",
                                      "artifact": "float32/m.tflite", "metrics": {}}]}))
    (w / "broken_run").mkdir()
    (w / "broken_run" / "run.json").write_text("{not json")
    return w


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case_id,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, argv, expected, world, tmp_path, capsys, monkeypatch):
    for name in HEAVY:  # a case that imports a framework did work before validating: it fails here
        monkeypatch.setitem(sys.modules, name, None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "afile").write_text("I am a file\n")
    monkeypatch.chdir(out_dir)
    before, world_before = _tree(out_dir), _tree(world)
    args = [a.format(w=world, o=out_dir) for a in argv.split()]
    t0 = time.perf_counter()
    code = main(args)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert expected.lower() in lines[0].lower(), lines[0]
    assert out == "", out  # nothing on stdout: no table, no half a JSON document
    assert _tree(out_dir) == before and _tree(world) == world_before  # nothing left behind
    assert elapsed < 5.0, elapsed  # validation is well under 2 s; generous for a loaded CI machine


def test_corpus_covers_every_command():
    from edgeopt.cli import command

    covered = {c[1].split()[0] for c in CASES}
    assert covered == set(command().commands), set(command().commands) ^ covered
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)


SUBPROCESS_CASES = ["optimize-order", "optimize-budget-nan", "optimize-truncated-keras", "export-name-int",
                    "bench-limit-0", "search-budget-nan", "report-out-under-file", "bench-eval-data-missing",
                    "estimate-battery-zero", "optimize-recipe-file-unclosed-list", "profile-x-key-builtin"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_fails_before_any_framework_in_a_fresh_process(case_id, world, tmp_path):
    """From a fresh interpreter: exit 2, one line, no framework imported, under 2 s of work."""
    argv, expected = next((c[1], c[2]) for c in CASES if c[0] == case_id)
    (tmp_path / "afile").write_text("x")
    args = [a.format(w=world, o=tmp_path) for a in argv.split()]
    code = ("import sys, time; t = time.perf_counter(); from edgeopt.cli import main; rc = main(sys.argv[1:]); "
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
            "sys.stdout.write(repr((rc, heavy, time.perf_counter() - t)))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    rc, heavy, seconds = eval(proc.stdout)
    assert rc == 2 and heavy == [], (rc, heavy, proc.stderr)
    assert proc.stderr.count("\n") == 1 and expected.lower() in proc.stderr.lower(), proc.stderr
    assert seconds < 2.0 * 3, seconds  # under 2 s on an idle machine; x3 for a loaded CI box


# ------------------------------------------------------------------ exit codes 0 / 1 and honest summaries

def _record(variants: list[dict], budget=None) -> dict:
    options = {} if budget is None else {"max_accuracy_drop": budget}
    return {"schema_version": 2, "name": "run", "model": {"path": "m.keras"}, "data": {"source": "digits"},
            "settings": {"options": options}, "variants": variants}


def _done(name: str, accuracy_delta: float | None, size: int, p50: float) -> dict:
    v = {"name": name, "recipe": [name], "status": "done", "artifact": f"{name}/m.tflite",
         "metrics": {"accuracy": 0.9, "size_bytes": size, "gzip_bytes": size, "latency_ms": {"p50_ms": p50}}}
    if accuracy_delta is not None:
        v["vs_baseline"] = {"accuracy_delta_points": accuracy_delta, "size_ratio": 1.0, "speed": "1.00x"}
    return v


def _failed(name: str, why: str) -> dict:
    return {"name": name, "recipe": [name], "status": "failed", "error": why}


@pytest.mark.parametrize("json_out", [False, True])
def test_optimize_exits_1_when_every_variant_failed(tmp_path, capsys, monkeypatch, json_out):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(_record(
        [_failed("float32", "conversion failed: op Foo"), _failed("int8", "calibration failed: NaN")])))

    class FakeRun:
        path = run_dir

    monkeypatch.setattr("edgeopt.api.optimize", lambda *a, **k: FakeRun())
    code = main(["optimize", str(tmp_path / "m.keras"), "-d", "digits", "-r", "int8", "--out", str(run_dir)]
                + (["--json"] if json_out else []))
    out, err = capsys.readouterr()
    assert code == 1, err
    if json_out:
        assert [v["status"] for v in json.loads(out)["variants"]] == ["failed", "failed"]
    else:
        assert "float32 failed" in out and "conversion failed: op Foo" in out and "calibration failed" in out


def test_optimize_exits_0_when_every_variant_is_done(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(_record([_done("float32", None, 1000, 1.0),
                                                          _done("int8", -0.2, 300, 0.5)])))
    monkeypatch.setattr("edgeopt.api.optimize", lambda *a, **k: type("R", (), {"path": run_dir})())
    assert main(["optimize", "m.keras", "-d", "digits", "-r", "int8", "--out", str(run_dir)]) == 0


def test_compare_exits_1_when_a_row_failed_but_not_for_unsupported_rows(capsys, monkeypatch):
    from edgeopt.compare import Row
    from edgeopt.core.precision import Precision
    from edgeopt.results import CompareResult

    def fake(rows):
        return lambda *a, **k: CompareResult("m.tflite", {"name": "digits"}, 1, 5, rows, {})

    unsupported = Row("tflm", Precision("float16"), status="unsupported", reason="no float16 kernels")
    failed = Row("openvino", Precision("int8"), status="failed", reason="calibration crashed")
    monkeypatch.setattr("edgeopt.api.compare", fake([unsupported]))
    assert main(["compare", "m.tflite", "-d", "digits", "--json"]) == 0
    monkeypatch.setattr("edgeopt.api.compare", fake([unsupported, failed]))
    assert main(["compare", "m.tflite", "-d", "digits", "--json"]) == 1


def test_over_budget_variant_is_marked_and_never_best(capsys):
    from edgeopt.report.terminal import print_run

    print_run(_record([_done("float32", None, 1000, 1.0), _done("int8", -3.5, 250, 0.4),
                       _done("float16", -0.1, 500, 0.9)]), Path("run"))
    out = " ".join(capsys.readouterr().out.split())
    assert "over budget" in out  # the table marks int8 (3.5 points > the default 1 point)
    best = out[out.index("best within 1 point"):]
    assert "smallest float16" in best and "fastest float16" in best and "int8 over the budget" in best


def test_summary_says_when_no_optimized_variant_meets_the_budget(capsys):
    from edgeopt.report.terminal import print_run

    print_run(_record([_done("float32", None, 1000, 1.0), _done("int8", -2.0, 250, 0.4)], budget=0.5),
              Path("run"))
    out = " ".join(capsys.readouterr().out.split())
    assert "no optimized variant stays within 0.5 points" in out and "best within" not in out


def test_report_out_folder_gets_report_html_inside(tmp_path, monkeypatch):
    from edgeopt import api

    written = {}

    def fake_render(run_dir, out=None, **options):
        written["out"] = out
        out.write_text("<html></html>")
        return out

    import importlib

    monkeypatch.setattr(importlib.import_module("edgeopt.report.html"), "render_report", fake_render)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(_record([])))
    folder = tmp_path / "reports"
    folder.mkdir()
    assert api.report(run_dir, folder).path == folder / "report.html" == written["out"]


def test_float_labels_for_a_classifier_are_refused(tmp_path, capsys, slide_mlp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "floaty.npz"
    np.savez(data, x=rng.random((120, 2), dtype=np.float32), y=rng.random(120).astype(np.float32) * 3)
    code = main(["bench", str(slide_mlp_path), "-d", str(data), "--runs", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "give integer class ids" in err, err


def test_default_run_directory_is_checked_too(world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("a file where the default run folder goes")
    code = main(["optimize", str(world / "good.keras"), "-d", "digits", "-r", "int8"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot create output folder runs/good" in err, err


def test_a_huge_declared_input_is_one_line_naming_the_shape(tmp_path, capsys):
    import keras

    inp = keras.Input((100000, 100000, 1))
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp))).save(tmp_path / "huge.keras")
    for argv in (["profile", tmp_path / "huge.keras"], ["bench", tmp_path / "huge.keras", "-d", "digits"],
                 ["optimize", tmp_path / "huge.keras", "-d", "digits", "-r", "int8", "--out", tmp_path / "run"]):
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "100000x100000" in err, (argv, err)
    assert not (tmp_path / "run").exists()


def test_unreadable_input_files_are_named_with_their_flag(world, monkeypatch):
    """Permissions cannot be taken from root (CI runs as root), so os.access is made to say no."""
    from edgeopt import validate
    from edgeopt.errors import UserError

    monkeypatch.setattr(validate.os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match=r"--calib-data: cannot read .*d\.csv \(permission denied\)"):
        validate.data_roles(calib=world / "d.csv")
    with pytest.raises(UserError, match=r"--recipe-file: cannot read .*bad\.yaml \(permission denied\)"):
        validate.input_file(world / "bad.yaml", "--recipe-file")


def test_an_empty_recipe_is_refused(world, tmp_path, capsys):
    code = main(["optimize", str(world / "good.keras"), "-d", "digits", "-r", "", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "recipe '' has no steps" in err, err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def open_axis_case(tmp_path_factory):
    """A Conv1D model with an open time axis (None, 4) and data of length 16; a two-output model
    (outputs cls, reg) with its data."""
    import keras
    import numpy as np

    root = tmp_path_factory.mktemp("shapes")
    inp = keras.Input((None, 4))
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3)(inp))
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)).save(root / "conv1d.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "seq.npz", x=rng.random((40, 16, 4), dtype=np.float32), y=rng.integers(0, 2, 40))
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    keras.Model(inp, [keras.layers.Dense(2, activation="softmax", name="cls")(h),
                      keras.layers.Dense(1, name="reg")(h)]).save(root / "mo.keras")
    np.savez(root / "mo.npz", x=rng.random((40, 6), dtype=np.float32), cls=rng.integers(0, 2, 40),
             reg=rng.random(40, dtype=np.float32))
    return root


def test_input_shape_that_disagrees_with_the_data_is_refused_before_any_work(open_axis_case, tmp_path, capsys):
    c = open_axis_case
    for command in (["optimize", "-r", "int8"], ["compare"]):
        err = one_error([command[0], c / "conv1d.keras", "-d", c / "seq.npz", "--input-shape", "32,4",
                          *command[1:], "--out", tmp_path / command[0]], capsys)
        assert "--input-shape 32,4" in err and "sample shape 16,4" in err and "give --input-shape 16,4" in err
        assert not (tmp_path / command[0]).exists()


def test_unknown_output_name_is_refused_before_any_work(open_axis_case, tmp_path, capsys):
    c = open_axis_case
    err = one_error(["optimize", c / "mo.keras", "-d", c / "mo.npz", "--output", "nope", "-r", "int8",
                      "--out", tmp_path / "run"], capsys)
    assert "no output named 'nope'; the outputs are cls, reg" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("shape,expected", [("16,5", "axis 2 must be 4"), ("nope:16,4", "the model's inputs are"),
                                            ("16", "has 2 axes")])
def test_profile_checks_input_shape_against_the_model(open_axis_case, capsys, shape, expected):
    err = one_error(["profile", open_axis_case / "conv1d.keras", "--input-shape", shape], capsys)
    assert expected in err


def test_a_broken_json_step_config_is_named_as_such(world, tmp_path, capsys):
    code = main(["optimize", str(world / "good.keras"), "-d", "digits", "-r", "int8", "-o", 'int8={"fixes":',
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not valid JSON" in err and "matches no field" not in err, err
