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
