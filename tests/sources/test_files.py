"""Scanning folders of audio files: what lands in the catalog, rescans, cover art, crashes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import msgspec
import pytest

from phonotheca.archive import Archive, init_archive
from phonotheca.audio.probe import Tags
from phonotheca.blobs import blob_path
from phonotheca.catalog.export import iter_export_lines
from phonotheca.catalog.record import TrackRecord
from phonotheca.catalog.search import search
from phonotheca.sources import file_reading, files
from tests.audio.makers import FULL, cover, file_rows, load_catalog, make_audio, record, scan


def mixed_folder(root: Path) -> Path:
    album = root / "Fenford - Heartbreak"
    make_audio(album / "01 light sky", "flac", tags=FULL)
    make_audio(album / "02 other", "vorbis", tags=Tags(title="Other Song", artists=("Fenford",)))
    make_audio(album / "03", "mp3")  # no tags at all
    (album / "cover.jpg").write_bytes(cover(5))
    broken = root / "Broken"
    broken.mkdir()
    (broken / "empty.flac").write_bytes(b"")
    (broken / "garbage.mp3").write_bytes(os.urandom(4000))
    cut = make_audio(broken / "cut", "vorbis", tags=FULL)
    cut.write_bytes(cut.read_bytes()[:3000])
    (broken / "notes.txt").write_text("not audio")
    (broken / os.fsdecode(b"latin-1 \xe9t\xe9.mp3")).write_bytes(b"x")  # not UTF-8: reported
    make_audio(broken / ".hidden", "mp3")
    return root


def test_scan_matches_creates_and_reports_broken_files(archive: Archive, tmp_path: Path) -> None:
    load_catalog(archive, tmp_path, [record(1, isrc="GBXUX9827811")])
    summary = scan(archive, mixed_folder(tmp_path / "lib"))
    assert (summary.files, summary.scanned, summary.errors, summary.created) == (6, 6, 4, 2)
    assert summary.matched["isrc"] == 1 and summary.ignored == 2  # cover.jpg, notes.txt
    rows = file_rows(archive)
    assert rows["01 light sky.flac"] == ("test:track:1", "isrc", "ok")
    assert {rows[n][2] for n in ("empty.flac", "garbage.mp3", "cut.ogg")} == {"error"}
    assert ".hidden.mp3" not in rows
    assert summary.rejects_file is not None
    rejects = [json.loads(line) for line in Path(summary.rejects_file).read_text().splitlines()]
    reasons = {Path(r["file"]).name: r["reason"] for r in rejects}
    assert reasons == {
        "empty.flac": "empty file",
        "garbage.mp3": reasons["garbage.mp3"],
        "cut.ogg": reasons["cut.ogg"],
        "latin-1 \\xe9t\\xe9.mp3": "name is not valid UTF-8: rename it",
    }
    assert reasons["garbage.mp3"].startswith("unreadable")
    assert "truncated" in reasons["cut.ogg"] or "unreadable" in reasons["cut.ogg"]
    conn = archive.connect(readonly=True)
    row = conn.execute(
        "SELECT codec, lossless, sample_rate, channels, duration_ms, length(sha256), bitrate"
        " FROM source_files WHERE path LIKE '%01 light sky.flac'"
    ).fetchone()
    untagged = conn.execute(
        "SELECT t.title FROM source_files f JOIN tracks t ON t.id = f.track_id"
        " WHERE f.path LIKE '%/03.mp3'"
    ).fetchone()
    conn.close()
    assert row[:6] == ("flac", 1, 44100, 2, row[4], 64) and abs(row[4] - 1500) < 50
    assert untagged == ("03",)  # a file without tags becomes a track named after it


def test_new_track_from_tags_is_searchable_and_exported(archive: Archive, tmp_path: Path) -> None:
    tags = Tags(
        title="Zephyr Lullaby (feat. Pelar)",
        artists=("Quorra Vex feat. Pelar",),
        album="Night Drives",
        track_number=4,
        date="2011-05",
        isrc="us-qvx-11-00004",
        musicbrainz_recording="11111111-2222-4333-8444-555555555555",
    )
    make_audio(tmp_path / "lib" / "a", "opus", tags=tags)
    summary = scan(archive, tmp_path / "lib")
    assert summary.created == 1
    conn = archive.connect(readonly=True)
    hits = search(conn, "zephyr quorra")
    assert [h.title for h in hits] == [tags.title]
    hit = hits[0]
    assert hit.artists == ["Quorra Vex", "Pelar"] and hit.album == "Night Drives"
    assert hit.isrc == "USQVX1100004" and hit.track_number == 4
    assert search(conn, "night drives")[0].id == hit.id
    line = next(iter_export_lines(conn))
    conn.close()
    rec = msgspec.json.decode(line, type=TrackRecord)
    assert rec.id == hit.id and rec.id.startswith("h:track:")
    assert rec.album is not None and rec.album.release_date == "2011-05"
    assert rec.external_ids == {"musicbrainz_recording": tags.musicbrainz_recording}
    # The same tags in another archive give the same ids.
    other = init_archive(tmp_path / "other", "other")
    scan(other, tmp_path / "lib")
    assert file_rows(other)["a.opus"][0] == hit.id


def test_rescan_skips_rereads_and_marks_missing(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    for n in range(3):
        make_audio(lib / f"s{n}", "vorbis", piece=n, tags=Tags(title=f"Song {n}", artists=("A",)))
    first = scan(archive, lib)
    assert (first.scanned, first.created) == (3, 3)

    def no_reading(*args: object) -> object:
        raise AssertionError("an unchanged file was read")

    with monkeypatch.context() as m:
        m.setattr(file_reading, "read_file", no_reading)
        again = scan(archive, lib)
    assert (again.scanned, again.skipped_unchanged, again.created) == (0, 3, 0)

    make_audio(lib / "s0", "vorbis", piece=0, tags=Tags(title="Song 0 (Remix)", artists=("A",)))
    gone = (lib / "s1.ogg").read_bytes(), (lib / "s1.ogg").stat().st_mtime_ns
    (lib / "s1.ogg").unlink()
    changed = scan(archive, lib)
    assert (changed.scanned, changed.skipped_unchanged, changed.missing) == (1, 1, 1)
    assert changed.created == 1  # the retitled file is another song now
    rows = file_rows(archive)
    assert rows["s1.ogg"][1:] == ("new", "missing")  # kept, with its track
    assert rows["s0.ogg"][2] == "ok"

    (lib / "s1.ogg").write_bytes(gone[0])
    os.utime(lib / "s1.ogg", ns=(gone[1], gone[1]))
    back = scan(archive, lib)
    assert (back.scanned, back.reappeared, back.missing) == (0, 1, 0)
    assert file_rows(archive)["s1.ogg"][2] == "ok"


def test_cover_art_is_stored_once_and_linked_to_albums(archive: Archive, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for album in ("One", "Two"):
        for n in (1, 2):
            make_audio(
                lib / album / f"{n}",
                "flac" if n == 1 else "mp3",
                piece=n,
                tags=Tags(title=f"{album} {n}", artists=("Fenford",), album=album),
                picture=cover(1),  # the same front cover embedded in every file
            )
        (lib / album / "folder.jpg").write_bytes(cover(2))
    summary = scan(archive, lib)
    assert summary.blobs_stored == 2
    for n in (1, 2):
        data = cover(n)
        sha = hashlib.sha256(data).hexdigest()
        path = blob_path(archive.blobs_dir, sha)
        assert path == archive.blobs_dir / sha[:2] / sha[2:4] / sha and path.read_bytes() == data
    assert sorted(p.name for p in archive.blobs_dir.rglob("*") if p.is_file()) == sorted(
        hashlib.sha256(cover(n)).hexdigest() for n in (1, 2)
    )
    conn = archive.connect(readonly=True)
    images = conn.execute(
        "SELECT a.title, i.position, i.kind, i.blob_sha256, i.url, i.width FROM images i"
        " JOIN albums a ON a.id = i.album_id ORDER BY a.title, i.position"
    ).fetchall()
    conn.close()
    one = hashlib.sha256(cover(1)).hexdigest()
    assert [(t, p, k, s == one) for t, p, k, s, _, _ in images] == [
        ("One", 0, "front", True),
        ("One", 1, "front", False),
        ("Two", 0, "front", True),
        ("Two", 1, "front", False),
    ]
    assert images[0][4] == f"blobs/{one[:2]}/{one[2:4]}/{one}" and images[0][5] == 96
    scan(archive, lib)  # a rescan links nothing twice
    os.utime(lib / "One" / "1.flac")  # even when a file is read again
    assert scan(archive, lib).images_linked == 0


def catalog_state(archive: Archive, root: Path) -> list[tuple[object, ...]]:
    conn = archive.connect(readonly=True)
    rows = conn.execute(
        "SELECT f.path, t.public_id, t.title, f.match, f.status, f.sha256, a.public_id"
        " FROM source_files f LEFT JOIN tracks t ON t.id = f.track_id"
        " LEFT JOIN albums a ON a.id = t.album_id ORDER BY f.path"
    ).fetchall()
    tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()
    conn.close()
    return [(str(Path(r[0]).relative_to(root)), *r[1:]) for r in rows] + [tracks]


def test_interrupted_scan_finishes_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    for n in range(7):
        tags = Tags(title=f"Song {n % 4}", artists=("Band",), album="LP") if n != 5 else Tags()
        make_audio(lib / f"f{n}", ("flac", "mp3", "opus")[n % 3], piece=n % 4, tags=tags)
    (lib / "bad.flac").write_bytes(b"nope")
    monkeypatch.setattr(files, "BATCH_FILES", 2)
    whole = init_archive(tmp_path / "whole", "w")
    scan(whole, lib)

    cut = init_archive(tmp_path / "cut", "c")
    real_write = files._Writer.write
    calls = 0

    def dies_on_third_batch(self: files._Writer, batch: list[file_reading.ScannedFile]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        real_write(self, batch)

    with monkeypatch.context() as m:
        m.setattr(files._Writer, "write", dies_on_third_batch)
        with pytest.raises(KeyboardInterrupt):
            scan(cut, lib)
    resumed = scan(cut, lib)
    assert resumed.skipped_unchanged == 4 and resumed.scanned == 4
    assert catalog_state(cut, lib) == catalog_state(whole, lib)


def test_worker_processes_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = mixed_folder(tmp_path / "lib")
    monkeypatch.setattr(file_reading, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(file_reading, "FILES_PER_TASK", 2)
    alone, pooled = init_archive(tmp_path / "a", "a"), init_archive(tmp_path / "b", "b")
    s1 = scan(alone, lib, workers=0)
    s2 = scan(pooled, lib, workers=2)
    assert catalog_state(alone, lib) == catalog_state(pooled, lib)
    assert (s1.created, s1.errors, s1.blobs_stored) == (s2.created, s2.errors, s2.blobs_stored)


def test_a_newer_album_record_keeps_the_covers_found_in_files(
    archive: Archive, tmp_path: Path
) -> None:
    """Cover art linked from files belongs to the archive, not to the album's source
    record: a newer record of the album replaces the record's own images only."""
    album = {
        "id": "test:album:0",
        "title": "Album 0",
        "artists": [{"id": "test:artist:1", "name": "Artist 1"}],
        "images": [{"url": "https://img.example/a.jpg", "kind": "front"}],
    }
    load_catalog(archive, tmp_path, [record(1, isrc="GBXUX9827811", album=album)])
    make_audio(tmp_path / "lib" / "1", "flac", tags=FULL, picture=cover(3))
    assert scan(archive, tmp_path / "lib").images_linked == 1
    sha = hashlib.sha256(cover(3)).hexdigest()

    def images() -> list[tuple[object, ...]]:
        conn = archive.connect(readonly=True)
        try:
            return conn.execute(
                "SELECT i.position, i.url, i.blob_sha256 FROM images i"
                " JOIN albums a ON a.id = i.album_id WHERE a.public_id = 'test:album:0'"
                " ORDER BY i.position"
            ).fetchall()
        finally:
            conn.close()

    assert images() == [(0, "https://img.example/a.jpg", None), (1, blob_url_of(sha), sha)]
    newer = dict(
        album,
        title="Album 0 (remastered)",
        images=[
            {"url": "https://img.example/b.jpg", "kind": "front"},
            {"url": "https://img.example/c.jpg", "kind": "back"},
        ],
    )
    load_catalog(
        archive,
        tmp_path,
        [record(1, isrc="GBXUX9827811", album=newer, updated_at="2030-01-01T00:00:00Z")],
    )
    assert images() == [
        (0, "https://img.example/b.jpg", None),
        (1, "https://img.example/c.jpg", None),
        (2, blob_url_of(sha), sha),
    ]


def blob_url_of(sha: str) -> str:
    return f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"
