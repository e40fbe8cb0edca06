"""``import files --loudness``: the scan decodes and measures each file it reads."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from phonotheca.archive import Archive
from phonotheca.audio.loudness import measure_file
from tests.audio.makers import make_audio, scan
from tests.build.conftest import phonotheca


def loudness_rows(archive: Archive) -> dict[str, tuple[object, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return {
            Path(r[0]).name: r[1:]
            for r in conn.execute(
                "SELECT path, loudness_lufs, true_peak_dbtp, loudness_range_lu, loudness_blocks"
                " FROM source_files"
            )
        }
    finally:
        conn.close()


def test_scan_measures_loudness_only_when_asked(archive: Archive, tmp_path: Path) -> None:
    music = tmp_path / "music"
    paths = [make_audio(music / f"{i:02d}", fmt, seconds=2.0, piece=i) for i, fmt in
             enumerate(("flac", "vorbis", "mp3"), start=1)]  # fmt: skip
    scan(archive, music)
    assert all(r == (None, None, None, None) for r in loudness_rows(archive).values())

    # Asked now: the unchanged files, never measured, are measured without a rescan.
    summary = scan(archive, music, loudness=True)
    assert summary.skipped_unchanged == 3 and summary.measured_unchanged == 3
    rows = loudness_rows(archive)
    for path in paths:
        lufs, peak, _, blocks = rows[path.name]
        expected = measure_file(path)
        assert (lufs, peak, blocks) == (
            expected.integrated_lufs,
            expected.true_peak_dbtp,
            expected.histogram,
        )

    # A new file is measured as it is read; the CLI flag says so in its summary.
    make_audio(music / "04", "opus", seconds=2.0, piece=4)
    out = phonotheca(
        "import", "files", str(music), "--archive", str(archive.root), "--loudness", "--json"
    )
    result = json.loads(out.stdout)
    assert result["scanned"] == 1 and result["measured_unchanged"] == 0
    assert loudness_rows(archive)["04.opus"][0] is not None
