"""Arm Ethos-U NPU figures from the Vela compiler (``ethos-u-vela``): compile a full-int8 .tflite for an
Ethos-U55/U65/U85 system configuration and read back vela's own numbers.

Every figure is vela's: cycles, inference time, SRAM and off-chip memory come from the summary CSV vela
writes (``<model>_summary_<system>.csv``; in vela 5.2.0 cycles and time are only written there), and the
ops left on the CPU, with vela's reason, from its console report. These are compiler estimates (vela's
performance model of the NPU and its memories), not measurements on silicon. Targets: hardware/npu.yaml.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from edgeopt.errors import UserError
from edgeopt.hardware.estimator import register_latency_provider

NPU_FILE = Path(__file__).with_name("npu.yaml")
OPTIMISE_MODES = ("Performance", "Size")


@dataclass(frozen=True)
class NpuTarget:
    """An Ethos-U accelerator in one of vela's system configurations and memory modes."""
    name: str  # e.g. "ethos-u55-128"
    title: str
    accelerator: str  # vela --accelerator-config
    system_config: str  # a [System_Config.*] section of vela.ini
    memory_mode: str  # a [Memory_Mode.*] section of vela.ini


@dataclass
class CpuFallbackOp:
    """An op vela leaves to the CPU (TFLite Micro runs it), with vela's reason."""
    op_type: str  # TFLite builtin name, e.g. "CUMSUM"
    output: str  # the op's output tensor name (vela's "ofm")
    reason: str


@dataclass
class VelaResult:
    """Vela's figures for one model on one target and optimise mode (one row of vela's summary CSV)."""
    target: str
    optimise: str  # "Performance" | "Size"
    accelerator: str  # vela's name, e.g. "Ethos_U55_128"
    system_config: str
    memory_mode: str
    core_clock_hz: float
    cycles_total: int  # NPU cycles per inference including memory access stalls (vela: cycles_total)
    cycles_npu: int  # compute cycles (vela: cycles_npu)
    inference_time_s: float  # vela: inference_time (batch 1)
    inferences_per_second: float
    sram_bytes: int  # vela: sram_memory_used (KiB) x 1024: arena + weights placed in SRAM
    off_chip_bytes: int  # DRAM or off-chip flash used (weights and, in DRAM modes, feature maps)
    off_chip_memory: str  # "Off-chip Flash" | "DRAM" | "" (what off_chip_bytes is)
    weights_area: str  # where vela stores the weights: "Off-chip Flash", "DRAM", "SRAM"
    macs: int  # vela: nn_macs
    npu_ops: int
    cpu_ops: int
    cpu_fallback: list[CpuFallbackOp] = field(default_factory=list)
    vela_version: str = ""
    compiled_tflite: str | None = None  # the vela-compiled .tflite (when an output folder was kept)

    @property
    def inference_ms(self) -> float:
        return self.inference_time_s * 1e3

    def to_dict(self) -> dict:
        return {**asdict(self), "inference_ms": self.inference_ms, "kind": "compiler estimate (Arm Vela)"}


@lru_cache(maxsize=None)
def _npu_data() -> dict:
    return yaml.safe_load(NPU_FILE.read_text())


def npu_targets() -> dict[str, NpuTarget]:
    """The Ethos-U targets of hardware/npu.yaml by name."""
    return {name: NpuTarget(name=name, **spec) for name, spec in _npu_data()["targets"].items()}


def vela_version() -> str:
    from ethosu.vela import __version__

    return __version__


def _target(name: str) -> NpuTarget:
    targets = npu_targets()
    if name not in targets:
        raise UserError(f"unknown Ethos-U target '{name}'; known: {', '.join(targets)}")
    return targets[name]


def vela_argv(tflite_path: Path, target: NpuTarget, optimise: str, out_dir: Path) -> list[str]:
    """The vela command line (without the program name) edgeopt runs for TARGET."""
    return [str(tflite_path), "--accelerator-config", target.accelerator, "--config", _npu_data()["config_file"],
            "--system-config", target.system_config, "--memory-mode", target.memory_mode,
            "--optimise", optimise, "--output-dir", str(out_dir), "--show-cpu-operations"]


@contextlib.contextmanager
def _captured_stdout():
    """Capture both Python's sys.stdout and the C-level fd 1 (vela's C++ core prints there)."""
    import ctypes

    libc = ctypes.CDLL(None)
    py = io.StringIO()
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 1)
        text = [""]
        try:
            with contextlib.redirect_stdout(py):
                yield text
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            f.seek(0)
            text[0] = f.read().decode(errors="replace") + py.getvalue()


def run_vela(argv: list[str]) -> tuple[int, str]:
    """Run vela's own command-line entry point in this process: (exit code, console text)."""
    from ethosu.vela import vela

    with _captured_stdout() as text:
        try:
            rc = vela.main(argv)
        except SystemExit as e:  # argparse errors
            rc = int(e.code or 0)
    return rc, text[0]


_WARNING = re.compile(r"^Warning \(supported operators\) operator: (\w+), ofm: '(.*)'$")


def parse_cpu_fallback(console: str) -> list[CpuFallbackOp]:
    """The ops vela's report puts on the CPU, each with the reason it prints below it."""
    ops, lines = [], console.splitlines()
    for i, line in enumerate(lines):
        m = _WARNING.match(line.strip())
        if not m:
            continue
        reason = []
        for nxt in lines[i + 1:]:
            if not nxt.strip() or _WARNING.match(nxt.strip()):
                break
            reason.append(nxt.strip().removeprefix("Reason: "))
        ops.append(CpuFallbackOp(m.group(1), m.group(2), "; ".join(reason)))
    return ops


def _op_counts(console: str) -> tuple[int, int]:
    def count(kind: str) -> int:
        m = re.search(rf"^{kind} operators = (\d+)", console, re.M)
        return int(m.group(1)) if m else 0

    return count("NPU"), count("CPU")


def read_summary_csv(path: Path) -> dict[str, str]:
    """The single data row of vela's summary CSV as a dict of column -> text."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise RuntimeError(f"{path}: expected one summary row, found {len(rows)}")
    return rows[0]


def _off_chip(row: dict[str, str]) -> tuple[int, str]:
    for column, label in (("off_chip_flash_memory_used", "Off-chip Flash"), ("dram_memory_used", "DRAM"),
                          ("on_chip_flash_memory_used", "On-chip Flash")):
        if float(row[column]) > 0:
            return round(float(row[column]) * 1024), label
    return 0, ""


def compile_for_ethos_u(tflite_path, target: str = "ethos-u55-128", optimise: str = "Performance",
                        out_dir=None) -> VelaResult:
    """Compile a full-int8 .tflite with vela for TARGET (a name in hardware/npu.yaml) and OPTIMISE mode.

    OUT_DIR keeps vela's outputs (compiled ``<model>_vela.tflite`` and summary CSV); None uses a temporary
    folder. Raises UserError for a missing file, an unknown target or mode, or a model vela rejects."""
    tflite_path = Path(tflite_path)
    if tflite_path.suffix != ".tflite" or not tflite_path.is_file():
        raise UserError(f"Ethos-U compilation needs an existing .tflite file, got {tflite_path}")
    if optimise not in OPTIMISE_MODES:
        raise UserError(f"vela optimise mode must be one of {', '.join(OPTIMISE_MODES)}, got {optimise!r}")
    tgt = _target(target)
    with contextlib.ExitStack() as stack:
        folder = Path(out_dir) if out_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rc, console = run_vela(vela_argv(tflite_path, tgt, optimise, folder))
        summary = folder / f"{tflite_path.stem}_summary_{tgt.system_config}.csv"
        if rc != 0 or not summary.exists():
            reason = next((ln.strip() for ln in console.splitlines() if "error" in ln.lower()), console.strip()[-200:])
            raise UserError(f"vela could not compile {tflite_path.name} for {target}: {reason}")
        result = _result(tgt, optimise, read_summary_csv(summary), console)
        if out_dir:
            result.compiled_tflite = str(folder / f"{tflite_path.stem}_vela.tflite")
    return result


def _result(tgt: NpuTarget, optimise: str, row: dict[str, str], console: str) -> VelaResult:
    npu_ops, cpu_ops = _op_counts(console)
    off_bytes, off_kind = _off_chip(row)
    return VelaResult(
        target=tgt.name, optimise=optimise, accelerator=row["accelerator_configuration"],
        system_config=row["system_config"], memory_mode=row["memory_mode"],
        core_clock_hz=float(row["core_clock"]), cycles_total=int(float(row["cycles_total"])),
        cycles_npu=int(float(row["cycles_npu"])), inference_time_s=float(row["inference_time"]),
        inferences_per_second=float(row["inferences_per_second"]),
        sram_bytes=round(float(row["sram_memory_used"]) * 1024), off_chip_bytes=off_bytes,
        off_chip_memory=off_kind, weights_area=row["weights_storage_area"], macs=int(float(row["nn_macs"])),
        npu_ops=npu_ops, cpu_ops=cpu_ops, cpu_fallback=parse_cpu_fallback(console), vela_version=vela_version())


@lru_cache(maxsize=256)
def _cached(path: str, mtime_ns: int, size: int, target: str, optimise: str) -> VelaResult:
    return compile_for_ethos_u(path, target, optimise)


def ethos_u_estimates(tflite_path, targets=None, optimise=OPTIMISE_MODES) -> list[VelaResult]:
    """Vela figures for every target (default: all of npu.yaml) in every OPTIMISE mode (default both).
    Results are cached per file version (path, mtime, size) within the process."""
    names = list(targets) if targets else list(npu_targets())
    path = Path(tflite_path)
    if not path.is_file():
        raise UserError(f"Ethos-U compilation needs an existing .tflite file, got {path}")
    st = path.stat()
    return [copy.deepcopy(_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, t, mode))
            for t in names for mode in optimise]


def ethos_u_rows(tflite_path, precision: str, targets=None) -> tuple[list[dict], str]:
    """Device rows for `estimate`/`recommend`/`search`: (rows, note). One row per target and optimise mode,
    each a flat dict marked ``kind: "compiler estimate (Arm Vela X)"``: device, optimise, latency_ms,
    cycles, sram_kb, off_chip_kb, off_chip_memory, npu_ops, cpu_ops, cpu_fallback (op: reason strings).
    PRECISION is the variant's graph precision; only full-int8 models are compiled (else no rows and a
    note saying why), since Ethos-U runs int8 (and int16x8) only."""
    if precision != "int8":
        return [], f"Ethos-U rows need a full-int8 model (this one is {precision})"
    rows = []
    for r in ethos_u_estimates(tflite_path, targets):
        rows.append({"device": r.target, "kind": f"compiler estimate (Arm Vela {r.vela_version})",
                     "optimise": r.optimise, "latency_ms": r.inference_ms, "cycles": r.cycles_total,
                     "clock_mhz": r.core_clock_hz / 1e6, "sram_kb": r.sram_bytes / 1024,
                     "off_chip_kb": r.off_chip_bytes / 1024, "off_chip_memory": r.off_chip_memory,
                     "npu_ops": r.npu_ops, "cpu_ops": r.cpu_ops,
                     "cpu_fallback": [f"{o.op_type} ({o.output}): {o.reason}" for o in r.cpu_fallback]})
    return rows, ""


def _mode_figures(r: VelaResult) -> dict:
    return {"latency_ms": r.inference_ms, "cycles": r.cycles_total, "cycles_npu": r.cycles_npu,
            "sram_bytes": r.sram_bytes, "off_chip_bytes": r.off_chip_bytes, "off_chip_memory": r.off_chip_memory,
            "weights_area": r.weights_area, "npu_ops": r.npu_ops, "cpu_ops": r.cpu_ops,
            "cpu_fallback": [asdict(o) for o in r.cpu_fallback]}


def vela_latency(profile, device) -> dict | None:
    """The estimator's latency provider for devices whose runtimes list ``vela`` (registered below).

    Applies when DEVICE's name is an Ethos-U target of npu.yaml and PROFILE a full-int8 .tflite on disk (else None).
    Returns vela's Performance-mode figures as the estimate (latency, SRAM as the RAM needed, off-chip
    memory as the flash needed, CPU-fallback ops as warnings) and both optimise modes under ``compiler``.
    The interval has no ends: vela's performance model has no published error against silicon; with ops
    left on the CPU vela's time is only the NPU's share, a lower end. A model vela rejects becomes a blocker."""
    if (device.name not in npu_targets() or profile.source != "tflite" or profile.precision != "int8"
            or not Path(profile.path or "").is_file()):  # a profile without its file: nothing to compile
        return None
    try:
        perf, size = ethos_u_estimates(profile.path, [device.name], OPTIMISE_MODES)
    except UserError as exc:
        return {"blockers": [str(exc)]}
    label = f"compiler estimate (Arm Vela {perf.vela_version})"
    on_cpu = perf.cpu_ops > 0
    return {
        "latency_ms": perf.inference_ms, "low_ms": perf.inference_ms if on_cpu else None, "high_ms": None,
        "range_basis": (f"{label}: NPU time only, {perf.cpu_ops} op(s) run on the CPU (not counted)" if on_cpu
                        else f"{label}: no range (vela's performance model has no published error on silicon)"),
        "method": f"Arm Vela {perf.vela_version} performance model (--optimise Performance)",
        "source": f"vela {perf.system_config} / {perf.memory_mode} ({NPU_FILE.name})",
        "cycles": perf.cycles_total, "clock_hz": perf.core_clock_hz, "system_config": perf.system_config,
        "memory_mode": perf.memory_mode, "npu_ops": perf.npu_ops, "cpu_ops": perf.cpu_ops,
        "label": label, "ram_needed_bytes": perf.sram_bytes, "flash_needed_bytes": perf.off_chip_bytes,
        "memory_method": f"vela: SRAM used / {perf.off_chip_memory or 'off-chip memory'} used (Performance)",
        "warnings": [f"runs on the CPU, not the NPU: {o.op_type} ({o.reason})" for o in perf.cpu_fallback],
        "compiler": {"tool": "vela", "version": perf.vela_version, "kind": label,
                     "system_config": perf.system_config, "memory_mode": perf.memory_mode,
                     "clock_hz": perf.core_clock_hz, "performance": _mode_figures(perf), "size": _mode_figures(size)},
    }


register_latency_provider("vela", vela_latency)
