"""The command line feels finished: help without internals (snapshot), one meaning per short flag,
results on stdout and progress on stderr (`--json` prints exactly one JSON document), a spinner
when stderr is a terminal.

Help snapshots live in tests/fixtures/help/<command>.txt; after changing a command's help run
    EDGEOPT_UPDATE_SNAPSHOTS=1 pytest tests/test_cli_polish.py -k snapshot
and review the diff."""
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.cli import command, main

HELP_DIR = Path(__file__).parent / "fixtures" / "help"
UPDATE = bool(os.environ.get("EDGEOPT_UPDATE_SNAPSHOTS"))
COMMANDS = sorted(command().commands)
INTERNALS = re.compile(r"<(?:str|int|float|path|text|bool|int range|float range|list\[\w+\])>|\{[A-Za-z_]+\}|``|:func:")
FILE_LINE = re.compile(r"\b\w+\.py:\d+\b")


def _help(capsys, name: str) -> str:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    return "\n".join(line.rstrip() for line in out.splitlines()) + "\n"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_snapshot(capsys, monkeypatch, name):
    monkeypatch.setenv("COLUMNS", "100")
    text = _help(capsys, name)
    assert not INTERNALS.findall(text), INTERNALS.findall(text)
    path = HELP_DIR / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no help snapshot for {name}: run EDGEOPT_UPDATE_SNAPSHOTS=1 pytest {__file__} -k snapshot"
    assert text == path.read_text(), f"help of {name} changed; if intended, regenerate (see module docstring)"


def test_every_snapshot_is_a_command():
    assert sorted(p.stem for p in HELP_DIR.glob("*.txt")) == COMMANDS


def test_one_meaning_per_short_flag():
    meanings: dict[str, set[str]] = {}
    for name, cmd in command().commands.items():
        for param in cmd.params:
            shorts = [o for o in param.opts + param.secondary_opts if re.fullmatch(r"-[A-Za-z]", o)]
            longs = [o for o in param.opts if o.startswith("--")]
            for short in shorts:
                meanings.setdefault(short, set()).update(longs)
    assert all(len(longs) == 1 for longs in meanings.values()), meanings
    assert meanings["-o"] == {"--option"} and meanings["-d"] == {"--data"}


def test_demo_and_recipes_say_what_they_do_in_plain_text(capsys):
    demo = _help(capsys, "demo")
    assert "OUT/models/" in demo and "report.html" in demo
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "max_accuracy_drop" in out and "`" not in out


# ------------------------------------------------------------------ stdout / stderr
def _json_only(capsys, *args) -> dict | list:
    code = main([str(a) for a in args] + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not FILE_LINE.search(err), err
    return json.loads(out)  # the whole of stdout is one JSON document


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("polish") / "mlp"


@pytest.mark.slow
def test_json_is_the_only_thing_on_stdout(capsys, slide_mlp_path, run_dir, tmp_path):
    model = str(slide_mlp_path)
    assert _json_only(capsys, "profile", model)["source"] == "keras"
    assert _json_only(capsys, "bench", model, "-d", "blobs2d", "--runs", "5")["metrics"]["accuracy"] > 0.5
    record = _json_only(capsys, "optimize", model, "-d", "blobs2d", "-r", "int8", "--runs", "5", "--out", run_dir)
    assert [v["name"] for v in record["variants"]] == ["float32", "int8"]
    assert (run_dir / "report.html").exists()
    assert _json_only(capsys, "explain", run_dir, "int8")["name"] == "int8"
    assert _json_only(capsys, "report", run_dir, "--out", tmp_path / "r.html")["size_bytes"] > 0
    assert _json_only(capsys, "export", run_dir, "int8", "--out", tmp_path / "b")["target"] == "arduino"
    assert "int8" in _json_only(capsys, "recipes")["steps"]
    assert _json_only(capsys, "devices", "--class", "mcu")[0]["class"] == "mcu"
    assert len(_json_only(capsys, "estimate", run_dir, "--device", "stm32h7a3")) == 2
    assert _json_only(capsys, "recommend", run_dir, "--class", "mcu")[0]["device"]
    assert _json_only(capsys, "footprint", run_dir, "--device", "stm32u575", "--inferences-per-day", "100")["grid"]
    rows = _json_only(capsys, "compare", model, "-d", "blobs2d", "--runtimes", "litert", "--precisions", "float32",
                      "--runs", "5")["rows"]
    assert [r["status"] for r in rows] == ["ok"]


def test_tables_on_stdout_messages_on_stderr(capsys, slide_mlp_path, run_dir):
    if not (run_dir / "run.json").exists():
        pytest.skip("needs the run of test_json_is_the_only_thing_on_stdout")
    code = main(["optimize", str(slide_mlp_path), "-d", "blobs2d", "-r", "int8", "--runs", "5", "--out", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and "run directory:" in out and "kept from the earlier run" not in out
    assert "float32: kept from the earlier run" in err and not FILE_LINE.search(err)


def test_log_lines_have_no_source_column():
    from edgeopt.report.terminal import err_console

    with err_console.capture() as cap:
        err_console.log("hello")
    assert "hello" in cap.get() and not FILE_LINE.search(cap.get())


def _run_with_tty_stderr(args: list[str], timeout: float = 240) -> tuple[str, str, int]:
    """Run edgeopt with stderr on a pseudo-terminal and stdout on a pipe."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "edgeopt.cli", *args], stdout=subprocess.PIPE, stderr=slave,
                            env=env)
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise TimeoutError(args)
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read().decode()
    proc.wait()
    os.close(master)
    return out, err.decode(errors="replace"), proc.returncode


@pytest.mark.slow
def test_spinner_on_a_terminal_and_not_in_the_result(slide_mlp_path):
    out, err, code = _run_with_tty_stderr(["profile", str(slide_mlp_path)])
    assert code == 0, err
    assert "profiling slide_mlp.keras" in err  # the spinner, on the terminal
    assert "\x1b[?25l" in err  # rich hides the cursor while it animates
    assert "profiling" not in out and "slide_mlp.keras" in out  # the table, on the pipe


def test_no_spinner_when_stderr_is_not_a_terminal(capsys, slide_mlp_path):
    code = main(["profile", str(slide_mlp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and "MACs" in out and err == ""


def test_a_bigger_quantized_tiny_model_is_explained():
    from edgeopt.report.terminal import _bigger_note

    record = {"variants": [
        {"name": "float32", "status": "done", "metrics": {"size_bytes": 3000}, "graph": {"params": 239}},
        {"name": "int8", "status": "done", "metrics": {"size_bytes": 3400}, "graph": {"params": 239}},
        {"name": "float16", "status": "done", "metrics": {"size_bytes": 2500}, "graph": {"params": 239}}]}
    note = _bigger_note(record)
    assert note.startswith("note: int8 is larger than float32") and "956 B of float32 weights" in note
    record["variants"][1]["metrics"]["size_bytes"] = 2000
    assert _bigger_note(record) is None


def test_the_ptq_alias_of_the_tour_is_known_in_a_fresh_process():
    code = "from edgeopt.api import plan_recipes; print(len(plan_recipes(['ptq'])[0]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) >= 6


# ------------------------------------------------------------------ bad inputs found by a tester (polish3)
def _one_error_line(capsys, *args) -> str:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and out == "", (code, out, err)
    return lines[0]


@pytest.mark.parametrize("flag", ["--calib-data", "--eval-data", "--train-data"])
def test_data_of_the_wrong_shape_is_refused_before_any_step(capsys, slide_mlp_path, tmp_path, flag):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "wrong.npz", x=rng.random((60, 5), dtype=np.float32), y=np.arange(60) % 3)
    np.savez(tmp_path / "right.npz", x=rng.random((60, 2), dtype=np.float32), y=np.arange(60) % 3)
    line = _one_error_line(capsys, "optimize", slide_mlp_path, "-d", tmp_path / "right.npz", flag, tmp_path / "wrong.npz",
                           "-r", "int8", "--runs", "2", "--out", tmp_path / "run")
    assert f"{flag} wrong.npz: input shape (5) but the model expects (2)" in line and "--x-key" in line, line
    assert not (tmp_path / "run").exists()


def test_a_shape_fix_by_reshape_is_named_and_reshape_applies_to_built_in_data(capsys, slide_mlp_path):
    from edgeopt.data import load_data

    # blobs2d reshaped to 1x2 no longer fits the (2)-input MLP: --reshape was applied, and the fix is named
    line = _one_error_line(capsys, "bench", slide_mlp_path, "-d", "blobs2d", "--reshape", "1,2", "--runs", "2")
    assert "--data blobs2d: input shape (1, 2) but the model expects (2); give --reshape 2" in line, line
    line = _one_error_line(capsys, "bench", slide_mlp_path, "-d", "blobs2d", "--reshape", "3", "--runs", "2")
    assert "--reshape 3 on blobs2d: cannot reshape samples of 2 values" in line, line
    flat = load_data("digits", reshape=(64,))
    assert flat.input_shape == (64,) and flat.x_train.shape[1:] == flat.x_val.shape[1:] == (64,)


def test_npz_without_labels_points_to_fidelity_and_wrong_output_is_refused(capsys, slide_mlp_path, tmp_path):
    import numpy as np

    np.savez(tmp_path / "nolabels.npz", x=np.random.default_rng(0).random((40, 2), dtype=np.float32))
    line = _one_error_line(capsys, "bench", slide_mlp_path, "-d", tmp_path / "nolabels.npz", "--runs", "2")
    assert "no labels 'y'" in line and "--task fidelity" in line, line
    line = _one_error_line(capsys, "bench", slide_mlp_path, "-d", "blobs2d", "--output", "7", "--runs", "2")
    assert "--output 7 is out of range" in line, line


def test_a_limit_that_leaves_fewer_eval_samples_than_classes_is_refused(capsys, slide_mlp_path):
    from edgeopt.data import load_data
    from edgeopt.errors import UserError

    line = _one_error_line(capsys, "bench", slide_mlp_path, "-d", "blobs2d", "--limit", "5", "--runs", "2")
    assert "--limit 5 leaves 1 eval sample(s) of blobs2d for 3 classes; give --limit 30 or more" in line, line
    with pytest.raises(UserError, match="--limit 5 leaves 1 eval sample.*10 classes; give --limit 100"):
        load_data("digits", limit=5)
    assert len(load_data("digits", limit=50).x_eval) == 10  # one per class: accepted


def test_a_tiny_eval_split_is_warned_with_the_numbers():
    import numpy as np

    from edgeopt.data import check_against_model, make_dataset

    ds = make_dataset("tiny", np.random.rand(15, 2), np.arange(15) % 10)
    warnings = check_against_model(ds, (2,), 10)
    assert any("eval split has 3 sample(s) for 10 classes" in w for w in warnings), warnings


@pytest.fixture
def fake_render(monkeypatch):
    """render_report that writes a stub page the way the real one does (atomic write), to test --out."""
    import importlib

    from edgeopt.fsutil import atomic_write_text

    monkeypatch.setattr(importlib.import_module("edgeopt.report.html"), "render_report",
                        lambda run_dir, out=None, **kw: atomic_write_text(out or run_dir / "report.html", "<html/>"))


def test_report_out_folder_forms(capsys, tmp_path, fake_render, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"schema_version": 2, "name": "run", "variants": []}))
    monkeypatch.chdir(tmp_path)
    cases = [("new/", "new/report.html"),  # a path ending in /: a folder, created
             (str(run), f"{run}/report.html"),  # an existing folder
             ("a/b/r.html", "a/b/r.html")]  # missing parents: created, as for every --out
    for given, expected in cases:
        assert main(["report", str(run), "--out", given]) == 0
        assert capsys.readouterr().out.strip() == f"wrote {expected}"
        assert (tmp_path / expected).is_file(), given
    assert not (tmp_path / "new").is_file()
    line = _one_error_line(capsys, "report", run, "--out", run / "run.json")
    assert "not a report" in line and json.loads((run / "run.json").read_text())["name"] == "run"


def test_profile_footer_lists_every_input():
    from rich.console import Console

    from edgeopt.measure.graph_types import GraphProfile
    from edgeopt.report.terminal import format_profile_table

    prof = GraphProfile("keras", "two.keras", [], input_shape=[1, 4],
                        inputs=[{"name": "image", "shape": [1, 8, 8, 1], "dtype": "float32"},
                                {"name": "features", "shape": [1, 5], "dtype": "int8"}])
    console = Console(width=200, record=True)
    console.print(format_profile_table(prof))
    text = console.export_text()
    assert "inputs image 1x8x8x1 float32, features 1x5 int8" in text, text
    prof.inputs = prof.inputs[:1]
    console.print(format_profile_table(prof))
    assert "input 1x4 float32 |" in console.export_text()


def test_reshape_per_input_is_parsed_applied_and_checked(tmp_path):
    import numpy as np

    from edgeopt.commands.core import role_kwargs
    from edgeopt.data import load_data
    from edgeopt.errors import UserError

    assert role_kwargs(None, None, None, "8,8,1")["reshape"] == (8, 8, 1)
    shapes = role_kwargs(None, None, None, "image:8,8,1; features:5")["reshape"]
    assert shapes == {"image": (8, 8, 1), "features": (5,)}
    for bad in ("8,x", "image:8,0", ":8,8"):
        with pytest.raises(UserError, match="--reshape"):
            role_kwargs(None, None, None, bad)
    np.savez(tmp_path / "two.npz", image=np.random.rand(30, 64), features=np.random.rand(30, 5), y=np.arange(30) % 2)
    ds = load_data(tmp_path / "two.npz", x_key="image,features", reshape=shapes)
    assert ds.input_shape == {"image": (8, 8, 1), "features": (5,)}
    with pytest.raises(UserError, match="--reshape names imag, but the inputs of two.npz are image, features"):
        load_data(tmp_path / "two.npz", x_key="image,features", reshape={"imag": (8, 8, 1)})
    with pytest.raises(UserError, match="names inputs, but digits gives one input array; .* --reshape 64"):
        load_data("digits", reshape={"x": (64,)})
