"""Sizes with units, as people write them in a config file: 536870912, "512MB", "1GiB", "512M".

SI suffixes count in powers of 1000 (kB, MB, GB, TB), IEC suffixes in
powers of 1024 (KiB, MiB, GiB, TiB), and a bare letter (K, M, G, T), as
PM2 and Docker read it, in powers of 1024.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_FACTORS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kb": 10**3, "kib": 1 << 10,
    "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
    "g": 1 << 30, "gb": 10**9, "gib": 1 << 30,
    "t": 1 << 40, "tb": 10**12, "tib": 1 << 40,
}


#: The largest size accepted (1 PiB): larger is a typo, and would overflow byte counters.
MAX_SIZE = 1 << 50


def parse_size(value: int | str) -> int:
    """Bytes in `value` (an int, or a number with a unit); ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size in bytes or a string such as '512MB', not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be more than 0 bytes")
        if value > MAX_SIZE:
            raise ValueError("must be at most 1 PiB")
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a size in bytes or a string such as '512MB', not {value!r}")
    match = _SIZE.match(value)
    factor = _FACTORS.get(match.group(2).lower()) if match else None
    if match is None or factor is None:
        raise ValueError(f"{value!r} is not a size (use bytes or a unit: kB, MB, GB, KiB, MiB, GiB, K, M, G)")
    amount = float(match.group(1)) * factor
    if amount > MAX_SIZE:  # also infinity, from a number of hundreds of digits
        raise ValueError("must be at most 1 PiB")
    size = int(amount)
    if size <= 0:
        raise ValueError(f"must be more than 0 bytes, not {value!r}")
    return size


def whole_number(text: str) -> int | None:
    """`text` as an int when it is ASCII digits only, else None.

    `str.isdigit()` alone also accepts digits `int()` refuses (``"²"``), which
    would end a config error in a traceback instead of a message.
    """
    return int(text) if text.isascii() and text.isdigit() else None


def format_size(size: int) -> str:
    """`size` bytes for people: "512.0 MiB"."""
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


__all__ = ["MAX_SIZE", "format_size", "parse_size", "whole_number"]
