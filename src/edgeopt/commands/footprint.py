"""`edgeopt footprint`: a year of inferences on the device versus on a cloud instance."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _fmt(value: float, unit: str) -> str:
    text = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def register(app: typer.Typer) -> None:
    @app.command()
    def footprint(
        run_dir: Path = typer.Argument(..., help="a run directory made by edgeopt optimize"),
        device: str = typer.Option(..., "--device", "-d", help="device name (see: edgeopt devices)"),
        inferences_per_day: float = typer.Option(..., "--inferences-per-day", help="inferences a day"),
        variant: str = typer.Option("int8", help="variant of the run"),
        cloud: str = typer.Option("aws-m7g.large", help="cloud instance (hardware/cloud.yaml)"),
        region: str = typer.Option("aws-average", help="grid both sides draw from (hardware/cloud.yaml grids)"),
        device_years: Optional[float] = typer.Option(None, "--device-years", min=0.1,
                                                     help="spread the device price over this many years"),
        devices_file: Optional[Path] = typer.Option(None, "--devices-file", help="extra device YAML file"),
        json_out: bool = typer.Option(False, "--json", help="print JSON only"),
    ):
        """Energy, CO2e and cost per year: the device versus a cloud instance, each figure with its formula
        and source (hardware/cloud.yaml), and a context table of familiar CO2e figures."""
        from edgeopt.cli import print_json
        from edgeopt.footprint import footprint as compute

        result = compute(run_dir, variant, device, inferences_per_day, cloud=cloud, region=region,
                         device_years=device_years, devices_file=devices_file)
        if json_out:
            print_json(result.to_dict())
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=f"{variant}: {inferences_per_day:,.0f} inferences/day for a year "
                            f"({result.grid} grid, {result.grid_kg_per_kwh:.3g} kg CO2e/kWh)")
        table.add_column("")
        for side in (result.device, result.cloud):
            table.add_column(side.name + (" (lower bound)" if side.lower_bound else ""), justify="right")
        table.add_row("energy", _fmt(result.device.energy_kwh_per_year, "kWh"), _fmt(result.cloud.energy_kwh_per_year, "kWh"))
        table.add_row("CO2e", _fmt(result.device.co2e_kg_per_year, "kg"), _fmt(result.cloud.co2e_kg_per_year, "kg"))
        table.add_row("cost", _fmt(result.device.cost_usd_per_year, "USD"), _fmt(result.cloud.cost_usd_per_year, "USD"))
        console.print(table)
        for side in (result.device, result.cloud):
            lines = Table(title=f"how: {side.name}", show_header=True)
            for col in ("item", "value", "formula", "source"):
                lines.add_column(col)
            for ln in side.lines:
                lines.add_row(ln.item, _fmt(ln.value, ln.unit), ln.formula, ln.source)
            console.print(lines)
            for note in side.notes:
                console.print(f"  note: {note}")
        context = Table(title="for context: CO2e of familiar things (Strubell et al. 2019, Table 1)")
        context.add_column("")
        context.add_column("kg CO2e", justify="right")
        for ln in result.context:
            context.add_row(ln.item, f"{ln.value:,.0f}")
        console.print(context)
