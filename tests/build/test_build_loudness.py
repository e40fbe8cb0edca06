"""Loudness measured by a real build: index lines, the ledger, album loudness, Opus tags."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import mutagen.oggopus
import pytest

from phonotheca.audio.loudness import album_loudness, decode_histogram
from phonotheca.audio.oggopus import OpusHead, iter_pages
from tests.audio.test_loudness import ffmpeg_ebur128
from tests.build.conftest import phonotheca


def test_build_measures_every_track_once(archive: Path, tmp_path: Path) -> None:
    phonotheca("build", "--archive", str(archive), "--workers", "2")
    db = sqlite3.connect(archive / "catalog.sqlite3")
    rows = db.execute(
        "SELECT t.public_id, l.tier, l.collection, l.volume, l.offset, l.length,"
        " l.loudness_lufs, l.true_peak_dbtp, l.loudness_range_lu, l.loudness_blocks, s.path"
        " FROM ledger l JOIN tracks t ON t.id = l.track_id"
        " JOIN source_files s ON s.id = l.source_file_id WHERE l.status = 'packed'"
    ).fetchall()
    assert {r[1] for r in rows} == {"original", "opus"}
    index: dict[str, dict[str, object]] = {}
    for bag in (archive / "torrents").iterdir():
        if bag.is_dir() and "_pop-" in bag.name:
            for line in (bag / "data" / "index.jsonl").read_text().splitlines():
                entry = json.loads(line)
                index[entry["id"]] = entry
    checked_ffmpeg = 0
    for public_id, tier, coll, volume, offset, length, lufs, peak, lra, blocks, src in rows:
        assert lufs is not None and peak is not None and blocks
        assert lra is None  # the test files are shorter than one 3 s short-term window
        assert decode_histogram(blocks).sum() > 0
        line = index[public_id]
        assert (line["loudness_lufs"], line["true_peak_dbtp"], line["loudness_range_lu"]) == (
            lufs,
            peak,
            lra,
        )
        if checked_ffmpeg < 6 and shutil.which("ffmpeg"):
            # The source's audio, as an independent meter reads it.
            integrated, ff_peak, _ = ffmpeg_ebur128(Path(src))
            assert abs(lufs - integrated) <= 0.1 and abs(peak - ff_peak) <= 0.2, public_id
            checked_ffmpeg += 1
        if tier == "opus":
            with open(archive / "torrents" / coll / "data" / volume, "rb") as f:
                f.seek(offset)
                data = f.read(length)
            first = next(iter_pages(data))
            assert OpusHead.parse(data[first.body]).output_gain == 0  # RFC 7845: left at 0
            out = tmp_path / f"{abs(hash(public_id))}.opus"
            out.write_bytes(data)
            tags = mutagen.oggopus.OggOpus(out).tags
            assert tags["R128_TRACK_GAIN"] == [str(round((-23 - lufs) * 256))]

    # Album loudness: every album with a packed track, gated over its tracks' blocks.
    albums = db.execute(
        "SELECT a.album_id, a.loudness_lufs, a.true_peak_dbtp, a.tracks FROM album_loudness a"
    ).fetchall()
    assert albums
    for album_id, album_lufs, album_peak, count in albums:
        tracks = db.execute(
            "SELECT l.loudness_lufs, l.true_peak_dbtp, l.loudness_blocks FROM ledger l"
            " JOIN tracks t ON t.id = l.track_id WHERE t.album_id = ? AND l.status = 'packed'",
            (album_id,),
        ).fetchall()
        assert count == len(tracks)
        assert album_lufs == album_loudness(r[2] for r in tracks)
        assert album_peak == max(r[1] for r in tracks)
        if count == 1:
            assert album_lufs == pytest.approx(tracks[0][0], abs=0.05)
        else:
            assert (
                min(r[0] for r in tracks) - 0.05 <= album_lufs <= max(r[0] for r in tracks) + 0.05
            )
