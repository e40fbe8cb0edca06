"""Byte sizes as people write them (``300TB``, ``1.5 TiB``) and back.

Decimal units are powers of 1000 (kB, MB, GB, TB, PB) and binary units powers of 1024
(KiB, MiB, GiB, TiB, PiB), as in IEC 80000-13. Units are case-insensitive: there are no
bit units here, so ``300tb`` can only mean terabytes.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

__all__ = ["format_size", "parse_size"]

_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}

_DECIMAL_NAMES = ("B", "kB", "MB", "GB", "TB", "PB")
_BINARY_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

_SIZE_RE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*$")

_EXAMPLES = "e.g. '300TB', '800 GB', '1.5TiB', '512MiB' or '1000000' (bytes)"


def parse_size(text: str) -> int:
    """Return the number of bytes that ``text`` names, rounded to the nearest byte.

    A bare number is bytes. Raises ``ValueError`` naming ``text`` for anything else than a
    non-negative number followed by an optional unit.
    """
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected a number and a unit, {_EXAMPLES}")
    unit = match["unit"].lower() or "b"
    multiplier = _UNITS.get(unit)
    if multiplier is None:
        valid = ", ".join(("B", *_DECIMAL_NAMES[1:], *_BINARY_NAMES[1:]))
        raise ValueError(
            f"invalid size {text!r}: unknown unit {match['unit']!r} (valid: {valid}); {_EXAMPLES}"
        )
    with localcontext() as context:
        context.prec = len(match["number"]) + 20  # exact: the default 28 digits round
        try:
            number = Decimal(match["number"])
        except InvalidOperation as error:  # pragma: no cover - the regex only lets digits in
            raise ValueError(f"invalid size {text!r}: {_EXAMPLES}") from error
        return int((number * multiplier).to_integral_value(rounding=ROUND_HALF_UP))


def format_size(n: int, *, binary: bool = False) -> str:
    """Return ``n`` bytes as a short human-readable string with three significant digits.

    ``format_size(299_999_000_000_000) == "300 TB"``; with ``binary=True`` the units are
    KiB, MiB... Values below 1000 (or 1024) bytes are exact. ``parse_size`` reads the result
    back to within 0.5 %.
    """
    if n < 0:
        raise ValueError(f"a size cannot be negative, got {n}")
    base = 1024 if binary else 1000
    names = _BINARY_NAMES if binary else _DECIMAL_NAMES
    if n < base:
        return f"{n} B"
    exponent = 0
    value = float(n)
    while value >= base and exponent < len(names) - 1:
        value /= base
        exponent += 1
    text = _three_digits(value)
    # Rounding can carry into the next unit (999.6 kB -> "1000 kB" -> "1 MB").
    if float(text) >= base and exponent < len(names) - 1:
        exponent += 1
        text = _three_digits(float(text) / base)
    return f"{text} {names[exponent]}"


def _three_digits(value: float) -> str:
    """Format ``value`` with three significant digits, no trailing zeros."""
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
