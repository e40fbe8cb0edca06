"""Small real audio files for tests, made on the spot with PyAV, soundfile and mutagen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from phonotheca.archive import Archive
from phonotheca.audio.probe import Tags
from phonotheca.audio.tagging import write_tags
from phonotheca.catalog.importer import finish_import, import_lines
from phonotheca.sources.files import ScanSummary, scan_files
from phonotheca.synth.audio import EXTENSIONS, cover_jpeg, encode, render
from tests.conftest import track

ALL_FORMATS = ("vorbis", "flac", "mp3", "opus", "m4a", "alac", "wav", "aiff", "wma", "wavpack")


def make_audio(
    path: Path,
    fmt: str = "vorbis",
    *,
    seconds: float = 1.5,
    piece: int = 1,
    tags: Tags | None = None,
    picture: bytes | None = None,
) -> Path:
    """Encode ``piece`` (a generated melody; the same number sounds the same) as ``fmt``.

    ``path`` gets the format's extension when it has none.
    """
    if not path.suffix:
        path = path.with_suffix(EXTENSIONS[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    encode(path, render(piece, seconds), fmt, serial=piece)
    write_tags(path, tags or Tags(), picture)
    return path


def cover(n: int = 1) -> bytes:
    return cover_jpeg(n)


def truncate(path: Path, share: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


FULL = Tags(
    title="Light Sky (feat. Pelar)",
    artists=("Fenford",),
    album="Heartbreak",
    album_artists=("Fenford",),
    track_number=2,
    track_total=13,
    disc_number=1,
    disc_total=2,
    date="1998-11-17",
    isrc="gb-xux-98-27811",
    musicbrainz_recording="e91522f2-d166-41ff-87b8-f280554d586d",
    musicbrainz_release="0b6b4b4e-3c4a-4d9d-9f0e-1f2a3b4c5d6e",
)


# -- catalogs and scans ----------------------------------------------------------------------


def load_catalog(archive: Archive, tmp_path: Path, records: list[dict[str, Any]]) -> None:
    """Import interchange records into the archive's catalog."""
    src = tmp_path / "catalog-input.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    conn = archive.connect()
    try:
        import_lines(conn, src, archive.rejects_dir)
        finish_import(conn)
    finally:
        conn.close()


def scan(archive: Archive, *roots: Path, **options: Any) -> ScanSummary:
    options.setdefault("workers", 0)
    conn = archive.connect()
    try:
        return scan_files(
            conn,
            list(roots),
            blobs_dir=archive.blobs_dir,
            rejects_dir=archive.rejects_dir,
            **options,
        )
    finally:
        conn.close()


def file_rows(archive: Archive) -> dict[str, tuple[Any, ...]]:
    """File name -> (track public id, match, status) of every source file."""
    conn = archive.connect(readonly=True)
    try:
        return {
            Path(path).name: (pid, match, status)
            for path, pid, match, status in conn.execute(
                "SELECT f.path, t.public_id, f.match, f.status FROM source_files f"
                " LEFT JOIN tracks t ON t.id = f.track_id"
            )
        }
    finally:
        conn.close()


def record(n: int, **fields: Any) -> dict[str, Any]:
    """A catalog track whose duration suits the short test files (1.5 s)."""
    rec = track(n, duration_ms=1500)
    rec.update(fields)
    return rec
