"""MusicBrainz recordings on no loaded release (issue #16, point 6): a track without an
album (``mb:recording:<id>``), one per recording, which the first release track of the
recording takes over when its release is imported (docs/FORMAT.md §6.4). Checked through
the library and the CLI, and with what else reads tracks: search, export and its round
trip, plan, and the web server."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from phonotheca.archive import Archive, init_archive
from phonotheca.catalog.importer import ImportRejected
from phonotheca.catalog.search import rebuild_search
from phonotheca.cli import main
from phonotheca.serve.state import StateStore
from tests.serve.conftest import LiveServer, make_app
from tests.sources.test_listens import csv_file, listens
from tests.sources.test_musicbrainz import (
    DSOTM,
    FIXTURES,
    THINKING_OUT_LOUD,
    Doc,
    fixture,
    found,
    jsonl,
    load,
    rows,
)

STANDALONE = f"mb:recording:{THINKING_OUT_LOUD}"
ED_SHEERAN = "mb:artist:b8a7c51f-362c-4dcb-a259-bc6e0095f0a6"
MONEY = "mb:track:e04126c2-457c-36b1-a6b3-9191002607bf"
ALIAS = "Thinking Out Loud’"


def release_with_the_recording(**recording: Any) -> Doc:
    """The Dark Side of the Moon, its "Money" a recording of "Thinking Out Loud"."""
    doc = fixture("release.json")
    money = doc["media"][0]["tracks"][5]
    money["recording"]["id"] = THINKING_OUT_LOUD
    money["recording"].update(recording)
    return doc


def recording(**fields: Any) -> Doc:
    doc = fixture("recording.json")
    doc.update(fields)
    return doc


TRACK_SQL = """
    SELECT t.id, t.public_id, t.title, a.public_id, t.disc_number, t.track_number,
           t.duration_ms, t.isrc, t.artist_credit
    FROM tracks t LEFT JOIN albums a ON a.id = t.album_id WHERE t.public_id = ?
"""


def links(archive: Archive, public_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """A track's credits, external ids, aliases and genres, by its public id."""
    key = "(SELECT id FROM tracks WHERE public_id = ?)"
    return {
        "credits": rows(
            archive,
            "SELECT ta.position, ar.public_id, ta.credited_as, ta.join_phrase FROM track_artists"
            f" ta JOIN artists ar ON ar.id = ta.artist_id WHERE ta.track_id = {key}"
            " ORDER BY ta.position",
            public_id,
        ),
        "external_ids": rows(
            archive,
            f"SELECT scheme, value FROM external_ids WHERE entity = 'track' AND entity_id = {key}"
            " ORDER BY 1, 2",
            public_id,
        ),
        "aliases": rows(
            archive,
            f"SELECT name, sort_name, locale FROM track_aliases WHERE track_id = {key}",
            public_id,
        ),
        "genres": rows(
            archive,
            "SELECT g.name FROM track_genres tg JOIN genres g ON g.id = tg.genre_id"
            f" WHERE tg.track_id = {key} ORDER BY 1",
            public_id,
        ),
    }


def test_a_recording_on_no_release_is_a_track_without_an_album(archive: Archive) -> None:
    (s,) = load(archive, FIXTURES / "recording.json")
    assert (s.documents, s.read, s.loaded, s.rejected, s.tracks, s.standalone) == (
        "recording",
        1,
        1,
        0,
        0,
        1,
    )
    assert s.rejects_file is None
    assert rows(archive, TRACK_SQL, STANDALONE) == [
        (1, STANDALONE, "Thinking Out Loud", None, None, None, 281000, "GBAHS1400099", "Ed Sheeran")
    ]
    assert links(archive, STANDALONE) == {
        "credits": [(0, ED_SHEERAN, None, "")],
        "external_ids": [("isrc", "GBAHS1400099"), ("musicbrainz_recording", THINKING_OUT_LOUD)],
        "aliases": [(ALIAS, ALIAS, None)],
        "genres": [],
    }
    assert rows(archive, "SELECT name, sort_name, disambiguation FROM artists") == [
        ("Ed Sheeran", "Sheeran, Ed", "famous UK singer-songwriter")
    ]
    # The document is the track's source record, kept like a release's.
    assert rows(archive, "SELECT kind FROM source_chunks") == [("musicbrainz-recording",)]
    assert found(archive, "thinking out") == ["Thinking Out Loud"]
    assert found(archive, "sheeran") == ["Thinking Out Loud"]


def test_credits_keep_their_order_and_join_phrases(archive: Archive, tmp_path: Path) -> None:
    doc = recording()
    ed = doc["artist-credit"][0]
    ed["joinphrase"] = " feat. "
    doc["artist-credit"].append(
        {
            "name": "Bocelli",  # credited as, not the artist's name
            "joinphrase": "",
            "artist": {
                "id": "2e7a7b26-1a6b-4ab2-9f13-2d6f4e0b5a51",
                "name": "Andrea Bocelli",
                "sort-name": "Bocelli, Andrea",
                "aliases": [{"name": "安德烈·波切利", "sort-name": "波切利", "locale": "zh"}],
            },
        }
    )
    load(archive, jsonl(tmp_path, "r.jsonl", [doc]))
    assert rows(archive, "SELECT artist_credit FROM tracks") == [("Ed Sheeran feat. Bocelli",)]
    assert links(archive, STANDALONE)["credits"] == [
        (0, ED_SHEERAN, None, " feat. "),
        (1, "mb:artist:2e7a7b26-1a6b-4ab2-9f13-2d6f4e0b5a51", "Bocelli", ""),
    ]
    assert found(archive, "波切利") == ["Thinking Out Loud"]  # the artist's alias


def test_the_same_recording_imported_twice_is_one_track(archive: Archive, tmp_path: Path) -> None:
    load(archive, FIXTURES / "recording.json")
    tables = ("tracks", "track_artists", "external_ids", "track_aliases", "artists")
    dump = lambda: [rows(archive, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables]  # noqa: E731
    first = dump()
    (s,) = load(archive, FIXTURES / "recording.json")
    assert (s.loaded, s.standalone) == (1, 1) and dump() == first
    # A newer document of the recording replaces the track's record, in the same row.
    changed = recording(title="Thinking Out Loud (corrected)", aliases=[], isrcs=[])
    load(archive, jsonl(tmp_path, "r.jsonl", [changed, b""]))
    assert rows(archive, "SELECT id, public_id, title, isrc FROM tracks") == [
        (1, STANDALONE, "Thinking Out Loud (corrected)", None)
    ]
    assert links(archive, STANDALONE)["aliases"] == []
    assert found(archive, "corrected") == ["Thinking Out Loud (corrected)"]
    assert found(archive, "loud’") == ["Thinking Out Loud (corrected)"]  # the title has it
    assert found(archive, "sheeran loud") == ["Thinking Out Loud (corrected)"]
    # Two documents of the recording in one file: the later one is the track.
    load(archive, jsonl(tmp_path, "two.jsonl", [recording(title="A"), recording(title="B")]))
    assert rows(archive, "SELECT id, title FROM tracks") == [(1, "B")]


def test_a_release_holding_the_recording_takes_over_its_track(
    archive: Archive, tmp_path: Path
) -> None:
    load(archive, FIXTURES / "recording.json")
    (applied,) = listens(
        archive,
        csv_file(tmp_path, "l.csv", f"recording_mbid,listen_count\n{THINKING_OUT_LOUD},1000\n"),
    )
    assert applied.tracks_updated == 1
    (s,) = load(archive, jsonl(tmp_path, "r.jsonl", [release_with_the_recording()]))
    assert (s.tracks, s.standalone) == (10, 1)
    assert rows(archive, "SELECT count(*) FROM tracks") == [(10,)]  # not 11
    assert rows(archive, "SELECT count(*) FROM tracks WHERE public_id LIKE 'mb:recording:%'") == [
        (0,)
    ]
    # The same row (rowid 1), now the release's track: its place, title, credit and length
    # are the release's; the recording's ISRCs, aliases and listens stay.
    assert rows(archive, TRACK_SQL, MONEY) == [
        (1, MONEY, "Money", f"mb:release:{DSOTM}", 1, 6, 382746, "GBAHS1400099", "Pink Floyd")
    ]
    assert links(archive, MONEY)["external_ids"] == [
        ("isrc", "GBAHS1400099"),
        ("musicbrainz_recording", THINKING_OUT_LOUD),
    ]
    assert links(archive, MONEY)["aliases"] == [(ALIAS, ALIAS, None)]
    assert rows(
        archive, "SELECT listens, listens_import, popularity_derived FROM tracks WHERE id = 1"
    ) == [(1000, 2, 1)]  # listens_import: the listens import, imports.id 2
    assert found(archive, "thinking out loud") == ["Money"]  # by the recording's alias
    assert found(archive, "money floyd") == ["Money"]
    # The index matches one rebuilt from scratch.
    queries = ["money", "thinking", "sheeran", "floyd", "loud’"]
    before = {q: sorted(found(archive, q)) for q in queries}
    conn = archive.connect()
    rebuild_search(conn)
    conn.close()
    assert {q: sorted(found(archive, q)) for q in queries} == before
    # The recording again: it updates its release's track, and makes no second track.
    (r,) = load(archive, FIXTURES / "recording.json")
    assert (r.standalone, r.tracks) == (0, 0)
    assert rows(archive, "SELECT count(*) FROM tracks") == [(10,)]


def test_the_catalog_is_the_same_whichever_comes_first(tmp_path: Path) -> None:
    release = jsonl(tmp_path, "r.jsonl", [release_with_the_recording()])
    orders = {"release first": (release, FIXTURES / "recording.json")}
    orders["recording first"] = (FIXTURES / "recording.json", release)
    seen = []
    for name, paths in orders.items():
        archive = init_archive(tmp_path / name.replace(" ", "-"), "x")
        for path in paths:
            load(archive, path)
        ids = [p for (p,) in rows(archive, "SELECT public_id FROM tracks ORDER BY 1")]
        seen.append(
            (
                ids,
                [rows(archive, TRACK_SQL, p)[0][1:] for p in ids],
                [links(archive, p) for p in ids],
                sorted(found(archive, "thinking")),
            )
        )
    assert seen[0] == seen[1]
    assert MONEY in seen[0][0] and STANDALONE not in seen[0][0] and seen[0][3] == ["Money"]


def test_only_the_first_track_of_the_recording_takes_over(archive: Archive, tmp_path: Path) -> None:
    load(archive, FIXTURES / "recording.json")
    first = release_with_the_recording()
    second = copy.deepcopy(first)
    second["id"] = "00000000-0000-4000-8000-000000000001"
    for n, t in enumerate(second["media"][0]["tracks"]):
        t["id"] = f"00000000-0000-4000-9000-{n:012d}"
    load(archive, jsonl(tmp_path, "two.jsonl", [first, second]))
    tracks = rows(
        archive,
        "SELECT t.id, t.public_id FROM tracks t JOIN external_ids e ON e.entity = 'track'"
        " AND e.entity_id = t.id WHERE e.scheme = 'musicbrainz_recording' AND e.value = ?"
        " ORDER BY t.id",
        THINKING_OUT_LOUD,
    )
    # rowid 1 taken over, 2-10 the first release's other tracks, 11-20 the second's
    assert tracks == [(1, MONEY), (16, "mb:track:00000000-0000-4000-9000-000000000005")]
    # The recording's later document gives both of its tracks its ISRCs and aliases.
    load(archive, jsonl(tmp_path, "rec.jsonl", [recording(isrcs=["GBAHS1400100"])]))
    assert rows(
        archive,
        "SELECT isrc, (SELECT count(*) FROM track_aliases WHERE track_id = id) FROM tracks"
        " WHERE id IN (1, 16)",
    ) == [("GBAHS1400100", 1), ("GBAHS1400100", 1)]


def test_worker_processes_carry_the_claims(archive: Archive, tmp_path: Path) -> None:
    import phonotheca.catalog.importer as importer

    load(archive, FIXTURES / "recording.json")
    old = importer.POOL_THRESHOLD
    importer.POOL_THRESHOLD = 0
    try:
        (s,) = load(archive, jsonl(tmp_path, "r.jsonl", [release_with_the_recording()]), workers=1)
    finally:
        importer.POOL_THRESHOLD = old
    assert s.standalone == 1 and rows(archive, "SELECT public_id FROM tracks WHERE id = 1") == [
        (MONEY,)
    ]


def test_recording_aliases_follow_the_recording_in_search(archive: Archive, tmp_path: Path) -> None:
    load(archive, jsonl(tmp_path, "r.jsonl", [release_with_the_recording()]))
    load(archive, FIXTURES / "recording.json")
    assert found(archive, "thinking") == ["Money"]
    new = [{"name": "Pensando en voz alta", "sort-name": "Pensando", "locale": "es"}]
    (s,) = load(archive, jsonl(tmp_path, "rec.jsonl", [recording(aliases=new)]))
    assert s.tracks == 1
    assert found(archive, "thinking") == [] and found(archive, "pensando voz") == ["Money"]
    # A document without an aliases list leaves them as they are.
    doc = recording()
    del doc["aliases"]
    (s,) = load(archive, jsonl(tmp_path, "rec2.jsonl", [doc]))
    assert s.tracks == 0 and found(archive, "pensando") == ["Money"]


def test_export_and_import_back_keep_an_album_less_track(archive: Archive, tmp_path: Path) -> None:
    load(archive, FIXTURES / "recording.json")
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    assert (
        runner.invoke(main, ["export", "jsonl", str(out), "--archive", str(archive.root)]).exit_code
        == 0
    )
    (line,) = out.read_bytes().splitlines()
    record = json.loads(line)
    assert "album" not in record and record["id"] == STANDALONE
    assert record["aliases"] == [{"name": ALIAS, "sort_name": ALIAS}]
    other = init_archive(tmp_path / "other", "other")
    result = runner.invoke(main, ["import", "jsonl", str(out), "--archive", str(other.root)])
    assert result.exit_code == 0, result.output
    assert rows(other, TRACK_SQL, STANDALONE) == rows(archive, TRACK_SQL, STANDALONE)
    assert links(other, STANDALONE) == links(archive, STANDALONE)
    assert found(other, "loud’") == ["Thinking Out Loud"]
    again = tmp_path / "again.jsonl"
    runner.invoke(main, ["export", "jsonl", str(again), "--archive", str(other.root)])
    assert again.read_bytes() == out.read_bytes()


def test_jsonl_aliases_are_validated(archive: Archive, tmp_path: Path) -> None:
    from tests.catalog.test_import import load as load_jsonl
    from tests.conftest import track

    good = track(1, aliases=[{"name": "Otro nombre", "locale": "es"}, {"name": "Otro nombre"}])
    bad = track(2, aliases=[{"locale": "es"}])
    (s,) = load_jsonl(archive, jsonl(tmp_path, "a.jsonl", [good, bad]))
    assert (s.loaded, s.rejected) == (1, 1)
    reject = json.loads(Path(s.rejects_file or "").read_text())
    assert "aliases[0]" in reject["reason"]
    assert rows(archive, "SELECT name, sort_name, locale FROM track_aliases") == [
        ("Otro nombre", None, "es")
    ]
    assert found(archive, "otro") == ["Song 1"]


def test_cli_standalone_recordings_plan_and_stats(tmp_path: Path) -> None:
    arc = str(tmp_path / "arc")
    runner = CliRunner()
    catalog = tmp_path / "c.jsonl"
    from tests.conftest import track

    catalog.write_text("".join(json.dumps(track(i)) + "\n" for i in range(50)))
    assert runner.invoke(main, ["import", "jsonl", str(catalog), "--archive", arc]).exit_code == 0
    result = runner.invoke(
        main, ["import", "musicbrainz", str(FIXTURES / "recording.json"), "--archive", arc]
    )
    assert result.exit_code == 0, result.output
    assert "recordings read 1, loaded 1, rejected 0; tracks changed 0, standalone recordings 1" in (
        result.output
    )
    hits = json.loads(runner.invoke(main, ["search", "sheeran", "--archive", arc, "--json"]).output)
    assert [(h["id"], h["album"], h["album_id"]) for h in hits] == [(STANDALONE, None, None)]
    stats = json.loads(runner.invoke(main, ["stats", "--archive", arc, "--json"]).output)
    assert stats["tracks"] == 51
    result = runner.invoke(main, ["plan", "--budget", "1GB", "--archive", arc, "--json"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["shuffle", "-n", "200", "--archive", arc]).exit_code == 0
    release = jsonl(tmp_path, "r.jsonl", [release_with_the_recording()])
    result = runner.invoke(main, ["import", "musicbrainz", str(release), "--archive", arc])
    assert result.exit_code == 0 and "1 took over the track of a standalone recording" in (
        result.output
    )


@pytest.fixture
def album_less_server(tmp_path: Path) -> Any:
    arc = init_archive(tmp_path / "arc", "arc")
    from tests.catalog.test_import import load as load_jsonl
    from tests.conftest import track

    load_jsonl(arc, jsonl(tmp_path, "c.jsonl", [track(i) for i in range(20)]))
    load(arc, FIXTURES / "recording.json")
    store = StateStore(arc.root / "state.sqlite3")
    store.add_user("alice", "correct horse battery staple")
    password = store.rotate_subsonic_credentials("alice").password
    with LiveServer(make_app(arc.root)) as server:
        yield server, password


def test_the_web_server_shows_an_album_less_track(album_less_server: Any) -> None:
    server, password = album_less_server
    tid = quote(STANDALONE, safe="")
    artist = quote(ED_SHEERAN, safe="")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for url in (
            f"/tracks/{tid}",
            f"/api/v1/tracks/{tid}",
            "/?q=thinking",
            "/api/v1/search?q=thinking",
            "/",
            "/shuffle",
            "/stats",
            f"/artists/{artist}",
            f"/api/v1/artists/{artist}",
        ):
            r = client.get(url)
            assert r.status_code == 200, (url, r.text[:500])
        assert client.get(f"/api/v1/tracks/{tid}").json()["title"] == "Thinking Out Loud"
        auth = {"u": "alice", "p": password, "v": "1.16.1", "c": "test", "f": "json"}
        for call, extra in (
            ("getSong", {"id": f"tr-{STANDALONE}"}),
            ("search3", {"query": "thinking"}),
            ("getRandomSongs", {"size": "100"}),
            ("getArtist", {"id": f"ar-{ED_SHEERAN}"}),
        ):
            body = client.get(f"/rest/{call}", params={**auth, **extra}).json()
            assert body["subsonic-response"]["status"] == "ok", (call, body)
        song = client.get("/rest/getSong", params={**auth, "id": f"tr-{STANDALONE}"}).json()
        assert song["subsonic-response"]["song"]["title"] == "Thinking Out Loud"


def test_a_file_of_recordings_rejects_only_bad_documents(archive: Archive, tmp_path: Path) -> None:
    bad_credit = recording(id="00000000-0000-4000-8000-000000000009")
    bad_credit["artist-credit"] = "not a list"
    path = jsonl(tmp_path, "r.jsonl", [recording(), b"{not json", bad_credit])
    (s,) = load(archive, path)
    assert (s.read, s.loaded, s.rejected, s.standalone) == (3, 1, 2, 1)
    reasons = [json.loads(x)["reason"] for x in Path(s.rejects_file or "").read_text().splitlines()]
    assert reasons[0].startswith("invalid JSON") and "artist-credit" in reasons[1]
    with pytest.raises(ImportRejected, match=r"r\.jsonl:2"):
        load(init_archive(tmp_path / "strict", "s"), path, strict=True)


def test_the_recording_import_counts_match_the_catalog(archive: Archive) -> None:
    """The summary's counts, and the imports row the next resume would read."""
    (s,) = load(archive, FIXTURES / "recording.json")
    conn = sqlite3.connect(archive.catalog_path)
    assert conn.execute("SELECT kind, read, loaded, rejected FROM imports").fetchall() == [
        ("musicbrainz-recording", s.read, s.loaded, s.rejected)
    ]


def test_a_recording_never_rewrites_an_artist_a_release_gave(
    archive: Archive, tmp_path: Path
) -> None:
    load(archive, FIXTURES / "release.json")
    pink_floyd = rows(archive, "SELECT * FROM artists")
    aliases = rows(archive, "SELECT * FROM artist_aliases ORDER BY 1, 2")
    floyd_credit = fixture("release.json")["artist-credit"]
    for credit in floyd_credit:
        del credit["artist"]["aliases"]  # as a recording document may give the artist
    other = recording(id="00000000-0000-4000-8000-000000000077", **{"artist-credit": floyd_credit})
    (s,) = load(archive, jsonl(tmp_path, "r.jsonl", [other]))
    assert s.standalone == 1
    assert rows(archive, "SELECT * FROM artists") == pink_floyd
    assert rows(archive, "SELECT * FROM artist_aliases ORDER BY 1, 2") == aliases
    assert len(found(archive, "ピンク・フロイド")) == 11
