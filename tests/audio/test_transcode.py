"""Transcoding to Ogg Opus: the stream is RFC 7845 Ogg Opus, tags read back, bytes repeat."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import av
import mutagen.oggopus
import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from phonotheca.audio.oggopus import (
    FLAG_BOS,
    FLAG_CONTINUED,
    FLAG_EOS,
    OpusHead,
    Page,
    iter_pages,
    ogg_crc,
)
from phonotheca.audio.transcode import (
    MAX_VALUE_BYTES,
    OpusTags,
    Transcoded,
    TranscodeError,
    encode_opus,
    libopus_version,
    stream_serial,
    transcode_to_opus,
)
from tests.audio.makers import cover, make_audio, truncate

TAGS = OpusTags(
    title="Light Sky (feat. Pelar) — ライト",
    artists=("Fenford", "Pelar", "Ödön & Co"),
    album="Heartbreak",
    track_number=2,
    disc_number=1,
    date="1998-11-17",
    isrc="GBXUX9827811",
    track_id="phonotheca:track:8f3a",
    album_artists=("Fenford",),
)
SECONDS = 1.5


def transcode(source: Path, dest: Path, kbps: int = 75, tags: OpusTags = TAGS) -> Transcoded:
    return transcode_to_opus(source, dest, kbps=kbps, tags=tags)


def pages(data: bytes) -> list[Page]:
    return list(iter_pages(data))


def decode(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    """All samples of a file as (channels, n) float32 and the sample rate."""
    with av.open(str(path)) as c:
        chunks, rate = [], 0
        for frame in c.decode(audio=0):
            arr = frame.to_ndarray().astype(np.float32)
            chunks.append(arr if frame.format.is_planar else arr.reshape(-1, arr.shape[0]).T)
            rate = frame.sample_rate
    return np.concatenate(chunks, axis=1), rate


def sine_file(
    path: Path, *, rate: int, channels: int, seconds: float = SECONDS, only: int | None = None
) -> Path:
    """A tone (a different pitch per channel, or only in channel ``only``), via libsndfile."""
    t = np.arange(int(rate * seconds)) / rate
    data = np.stack([0.3 * np.sin(2 * np.pi * (330 + 110 * c) * t) for c in range(channels)], 1)
    if only is not None:
        data[:, [c for c in range(channels) if c != only]] = 0
    soundfile.write(path, data, rate, subtype="PCM_24" if path.suffix == ".flac" else "PCM_16")
    return path


def assert_ogg_opus(data: bytes, *, channels: int, input_rate: int, serial: int) -> OpusHead:
    """The checks of RFC 7845 that a player relies on; returns the OpusHead."""
    ps = pages(data)
    assert len(ps) >= 3
    for p in ps:
        raw = bytearray(data[p.offset : p.offset + p.length])
        crc = int.from_bytes(raw[22:26], "little")
        raw[22:26] = b"\0\0\0\0"
        assert ogg_crc(raw) == crc, f"bad checksum on page {p.sequence}"
    assert [p.sequence for p in ps] == list(range(len(ps)))
    assert {p.serial for p in ps} == {serial}
    # Page 0: exactly the 19-byte OpusHead, beginning of stream, granule 0.
    first = ps[0]
    assert first.flags == FLAG_BOS and first.granule == 0 and first.segments == (19,)
    head = OpusHead.parse(data[first.body])
    assert head.version == 1
    assert head.channels == channels
    assert head.pre_skip > 0
    assert head.input_sample_rate == input_rate
    assert head.output_gain == 0
    assert head.mapping_family == 0
    # Page 1: the OpusTags packet, alone, granule 0; audio starts on a fresh page.
    tags_page = ps[1]
    assert tags_page.granule == 0 and not tags_page.flags & (FLAG_BOS | FLAG_EOS)
    assert data[tags_page.body][:8] == b"OpusTags" and tags_page.segments[-1] < 255
    assert not ps[2].flags & FLAG_CONTINUED
    # Audio pages: granules grow, only the last page ends the stream.
    granules = [p.granule for p in ps[2:] if p.granule != -1]
    assert granules == sorted(granules) and granules[0] > 0
    assert all(not p.flags & (FLAG_BOS | FLAG_EOS) for p in ps[2:-1])
    assert ps[-1].flags & FLAG_EOS
    # Bit-exact muxing: no FFmpeg version or encoder tag leaks in.
    for marker in (b"Lavf", b"Lavc", b"encoder=", b"ENCODER="):
        assert marker not in data[: ps[2].offset]
    return head


# -- formats and stream layout --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["flac", "vorbis", "mp3", "opus", "m4a", "wav"])
def test_each_source_format_becomes_ogg_opus(tmp_path: Path, fmt: str) -> None:
    source = make_audio(tmp_path / "in", fmt, seconds=SECONDS, piece=2)
    dest = tmp_path / "out" / "track.opus"  # the folder is made
    result = transcode(source, dest)

    data = dest.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert (result.sample_rate, result.channels) == (48000, 2)
    assert not dest.with_name("track.opus.partial").exists()
    assert_ogg_opus(
        data,
        channels=2,
        input_rate=48000 if fmt == "opus" else 44100,
        serial=stream_serial(TAGS.track_id),
    )
    samples, rate = decode(dest)
    assert rate == 48000 and samples.shape[0] == 2
    frame = 960  # 20 ms
    assert abs(samples.shape[1] - SECONDS * 48000) <= frame
    assert abs(result.duration_ms - SECONDS * 1000) <= 20
    assert np.sqrt(np.mean(samples**2)) > 0.01  # the music is there, not silence


def test_mono_stays_mono(tmp_path: Path) -> None:
    source = sine_file(tmp_path / "mono.flac", rate=44100, channels=1)
    result = transcode(source, tmp_path / "mono.opus")
    assert result.channels == 1
    assert_ogg_opus(
        (tmp_path / "mono.opus").read_bytes(),
        channels=1,
        input_rate=44100,
        serial=stream_serial(TAGS.track_id),
    )
    samples, _ = decode(tmp_path / "mono.opus")
    assert samples.shape[0] == 1


def test_surround_is_downmixed_to_stereo(tmp_path: Path) -> None:
    # 5.1 with sound only in the centre: a real downmix puts it in both channels (taking
    # the first two channels, front left and right, would give silence).
    source = sine_file(tmp_path / "surround.flac", rate=48000, channels=6, only=2)
    with av.open(str(source)) as c:
        assert c.streams.audio[0].codec_context.layout.name.startswith("5.1")
    result = transcode(source, tmp_path / "surround.opus")
    assert result.channels == 2
    assert_ogg_opus(
        (tmp_path / "surround.opus").read_bytes(),
        channels=2,
        input_rate=48000,
        serial=stream_serial(TAGS.track_id),
    )
    samples, _ = decode(tmp_path / "surround.opus")
    left, right = np.sqrt(np.mean(samples**2, axis=1))
    assert left > 0.05 and right > 0.05
    assert abs(left - right) < 0.05 * left


@pytest.mark.parametrize("rate", [44100, 96000])
def test_resampled_to_48_khz(tmp_path: Path, rate: int) -> None:
    source = sine_file(tmp_path / f"{rate}.flac", rate=rate, channels=2)
    result = transcode(source, tmp_path / "out.opus")
    head = assert_ogg_opus(
        (tmp_path / "out.opus").read_bytes(),
        channels=2,
        input_rate=rate,  # RFC 7845: the original input rate, for information
        serial=stream_serial(TAGS.track_id),
    )
    assert head.pre_skip == 312
    samples, out_rate = decode(tmp_path / "out.opus")
    assert out_rate == result.sample_rate == 48000
    assert abs(samples.shape[1] - SECONDS * 48000) <= 960
    # The pitch survives: the strongest frequency of the left channel is still 330 Hz.
    spectrum = np.abs(np.fft.rfft(samples[0, 4800:-4800]))
    peak = np.argmax(spectrum) * 48000 / (samples.shape[1] - 9600)
    assert abs(peak - 330) < 3


@pytest.mark.parametrize("kbps", [48, 75, 128])
def test_bitrate_follows_the_target(tmp_path: Path, kbps: int) -> None:
    source = make_audio(tmp_path / "in", "flac", seconds=3.0, piece=5)
    result = transcode(source, tmp_path / "out.opus", kbps=kbps)
    # VBR: tonal synthetic music runs above the target, but stays in a sane band of it.
    assert 0.6 * kbps * 1000 < result.bitrate < 1.5 * kbps * 1000
    assert abs(result.bitrate - result.size * 8 / (result.duration_ms / 1000)) < 100


def test_bitrate_out_of_range_is_refused(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "flac", seconds=0.5)
    for kbps in (5, 511):
        with pytest.raises(ValueError, match="kbit/s"):
            transcode(source, tmp_path / "out.opus", kbps=kbps)


# -- tags -----------------------------------------------------------------------------------


def test_tags_read_back_with_mutagen(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "vorbis", seconds=SECONDS)
    transcode(source, tmp_path / "out.opus")
    f = mutagen.oggopus.OggOpus(tmp_path / "out.opus")
    assert f.tags.vendor == libopus_version()
    assert libopus_version().startswith("libopus 1.")
    assert f.tags["TITLE"] == [TAGS.title]
    assert f.tags["ARTIST"] == ["Fenford", "Pelar", "Ödön & Co"]  # one each, in order
    assert f.tags["ALBUMARTIST"] == ["Fenford"]
    assert f.tags["ALBUM"] == ["Heartbreak"]
    assert f.tags["TRACKNUMBER"] == ["2"]
    assert f.tags["DISCNUMBER"] == ["1"]
    assert f.tags["DATE"] == ["1998-11-17"]
    assert f.tags["ISRC"] == ["GBXUX9827811"]
    assert f.tags["PHONOTHECA_ID"] == ["phonotheca:track:8f3a"]
    assert abs(f.info.length - SECONDS) < 0.02
    assert f.info.channels == 2


def test_missing_tag_values_are_left_out(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "flac", seconds=0.5)
    bare = OpusTags(None, (), None, None, None, None, None, track_id="t:1")
    transcode(source, tmp_path / "out.opus", tags=bare)
    f = mutagen.oggopus.OggOpus(tmp_path / "out.opus")
    # The measured gain is always there (an R128 tag, first), then only the id.
    assert [key for key, _ in f.tags] == ["R128_TRACK_GAIN", "PHONOTHECA_ID"]
    assert f.tags["PHONOTHECA_ID"] == ["t:1"]


def test_huge_tags_still_fit_one_header_page(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "flac", seconds=0.5)
    many = OpusTags(
        title="é" * 5000,
        artists=[f"Artist {i} " + "x" * 3000 for i in range(200)],
        album="Album",
        track_number=1,
        disc_number=None,
        date=None,
        isrc=None,
        track_id="t:huge",
    )
    transcode(source, tmp_path / "out.opus", tags=many)
    data = (tmp_path / "out.opus").read_bytes()
    assert_ogg_opus(data, channels=2, input_rate=44100, serial=stream_serial("t:huge"))
    f = mutagen.oggopus.OggOpus(tmp_path / "out.opus")
    assert f.tags["TITLE"] == ["é" * (MAX_VALUE_BYTES // 2)]  # cut at a character boundary
    assert f.tags["PHONOTHECA_ID"] == ["t:huge"]  # kept; trailing artists were dropped
    assert 10 < len(f.tags["ARTIST"]) < 200


# -- determinism ----------------------------------------------------------------------------

_IN_A_PROCESS = """
import sys
from pathlib import Path
from phonotheca.audio.transcode import OpusTags, transcode_to_opus
tags = OpusTags("T", ["A", "B"], "Al", 1, 1, "2001", "USABC0100001", track_id=sys.argv[3])
r = transcode_to_opus(Path(sys.argv[1]), Path(sys.argv[2]), kbps=75, tags=tags)
print(r.sha256)
"""


def test_same_input_gives_same_bytes_in_separate_processes(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "mp3", seconds=2.0, piece=7)
    digests = []
    for n in range(2):
        dest = tmp_path / f"run{n}.opus"
        run = subprocess.run(
            [sys.executable, "-c", _IN_A_PROCESS, str(source), str(dest), "t:same"],
            capture_output=True,
            text=True,
            check=True,
        )
        digests.append(run.stdout.strip())
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == digests[-1]
    assert digests[0] == digests[1]
    assert (tmp_path / "run0.opus").read_bytes() == (tmp_path / "run1.opus").read_bytes()
    # And the same as this process makes, written to a file or kept in memory.
    tags = OpusTags("T", ["A", "B"], "Al", 1, 1, "2001", "USABC0100001", track_id="t:same")
    assert transcode(source, tmp_path / "here.opus", tags=tags).sha256 == digests[0]
    data, result = encode_opus(source, kbps=75, tags=tags)
    assert result.sha256 == hashlib.sha256(data).hexdigest() == digests[0]


def test_serial_number_comes_from_the_public_id(tmp_path: Path) -> None:
    expected = int.from_bytes(hashlib.sha256(b"t:one").digest()[:4], "big") & 0x7FFFFFFF
    assert stream_serial("t:one") == expected
    assert stream_serial("t:one") != stream_serial("t:two")
    source = make_audio(tmp_path / "in", "flac", seconds=1.0)
    one, two = (
        transcode(source, tmp_path / f"{name}.opus", tags=OpusTags("T", ["A"], *[None] * 5, name))
        for name in ("t:one", "t:two")
    )
    assert one.sha256 != two.sha256 and one.size == two.size
    for name in ("t:one", "t:two"):
        data = (tmp_path / f"{name}.opus").read_bytes()
        assert {p.serial for p in pages(data)} == {stream_serial(name)}


# -- broken sources and writing -------------------------------------------------------------


def _broken(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nowhere.flac"
    if kind == "empty":
        path = tmp_path / "empty.flac"
        path.write_bytes(b"")
        return path
    if kind.startswith("truncated-"):
        return truncate(make_audio(tmp_path / "cut", kind.split("-")[1], seconds=2.0))
    if kind == "garbage":
        path = tmp_path / "noise.mp3"
        path.write_bytes(np.random.default_rng(3).bytes(30_000))
        return path
    if kind == "text":
        path = tmp_path / "notes.ogg"
        path.write_text("not audio\n" * 200)
        return path
    if kind == "image":
        path = tmp_path / "cover.jpg"
        path.write_bytes(cover(1))
        return path
    if kind == "damaged-flac":  # frames in the middle overwritten: FLAC resyncs silently
        path = make_audio(tmp_path / "damaged", "flac", seconds=2.0)
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 4000] = bytes(4000)
        path.write_bytes(bytes(data))
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "empty",
        "truncated-flac",
        "truncated-vorbis",
        "truncated-mp3",
        "truncated-m4a",
        "garbage",
        "text",
        "image",
        "damaged-flac",
    ],
)
def test_broken_source_raises_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    source = _broken(tmp_path, kind)
    dest = tmp_path / "out" / "x.opus"
    with pytest.raises(TranscodeError) as info:
        transcode(source, dest)
    assert str(source) in str(info.value)
    assert info.value.source == source
    assert not dest.exists() and not dest.with_name("x.opus.partial").exists()


def test_error_crosses_process_boundaries(tmp_path: Path) -> None:
    # The build transcodes in worker processes; their errors come back pickled.
    err = TranscodeError(tmp_path / "a.flac", "empty file")
    back = pickle.loads(pickle.dumps(err))
    assert (back.source, back.reason, str(back)) == (err.source, err.reason, str(err))


def test_existing_destination_is_replaced_whole(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "flac", seconds=0.5)
    dest = tmp_path / "x.opus"
    dest.write_bytes(b"old")
    result = transcode(source, dest)
    assert dest.stat().st_size == result.size
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_unwritable_destination_is_an_oserror(tmp_path: Path) -> None:
    source = make_audio(tmp_path / "in", "flac", seconds=0.5)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        transcode(source, tmp_path / "file" / "x.opus")
