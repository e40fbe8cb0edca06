import pytest

from phonotheca.httprange import (
    MAX_RANGES,
    ByteRange,
    RangeNotSatisfiable,
    if_range_matches,
    parse_ranges,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", [ByteRange(0, 99)]),
        ("bytes=900-", [ByteRange(900, 999)]),
        ("bytes=-100", [ByteRange(900, 999)]),
        ("bytes=-5000", [ByteRange(0, 999)]),
        ("bytes=990-5000", [ByteRange(990, 999)]),
        ("bytes=0-0,-1", [ByteRange(0, 0), ByteRange(999, 999)]),
        ("bytes=500-599,0-9", [ByteRange(500, 599), ByteRange(0, 9)]),
        ("bytes=0-10,11-20,21-30", [ByteRange(0, 30)]),
        ("bytes=0-10,21-30,11-20", [ByteRange(0, 30)]),
        ("bytes=0-9, 2000-3000", [ByteRange(0, 9)]),
        ("BYTES = 1-2", [ByteRange(1, 2)]),
        # Positions too long to convert are past any file: clamped, never an error.
        ("bytes=990-" + "9" * 4000, [ByteRange(990, 999)]),
        ("bytes=-" + "9" * 4000, [ByteRange(0, 999)]),
        ("bytes=00000000000000000000000000005-6", [ByteRange(5, 6)]),
    ],
)
def test_satisfiable(header: str, expected: list[ByteRange]) -> None:
    assert parse_ranges(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [None, "items=0-1", "bytes=abc", "bytes=5-1", "bytes=-", "bytes", "bytes=1-2;3-4"],
)
def test_ignored_headers_mean_whole_body(header: str | None) -> None:
    assert parse_ranges(header, 1000) is None


@pytest.mark.parametrize("count", [MAX_RANGES + 1, 1000])
def test_too_many_ranges_are_refused(count: int) -> None:
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(count))
    with pytest.raises(RangeNotSatisfiable, match=r"more than (16 ranges|4096 characters)"):
        parse_ranges(header, 100_000)
    assert parse_ranges(header.rsplit(",", count - MAX_RANGES)[0], 100_000) is not None


@pytest.mark.parametrize("header", ["bytes=0-10,5-20", "bytes=0-,-1", "bytes=0-5,0-5"])
def test_overlapping_ranges_are_refused(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable, match="overlapping"):
        parse_ranges(header, 1000)


def test_huge_header_is_refused() -> None:
    with pytest.raises(RangeNotSatisfiable, match="more than 4096 characters"):
        parse_ranges("bytes=" + "9" * 5000 + "-", 1000)


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=2000-3000", "bytes=-0", "bytes=" + "9" * 4000 + "-"]
)
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as err:
        parse_ranges(header, 1000)
    assert err.value.content_range == "bytes */1000"


def test_empty_representation() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_ranges("bytes=0-", 0)


def test_if_range() -> None:
    assert if_range_matches(None, '"abc"')
    assert if_range_matches('"abc"', '"abc"')
    assert not if_range_matches('"abd"', '"abc"')
    assert not if_range_matches('W/"abc"', '"abc"')
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert if_range_matches(date, '"abc"', date)
    assert not if_range_matches(date, '"abc"', None)
