"""Probing real files of every format we can make: tags, stream properties, broken files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phonotheca.audio.probe import Probe, ProbeError, Tags, probe_file
from phonotheca.blobs import sniff_image
from tests.audio.makers import ALL_FORMATS, FULL, cover, make_audio, truncate

EXPECTED = {  # format -> (container, codec, lossless)
    "vorbis": ("ogg", "vorbis", False),
    "flac": ("flac", "flac", True),
    "mp3": ("mp3", "mp3", False),
    "opus": ("ogg", "opus", False),
    "m4a": ("mp4", "aac", False),
    "alac": ("mp4", "alac", True),
    "wav": ("wav", "pcm", True),
    "aiff": ("aiff", "pcm", True),
    "wma": ("asf", "wma", False),
    "wavpack": ("wavpack", "wavpack", True),
}


def probe(path: Path) -> Probe:
    with path.open("rb") as f:
        return probe_file(f, str(path))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_tags_and_stream_properties(tmp_path: Path, fmt: str) -> None:
    path = make_audio(tmp_path / "a", fmt, tags=FULL, picture=cover(3))
    p = probe(path)
    assert (p.stream.container, p.stream.codec, p.stream.lossless) == EXPECTED[fmt]
    assert abs(p.stream.duration_ms - 1500) < 120
    assert p.stream.channels == 2
    assert p.stream.sample_rate == (48000 if fmt == "opus" else 44100)
    assert p.stream.bitrate and p.stream.bitrate > 10_000
    t = p.tags
    assert (t.title, t.artists, t.album, t.album_artists) == (
        FULL.title,
        FULL.artists,
        FULL.album,
        FULL.album_artists,
    )
    assert (t.track_number, t.disc_number) == (2, 1)
    assert t.date is not None and t.date.startswith("1998")
    assert t.isrc == FULL.isrc
    assert t.musicbrainz_recording == FULL.musicbrainz_recording
    assert t.musicbrainz_release == FULL.musicbrainz_release
    if fmt not in ("wma", "wav", "aiff", "wavpack"):
        assert (t.track_total, t.disc_total) == (13, 2)
    assert [pic.data for pic in p.pictures] == [cover(3)]
    assert sniff_image(p.pictures[0].data) is not None


@pytest.mark.parametrize("fmt", ["vorbis", "flac", "mp3", "opus", "m4a"])
def test_untagged_files_have_empty_tags(tmp_path: Path, fmt: str) -> None:
    p = probe(make_audio(tmp_path / "a", fmt))
    assert p.tags == Tags() and p.tags.is_empty()
    assert p.pictures == []


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("empty.mp3", b"", "empty file"),
        ("noise.flac", os.urandom(5000), "unreadable"),
        ("noise.mp3", b"\x00" * 5000, "unreadable"),
        ("noise.ogg", b"just some text, not audio\n" * 50, "unsupported"),
        ("noise.m4a", os.urandom(3000), "unsupported"),
    ],
)
def test_garbage_is_a_probe_error(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ProbeError, match=reason):
        probe(path)


@pytest.mark.parametrize("fmt", ["vorbis", "opus", "flac", "mp3", "m4a", "wav", "aiff"])
@pytest.mark.parametrize("share", [0.3, 0.9])
def test_truncated_files_are_found(tmp_path: Path, fmt: str, share: float) -> None:
    path = truncate(make_audio(tmp_path / "a", fmt, tags=FULL), share)
    with pytest.raises(ProbeError, match=r"truncated|unreadable|zero duration"):
        probe(path)


def test_mp4_with_index_first_cut_short(tmp_path: Path) -> None:
    """A "fast start" MP4 (moov first) opens fine when cut: the atom sizes tell."""
    import av
    import numpy as np

    path = tmp_path / "fast.m4a"
    with av.open(str(path), "w", format="ipod", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            np.random.default_rng(1).uniform(-0.3, 0.3, (2, 44100)).astype("float32"),
            format="fltp",
            layout="stereo",
        )
        frame.sample_rate = 44100
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert probe(path).stream.codec == "aac"
    truncate(path, 0.8)
    with pytest.raises(ProbeError, match="truncated: MP4 atom 'mdat'"):
        probe(path)
