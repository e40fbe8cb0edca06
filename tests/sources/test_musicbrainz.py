"""MusicBrainz release documents: mapping of the real fixtures, input shapes, missing parts,
bad documents, aliases in search, recording documents, export."""

from __future__ import annotations

import copy
import io
import json
import lzma
import sqlite3
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard
from click.testing import CliRunner

from phonotheca.archive import Archive
from phonotheca.catalog.export import iter_export_lines
from phonotheca.catalog.importer import ImportRejected
from phonotheca.catalog.record import TrackRecord
from phonotheca.catalog.search import rebuild_search, search
from phonotheca.cli import main
from phonotheca.sources.musicbrainz import parse_recording, prepare_releases
from phonotheca.sources.musicbrainz_import import MusicBrainzSummary, import_musicbrainz
from tests.catalog import import_files
from tests.conftest import DATA

FIXTURES = DATA / "musicbrainz"
DSOTM = "b84ee12a-09ef-421b-82de-0441a926375b"
PINK_FLOYD = "83d91898-7763-47d7-b03b-b92132375c47"
THINKING_OUT_LOUD = "cb2cc207-8125-445c-9ef9-6ea44eee959a"
Doc = dict[str, Any]


def fixture(name: str) -> Doc:
    doc: Doc = json.loads((FIXTURES / name).read_text())
    return doc


def jsonl(tmp_path: Path, name: str, docs: list[Doc | bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(
        b"".join(
            (d if isinstance(d, bytes) else json.dumps(d, ensure_ascii=False).encode()) + b"\n"
            for d in docs
        )
    )
    return path


def load(
    archive: Archive, *paths: Path, strict: bool = False, workers: int = 0
) -> list[MusicBrainzSummary]:
    return import_files(archive, import_musicbrainz, paths, strict=strict, workers=workers)


def rows(archive: Archive, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(archive.catalog_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def found(archive: Archive, text: str) -> list[str]:
    conn = archive.connect(readonly=True)
    try:
        return [h.title for h in search(conn, text, 50)]
    finally:
        conn.close()


DSOTM_TRACKS = [
    ("Speak to Me", 1, 1, 68346, "bef3fddb-5aca-49f5-b2fd-d56a23268d63"),
    ("Breathe", 1, 2, 168720, "ecbc7c9b-e79d-4ec8-ac77-44e4a7f7f1b8"),
    ("On the Run", 1, 3, 230600, "747a79a7-644e-42d4-be86-9adaf44393d8"),
    ("Time", 1, 4, 409600, "41959321-f2bb-4580-aa19-16248fe665d3"),
    ("The Great Gig in the Sky", 1, 5, 284133, "73b01cea-2dad-4fc2-9e61-02a31477c1b1"),
    ("Money", 1, 6, 382746, "7fef22bd-76aa-4803-b56b-93a5d6e70662"),
    ("Us and Them", 1, 7, 469853, "2d1201cf-59bb-4ffa-9f52-f5b3afa13346"),
    ("Any Colour You Like", 1, 8, 206213, "7c278a16-ae04-460c-88ea-39155cadcd09"),
    ("Brain Damage", 1, 9, 226933, "71c0e054-b700-4fd2-a35b-95c7afc566cb"),
    ("Eclipse", 1, 10, 131546, "76341a6e-bac9-4ab3-9d9a-3cf1c9ceac80"),
]
TRACK_SQL = """
    SELECT t.title, t.disc_number, t.track_number, t.duration_ms, e.value
    FROM tracks t LEFT JOIN external_ids e
      ON e.entity = 'track' AND e.entity_id = t.id AND e.scheme = 'musicbrainz_recording'
    ORDER BY t.disc_number, t.track_number
"""


def test_dark_side_of_the_moon(archive: Archive) -> None:
    (s,) = load(archive, FIXTURES / "release.json")  # the pretty-printed document as is
    assert (s.documents, s.read, s.loaded, s.rejected, s.tracks) == ("release", 1, 1, 0, 10)
    assert rows(archive, TRACK_SQL) == DSOTM_TRACKS
    assert rows(archive, "SELECT public_id, artist_credit FROM tracks WHERE title = 'Money'") == [
        ("mb:track:e04126c2-457c-36b1-a6b3-9191002607bf", "Pink Floyd")
    ]
    assert rows(
        archive,
        "SELECT public_id, title, artist_credit, album_type, release_date,"
        " release_date_precision, label, catalog_number, upc, status, packaging, country,"
        " markets, total_tracks, total_discs, original_release_date, disambiguation,"
        " cover_art_count FROM albums",
    ) == [
        (
            f"mb:release:{DSOTM}",
            "The Dark Side of the Moon",
            "Pink Floyd",
            "album",
            "1973-03-24",
            "day",
            "Harvest",
            "SHVL 804",
            "123",
            "official",
            "Gatefold Cover",
            "GB",
            "GB NZ",
            10,
            1,
            "1973-03-24",
            "stereo",
            10,
        )
    ]
    assert rows(archive, "SELECT kind, url FROM images ORDER BY position") == [
        ("front", f"https://coverartarchive.org/release/{DSOTM}/front"),
        ("back", f"https://coverartarchive.org/release/{DSOTM}/back"),
    ]
    assert rows(
        archive, "SELECT scheme, value FROM external_ids WHERE entity = 'album' ORDER BY 1"
    ) == [
        ("asin", "b123"),
        ("musicbrainz_release", DSOTM),
        ("musicbrainz_release_group", "f5093c06-23e3-404f-aeaa-40f72885ee3a"),
    ]
    assert rows(
        archive,
        "SELECT g.name FROM album_genres ag JOIN genres g ON g.id = ag.genre_id ORDER BY 1",
    ) == [("genre1",), ("genre2",)]
    # every track and the album credit Pink Floyd, with its sort name and aliases
    assert rows(archive, "SELECT public_id, name, sort_name FROM artists") == [
        (f"mb:artist:{PINK_FLOYD}", "Pink Floyd", "Pink Floyd")
    ]
    assert rows(archive, "SELECT count(*), count(DISTINCT artist_id) FROM track_artists") == [
        (10, 1)
    ]
    assert rows(archive, "SELECT name, locale FROM artist_aliases ORDER BY name") == [
        ("Floyd", None),
        ("Pink Floid", None),
        ("Pink Floyd", "en"),
        ("The Pink Floyd", None),
        ("ピンク・フロイド", "ja"),
        ("핑크 플로이드", "ko"),
    ]


def test_multi_disc_release_without_artist_credit(archive: Archive) -> None:
    (s,) = load(archive, FIXTURES / "release_multidisc.json")
    assert (s.loaded, s.rejected, s.tracks) == (1, 0, 7)
    assert [r[:4] for r in rows(archive, TRACK_SQL)] == [
        ("ケアレス", 1, 1, 256000),
        ("Bye-Bye Butterfly", 1, 2, 263000),
        ("Starry", 1, 3, 262000),
        ("ケアレス -Instrumental-", 1, 4, 254000),
        ("ケアレス (Music Video)", 2, 1, 249000),
        ("ケアレス (15秒CM)", 2, 2, 14000),
        ("ケアレス (30秒メッセージコメント入りCM)", 2, 3, 29000),
    ]
    assert rows(
        archive,
        "SELECT title, artist_credit, album_type, upc, total_discs, total_tracks, country"
        " FROM albums",
    ) == [("ケアレス", "", "single", "4547366518764", 2, 7, "JP")]
    assert rows(archive, "SELECT count(*) FROM images") == [(0,)]  # no cover art
    assert rows(archive, "SELECT count(*) FROM artists") == [(0,)]


def test_several_isrcs_first_valid_in_the_column_all_in_external_ids(
    archive: Archive, tmp_path: Path
) -> None:
    doc = fixture("release.json")
    money = doc["media"][0]["tracks"][5]["recording"]
    money["isrcs"] = ["not an isrc", "gb-aye-73-00105", "USABC0100001"]
    doc["media"][0]["tracks"][0]["recording"]["isrcs"] = ["BAD"]
    (s,) = load(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    assert s.invalid_isrc == 1
    assert rows(archive, "SELECT title, isrc, isrc_valid FROM tracks WHERE isrc IS NOT NULL") == [
        ("Speak to Me", "BAD", 0),
        ("Money", "GBAYE7300105", 1),
    ]
    assert rows(
        archive,
        "SELECT value FROM external_ids WHERE scheme = 'isrc' AND entity_id ="
        " (SELECT id FROM tracks WHERE title = 'Money') ORDER BY value",
    ) == [("GBAYE7300105",), ("NOTANISRC",), ("USABC0100001",)]


def _without(path: list[Any]) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, last = path
        target: Any = doc
        for key in parents:
            target = target[key]
        if last == "=null":
            return
        del target[last]

    return edit


def _set(path: list[Any], value: object) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, last = path
        target: Any = doc
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


EDITS: dict[str, tuple[Callable[[Doc], None], int]] = {
    "no media": (_without(["media"]), 0),
    "media null": (_set(["media"], None), 0),
    "medium without tracks": (_without(["media", 0, "tracks"]), 0),
    "medium tracks null": (_set(["media", 0, "tracks"], None), 0),
    "artist-credit null": (_set(["artist-credit"], None), 10),
    "artist-credit empty": (_set(["artist-credit"], []), 10),
    "credit without artist": (_set(["artist-credit", 0, "artist"], None), 10),
    "no date": (_without(["date"]), 10),
    "bad date": (_set(["date"], "1973-??"), 10),
    "release-group null": (_set(["release-group"], None), 10),
    "label-info null": (_set(["label-info"], None), 10),
    "cover-art-archive null": (_set(["cover-art-archive"], None), 10),
    "release-events null": (_set(["release-events"], None), 10),
    "track recording null": (_set(["media", 0, "tracks", 0, "recording"], None), 10),
    "track without id": (_set(["media", 0, "tracks", 0, "id"], None), 9),
    "track length null": (_set(["media", 0, "tracks", 2, "length"], None), 10),
    "genres null": (_set(["genres"], None), 10),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_missing_or_null_parts_load_what_is_there(
    archive: Archive, tmp_path: Path, edit: str
) -> None:
    doc = fixture("release.json")
    change, tracks = EDITS[edit]
    change(doc)
    (s,) = load(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    assert (s.loaded, s.rejected, s.tracks) == (1, 0, tracks)
    assert rows(archive, "SELECT title FROM albums") == [("The Dark Side of the Moon",)]
    assert rows(archive, "SELECT count(*) FROM tracks") == [(tracks,)]


def test_missing_parts_fall_back_sensibly(archive: Archive, tmp_path: Path) -> None:
    doc = fixture("release.json")
    del doc["date"]
    doc["artist-credit"] = None
    doc["media"][0]["tracks"][2]["length"] = None  # On the Run: the recording's 230000
    doc["media"][0]["tracks"][0]["recording"] = None  # Speak to Me keeps its own title
    load(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    assert rows(archive, "SELECT release_date, artist_credit FROM albums") == [(None, "")]
    assert rows(archive, "SELECT title, duration_ms FROM tracks ORDER BY track_number")[:3] == [
        ("Speak to Me", 68346),
        ("Breathe", 168720),
        ("On the Run", 230000),
    ]


def test_pregap_and_data_tracks(archive: Archive, tmp_path: Path) -> None:
    doc = fixture("release_multidisc.json")
    first = doc["media"][0]
    first["pregap"] = dict(first["tracks"][0], id="00000000-0000-4000-8000-0000000000aa")
    first["pregap"].update(position=0, title="Hidden")
    first["data-tracks"] = [
        dict(first["tracks"][1], id="00000000-0000-4000-8000-0000000000bb", position=5)
    ]
    first["data-tracks"][0]["title"] = "Data"
    (s,) = load(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    assert s.tracks == 9
    assert [r[:3] for r in rows(archive, TRACK_SQL)][:6] == [
        ("Hidden", 1, None),  # a hidden track before track 1 sorts first
        ("ケアレス", 1, 1),
        ("Bye-Bye Butterfly", 1, 2),
        ("Starry", 1, 3),
        ("ケアレス -Instrumental-", 1, 4),
        ("Data", 1, 5),
    ]


def test_bad_documents_are_rejected_with_their_reason(archive: Archive, tmp_path: Path) -> None:
    good = fixture("release.json")
    other = fixture("release_multidisc.json")
    no_id = copy.deepcopy(good)
    no_id["id"] = None
    no_title = copy.deepcopy(good)
    del no_title["title"]
    wrong_type = copy.deepcopy(good)
    wrong_type["media"] = "none"
    docs: list[Doc | bytes] = [
        good,
        b"{not json",
        b"[1, 2]",
        no_id,
        no_title,
        wrong_type,
        fixture("recording.json"),
        b"",
        other,
    ]
    (s,) = load(archive, jsonl(tmp_path, "bad.jsonl", docs))
    assert (s.read, s.loaded, s.rejected, s.tracks) == (8, 2, 6, 17)
    assert s.rejects_file is not None
    rejects = [json.loads(x) for x in Path(s.rejects_file).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6, 7]
    reasons = [r["reason"] for r in rejects]
    assert "invalid JSON" in reasons[0]
    assert "invalid release" in reasons[1]
    assert "release id None is not a MusicBrainz id" in reasons[2]
    assert "no title" in reasons[3]
    assert "$.media" in reasons[4]
    assert "a recording document, not a release" in reasons[5]
    assert rejects[0]["record"] == "{not json"


def test_strict_stops_at_the_first_bad_document(archive: Archive, tmp_path: Path) -> None:
    bad = jsonl(tmp_path, "bad.jsonl", [fixture("release_multidisc.json"), b"{oops"])
    with pytest.raises(ImportRejected) as info:
        load(archive, FIXTURES / "release.json", bad, strict=True)
    assert "bad.jsonl:2" in str(info.value)
    assert rows(archive, "SELECT count(*) FROM tracks") == [(0,)]


def _tar_xz(path: Path, member: str, data: bytes) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, content in (("COPYING", b"CC0"), ("TIMESTAMP", b"2024"), (member, data)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_every_input_shape_gives_the_same_catalog(tmp_path: Path) -> None:
    from phonotheca.archive import init_archive

    docs = [fixture("release.json"), fixture("release_multidisc.json")]
    lines = b"".join(json.dumps(d, ensure_ascii=False).encode() + b"\n" for d in docs)
    inputs = {
        "jsonl": jsonl(tmp_path, "r.jsonl", list(docs)),
        "zst": tmp_path / "r.jsonl.zst",
        "xz": tmp_path / "release.json.xz",
        "tar": _tar_xz(tmp_path / "release.tar.xz", "mbdump/release", lines),
    }
    inputs["zst"].write_bytes(zstandard.ZstdCompressor().compress(lines))
    inputs["xz"].write_bytes(lzma.compress(lines))
    catalogs = []
    for shape, path in inputs.items():
        archive = init_archive(tmp_path / shape, shape)
        (s,) = load(archive, path)
        assert (s.read, s.loaded, s.tracks) == (2, 2, 17), shape
        catalogs.append(rows(archive, "SELECT public_id, title, duration_ms FROM tracks"))
    assert all(c == catalogs[0] for c in catalogs)


def test_a_tar_without_a_dump_member_is_a_clear_error(archive: Archive, tmp_path: Path) -> None:
    from phonotheca.sources.jsonl import SourceError

    path = _tar_xz(tmp_path / "other.tar.xz", "mbdump/artist", b"{}\n")
    with pytest.raises(SourceError, match="no mbdump/release"):
        load(archive, path)


def test_search_finds_aliases_and_follows_alias_changes(archive: Archive, tmp_path: Path) -> None:
    load(archive, FIXTURES / "release.json")
    assert len(found(archive, "floid")) == 10
    assert "Money" in found(archive, "ピンク・フロイド money")
    assert found(archive, "핑크 eclipse") == ["Eclipse"]
    # The artist is updated by another release: an alias goes, one comes.
    doc = fixture("release.json")
    doc["id"] = "00000000-0000-4000-8000-000000000001"
    doc["media"][0]["tracks"] = doc["media"][0]["tracks"][:1]
    doc["media"][0]["tracks"][0]["id"] = "00000000-0000-4000-8000-000000000002"
    aliases = doc["artist-credit"][0]["artist"]["aliases"]
    aliases[:] = [a for a in aliases if a["name"] != "Pink Floid"]
    aliases.append({"name": "Fluido Rosa", "sort-name": "Rosa, Fluido", "locale": "it"})
    load(archive, jsonl(tmp_path, "update.jsonl", [doc]))
    assert found(archive, "floid") == []
    assert len(found(archive, "fluido rosa")) == 11
    # The same matches as an index built from scratch (re-added tracks may come later
    # within their rank bucket: only the sets are compared).
    queries = ["floyd", "fluido", "money", "ピンク", "pink floyd time", "floid"]
    before = {q: sorted(found(archive, q)) for q in queries}
    conn = archive.connect()
    rebuild_search(conn)
    conn.close()
    assert {q: sorted(found(archive, q)) for q in queries} == before


def test_reimport_is_a_no_op_and_a_changed_release_updates(
    archive: Archive, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, "a.jsonl", [fixture("release.json"), fixture("release_multidisc.json")])
    load(archive, path)
    tables = ("tracks", "albums", "artists", "artist_aliases", "track_artists", "external_ids")
    dump = lambda: [rows(archive, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables]  # noqa: E731
    first = dump()
    load(archive, path)
    assert dump() == first
    doc = fixture("release.json")
    doc["media"][0]["tracks"][5]["title"] = "Money (remastered)"
    load(archive, jsonl(tmp_path, "b.jsonl", [doc]))
    assert rows(archive, "SELECT count(*) FROM tracks") == [(17,)]
    assert found(archive, "remastered") == ["Money (remastered)"]


def test_export_writes_interchange_records_that_import_back(
    archive: Archive, tmp_path: Path
) -> None:
    load(archive, FIXTURES / "release.json")
    conn = archive.connect(readonly=True)
    lines = list(iter_export_lines(conn))
    conn.close()
    records = [msgspec.json.decode(line, type=TrackRecord) for line in lines]
    money = next(r for r in records if r.title == "Money")
    assert money.id == "mb:track:e04126c2-457c-36b1-a6b3-9191002607bf"
    assert money.album is not None and money.album.id == f"mb:release:{DSOTM}"
    assert [a.name for a in money.artists] == ["Pink Floyd"]
    assert money.external_ids == {"musicbrainz_recording": "7fef22bd-76aa-4803-b56b-93a5d6e70662"}
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(
        main, ["import", "jsonl", str(path), "--archive", str(tmp_path / "b"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["loaded"] == 10


def test_worker_processes_parse_releases(archive: Archive, tmp_path: Path) -> None:
    import phonotheca.catalog.importer as importer

    docs: list[Doc | bytes] = []
    for i in range(30):
        doc = fixture("release_multidisc.json")
        doc["id"] = f"00000000-0000-4000-8000-{i:012d}"
        for m, medium in enumerate(doc["media"]):
            for t, tr in enumerate(medium["tracks"]):
                tr["id"] = f"00000000-0000-4000-9{m}{t}0-{i:012d}"
        docs.append(doc)
    old = importer.POOL_THRESHOLD
    importer.POOL_THRESHOLD = 0
    try:
        (s,) = load(archive, jsonl(tmp_path, "many.jsonl", docs), workers=1)
    finally:
        importer.POOL_THRESHOLD = old
    assert (s.loaded, s.tracks) == (30, 210)


def test_an_interrupted_import_resumes_where_it_stopped(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phonotheca.catalog.importer as importer
    from phonotheca.archive import init_archive

    docs: list[Doc | bytes] = []
    for i in range(5):
        doc = fixture("release_multidisc.json")
        doc["id"] = f"00000000-0000-4000-8000-{i:012d}"
        for m, medium in enumerate(doc["media"]):
            for t, tr in enumerate(medium["tracks"]):
                tr["id"] = f"00000000-0000-4000-9{m}{t}0-{i:012d}"
        docs += [doc, b""]
    path = jsonl(tmp_path, "five.jsonl", docs)
    monkeypatch.setattr(importer, "LINES_PER_BATCH", 2)  # a release and a blank line

    class Killed(Exception):
        pass

    class Dying(importer.Loader):
        writes = 0

        def write(self, batch: Any) -> Any:
            Dying.writes += 1
            if Dying.writes == 3:
                raise Killed
            return super().write(batch)

    monkeypatch.setattr(importer, "Loader", Dying)
    with pytest.raises(Killed):
        load(archive, path)
    assert rows(archive, "SELECT count(*) FROM albums") == [(2,)]
    monkeypatch.setattr(importer, "Loader", importer.Loader.__mro__[1])
    (s,) = load(archive, path)
    assert (s.resumed_at_line, s.read, s.loaded, s.tracks) == (4, 5, 5, 35)
    fresh = init_archive(tmp_path / "fresh", "fresh")
    load(fresh, path)
    sql = "SELECT public_id, title, album_id, disc_number, track_number FROM tracks ORDER BY 1"
    assert rows(archive, sql) == rows(fresh, sql)


def test_prepare_keeps_the_later_of_two_documents_of_a_release() -> None:
    first = fixture("release.json")
    second = copy.deepcopy(first)
    second["title"] = "Dark Side (later)"
    batch = prepare_releases(1, [json.dumps(first).encode(), json.dumps(second).encode()])
    assert batch.superseded == 10 and len(batch.tracks) == 10
    assert [a[1].title for a in batch.albums.values()] == ["Dark Side (later)"]


def test_recording_document_isrcs() -> None:
    rec = parse_recording((FIXTURES / "recording.json").read_bytes())
    assert (rec.mbid, rec.isrc, rec.isrcs, rec.isrc_valid, rec.length) == (
        THINKING_OUT_LOUD,
        "GBAHS1400099",
        ("GBAHS1400099",),
        True,
        281000,
    )


def test_recording_documents_update_the_tracks_of_their_recording(
    archive: Archive, tmp_path: Path
) -> None:
    doc = fixture("release.json")
    money = doc["media"][0]["tracks"][5]
    money["recording"]["id"] = THINKING_OUT_LOUD
    money["recording"]["isrcs"] = ["GBAYE7300105"]
    money["length"] = money["recording"]["length"] = None
    load(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    (s,) = load(archive, FIXTURES / "recording.json")
    assert (s.documents, s.read, s.loaded, s.rejected, s.tracks) == ("recording", 1, 1, 0, 1)
    assert rows(archive, "SELECT title, isrc, duration_ms FROM tracks WHERE isrc IS NOT NULL") == [
        ("Money", "GBAHS1400099", 281000)  # the release's title stays; the ISRCs are replaced
    ]
    assert rows(archive, "SELECT value FROM external_ids WHERE scheme = 'isrc'") == [
        ("GBAHS1400099",)
    ]


def test_cli_import_musicbrainz(tmp_path: Path) -> None:
    arc = str(tmp_path / "arc")
    result = CliRunner().invoke(
        main,
        ["import", "musicbrainz", str(FIXTURES / "release.json"), "--archive", arc, "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {k: summary[k] for k in ("documents", "read", "loaded", "rejected", "tracks")} == {
        "documents": "release",
        "read": 1,
        "loaded": 1,
        "rejected": 0,
        "tracks": 10,
    }
    result = CliRunner().invoke(main, ["search", "floid", "--archive", arc, "--json"])
    assert len(json.loads(result.output)) == 10
