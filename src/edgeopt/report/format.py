"""The one formatter for bytes, counts and times in human-facing output (terminal, HTML, notes).

JSON and run records keep raw numbers (bytes, seconds, milliseconds); only views call these.
Bytes use binary (IEC) units because every size here is divided by 1024; counts (MACs,
parameters, inferences) use SI suffixes; times pick the unit that keeps 3-4 significant digits.
"""
from __future__ import annotations

import math

_BYTE_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
_COUNT_UNITS = (("G", 1e9), ("M", 1e6), ("k", 1e3))
_MISSING = "-"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_bytes(n: float | None, digits: int = 1) -> str:
    """1536 -> '1.5 KiB', 512 -> '512 B', 3 * 2**20 -> '3.0 MiB'; None/NaN -> '-'."""
    if _missing(n):
        return _MISSING
    for unit, size in _BYTE_UNITS:
        if abs(n) >= size:
            return f"{n / size:.{digits}f} {unit}"
    return f"{n:.0f} B"


def fmt_count(n: float | None, digits: int = 2) -> str:
    """1_234_567 -> '1.23M', 950 -> '950', 12_000 -> '12.00k'; None/NaN -> '-'."""
    if _missing(n):
        return _MISSING
    for unit, div in _COUNT_UNITS:
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.{digits}f}"


def fmt_int(n: int | None) -> str:
    """An exact count with thousands separators: 1234567 -> '1,234,567'; None -> '-'."""
    return _MISSING if _missing(n) else f"{int(n):,}"


def fmt_time(seconds: float | None, digits: int = 3) -> str:
    """A duration in seconds with a fitting unit: 8.5e-5 -> '85.0 µs', 0.0123 -> '12.300 ms',
    2.5 -> '2.50 s', 125 -> '2 min 5 s'; None/NaN -> '-'."""
    if _missing(seconds):
        return _MISSING
    s = float(seconds)
    if abs(s) >= 60:
        minutes, rest = divmod(round(s), 60)
        return f"{minutes} min {rest} s"
    if abs(s) >= 1:
        return f"{s:.2f} s"
    if abs(s) >= 1e-3:
        return f"{s * 1e3:.{digits}f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt_ms(ms: float | None, digits: int = 3) -> str:
    """Milliseconds as a plain number for columns headed 'ms': 0.12345 -> '0.123'; None -> '-'."""
    return _MISSING if _missing(ms) else f"{ms:.{digits}f}"


def fmt_interval(value: float | None, low: float | None = None, high: float | None = None,
                 digits: int = 3) -> str:
    """A figure with its range, to `digits` significant digits: (25, 19, 33) -> '25 (19–33)';
    an unknown end shows as '?': (0.18, None, None) -> '0.18', (2, 2, None) -> '2 (2–?)',
    (None, 1, 3) -> '? (1–3)' (only a range is known); nothing known -> '-'."""
    g = lambda x: "?" if _missing(x) or not math.isfinite(x) else f"{x:.{digits}g}"  # noqa: E731
    if _missing(low) and _missing(high):
        return _MISSING if _missing(value) else g(value)
    return f"{g(value)} ({g(low)}–{g(high)})"


def fmt_hours(h: float | None) -> str:
    """A duration in hours for battery life: 30 -> '30 h', 100 -> '4.2 d', 20000 -> '2 years';
    infinity -> '∞'; None/NaN -> '-'."""
    if _missing(h):
        return _MISSING
    if h == math.inf:
        return "∞"
    if h >= 2 * 8766:  # hours in a year
        return f"{h / 8766:,.0f} years"
    return f"{h:.3g} h" if h < 48 else f"{h / 24:,.1f} d"
