"""g++ compile-only checks of generated TFLite Micro programs against the stub headers in tests/stubs."""
import subprocess
from pathlib import Path

STUBS = Path(__file__).parent / "stubs"


def compile_tflm_program(source: Path, tmp_path: Path, *, arduino: bool = False) -> None:
    """g++ compile-only check of a generated TFLM program against the stub headers in tests/stubs, whose
    op resolver declares exactly the methods in edgeopt's TFLM op table."""
    from edgeopt.export.tflm_ops import tflm_resolver_methods

    inc = tmp_path / "stub_inc"
    inc.mkdir(exist_ok=True)
    methods = sorted(set(tflm_resolver_methods().values()))
    (inc / "tflm_resolver_methods.inc").write_text("".join(f"  TfLiteStatus {m}();\n" for m in methods))
    cmd = ["g++", "-std=c++17", "-Wall", "-Wshadow", "-Werror", "-fsyntax-only", f"-I{STUBS}", f"-I{inc}",
           f"-I{source.parent}"]
    if arduino:
        cmd += ["-include", "Arduino.h", "-x", "c++"]
    subprocess.run(cmd + [str(source)], check=True)
