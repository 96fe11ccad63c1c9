"""Human-readable durations and sizes, shared by the terminal and HTML renderings.

    >>> format_seconds(0.000123), format_range(0.0000976, 0.0001183), format_bytes(3 * 1024**2)
    ('123.00 us', '97.6-118.3 us', '3.0 MiB')
"""

from __future__ import annotations


def format_seconds(seconds: float | None) -> str:
    """Seconds in the unit that reads best: ns, us, ms or s."""
    if seconds is None:
        return "-"
    value = abs(seconds)
    if value < 1e-6:
        return f"{seconds * 1e9:.1f} ns"
    if value < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if value < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def format_range(low: float | None, high: float | None) -> str:
    """``97.6-118.3 us``: both ends in the unit of the higher one."""
    if low is None or high is None:
        return "-"
    value, unit = format_seconds(high).split(" ")
    scale = float(value) / high if high else 1.0
    return f"{low * scale:.3g}-{float(value):.4g} {unit}"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"
