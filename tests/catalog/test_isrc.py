from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from phonotheca.catalog.isrc import is_valid_isrc, normalize_isrc, parse_isrc


def test_hyphens_spaces_and_case_are_normalised() -> None:
    assert parse_isrc("gb-aye-73-00105") == ("GBAYE7300105", True)
    assert parse_isrc(" GB AYE 73 00105 ") == ("GBAYE7300105", True)
    assert parse_isrc("USRC17607839").valid


def test_invalid_shapes() -> None:
    for bad in (
        "",
        "BAD",
        "GBAYE730010",
        "GBAYE73001055",
        "1BAYE7300105",
        "GBAYEX300105",
        "GBAYE73O0105",
        "GB@YE7300105",
    ):
        assert not parse_isrc(bad).valid, bad


letters = st.text(string.ascii_uppercase, min_size=2, max_size=2)
alnum = st.text(string.ascii_uppercase + string.digits, min_size=3, max_size=3)
digits = st.text(string.digits, min_size=7, max_size=7)


@given(letters, alnum, digits, st.sampled_from(["", "-", " "]), st.booleans())
def test_every_well_formed_isrc_is_valid_however_written(
    cc: str, reg: str, rest: str, sep: str, lower: bool
) -> None:
    written = sep.join([cc, reg, rest[:2], rest[2:]])
    if lower:
        written = written.lower()
    value, valid = parse_isrc(written)
    assert valid
    assert value == cc + reg + rest


@given(st.text(max_size=30))
def test_normalising_is_idempotent_and_never_fails(text: str) -> None:
    once = normalize_isrc(text)
    assert normalize_isrc(once) == once
    if is_valid_isrc(once):
        assert len(once) == 12 and once.isascii() and once[:2].isalpha() and once[5:].isdigit()


@given(st.text(alphabet=string.ascii_uppercase + string.digits + "-é ", max_size=14))
def test_the_catalog_flags_exactly_what_python_flags(raw: str) -> None:
    """tracks.isrc_valid is computed by SQLite; it must agree with parse_isrc."""
    import sqlite3

    from phonotheca.catalog import schema

    conn = sqlite3.connect(":memory:")
    conn.isolation_level = None
    schema.migrate(conn)
    value, valid = parse_isrc(raw)
    conn.execute("INSERT INTO tracks(id, public_id, title, isrc) VALUES (1, 'x', 't', ?)", (value,))
    assert conn.execute("SELECT isrc_valid FROM tracks").fetchone()[0] == int(valid)
