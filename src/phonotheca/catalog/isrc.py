"""ISRC (ISO 3901) normalisation and validation.

An ISRC is 12 characters: a 2-letter country code, a 3-character alphanumeric
registrant code, a 2-digit year of reference and a 5-digit designation code,
e.g. ``GBAYE7300105``. Sources write it with hyphens (``GB-AYE-73-00105``),
spaces or in lower case; we store the compact upper-case form.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_SEPARATORS = re.compile(r"[\s\-_.]+")
_VALID = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
# Anything that is not "separator-ish" or alphanumeric makes a value plainly invalid.


class Isrc(NamedTuple):
    """An ISRC as written in a source, and what we made of it."""

    value: str
    """The normalised form (separators removed, upper case)."""
    valid: bool


def normalize_isrc(raw: str) -> str:
    """Remove hyphens, spaces, dots and underscores and upper-case the rest."""
    return _SEPARATORS.sub("", raw).upper()


def is_valid_isrc(value: str) -> bool:
    """True when ``value`` (already normalised) has the ISO 3901 shape."""
    return len(value) == 12 and _VALID.fullmatch(value) is not None


def parse_isrc(raw: str) -> Isrc:
    """Normalise ``raw`` and say whether the result is a valid ISRC."""
    # Most sources already write the compact upper-case form: skip the substitution.
    if len(raw) == 12 and raw.isalnum() and raw.isupper() and raw.isascii():
        return Isrc(raw, _VALID.fullmatch(raw) is not None)
    value = normalize_isrc(raw)
    return Isrc(value, is_valid_isrc(value))
