"""Pages and the JSON API over a built archive, a mirror with some pieces, several roots."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

import httpx
import libtorrent as lt
import pytest

from tests.serve.conftest import LiveServer, copy_archive, make_app, packed_tracks, sign_in


def _catalog(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)


def test_album_page_lists_tracks_in_order_with_durations(
    client: httpx.Client, built_archive: Path
) -> None:
    conn = _catalog(built_archive)
    album_id, album_title = conn.execute(
        "SELECT a.public_id, a.title FROM albums a JOIN tracks t ON t.album_id = a.id"
        " GROUP BY a.id HAVING count(*) >= 3 LIMIT 1"
    ).fetchone()
    expected = conn.execute(
        "SELECT t.title, t.duration_ms FROM tracks t JOIN albums a ON a.id = t.album_id"
        " WHERE a.public_id = ? ORDER BY t.disc_number, t.track_number, t.id",
        (album_id,),
    ).fetchall()
    conn.close()
    r = client.get(f"/albums/{quote(album_id, safe='')}")
    assert r.status_code == 200
    assert album_title in r.text
    positions = [r.text.index(f">{title}</a>") for title, _ in expected]
    assert positions == sorted(positions)
    for _, ms in expected:
        seconds = round(ms / 1000)
        assert f"{seconds // 60}:{seconds % 60:02d}" in r.text
    api = client.get(f"/api/v1/albums/{quote(album_id, safe='')}").json()
    assert [t["title"] for t in api["tracks"]] == [t for t, _ in expected]


def test_credits_keep_order_and_join_phrases(client: httpx.Client, built_archive: Path) -> None:
    conn = _catalog(built_archive)
    track_id, credit = conn.execute(
        "SELECT t.public_id, t.artist_credit FROM tracks t WHERE EXISTS (SELECT 1 FROM"
        " track_artists ta WHERE ta.track_id = t.id AND ta.join_phrase != '') LIMIT 1"
    ).fetchone()
    conn.close()
    api = client.get(f"/api/v1/tracks/{quote(track_id, safe='')}").json()
    assert "".join(a["name"] + a["join_phrase"] for a in api["artists"]) == credit
    page = client.get(f"/tracks/{quote(track_id, safe='')}").text
    text = re.sub(r"<[^>]+>", "", page)
    assert credit in text


def test_track_page_shows_file_isrc_and_torrent(client: httpx.Client, built_archive: Path) -> None:
    entry = next(e for e in packed_tracks(built_archive) if e.get("isrc"))
    r = client.get(f"/tracks/{quote(str(entry['id']), safe='')}")
    assert r.status_code == 200
    assert str(entry["isrc"]) in r.text
    assert f"{entry['collection']}.torrent" in r.text
    assert "Sign in" in r.text  # audio needs an account by default
    sign_in(client)
    r = client.get(f"/tracks/{quote(str(entry['id']), safe='')}")
    assert f"/tracks/{quote(str(entry['id']), safe='')}/audio" in r.text
    torrent = client.get(f"/torrents/{entry['collection']}.torrent")
    assert torrent.status_code == 200
    assert torrent.headers["content-type"] == "application/x-bittorrent"
    info = lt.torrent_info(lt.bdecode(torrent.content))  # type: ignore[arg-type]
    assert info.name() == entry["collection"]


def test_unarchived_track_says_so(client: httpx.Client, built_archive: Path) -> None:
    conn = _catalog(built_archive)
    (track_id,) = conn.execute(
        "SELECT t.public_id FROM tracks t JOIN ledger l ON l.track_id = t.id"
        " WHERE l.status != 'packed' LIMIT 1"
    ).fetchone()
    conn.close()
    page = client.get(f"/tracks/{quote(track_id, safe='')}")
    assert "Not archived" in page.text
    api = client.get(f"/api/v1/tracks/{quote(track_id, safe='')}").json()
    assert api["availability"] == {
        "playable": False,
        "reason": "not_archived",
        "swarm": False,
        "collection": None,
        "torrent": None,
        "codec": None,
        "bitrate": None,
        "size": None,
        "content_type": None,
    }


def test_search_is_ordered_by_popularity(client: httpx.Client) -> None:
    tracks = client.get("/api/v1/search", params={"q": "a", "limit": 50}).json()["tracks"]
    assert len(tracks) >= 10
    pops = [t["popularity"] if t["popularity"] is not None else -1 for t in tracks]
    assert pops == sorted(pops, reverse=True)
    page = client.get("/", params={"q": "a"})
    assert tracks[0]["title"] in page.text


def test_artist_page(client: httpx.Client, built_archive: Path) -> None:
    conn = _catalog(built_archive)
    artist_id, name = conn.execute(
        "SELECT ar.public_id, ar.name FROM artists ar JOIN album_artists aa"
        " ON aa.artist_id = ar.id GROUP BY ar.id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    albums = {
        r[0]
        for r in conn.execute(
            "SELECT a.title FROM albums a JOIN album_artists aa ON aa.album_id = a.id"
            " JOIN artists ar ON ar.id = aa.artist_id WHERE ar.public_id = ?",
            (artist_id,),
        )
    }
    conn.close()
    api = client.get(f"/api/v1/artists/{quote(artist_id, safe='')}").json()
    assert api["name"] == name
    assert {a["title"] for a in api["albums"]} == albums
    pops = [t["popularity"] or 0 for t in api["top_tracks"]]
    assert pops == sorted(pops, reverse=True)
    assert client.get(f"/artists/{quote(artist_id, safe='')}").status_code == 200


def test_shuffle_draws_from_the_whole_catalog(client: httpx.Client) -> None:
    seen: set[str] = set()
    for _ in range(5):
        tracks = client.get("/api/v1/shuffle", params={"n": 100}).json()["tracks"]
        assert len(tracks) == 100
        seen.update(t["id"] for t in tracks)
    # 500 draws over ~300 tracks reach far beyond the few popular ones.
    assert len(seen) > 150
    assert client.get("/shuffle").status_code == 200


def test_a_playable_shuffle_draws_among_the_tracks_this_server_plays(
    client: httpx.Client, built_archive: Path
) -> None:
    playable = {str(e["id"]) for e in packed_tracks(built_archive)}
    catalog = _catalog(built_archive)
    (total,) = catalog.execute("SELECT count(*) FROM tracks").fetchone()
    catalog.close()
    assert 0 < len(playable) < total / 5, "the archive plays only a few of its tracks"
    seen: set[str] = set()
    for _ in range(5):
        tracks = client.get("/api/v1/shuffle", params={"n": 50, "playable": "true"}).json()
        assert len(tracks["tracks"]) == 50
        assert all(t["playable"] for t in tracks["tracks"])
        seen.update(t["id"] for t in tracks["tracks"])
    assert seen <= playable
    assert len(seen) > len(playable) / 2, "drawn across all of them, not a few"


def test_playable_draws_are_uniform_across_collections_of_different_sizes(
    client: httpx.Client, built_archive: Path
) -> None:
    entries = packed_tracks(built_archive)
    sizes = {}
    for e in entries:
        sizes[e["collection"]] = sizes.get(e["collection"], 0) + 1
    assert len(set(sizes.values())) > 1, "the collections should differ in size"
    counts = dict.fromkeys((str(e["id"]) for e in entries), 0)
    rounds = 60
    for _ in range(rounds):
        for t in client.get("/api/v1/shuffle", params={"n": 100, "playable": "true"}).json()[
            "tracks"
        ]:
            counts[t["id"]] += 1
    expected = rounds * 100 / len(counts)
    # Binomial spread is ~sqrt(expected); a track of a small collection drawn as often as
    # one of a large collection is the point (weighting collections equally would not be).
    assert all(abs(c - expected) < 7 * expected**0.5 for c in counts.values()), counts


def test_stats(client: httpx.Client, built_archive: Path) -> None:
    stats = client.get("/api/v1/stats").json()
    conn = _catalog(built_archive)
    assert stats["tracks"] == conn.execute("SELECT count(*) FROM tracks").fetchone()[0]
    assert stats["ledger"]["packed"] == len(packed_tracks(built_archive))
    conn.close()
    assert stats["playable_collections"] >= 4
    assert 0 < stats["listens_share"] <= 1
    assert client.get("/stats").status_code == 200


def test_torrents_page_chart_and_seed_form(client: httpx.Client, built_archive: Path) -> None:
    listing = json.loads((built_archive / "torrents.json").read_text())
    api = client.get("/api/v1/torrents").json()
    assert [t["name"] for t in api["torrents"]] == [t["name"] for t in listing["torrents"]]
    assert api["health"]["unknown"] == len(listing["torrents"])  # never scraped
    assert all(t["here"] for t in api["torrents"] if t["kind"] != "metadata")
    page = client.get("/torrents")
    assert page.status_code == 200
    points = re.search(r'<polyline class="curve" points="([^"]+)"', page.text)
    assert points is not None
    assert len(points.group(1).split()) == 256
    for t in listing["torrents"]:
        assert t["name"] in page.text
    assert 'name="tb"' in page.text
    advice = client.get("/torrents", params={"tb": "1"})
    block = advice.text[advice.text.index('id="seed-advice"') :]
    # 1 TB holds the whole small archive: every listed torrent is suggested.
    for t in listing["torrents"]:
        assert t["name"] in block


def _mirror(built_archive: Path, dst: Path) -> Path:
    root = copy_archive(built_archive, dst)
    (root / ".mirror" / "verified").mkdir(parents=True)
    return root


def _write_verified(root: Path, collection: str, have: set[int], complete: bool = False) -> None:
    info = lt.torrent_info(str(root / "torrents" / f"{collection}.torrent"))
    n = info.num_pieces()
    bits = bytearray((n + 7) // 8)
    for p in have:
        bits[p // 8] |= 0x80 >> (p % 8)
    (root / ".mirror" / "verified" / f"{collection}.json").write_text(
        json.dumps(
            {
                "piece_length": info.piece_length(),
                "num_pieces": n,
                "complete": complete,
                "have": base64.b64encode(bytes(bits)).decode(),
                "verified_at": "2026-11-21T00:00:00Z",
            }
        )
    )


def _pieces(root: Path, entry: dict[str, object]) -> set[int]:
    """Pieces holding a track, as libtorrent maps them (an independent reading)."""
    info = lt.torrent_info(str(root / "torrents" / f"{entry['collection']}.torrent"))
    storage = info.files()
    wanted = f"{entry['collection']}/data/{entry['volume']}"
    index = next(i for i in range(storage.num_files()) if storage.file_path(i) == wanted)
    first = info.map_file(index, int(entry["offset"]), 1).piece  # type: ignore[call-overload]
    last = info.map_file(index, int(entry["offset"]) + int(entry["length"]) - 1, 1).piece  # type: ignore[call-overload]
    return set(range(first, last + 1))


@pytest.mark.filterwarnings("ignore:files\\(\\) is deprecated:DeprecationWarning")
def test_mirror_plays_only_verified_pieces(built_archive: Path, tmp_path: Path) -> None:
    root = _mirror(built_archive, tmp_path / "mirror")
    entries = packed_tracks(root)
    by_collection: dict[str, list[dict[str, object]]] = {}
    for e in entries:
        by_collection.setdefault(str(e["collection"]), []).append(e)
    # A collection where one track's pieces leave out another track's.
    collection, chosen, other = next(
        (name, a, b)
        for name, group in by_collection.items()
        for a in group
        for b in group
        if not _pieces(root, b) <= _pieces(root, a)
    )
    _write_verified(root, collection, _pieces(root, chosen))
    complete = next(n for n in by_collection if n != collection)
    _write_verified(root, complete, set(), complete=True)
    with (
        LiveServer(make_app(root, public_audio=True)) as server,
        httpx.Client(base_url=server.url) as c,
    ):

        def status(e: dict[str, object]) -> dict[str, object]:
            doc: dict[str, object] = c.get(f"/api/v1/tracks/{quote(str(e['id']), safe='')}").json()
            return doc["availability"]  # type: ignore[return-value]

        assert status(chosen)["playable"] is True
        assert status(other) | {"playable": False, "reason": "incomplete"} == status(other)
        audio = c.get(f"/tracks/{quote(str(other['id']), safe='')}/audio")
        assert audio.status_code == 404
        assert audio.json()["torrent"] == f"{collection}.torrent"
        assert c.get(f"/tracks/{quote(str(chosen['id']), safe='')}/audio").status_code == 200
        for e in by_collection[complete]:
            assert status(e)["playable"] is True
        # Collections with no verified file are not playable in a mirror.
        for name, group in by_collection.items():
            if name not in (collection, complete):
                for e in group:
                    assert status(e)["reason"] == "incomplete"
        page = c.get(f"/tracks/{quote(str(other['id']), safe='')}")
        assert "Not in this mirror" in page.text
        assert f"{collection}.torrent" in page.text


@pytest.mark.filterwarnings("ignore:files\\(\\) is deprecated:DeprecationWarning")
def test_a_mirror_s_playable_shuffle_draws_only_its_verified_tracks(
    built_archive: Path, tmp_path: Path
) -> None:
    """A mirror holding a few of the catalog's tracks: one collection in part, one whole,
    the others not verified. The radio's draws are those tracks, each of them."""
    root = _mirror(built_archive, tmp_path / "mirror")
    by_collection: dict[str, list[dict[str, object]]] = {}
    for e in packed_tracks(root):
        by_collection.setdefault(str(e["collection"]), []).append(e)
    names = sorted(by_collection, key=lambda n: -len(by_collection[n]))
    partial, whole = names[0], names[1]
    chosen = by_collection[partial][0]
    _write_verified(root, partial, _pieces(root, chosen))
    _write_verified(root, whole, set(), complete=True)
    with (
        LiveServer(make_app(root, public_audio=True)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        playable = {
            str(e["id"])
            for e in packed_tracks(root)
            if c.get(f"/api/v1/tracks/{quote(str(e['id']), safe='')}").json()["availability"][
                "playable"
            ]
        }
        assert str(chosen["id"]) in playable
        assert len(playable) < len(packed_tracks(root))  # some are not verified
        seen: set[str] = set()
        for _ in range(4):
            tracks = c.get("/api/v1/shuffle", params={"n": 50, "playable": "true"}).json()
            assert len(tracks["tracks"]) == 50
            seen.update(t["id"] for t in tracks["tracks"])
        assert seen == playable


def test_several_roots(built_archive: Path, tmp_path: Path) -> None:
    """The catalog is the first root's; collections are found under every root."""
    first = copy_archive(built_archive, tmp_path / "one")
    second = tmp_path / "two"
    (second / "torrents").mkdir(parents=True)
    entries = packed_tracks(first)
    moved = str(entries[0]["collection"])
    shutil.move(first / "torrents" / moved, second / "torrents" / moved)
    missing = next(str(e["collection"]) for e in entries if e["collection"] != moved)
    shutil.rmtree(first / "torrents" / missing)
    with (
        LiveServer(make_app([first, second], public_audio=True)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for e in entries:
            r = c.get(f"/tracks/{quote(str(e['id']), safe='')}/audio")
            if e["collection"] == missing:
                assert r.status_code == 404
                assert r.json()["reason"] == "not_in_mirror"
            else:
                assert r.status_code == 200, e["collection"]
                assert r.headers["etag"] == f'"{e["sha256"]}"'


def test_head_answers_like_get_without_a_body(client: httpx.Client, built_archive: Path) -> None:
    conn = _catalog(built_archive)
    (album_id,) = conn.execute("SELECT public_id FROM albums LIMIT 1").fetchone()
    conn.close()
    for path in ("/", f"/albums/{quote(album_id, safe='')}", "/api/v1/stats", "/openapi.json"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        for name in ("content-type", "content-length", "content-security-policy"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    assert client.head("/albums/no-such-album").status_code == 404
    static = client.head("/static/style.css")
    assert static.status_code == 200 and static.content == b""
    # A route that takes no GET still refuses HEAD.
    assert client.head("/signout").status_code == 405
