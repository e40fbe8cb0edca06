"""``stream`` with ``maxBitRate`` / ``format``: the stored file when it fits, else a live
MP3 or Ogg Opus encode that a real decoder (PyAV) reads back at the length of the track."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import av
import libsonic
import pytest
from libsonic.errors import SonicError

from phonotheca.serve.transcode import Target, choose
from tests.serve_subsonic.conftest import Fixture, LiveServer, Packed
from tests.serve_subsonic.test_pysonic import connect


@pytest.mark.parametrize(
    ("codec", "bitrate", "fmt", "max_kbps", "expected"),
    [
        ("flac", 900_000, None, None, None),  # nothing asked
        ("flac", 900_000, None, 0, None),  # 0 is "no limit"
        ("flac", 900_000, "raw", 64, None),  # raw wins
        ("mp3", 128_000, None, 192, None),  # already within the limit
        ("flac", 900_000, "flac", None, None),  # the format it is
        ("flac", 900_000, None, 128, Target("mp3", 128)),
        ("flac", 900_000, None, 100, Target("mp3", 96)),  # a standard MP3 rate below
        ("flac", 900_000, None, 8, Target("mp3", 32)),  # MP3's lowest
        ("flac", 900_000, "mp3", 0, Target("mp3", 192)),
        ("flac", 900_000, "opus", 0, Target("opus", 128)),
        ("flac", 900_000, "opus", 1000, Target("opus", 256)),
        ("opus", 96_000, None, 64, Target("opus", 64)),  # Opus stays Opus
        ("flac", None, None, 320, Target("mp3", 320)),  # bitrate unknown: cannot tell
        ("flac", 900_000, "wma", 0, None),  # a format not made here: the stored file
    ],
)
def test_choose(
    codec: str, bitrate: int | None, fmt: str | None, max_kbps: int | None, expected: object
) -> None:
    assert choose(codec, bitrate, fmt, max_kbps) == expected


def _stored(root: Path, packed: Packed) -> tuple[str, int, int]:
    conn = sqlite3.connect(root / "catalog.sqlite3")
    try:
        codec, bitrate, ms = conn.execute(
            "SELECT l.codec, l.bitrate, s.duration_ms FROM ledger l JOIN tracks t"
            " ON t.id = l.track_id JOIN source_files s ON s.id = l.source_file_id"
            " WHERE t.public_id = ?",
            (packed.public_id,),
        ).fetchone()
    finally:
        conn.close()
    return str(codec), int(bitrate), int(ms)


def _decode(body: bytes) -> tuple[str, str, float]:
    with av.open(io.BytesIO(body)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return c.format.name, stream.codec_context.name, samples / stream.codec_context.sample_rate


@pytest.fixture
def sonic(live: LiveServer, archive_fixture: Fixture) -> libsonic.Connection:
    return connect(live, archive_fixture.creds.user, archive_fixture.creds.password, legacy=False)


def test_a_lower_bitrate_is_a_live_mp3_of_the_whole_track(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    packed = max(archive_fixture.present, key=lambda p: p.length)
    _, bitrate, ms = _stored(archive_fixture.root, packed)
    assert bitrate > 64_000, "the fixture's file should be above the limit asked"
    response = sonic.stream(f"tr-{packed.public_id}", maxBitRate=64)
    assert response.headers["Content-Type"] == "audio/mpeg"
    body = response.read()
    container, decoder, seconds = _decode(body)
    assert container == "mp3" and decoder.startswith("mp3")
    assert abs(seconds - ms / 1000) < 0.1  # the encoder's delay and padding, no more
    assert len(body) * 8 / seconds < 64_000 * 1.15  # at the rate asked
    assert len(body) < packed.length


def test_opus_when_asked(sonic: libsonic.Connection, archive_fixture: Fixture) -> None:
    packed = archive_fixture.present[0]
    _, _, ms = _stored(archive_fixture.root, packed)
    response = sonic.stream(f"tr-{packed.public_id}", maxBitRate=48, tformat="opus")
    assert response.headers["Content-Type"] == "audio/ogg; codecs=opus"
    body = response.read()
    container, decoder, seconds = _decode(body)
    assert (container, decoder) == ("ogg", "opus")
    assert abs(seconds - ms / 1000) < 0.1
    assert len(body) * 8 / seconds < 48_000 * 1.15  # constrained VBR, Ogg pages included


def test_the_stored_file_when_it_fits_or_raw_is_asked(
    sonic: libsonic.Connection, archive_fixture: Fixture
) -> None:
    packed = archive_fixture.present[0]
    _, bitrate, _ = _stored(archive_fixture.root, packed)
    stored = packed.source.read_bytes()
    for kwargs in (
        {},
        {"maxBitRate": bitrate // 1000 + 1},
        {"maxBitRate": 32, "tformat": "raw"},
    ):
        assert sonic.stream(f"tr-{packed.public_id}", **kwargs).read() == stored, kwargs
    assert sonic.download(f"tr-{packed.public_id}").read() == stored  # never transcoded


def test_a_track_ffmpeg_cannot_read_is_an_error_not_a_broken_stream(
    archive_fixture: Fixture, tmp_path: Path
) -> None:
    root = tmp_path / "damaged"
    shutil.copytree(archive_fixture.root, root)
    packed = archive_fixture.present[0]
    with (root / "torrents" / packed.collection / "data" / packed.volume).open("r+b") as f:
        f.seek(packed.offset)
        f.write(bytes(packed.length))  # zeros where the audio was
    server = LiveServer(root)
    server.start()
    try:
        creds = archive_fixture.creds
        sonic = connect(server, creds.user, creds.password, legacy=False)
        with pytest.raises(SonicError, match="cannot be transcoded"):
            sonic.stream(f"tr-{packed.public_id}", maxBitRate=64)
    finally:
        server.stop()
