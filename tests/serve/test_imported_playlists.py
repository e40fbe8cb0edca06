"""The importer and the server together: a JSPF file imported with ``import playlists``
into a built archive is found by search, served with its matches, and plays.

The other playlist tests of the server write their playlists straight into the tables
(tests/playlists.py); this one checks that what the importer writes is what the server
reads: the search index's words, the entries' matches and their counts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phonotheca.serve.models import Playlist
from tests.serve.conftest import LiveServer, _run, copy_archive, make_app, packed_tracks


@pytest.fixture(scope="module")
def imported(
    built_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """A copy of the archive with one imported playlist: a packed track by ISRC, one by
    its title, artist and duration, and an entry no track matches."""
    tmp = tmp_path_factory.mktemp("imported-playlists")
    arc = copy_archive(built_archive, tmp / "arc")
    packed = [str(e["id"]) for e in packed_tracks(arc)]
    conn = sqlite3.connect(arc / "catalog.sqlite3")
    try:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT public_id, isrc, title, artist_credit, duration_ms FROM tracks"
                f" WHERE public_id IN ({','.join('?' * len(packed))})",
                packed,
            )
        }
    finally:
        conn.close()
    coded = [i for i in packed if rows[i][0]]
    assert coded, "the fixture needs a packed track with an ISRC"
    named = [i for i in packed if i != coded[0] and rows[i][2] and rows[i][3]]
    assert named, "the fixture needs a packed track with an artist and a duration"
    ids = [coded[0], named[0]]
    isrc = rows[ids[0]][0]
    _, title, artist, duration = rows[ids[1]]
    jspf = tmp / "evening.jspf"
    jspf.write_text(
        json.dumps(
            {
                "playlist": {
                    "title": "Quiet Evening Selection",
                    "creator": "Night Owl",
                    "identifier": "https://example.org/playlist/evening",
                    "track": [
                        {"identifier": f"isrc:{isrc}", "title": "by its code"},
                        {"title": title, "creator": artist, "duration": duration},
                        {"title": "Not Anywhere", "creator": "Nobody", "duration": 1000},
                    ],
                }
            }
        )
    )
    _run("import", "playlists", "--archive", str(arc), str(jspf))
    return arc, ids


@pytest.fixture(scope="module")
def client(imported: tuple[Path, list[str]]) -> Iterator[httpx.Client]:
    with (
        LiveServer(make_app(imported[0])) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        yield c


def test_an_imported_playlist_is_found_served_and_playable(
    client: httpx.Client, imported: tuple[Path, list[str]]
) -> None:
    _, ids = imported
    found = client.get("/api/v1/search", params={"q": "quiet even"}).json()
    assert [p["title"] for p in found["playlists"]] == ["Quiet Evening Selection"]
    public_id = found["playlists"][0]["id"]
    assert public_id.startswith("pl:")
    playlist = Playlist.model_validate_json(client.get(f"/api/v1/playlists/{public_id}").content)
    assert (playlist.entry_count, playlist.matched_count) == (3, 2)
    assert [e.track.id if e.track else None for e in playlist.entries] == [ids[0], ids[1], None]
    assert [e.match for e in playlist.entries] == ["isrc", "name", None]
    assert all(e.track.playable for e in playlist.entries if e.track)
    assert playlist.entries[2].title == "Not Anywhere"
    html = client.get("/", params={"q": "night owl"}).text
    assert "Quiet Evening Selection" in html
