"""Human formatting of the numbers a report shows: bytes, parameter counts, seconds, mean ± std."""

from __future__ import annotations

import math
from typing import Any


def missing(value: Any) -> bool:
    """True for None and NaN (pandas fills absent fields with NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def human_bytes(value: float | None) -> str:
    if value is None or missing(value):
        return "—"
    value = float(value)
    if abs(value) < 1024:
        return f"{value:.0f} B"
    power = min(4, int(math.log(abs(value), 1024)))
    return f"{value / 1024**power:.1f} {('B', 'KiB', 'MiB', 'GiB', 'TiB')[power]}"


def human_count(value: float | None) -> str:
    if value is None or missing(value):
        return "—"
    value = float(value)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def human_seconds(value: float | None) -> str:
    if value is None or missing(value):
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def mean_std(mean: float | None, std: float | None, n: int, digits: int = 1) -> str:
    """`mean ± std`; a single seed shows the mean alone, since a std of one sample means nothing."""
    if missing(mean):
        return "—"
    if n < 2 or missing(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if missing(value) else f"{value:.{digits}f}%"
