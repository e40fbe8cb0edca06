"""Durations are the archived files': the ledger and the index store them at build, and the
JSON API, the pages and Subsonic report them (the catalog's beside them when it is more
than 2 s off), in a builder's archive and in a mirror of it.

The archive: a catalog that says 3:14 for tracks whose files last ~12 s (one kept as
original, one re-encoded to Opus), a track whose catalog length is within 2 s of its
file's, and one without audio.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import av
import httpx
import libsonic
import pytest
from click.testing import CliRunner

from phonotheca.audio.probe import Tags
from phonotheca.audio.tagging import write_tags
from phonotheca.catalog import schema
from phonotheca.cli import main
from phonotheca.mirror.catalog import unpack_catalog
from phonotheca.mirror.state import MirrorDir
from phonotheca.serve.state import StateStore, SubsonicCredentials
from phonotheca.synth.audio import encode, render
from tests.schema_rewind import rewind
from tests.serve.conftest import LiveServer, copy_archive, make_app

SECONDS = 12.3
CATALOG_MS = 194_000  # 3:14
LONG, CLOSE = "dur:track:long", "dur:track:close"
OPUS, NO_AUDIO = "dur:track:opus", "dur:track:none"
ALBUM = "dur:album:1"
USER, PASSWORD = "bob", "a long enough password"


def _record(track_id: str, n: int, duration_ms: int, popularity: int) -> dict[str, object]:
    artist = {"id": "dur:artist:1", "name": "Durations"}
    return {
        "id": track_id,
        "title": f"Song {n}",
        "artists": [artist],
        "album": {"id": ALBUM, "title": "Lengths", "artists": [artist]},
        "track_number": n,
        "duration_ms": duration_ms,
        "isrc": f"USDUR26{n:05d}",
        "popularity": popularity,
    }


# track id -> (catalog duration, popularity, format of its file or None)
TRACKS = {
    LONG: (CATALOG_MS, 90, "vorbis"),
    CLOSE: (round(SECONDS * 1000) + 1500, 80, "flac"),
    OPUS: (CATALOG_MS, 10, "mp3"),  # below --min-original-popularity: re-encoded
    NO_AUDIO: (200_000, 5, None),
}


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@dataclass
class Built:
    root: Path
    creds: SubsonicCredentials


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("durations")
    catalog = base / "catalog.jsonl"
    records = [_record(t, n, ms, pop) for n, (t, (ms, pop, _)) in enumerate(TRACKS.items(), 1)]
    catalog.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    audio = base / "audio"
    audio.mkdir()
    for n, (rec, (_, _, fmt)) in enumerate(zip(records, TRACKS.values(), strict=True), 1):
        if fmt is None:
            continue
        path = audio / f"{n:02d}.{ {'vorbis': 'ogg'}.get(fmt, fmt) }"
        encode(path, render(n, SECONDS), fmt, serial=n)
        tags = Tags(title=str(rec["title"]), artists=("Durations",), isrc=str(rec["isrc"]))
        write_tags(path, tags)
    root = base / "arc"
    a = ["--archive", str(root)]
    _run("init", str(root))
    _run("import", "jsonl", *a, str(catalog))
    _run("import", "files", *a, "--workers", "0", "--no-fingerprints", str(audio))
    # The pinned originals, and room for the other track's Opus file but not its MP3.
    conn = _catalog(root)
    (originals,) = conn.execute(
        "SELECT sum(s.size) FROM source_files s JOIN tracks t ON t.id = s.track_id"
        " WHERE t.popularity >= 50"
    ).fetchone()
    conn.close()
    budget = str(originals + 100_000)
    _run("plan", *a, "--budget", budget, "--min-original-popularity", "50", "--opus-kbps", "48")
    _run("build", *a, "--workers", "0")
    _run("publish", *a)
    store = StateStore(root / "state.sqlite3")
    store.add_user(USER, PASSWORD)
    creds = store.rotate_subsonic_credentials(USER)
    store.close()
    return Built(root, creds)


def _catalog(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)


def _ledger(root: Path) -> dict[str, tuple[str, str, int | None, int | None]]:
    """Public id -> (status, tier, ledger duration, source file's duration)."""
    conn = _catalog(root)
    try:
        rows = conn.execute(
            "SELECT t.public_id, l.status, l.tier, l.duration_ms, s.duration_ms"
            " FROM ledger l JOIN tracks t ON t.id = l.track_id"
            " LEFT JOIN source_files s ON s.id = l.source_file_id"
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: r[1:] for r in rows}


def _index(root: Path) -> dict[str, dict[str, object]]:
    out = {}
    for index in (root / "torrents").glob("*/data/index.jsonl"):
        for line in index.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("codec"):
                entry["path"] = index.parent / entry["volume"]
                out[entry["id"]] = entry
    return out


def _decoded_ms(volume: Path, offset: int, length: int, tmp: Path) -> float:
    """The length of a packed file, decoded sample by sample (not from its headers)."""
    member = tmp / "member"
    with volume.open("rb") as f:
        f.seek(offset)
        member.write_bytes(f.read(length))
    with av.open(str(member)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
    return samples * 1000 / rate


def test_the_ledger_and_the_index_hold_the_packed_file_s_duration(
    built: Built, tmp_path: Path
) -> None:
    ledger = _ledger(built.root)
    index = _index(built.root)
    assert {t: ledger[t][:2] for t in TRACKS} == {
        LONG: ("packed", "original"),
        CLOSE: ("packed", "original"),
        OPUS: ("packed", "opus"),
        NO_AUDIO: ("missing_source", "metadata"),
    }
    assert ledger[NO_AUDIO][2] is None
    for track_id in (LONG, CLOSE, OPUS):
        _, tier, duration, source_duration = ledger[track_id]
        assert duration == index[track_id]["duration_ms"]
        entry = index[track_id]
        decoded = _decoded_ms(Path(entry["path"]), entry["offset"], entry["length"], tmp_path)  # type: ignore[arg-type]
        assert duration is not None and abs(duration - SECONDS * 1000) < 100
        if tier == "original":
            assert duration == source_duration  # the scan's measure of this very file
            assert abs(decoded - duration) < 100
        else:
            # The Opus re-encode's own length: every sample it plays, less the pre-skip.
            assert abs(decoded - duration) <= 1
    conn = _catalog(built.root)
    try:  # the catalog keeps its own figure
        assert dict(conn.execute("SELECT public_id, duration_ms FROM tracks")) == {
            t: ms for t, (ms, _, _) in TRACKS.items()
        }
    finally:
        conn.close()


def _expected(root: Path) -> dict[str, tuple[int, int | None]]:
    """Track -> (duration_ms, catalog_duration_ms) the server must report."""
    ledger = _ledger(root)
    return {
        LONG: (ledger[LONG][2], CATALOG_MS),  # type: ignore[dict-item]
        CLOSE: (ledger[CLOSE][2], None),  # type: ignore[dict-item]
        OPUS: (ledger[OPUS][2], CATALOG_MS),  # type: ignore[dict-item]
        NO_AUDIO: (200_000, None),
    }


def _check_api_and_pages(c: httpx.Client, expected: dict[str, tuple[int, int | None]]) -> None:
    for track_id, (duration, catalog) in expected.items():
        doc = c.get(f"/api/v1/tracks/{quote(track_id, safe='')}").json()
        assert (doc["duration_ms"], doc["catalog_duration_ms"]) == (duration, catalog), track_id
        assert doc["availability"]["playable"] is (track_id != NO_AUDIO)
        page = c.get(f"/tracks/{quote(track_id, safe='')}").text
        shown = page[page.index("<dt>Duration</dt>") :]
        shown = shown[: shown.index("</dd>")]
        seconds = round(duration / 1000)
        assert f"<dd>{seconds // 60}:{seconds % 60:02d}" in shown
        assert ("(catalog: 3:14)" in shown) is (catalog is not None)
    # Search (its own fast path), the album and its page list the same figures.
    hits = c.get("/api/v1/search", params={"q": "song"}).json()["tracks"]
    album = c.get(f"/api/v1/albums/{quote(ALBUM, safe='')}").json()
    for tracks in (hits, album["tracks"]):
        assert {t["id"]: (t["duration_ms"], t["catalog_duration_ms"]) for t in tracks} == expected
    assert album["duration_ms"] == sum(d for d, _ in expected.values())
    page = c.get(f"/albums/{quote(ALBUM, safe='')}").text
    assert "3:14" not in page and "0:12" in page


def test_the_api_and_the_pages_report_the_file_s_duration(built: Built) -> None:
    with (
        LiveServer(make_app(built.root)) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        _check_api_and_pages(c, _expected(built.root))


def _sonic(server: LiveServer, creds: SubsonicCredentials) -> libsonic.Connection:
    return libsonic.Connection(
        "http://127.0.0.1",
        creds.user,
        creds.password,
        port=server.port,
        serverPath="/rest",
        appName="phonotheca-tests",
        apiVersion="1.16.1",
        insecure=True,
    )


def test_subsonic_songs_albums_and_playlists_give_the_file_s_duration(built: Built) -> None:
    expected = {t: (d + 500) // 1000 for t, (d, _) in _expected(built.root).items()}
    assert expected[LONG] == expected[OPUS] == 12 and expected[NO_AUDIO] == 200
    with LiveServer(make_app(built.root)) as server:
        sonic = _sonic(server, built.creds)
        for track_id, seconds in expected.items():
            assert sonic.getSong(f"tr-{track_id}")["song"]["duration"] == seconds
        album = sonic.getAlbum(f"al-{ALBUM}")["album"]
        assert {s["id"]: s["duration"] for s in album["song"]} == {
            f"tr-{t}": s for t, s in expected.items()
        }
        total_ms = sum(d for d, _ in _expected(built.root).values())
        assert album["duration"] == (total_ms + 500) // 1000
        playlist = sonic.createPlaylist(name="lengths", songIds=[f"tr-{LONG}", f"tr-{OPUS}"])
        both_ms = _expected(built.root)[LONG][0] + _expected(built.root)[OPUS][0]
        assert playlist["playlist"]["duration"] == (both_ms + 500) // 1000


def test_a_mirror_reports_the_durations_of_the_published_catalog(
    built: Built, tmp_path: Path
) -> None:
    """A mirror's catalog is the metadata release's: its ledger says where each track's
    bytes are and how long they play, as the builder's does."""
    mirror = MirrorDir(tmp_path / "mirror")
    mirror.torrents.mkdir(parents=True)
    verified = mirror.state / "verified"
    verified.mkdir(parents=True)
    listing = json.loads((built.root / "torrents.json").read_text())
    for t in listing["torrents"]:
        name = t["name"]
        shutil.copytree(built.root / "torrents" / name, mirror.payload(name))
        shutil.copy(built.root / "torrents" / f"{name}.torrent", mirror.torrent_file(name))
        (verified / f"{name}.json").write_text(
            json.dumps({"piece_length": 1, "num_pieces": 0, "complete": True, "have": ""})
        )
    (metadata,) = [t["name"] for t in listing["torrents"] if t["kind"] == "metadata"]
    unpack_catalog(mirror, metadata)
    with (
        LiveServer(make_app(mirror.root, public_audio=True)) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        _check_api_and_pages(c, _expected(built.root))


def test_a_new_plan_keeps_the_packed_durations(built: Built, tmp_path: Path) -> None:
    root = copy_archive(built.root, tmp_path / "arc")
    before = _ledger(root)
    _run("plan", "--archive", str(root), "--budget", "2GB")
    assert {t: _ledger(root)[t][2] for t in (LONG, CLOSE, OPUS)} == {
        t: before[t][2] for t in (LONG, CLOSE, OPUS)
    }


def test_catalogs_packed_before_v5_take_their_source_files_durations(
    built: Built, tmp_path: Path
) -> None:
    root = copy_archive(built.root, tmp_path / "arc")
    conn = schema.connect(root / "catalog.sqlite3")
    try:
        rewind(conn, 4)
        schema.migrate(conn)
        rows = dict(
            conn.execute(
                "SELECT t.public_id, l.duration_ms FROM ledger l JOIN tracks t ON t.id = l.track_id"
            )
        )
        sources = dict(
            conn.execute(
                "SELECT t.public_id, s.duration_ms FROM ledger l JOIN tracks t ON t.id = l.track_id"
                " JOIN source_files s ON s.id = l.source_file_id"
            )
        )
    finally:
        conn.close()
    assert rows == {LONG: sources[LONG], CLOSE: sources[CLOSE], OPUS: sources[OPUS], NO_AUDIO: None}
