"""Sizes as people write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonotheca.plan.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300TB", 300 * 10**12),
        ("800 GB", 800 * 10**9),
        ("1.5TiB", 3 * 2**39),
        ("512MiB", 2**29),
        ("12", 12),
        ("12 B", 12),
        ("1kB", 1000),
        ("1KB", 1000),
        ("1kib", 1024),
        ("2 pb", 2 * 10**15),
        ("  4 PiB ", 4 * 2**50),
        (".5KiB", 512),
        ("7.", 7),
        ("0.0004 kB", 0),
        ("0.0005 kB", 1),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "TB", "-1GB", "1e3", "1,5TB", "1 T", "300 TBs", "1.2.3"])
def test_bad_sizes_name_the_text_and_show_examples(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_size(text)
    assert repr(text) in str(error.value)
    assert "'300TB'" in str(error.value)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (1500, "1.5 kB"),
        (999_499, "999 kB"),
        (999_500, "1 MB"),
        (300 * 10**12, "300 TB"),
        (1234 * 10**15, "1234 PB"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_format_binary_size() -> None:
    assert format_size(3 * 2**39, binary=True) == "1.5 TiB"
    assert format_size(1023, binary=True) == "1023 B"
    with pytest.raises(ValueError):
        format_size(-1)


@given(st.integers(0, 10**20), st.booleans())
def test_format_then_parse_is_within_half_a_percent(n: int, binary: bool) -> None:
    assert abs(parse_size(format_size(n, binary=binary)) - n) <= 0.005 * n


@given(
    st.integers(0, 10**20),
    st.sampled_from(
        ["", "B", " b", "kB", "KiB", "MB", "mib", "GB", "GiB", "TB", "tib", "PB", "PiB"]
    ),
)
def test_whole_numbers_of_any_unit(n: int, unit: str) -> None:
    multiplier = parse_size(f"1{unit}")
    assert parse_size(f"{n}{unit}") == n * multiplier
    assert parse_size(f"{n} {unit.upper()}") == n * multiplier


@given(
    st.decimals(0, 10**6, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from(["kB", "MiB", "TB"]),
)
def test_decimals_scale(number: object, unit: str) -> None:
    text = f"{number}{unit}"
    value = parse_size(text)
    assert abs(value - float(str(number)) * parse_size(f"1{unit}")) <= 1 + 1e-9 * value
