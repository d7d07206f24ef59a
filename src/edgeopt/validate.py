"""Checks of a command's inputs that run before anything heavy loads (no TensorFlow, Keras or model).

Every API function that backs a command calls these first, so bad input is one ``UserError``
line (exit code 2) within a fraction of a second, before any progress bar, and nothing is
written: the checks read the file system but never create a folder.
"""
from __future__ import annotations

import keyword
import math
import os
import re
import zipfile
from pathlib import Path

from edgeopt.errors import UserError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite", ".onnx")
DATA_SUFFIXES = (".npz", ".npy", ".csv")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# C and C++ keywords (C17 + C++20) that are valid-looking identifiers but cannot name a variable.
C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline int
long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn _Static_assert
_Thread_local alignas alignof and and_eq asm bitand bitor bool catch char8_t char16_t char32_t class
compl concept consteval constexpr constinit const_cast co_await co_return co_yield decltype delete
dynamic_cast explicit export false friend mutable namespace new noexcept not not_eq nullptr operator
or or_eq private protected public reinterpret_cast requires static_assert static_cast template this
thread_local throw true try typeid typename using virtual wchar_t xor xor_eq main
""".split())


def count(value, flag: str, minimum: int = 1) -> None:
    """``value`` is None or an integer of at least ``minimum`` (``--runs``, ``--limit``, ...)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{flag} must be a whole number of at least {minimum} (got {value!r})")
    if value < minimum:
        raise UserError(f"{flag} must be at least {minimum} (got {value}); give e.g. {flag} {max(minimum, 1)}")


def accuracy_budget(value, flag: str = "--max-accuracy-drop") -> None:
    """``value`` is None or a finite number of accuracy points within [0, 100]."""
    if value is None:
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} must be a number of accuracy points (got {value!r}); e.g. {flag} 1") from None
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise UserError(f"{flag} must be a finite number of accuracy points from 0 to 100 (got {value}); "
                        f"e.g. {flag} 1")


def options(opts: dict | None) -> None:
    """Run-level numbers among the step options: the budget and the calibration sample count."""
    opts = opts or {}
    accuracy_budget(opts.get("max_accuracy_drop"))
    if "calibration_samples" in opts:
        count(opts["calibration_samples"], "--calibration-samples")


def output_dir(path, flag: str = "--out") -> None:
    """``path`` can be a folder we write into: not an existing file, and the nearest existing
    folder on its way is writable. Creates nothing."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; give a folder path (it is created if missing)")
    _writable_ancestor(path, flag)


def output_file(path, flag: str = "--out") -> None:
    """``path`` can be written as a file: not an existing folder, and its folder is writable."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file path such as {path / 'report.html'}")
    _writable_ancestor(path.parent if str(path.parent) else Path("."), flag)


def report_file(out, name: str = "report.html", flag: str = "--out") -> Path | None:
    """Where a report given as ``--out`` goes: a path ending in ``/`` or an existing folder means
    ``name`` inside it; any other path is the file itself. Missing folders on the way are created
    when it is written (as for every ``--out``); checked here: not a folder, writable. Creates nothing."""
    if out is None:
        return None
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        path = path / name
    output_file(path, flag)
    if path.is_file() and path.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"{flag} {path} is an existing {path.suffix or 'extensionless'} file, not a report; "
                        f"give a .html path (e.g. {path.with_suffix('.html').name}) or a folder")
    _takes_files(path, flag)
    return path


def _takes_files(path: Path, flag: str) -> None:
    """The nearest existing folder on ``path``'s way lets a file be made in it: an anonymous temp file
    is opened there and closed at once (nothing is left). Catches what ``os.access`` cannot see,
    such as /proc, or a read-only mount for root."""
    import tempfile

    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise UserError(f"cannot create output file {path}: {probe} takes no new files ({e.strerror or e}); "
                        f"choose another {flag}") from None


def input_file(path, flag: str, suffixes: tuple[str, ...] = (), what: str = "file") -> None:
    """``path`` is None or an existing, readable file (not a folder) with one of ``suffixes``;
    ``what`` names it in the error ("recipe file")."""
    if path is None:
        return
    path = Path(path)
    kinds = f"a {'/'.join(suffixes)} file" if suffixes else "a file"
    if not path.exists():
        raise UserError(f"{flag}: {what} not found: {path}; give the path of {kinds}")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give {kinds}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path.name} is not {kinds}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{flag}: cannot read {path} (permission denied); make it readable")


def metric_file(spec, flag: str = "--metric") -> None:
    """The file part of ``--metric file.py:function`` is a .py file: an existing file with another
    suffix is refused before it is imported (``module:function`` passes)."""
    target = str(spec).split(":")[0]
    path = Path(target)
    if target and path.is_file() and path.suffix.lower() != ".py":
        raise UserError(f"{flag} {spec}: {target} is not a .py file; give path/to/file.py:function or "
                        f"module:function")


def data_flags(sources, x_key: str = "x", y_key: str = "y", label_column: str = "-1") -> None:
    """Format-specific data flags are refused when no data file they apply to is given, instead of
    being ignored: ``--x-key``/``--y-key`` need a .npz, ``--label-column`` a .csv. ``sources``:
    the --data value and the role files (None where absent)."""
    suffixes = {Path(str(s)).suffix.lower() for s in sources if s is not None}
    given = [str(s) for s in sources if s is not None]
    named = f"the data is {', '.join(given)}" if given else "no data is given"
    for flag, value, default, suffix, what in (
            ("--x-key", x_key, "x", ".npz", "the input array(s) of a .npz file"),
            ("--y-key", y_key, "y", ".npz", "the label array(s) of a .npz file"),
            ("--label-column", label_column, "-1", ".csv", "the label column of a .csv file")):
        if str(value) != default and suffix not in suffixes:
            raise UserError(f"{flag} {value} picks {what}, but {named}; drop {flag}, or give a {suffix} file")


def _writable_ancestor(path: Path, flag: str) -> None:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"cannot create output folder {path}: {probe} is a file; choose another {flag}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {probe} is not writable; choose a folder you can write to")


def model_path(path, kinds: tuple[str, ...] = ("keras", "tflite", "onnx")) -> str:
    """The kind ("keras", "tflite", "onnx") of an existing model file or SavedModel folder; a cheap
    look at the container (zip, HDF5, TFLite magic) refuses empty, truncated or wrong files."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model not found: {path}; give the path of a .keras/.h5 file, SavedModel folder, "
                        f".tflite or .onnx")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise UserError(f"{path} is a folder but not a SavedModel (no saved_model.pb inside); give a "
                            f"model file (.keras, .h5, .tflite, .onnx)")
        kind = "keras"
    else:
        suffix = path.suffix.lower()
        if suffix not in MODEL_SUFFIXES:
            raise UserError(f"unsupported model file {path.name}: use .keras, .h5, a SavedModel folder, "
                            f".tflite or .onnx")
        kind = {".tflite": "tflite", ".onnx": "onnx"}.get(suffix, "keras")
        _check_container(path, suffix)
    if kind not in kinds:
        wanted = " or ".join("a Keras model (.keras/.h5/SavedModel)" if k == "keras" else f"a .{k} file"
                             for k in kinds)
        fix = ""
        if kind == "keras" and "keras" not in kinds:
            run = Path("runs") / path.stem
            fix = (f": convert it first with edgeopt optimize {path} -d DATA -r int8 --out {run}, then give "
                   f"the run and a variant: edgeopt export {run} int8 --out DIR (or float32)")
        raise UserError(f"{path.name} is a .{kind} model; this command needs {wanted}{fix}")
    return kind


def _check_container(path: Path, suffix: str) -> None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if size == 0:
        raise UserError(f"{path.name} is empty (0 bytes); re-save or re-download the model")
    if suffix == ".keras":
        _check_keras_zip(path)
    elif suffix in (".h5", ".hdf5") and head != _HDF5_MAGIC:
        raise UserError(f"{path.name} is not an HDF5 file (corrupt, truncated or another format); re-save it "
                        f"with model.save('model.keras')")
    elif suffix == ".tflite" and (size < 8 or head[4:8] != b"TFL3"):
        raise UserError(f"{path.name} is not a .tflite flatbuffer (corrupt, truncated or another format); "
                        f"re-convert or re-download it")


def _check_keras_zip(path: Path) -> None:
    bad = (f"{path.name} is not a valid .keras file (a zip archive; this one is corrupt, truncated or "
           f"another format); re-save it with model.save()")
    if not zipfile.is_zipfile(path):
        raise UserError(bad)
    try:
        with zipfile.ZipFile(path) as z:
            if z.testzip() is not None or "config.json" not in z.namelist():
                raise UserError(bad)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise UserError(bad) from None


def data_source(data, flag: str = "--data") -> None:
    """``data`` is a built-in dataset name or an existing, readable .npz/.npy/.csv file or image
    folder; ``flag`` (``--data``, ``--eval-data``...) is named in the error."""
    if data is None or not isinstance(data, (str, Path)):
        return
    from edgeopt.data import BUILTINS

    name = str(data)
    if name in BUILTINS:
        return
    path = Path(name)
    builtins = f"{', '.join(BUILTINS)}, " if flag == "--data" else ""
    if not path.exists():
        raise UserError(f"{flag}: data not found: {name}; give {builtins}a .npz/.npy/.csv file or an "
                        f"image folder (see README: Data)")
    if path.is_file() and path.suffix.lower() not in DATA_SUFFIXES:
        raise UserError(f"{flag}: unsupported data file {path.name}: use .npz, .npy, .csv or an image folder")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise UserError(f"{flag}: cannot read {name} (permission denied); make it readable or copy it")
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"{flag}: data file {path.name} is empty (0 bytes); give a file with samples")


def data_roles(train=None, calib=None, eval=None, data=None) -> None:
    """The role files ``--train-data``, ``--calib-data``, ``--eval-data`` (each None or a path),
    and their combination with ``--data`` (``edgeopt.data.load_data_roles``)."""
    from edgeopt.data import BUILTINS

    for value, flag in ((train, "--train-data"), (calib, "--calib-data"), (eval, "--eval-data")):
        data_source(value, flag)
    if data is not None and train is not None and eval is not None:
        raise UserError("--data is not used when both --train-data and --eval-data are given; drop one of them")
    if eval is not None and str(eval) in BUILTINS:
        raise UserError(f"--eval-data {eval}: a built-in comes with its own eval split; give it as --data {eval}")
    if str(data) in BUILTINS and train is not None:
        raise UserError(f"the built-in {data} comes with its own splits: give it as --data alone (or with "
                        f"--eval-data), and your files as --train-data/--eval-data without it")


def run_dir(path) -> None:
    """``path`` is a run directory (a folder with run.json) made by ``edgeopt optimize``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} is not a run directory (not found); make one with edgeopt optimize")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run directory; give the folder edgeopt optimize wrote")
    if not (path / "run.json").is_file():
        raise UserError(f"{path} is not a run directory (no run.json); make one with edgeopt optimize")


def c_identifier(name, flag: str = "--name") -> None:
    """``name`` is a C identifier that is no C/C++ keyword (it names an array in the bundle)."""
    if name is None:
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
        raise UserError(f"{flag} {name!r} is not a C identifier; use letters, digits and _ (not first a "
                        f"digit), e.g. {flag} model")
    if name in C_KEYWORDS or keyword.iskeyword(name):
        raise UserError(f"{flag} {name!r} is a C/C++ keyword; choose another name, e.g. {flag} {name}_model")


def devices_file(path) -> None:
    """``path`` is None or an existing YAML file (its contents are checked when it is read)."""
    if path is None:
        return
    path = Path(path)
    if not path.exists():
        raise UserError(f"--devices-file: device file not found: {path}; give a YAML file (see: edgeopt devices "
                        f"--help)")
    if path.is_dir():
        raise UserError(f"--devices-file {path} is a folder; give a YAML file")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise UserError(f"--devices-file {path.name} is not a .yaml/.yml file")


def device_names(names, file=None) -> None:
    """Every name is a device of the catalogue (or of ``file``): UserError with close matches."""
    from edgeopt.hardware.catalogue import get_device, load_devices

    devices_file(file)
    names = [names] if isinstance(names, str) else list(names or [])
    if not names:
        return
    devs = load_devices(file)
    for name in names:
        get_device(name, devs)


def positive(value, flag: str, example: str | None = None) -> None:
    """``value`` is None or a finite number above 0 (a physical quantity: mAh, volts, ms, W, USD);
    ``example`` (e.g. ``"1000"``) shows a valid value in the error."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        hint = f"; e.g. {flag} {example}" if example else ""
        raise UserError(f"{flag} must be a finite number above 0 (got {value!r}){hint}")
