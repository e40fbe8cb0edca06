"""``getNowPlaying`` (from streams and "now playing" scrobbles) and ``getScanStatus``,
through py-sonic and raw XML/JSON, against the live server."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import libsonic
import pytest

from phonotheca.catalog import schema
from phonotheca.serve.state import NOW_PLAYING_KEEP_MS, StateStore
from tests.serve_subsonic.conftest import Fixture, LiveServer
from tests.serve_subsonic.test_protocol import children, json_call, xml_call
from tests.serve_subsonic.test_pysonic import connect


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def key(fixture: Fixture, player: str) -> dict[str, str]:
    """API-key authentication, as player ``player`` (the ``c`` parameter)."""
    return {"apiKey": fixture.creds.api_key, "v": "1.16.1", "c": player}


def player() -> str:
    """A player name no other test uses: entries are one per user and player."""
    return f"player-{uuid.uuid4().hex[:8]}"


def entries_of(body: dict, name: str) -> list[dict]:
    assert body["status"] == "ok", body
    return [e for e in body["nowPlaying"].get("entry", []) if e.get("playerName") == name]


def test_a_stream_is_now_playing_for_py_sonic(live: LiveServer, archive_fixture: Fixture) -> None:
    creds = archive_fixture.creds
    name = player()
    sonic = libsonic.Connection(
        "http://127.0.0.1",
        creds.user,
        creds.password,
        port=live.port,
        serverPath="/rest",
        appName=name,  # the c parameter: the player's name
        apiVersion="1.16.1",
        insecure=True,
    )
    track = f"tr-{archive_fixture.present[0].public_id}"
    sonic.stream(track, tformat="raw").read()
    found = sonic.getNowPlaying()["nowPlaying"]["entry"]
    (entry,) = [e for e in found if e.get("playerName") == name]
    assert entry["id"] == track and entry["username"] == creds.user
    assert entry["minutesAgo"] == 0 and isinstance(entry["playerId"], int)
    # A Child like any other: the song's fields come along.
    assert entry["title"] == sonic.getSong(track)["song"]["title"] and entry["isDir"] is False


def test_now_playing_xml_and_json(client: httpx.Client, archive_fixture: Fixture) -> None:
    name = player()
    first, second = (f"tr-{p.public_id}" for p in archive_fixture.present[:2])
    r = client.get("/rest/stream", params={**key(archive_fixture, name), "id": first})
    assert r.status_code == 200
    root = xml_call(client, "getNowPlaying", **key(archive_fixture, "other"))
    (now,) = children(root, "nowPlaying")
    (element,) = [e for e in children(now, "entry") if e.get("playerName") == name]
    assert element.get("id") == first and element.get("username") == archive_fixture.creds.user
    assert element.get("minutesAgo") == "0" and element.get("playerId", "").isdigit()
    assert element.get("isDir") == "false" and element.get("title")
    player_id = int(element.get("playerId", ""))

    # The next stream of the same player replaces it; a seek or a HEAD does not.
    client.get("/rest/stream", params={**key(archive_fixture, name), "id": second})
    ranged = {"Range": "bytes=100-"}
    client.get("/rest/stream", params={**key(archive_fixture, name), "id": first}, headers=ranged)
    client.head("/rest/stream", params={**key(archive_fixture, name), "id": first})
    body = json_call(client, "getNowPlaying", **key(archive_fixture, "other"))
    (entry,) = entries_of(body, name)
    assert entry["id"] == second and entry["playerId"] == player_id
    assert isinstance(entry["minutesAgo"], int) and entry["username"] == archive_fixture.creds.user
    # Range from the first byte is a play from the start (how browsers begin).
    client.get(
        "/rest/stream",
        params={**key(archive_fixture, name), "id": first},
        headers={"Range": "bytes=0-"},
    )
    (entry,) = entries_of(json_call(client, "getNowPlaying", **key(archive_fixture, "x")), name)
    assert entry["id"] == first


def test_a_now_playing_scrobble_counts_a_stream_that_fails_does_not(
    client: httpx.Client, archive_fixture: Fixture
) -> None:
    name = player()
    track = f"tr-{archive_fixture.present[1].public_id}"
    body = json_call(client, "scrobble", id=track, submission="false", **key(archive_fixture, name))
    assert body["status"] == "ok"
    (entry,) = entries_of(json_call(client, "getNowPlaying", **key(archive_fixture, "x")), name)
    assert entry["id"] == track
    # A track this server cannot stream is not playing anywhere.
    absent = f"tr-{archive_fixture.absent.public_id}"
    failed = json_call(client, "stream", id=absent, **key(archive_fixture, name))
    assert failed["error"]["code"] == 70
    (entry,) = entries_of(json_call(client, "getNowPlaying", **key(archive_fixture, "x")), name)
    assert entry["id"] == track


def _catalog(fixture: Fixture) -> sqlite3.Connection:
    return schema.connect(fixture.root / "catalog.sqlite3", readonly=True)


def test_now_playing_ends_with_the_song(client: httpx.Client, archive_fixture: Fixture) -> None:
    """Shown while the track could still be playing: its length plus two minutes."""
    conn = _catalog(archive_fixture)
    try:
        pid, duration_ms = conn.execute(
            "SELECT public_id, duration_ms FROM tracks WHERE duration_ms IS NOT NULL LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    store = StateStore(archive_fixture.root / "state.sqlite3")  # the server's, shared
    try:
        user = store.get_user(archive_fixture.creds.user)
        assert user is not None
        now = int(time.time() * 1000)
        playing, over = player(), player()
        store.record_playing(user.id, playing, pid, now - duration_ms - 90_000)
        store.record_playing(user.id, over, pid, now - duration_ms - 150_000)
    finally:
        store.close()
    body = json_call(client, "getNowPlaying", **key(archive_fixture, "x"))
    (entry,) = entries_of(body, playing)
    minutes = (duration_ms + 90_000) // 60_000
    assert entry["minutesAgo"] in (minutes, minutes + 1)  # a minute may turn meanwhile
    assert not entries_of(body, over)


def test_now_playing_reads_a_bounded_range_of_an_index(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    alice = store.add_user("alice", "long enough")
    now = int(time.time() * 1000)
    for n in range(5):  # older than anything getNowPlaying shows: deleted by the next write
        store.record_playing(alice.id, f"old-{n}", "t", now - NOW_PLAYING_KEEP_MS - 1000)
    store.record_playing(alice.id, "DSub", "t1")
    store.record_playing(alice.id, "DSub", "t2")  # the same player: replaced
    store.record_playing(alice.id, "web", "t3")
    conn = store.read()
    assert conn.execute("SELECT count(*) FROM now_playing").fetchone()[0] == 2
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    found = store.now_playing(now - NOW_PLAYING_KEEP_MS, limit=10)
    conn.set_trace_callback(None)
    assert [(p.player, p.track) for p in found] in (
        [("web", "t3"), ("DSub", "t2")],
        [("DSub", "t2"), ("web", "t3")],  # the same millisecond
    )
    (sql,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert any("USING INDEX now_playing_at (at>?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan
    assert "LIMIT 10" in sql
    store.close()


def test_scan_status(client: httpx.Client, live: LiveServer, archive_fixture: Fixture) -> None:
    conn = _catalog(archive_fixture)
    try:
        last = max(
            conn.execute("SELECT max(finished_at) FROM imports").fetchone()[0],
            conn.execute("SELECT max(built_at) FROM collections").fetchone()[0],
        )
    finally:
        conn.close()
    creds = archive_fixture.creds
    status = connect(live, creds.user, creds.password, legacy=True).getScanStatus()["scanStatus"]
    # The tracks this server can play: not those of the torrent it does not hold.
    assert status == {"scanning": False, "count": len(archive_fixture.present), "lastScan": last}
    root = xml_call(client, "getScanStatus", **key(archive_fixture, "x"))
    (scan,) = children(root, "scanStatus")
    assert scan.attrib == {
        "scanning": "false",
        "count": str(len(archive_fixture.present)),
        "lastScan": last,
    }
    assert json_call(client, "getScanStatus", **key(archive_fixture, "x"))["scanStatus"] == status


def test_the_calls_need_credentials(client: httpx.Client) -> None:
    for method in ("getNowPlaying", "getScanStatus"):
        body = json_call(client, method)
        assert body["status"] == "failed" and body["error"]["code"] == 10
