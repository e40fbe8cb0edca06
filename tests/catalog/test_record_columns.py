"""Source records as columns (docs/FORMAT.md §12): every line back byte for byte,
whatever its style, and damaged streams refused."""

from __future__ import annotations

import json

import pytest

from phonotheca.catalog.record_columns import ColumnsError, decode_block, encode_block

ALBUM = {"title": "Été", "id": "a:1", "images": [{"url": "u", "width": 1.5}]}


def compact(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


LINES = [
    compact({"id": "t:1", "title": "Ünder", "album": ALBUM, "n": 1}),
    compact({"id": "t:2", "title": "Two", "album": ALBUM, "n": 2}),
    json.dumps({"id": "t:3", "title": "Ünder", "album": ALBUM, "n": 3}).encode(),  # spaced, \u
    json.dumps({"id": "t:4", "album": ALBUM}, separators=(",", ":")).encode(),  # \u escapes
    b'{"id": "t:5",  "title": "two spaces"}',  # no style of ours: kept whole
    b'{"id":"t:6","id":"t:7"}',  # a duplicate key: kept whole
    b'{"n":1.0,"m":1e5,"big":123456789012345678901234567890}',  # 1e5 reads as 100000.0
    b"[1,2]",
    b"not json",
    b"\xff\xfe invalid utf-8",
    b"",
    b"{}",
    compact({"id": "t:8", "title": "Two", "album": ALBUM, "n": 2, "extra": None}),
    compact({"id": "t:9", "title": "Two", "album": ALBUM, "n": 2}),
]


def test_every_line_comes_back_byte_for_byte() -> None:
    streams = encode_block(LINES)
    assert list(decode_block(streams)) == LINES
    fields = dict(streams)
    # Lines whose keys and values do not join back exactly are kept whole, in order.
    assert fields["raw"].split(b"\n")[:-1] == [LINES[i] for i in (4, 5, 6, 7, 8, 9, 10)]
    # Each key is a column; a value equal to the previous one of its column is empty.
    assert fields['"album"'].count(b"\n") == 6
    # The keys of each object line: the same as the line before (empty), an earlier
    # layout of the block (=n), or new.
    assert fields["layout"].split(b"\n")[1] == b""
    assert fields["layout"].split(b"\n")[13] == b"=0"
    assert fields['"album"'].split(b"\n")[1] == b""
    assert fields['"album"'].split(b"\n")[2] == json.dumps(ALBUM).encode()  # its own style


def test_columns_of_records_are_smaller_than_their_lines() -> None:
    lines = [compact({"id": f"t:{n}", "title": f"Song {n}", "album": ALBUM}) for n in range(500)]
    streams = encode_block(lines)
    assert list(decode_block(streams)) == lines
    assert sum(len(d) for _, d in streams) < sum(len(line) for line in lines) // 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: [(f, d) for f, d in s if f != '"title"'],  # a column missing
        lambda s: [(f, d[: len(d) // 2] + b"\n" if f == '"id"' else d) for f, d in s],
        lambda s: [(f, d + b"x\n" if f == '"id"' else d) for f, d in s],  # one too many
        lambda s: [(f, d + b"-\n" if f == "layout" else d) for f, d in s],  # raw missing
        lambda s: [(f, b"9" + d if f == "layout" else d) for f, d in s],  # unknown style
        lambda s: [(f, d.replace(b"=0", b"=7") if f == "layout" else d) for f, d in s],
        lambda s: [(f, d[:-1] if f == "raw" else d) for f, d in s],  # entry unterminated
        lambda s: [(f, b"\n" + d[d.index(b"\n") + 1 :] if f == "layout" else d) for f, d in s],
    ],
)
def test_damaged_streams_are_refused(damage: object) -> None:
    streams = encode_block(LINES)
    assert callable(damage)
    with pytest.raises(ColumnsError):
        list(decode_block(damage(streams)))
