"""Schema of device files (devices.yaml and users' own files), validated with pydantic.

Numbers carry their unit in the field name (ram_kb, clock_mhz, active_power_w); a unit string such
as "640KB" is rejected with the field named, so a device file never means something it did not say.
"""
from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeopt.core.precision import Precision
from edgeopt.errors import UserError

DEVICE_CLASSES = ("mcu", "sbc", "accelerator", "npu", "cpu")
PRECISIONS = tuple(p.value for p in Precision)  # the one vocabulary (edgeopt.core.precision)


def _precision(key) -> str:
    """A precision's value (aliases such as 'hybrid' or 'fp16' accepted); ValueError for anything else."""
    try:
        return Precision.parse(key).value
    except UserError as exc:
        raise ValueError(str(exc).removeprefix("error: ")) from None

# unit words for the error message of each numeric field
_UNITS = {
    "clock_mhz": "MHz", "ram_kb": "KB", "flash_kb": "KB", "onchip_weight_cache_kb": "KB",
    "memory_bandwidth_gbs": "GB/s", "active_power_w": "W", "idle_power_w": "W", "sleep_power_w": "W",
    "wakeup_s": "s", "price_usd": "USD",
    "cores": "cores",
}


def _reject_unit_strings(value, info):
    if isinstance(value, str):
        unit = _UNITS.get(info.field_name, "its unit")
        raise ValueError(f"expected a plain number in {unit}, got {value!r} "
                         f"(the unit is in the field name: write e.g. 640, not '640KB')")
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _numbers_by_precision(value, info):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping precision -> number, e.g. {{int8: 4000}}, got {value!r}")
    for key, v in value.items():
        _precision(key)
        if isinstance(v, (str, bool)) or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError(f"{key}: expected a positive number, got {v!r}")
    return {_precision(k): v for k, v in value.items()}


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requires_full_int8: bool = False
    op_list: str | None = None  # a list name in ops.yaml (tflm, edgetpu)


class Device(BaseModel):
    """One target. Figures that are unknown stay None and the estimator names them as missing."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    title: str = ""
    device_class: Literal["mcu", "sbc", "accelerator", "npu", "cpu"] = Field(alias="class")
    core: str = Field(min_length=1)
    cores: int = Field(default=1, ge=1)
    clock_mhz: float | None = Field(default=None, gt=0)
    ram_kb: float | None = Field(ge=0)
    flash_kb: float | None = Field(ge=0)
    has_fpu: bool | None = None  # None: the core type's default
    peak_gops: dict[str, float] = Field(default_factory=dict)
    effective_gmacs: dict[str, float] = Field(default_factory=dict)
    memory_bandwidth_gbs: float | None = Field(default=None, gt=0)
    bandwidth_is_host_link: bool = False  # True: the bandwidth is the link to a host (USB/PCIe)
    onchip_weight_cache_kb: float | None = Field(default=None, ge=0)
    active_power_w: float | None = Field(default=None, gt=0)
    idle_power_w: float | None = Field(default=None, ge=0)  # awake, not computing
    sleep_power_w: float | None = Field(default=None, ge=0)  # low-power state between inferences
    wakeup_s: float | None = Field(default=None, ge=0)  # time from sleep to running, spent at active power
    price_usd: float | None = Field(default=None, ge=0)
    runtimes: list[str] = Field(default_factory=list)
    precisions: list[str] = Field(default_factory=list)
    # inference engine (engines.yaml); `stack` is the older name of the same field
    engine: str | None = Field(default=None, validation_alias=AliasChoices("engine", "stack"))
    constraints: Constraints = Field(default_factory=Constraints)
    mlperf_systems: list[str] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict)
    derived: dict[str, str] = Field(default_factory=dict)
    notes: str = ""
    origin: str = "catalogue"  # catalogue | <user file path> | host (set by the loader)

    _check_units = field_validator(
        "clock_mhz", "ram_kb", "flash_kb", "onchip_weight_cache_kb", "memory_bandwidth_gbs",
        "active_power_w", "idle_power_w", "sleep_power_w", "wakeup_s", "price_usd", "cores",
        mode="before")(_reject_unit_strings)
    _check_rates = field_validator("peak_gops", "effective_gmacs", mode="before")(_numbers_by_precision)

    @field_validator("precisions")
    @classmethod
    def _known_precisions(cls, value: list[str]) -> list[str]:
        return [_precision(p) for p in value]

    def source_of(self, field: str) -> str | None:
        """Where a figure comes from: its source, or 'derived: ...', or None."""
        if field in self.derived:
            return f"derived: {self.derived[field]}"
        return self.sources.get(field)


def parse_device(raw: dict, where: str) -> Device:
    """Validate one device mapping; any problems become one UserError line naming every field
    that is wrong, e.g. ``devices.yaml: device 'x': 2 problems: field 'core': ...; field 'sram_kb': ...``."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: each device must be a mapping of fields, got {type(raw).__name__}")
    try:
        return Device.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()]
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise UserError(f"{where}: device '{raw.get('name', '?')}': {count}{'; '.join(problems)}") from None


def _problem(err: dict) -> str:
    """One pydantic error as "field 'loc': what is wrong"."""
    loc = ".".join(str(p) for p in err["loc"]) or "(device)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see devices.yaml for the field names)"
    return f"field '{loc}': {msg}"
