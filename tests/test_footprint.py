"""edgeopt footprint: every figure reproducible from hardware/cloud.yaml and the inputs."""
import math

import pytest
import yaml

from edgeopt.errors import UserError
from edgeopt.footprint import CLOUD_FILE, cloud_footprint, context_lines, device_footprint


@pytest.fixture(scope="module")
def data():
    return yaml.safe_load(CLOUD_FILE.read_text())


def _line(side, item):
    return next(ln for ln in side.lines if ln.item == item)


def test_cloud_side_reproduced_from_data_file(data):
    n, latency_ms, io = 1_000_000, 2.0, 2_000
    side = cloud_footprint(latency_ms, io, n, "aws-m7g.large", "eu-west-1")
    inst = data["instances"]["aws-m7g.large"]
    busy = n * latency_ms / 1e3 / 86400  # 0.023 vCPU
    util = busy / inst["vcpus"]
    cpu_w = inst["vcpus"] * (inst["min_watts_per_vcpu"] + util * (inst["max_watts_per_vcpu"] - inst["min_watts_per_vcpu"]))
    mem_w = inst["memory_gb"] * data["memory_w_per_gb"]
    kwh = (cpu_w + mem_w) * 8760 / 1000 * data["pue"] + n * 365 * io / 1e9 * data["network_kwh_per_gb"]
    assert side.energy_kwh_per_year == pytest.approx(kwh, rel=1e-12)
    assert side.co2e_kg_per_year == pytest.approx(kwh * data["grids"]["eu-west-1"] * 1000, rel=1e-12)
    assert side.cost_usd_per_year == pytest.approx(inst["price_usd_per_hour"] * 8760, rel=1e-12)
    assert _line(side, "instances").value == 1 and all(ln.formula for ln in side.lines)


def test_cloud_scales_out_when_one_instance_is_not_enough(data):
    inst = data["instances"]["aws-m7g.large"]
    n = 86400 * 1000 / 10.0 * inst["vcpus"] * 2.5  # 10 ms each: 2.5 instances of work
    side = cloud_footprint(10.0, 0, n, "aws-m7g.large", "aws-average")
    assert _line(side, "instances").value == 3
    assert side.cost_usd_per_year == pytest.approx(3 * inst["price_usd_per_hour"] * 8760)


def test_device_side_with_and_without_idle_power(data):
    full = device_footprint("d", 0.002, 10.0, 0.05, 10_000, "eu-north-1", price_usd=100, lifetime_years=4)
    idle_s = 86400 - 10_000 * 0.01
    kwh = (10_000 * 0.002 + 0.05 * idle_s) * 365 / 3.6e6
    assert full.energy_kwh_per_year == pytest.approx(kwh, rel=1e-12) and not full.lower_bound
    assert full.co2e_kg_per_year == pytest.approx(kwh * data["grids"]["eu-north-1"] * 1000, rel=1e-12)
    assert full.cost_usd_per_year == pytest.approx(kwh * data["electricity_usd_per_kwh"] + 25.0, rel=1e-12)
    partial = device_footprint("d", 0.002, 10.0, None, 10_000, "eu-north-1")
    assert partial.lower_bound and any("lower bounds" in n for n in partial.notes)
    assert partial.energy_kwh_per_year == pytest.approx(10_000 * 0.002 * 365 / 3.6e6, rel=1e-12)


def test_every_figure_in_the_data_file_has_a_source():
    text = CLOUD_FILE.read_text()
    for tag in ("[ccf-aws]", "[price]", "[eia]", "[strubell]"):
        assert text.count(tag) >= 2, tag  # defined once in the header and used at least once
    for name, inst in yaml.safe_load(text)["instances"].items():
        assert set(inst["sources"]) >= {"min_watts_per_vcpu", "max_watts_per_vcpu", "price_usd_per_hour"}, name


def test_context_table_converts_pounds():
    air = next(ln for ln in context_lines() if ln.item.startswith("Air travel"))
    assert air.value == pytest.approx(1984 * 0.45359237) and air.source.startswith("Strubell")


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(UserError, match="unknown cloud instance"):
        cloud_footprint(1.0, 0, 10, "aws-x1", "aws-average")
    with pytest.raises(UserError, match="unknown grid region"):
        cloud_footprint(1.0, 0, 10, "aws-m7g.large", "mars")
    with pytest.raises(UserError, match="cannot run"):
        device_footprint("slow", 0.1, 1000.0, None, 100_000, "aws-average")
    assert math.isfinite(cloud_footprint(1.0, 0, 10, "aws-m7g.large", "aws-average").energy_kwh_per_year)
