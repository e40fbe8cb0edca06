"""Audio streams: ranges, HEAD, ETag, If-Range, content types, download names."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.serve.conftest import packed_tracks


def _volume_bytes(root: Path, entry: dict[str, object]) -> bytes:
    path = root / "torrents" / str(entry["collection"]) / "data" / str(entry["volume"])
    with path.open("rb") as f:
        f.seek(int(entry["offset"]))  # type: ignore[call-overload]
        return f.read(int(entry["length"]))  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def track(built_archive: Path) -> tuple[dict[str, object], bytes, str]:
    """The largest packed track, its bytes (read from the tar directly) and its URL."""
    entry = max(packed_tracks(built_archive), key=lambda e: int(e["length"]))  # type: ignore[call-overload]
    data = _volume_bytes(built_archive, entry)
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    return entry, data, f"/tracks/{quote(str(entry['id']), safe='')}/audio"


def test_whole_file_with_etag_type_and_name(signed_in: httpx.Client, built_archive: Path) -> None:
    types = {
        "opus": "audio/ogg; codecs=opus",
        "vorbis": "audio/ogg; codecs=vorbis",
        "flac": "audio/flac",
        "mp3": "audio/mpeg",
        "aac": "audio/mp4",
    }
    seen = set()
    for entry in packed_tracks(built_archive):
        url = f"/tracks/{quote(str(entry['id']), safe='')}/audio"
        r = signed_in.get(url)
        assert r.status_code == 200
        assert r.content == _volume_bytes(built_archive, entry)
        assert r.headers["etag"] == f'"{entry["sha256"]}"'
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-length"] == str(entry["length"])
        assert r.headers["content-type"] == types[str(entry["codec"])]
        seen.add(entry["codec"])
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("inline; filename=")
        assert "filename*=UTF-8''" in disposition
    assert {"opus", "flac", "mp3", "vorbis"} <= seen
    download = signed_in.get(url, params={"download": "true"})
    assert download.headers["content-disposition"].startswith("attachment;")


def test_single_ranges(
    signed_in: httpx.Client, track: tuple[dict[str, object], bytes, str]
) -> None:
    _, data, url = track
    size = len(data)
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),  # open range
        "bytes=-500": (size - 500, size - 1),  # suffix range
        f"bytes=10-{size + 1000}": (10, size - 1),  # clamped to the end
        f"bytes=-{size * 2}": (0, size - 1),  # suffix longer than the file
    }
    for header, (first, last) in cases.items():
        r = signed_in.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[first : last + 1], header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert r.headers["content-length"] == str(last - first + 1)


def test_multiple_ranges_are_multipart(
    signed_in: httpx.Client, track: tuple[dict[str, object], bytes, str]
) -> None:
    _, data, url = track
    size = len(data)
    r = signed_in.get(url, headers={"Range": "bytes=0-9, 200-299, -16"})
    assert r.status_code == 206
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", r.headers["content-type"])
    assert match is not None
    boundary = match.group(1).encode()
    assert int(r.headers["content-length"]) == len(r.content)
    parts = r.content.split(b"--" + boundary)
    assert parts[-1].strip() == b"--"
    bodies = []
    for part in parts[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"Content-Range: bytes" in head
        bodies.append((head, body[: -len(b"\r\n")]))
    assert [b for _, b in bodies] == [data[0:10], data[200:300], data[size - 16 :]]
    assert f"bytes {size - 16}-{size - 1}/{size}".encode() in bodies[2][0]


def test_unsatisfiable_and_ignored_ranges(
    signed_in: httpx.Client, track: tuple[dict[str, object], bytes, str]
) -> None:
    _, data, url = track
    size = len(data)
    r = signed_in.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    r = signed_in.get(url, headers={"Range": f"bytes={size + 10}-{size + 20}, {size * 3}-"})
    assert r.status_code == 416
    # Malformed or another unit: the header is ignored and the whole file sent.
    for header in ("bytes=abc", "items=0-5", "bytes=9-3"):
        r = signed_in.get(url, headers={"Range": header})
        assert r.status_code == 200, header
        assert r.content == data


def test_hostile_range_headers_answer_416_never_500(
    signed_in: httpx.Client, track: tuple[dict[str, object], bytes, str]
) -> None:
    _, data, url = track
    size = len(data)
    refused = {
        "huge first position": "bytes=" + "9" * 4000 + "-",
        "huge header": "bytes=" + "9" * 5000 + "-",
        "1,000 ranges": "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2000, 2)),
        "17 ranges": "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 34, 2)),
        "overlapping": "bytes=0-99,50-149",
        "the same range twice": "bytes=0-9,0-9",
    }
    for what, header in refused.items():
        r = signed_in.get(url, headers={"Range": header})
        assert r.status_code == 416, what
        assert r.headers["content-range"] == f"bytes */{size}", what
        assert r.content == b"", what
    # Huge last positions and suffixes are clamped to the file.
    r = signed_in.get(url, headers={"Range": "bytes=10-" + "9" * 4000})
    assert r.status_code == 206
    assert r.content == data[10:]
    r = signed_in.get(url, headers={"Range": "bytes=-" + "9" * 4000})
    assert r.status_code == 206
    assert r.content == data
    # The server is fine after all of them.
    assert signed_in.get(url, headers={"Range": "bytes=0-3"}).content == data[:4]


def test_if_range_and_if_none_match(
    signed_in: httpx.Client, track: tuple[dict[str, object], bytes, str]
) -> None:
    entry, data, url = track
    etag = f'"{entry["sha256"]}"'
    r = signed_in.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206
    assert r.content == data[:10]
    r = signed_in.get(url, headers={"Range": "bytes=0-9", "If-Range": '"' + "0" * 64 + '"'})
    assert r.status_code == 200
    assert r.content == data
    r = signed_in.get(url, headers={"Range": "bytes=0-9", "If-Range": "W/" + etag})
    assert r.status_code == 200  # weak tags never match If-Range
    r = signed_in.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""


def test_head_sends_headers_only(
    signed_in: httpx.Client, track: tuple[dict[str, object], bytes, str]
) -> None:
    entry, data, url = track
    r = signed_in.head(url)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["etag"] == f'"{entry["sha256"]}"'
    r = signed_in.head(url, headers={"Range": "bytes=5-14"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 5-14/{len(data)}"
    assert r.headers["content-length"] == "10"


def test_covers_are_served_immutable(client: httpx.Client, built_archive: Path) -> None:
    from phonotheca.catalog import schema

    conn = schema.connect(built_archive / "catalog.sqlite3", readonly=True)
    albums = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT a.public_id FROM albums a JOIN images i ON i.album_id = a.id"
            " WHERE i.blob_sha256 IS NOT NULL"
        )
    ]
    conn.close()
    assert albums
    r = client.get(f"/albums/{quote(albums[0], safe='')}/cover")
    assert r.status_code == 200
    assert r.headers["content-type"] in {"image/jpeg", "image/png", "image/gif", "image/webp"}
    assert "immutable" in r.headers["cache-control"]
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    assert client.get("/albums/test%3Aalbum%3Aevil/cover").status_code == 404
