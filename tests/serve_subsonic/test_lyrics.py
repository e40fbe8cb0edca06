"""Lyrics from the tags of archived files: ``getLyricsBySongId`` (OpenSubsonic structured
lyrics) and ``getLyrics``, XML and JSON, py-sonic, errors.

An archive of its own: synthetic audio files (Ogg Opus, Ogg Vorbis, FLAC, MP3, M4A) get
lyrics tags with mutagen before they are imported, planned and built, so that the
server reads them back out of the tar volumes.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mutagen
import pytest
from libsonic.errors import ParameterError
from mutagen.id3 import SYLT, USLT

from phonotheca.archive import open_archive
from phonotheca.serve.state import StateStore, SubsonicCredentials
from phonotheca.serve.subsonic.lyrics import parse_lyrics
from tests.serve_subsonic.conftest import Fixture, LiveServer, _run
from tests.serve_subsonic.test_protocol import NS, children, json_call, xml_call
from tests.serve_subsonic.test_pysonic import connect

# What each format's files get, and what getLyricsBySongId should answer for it
# (displayArtist/displayTitle are added from the song when the lyrics name none).
OPUS_LRC = (
    "[ar:Someone Else]\n[offset:+250]\n[length:01:02]\n"
    "[00:01.50]Second line\n[00:00.20][00:03.00]Chorus <00:00.40>& <refrain>\n\nnot timed\n"
)
OPUS = [
    {
        "displayArtist": "Someone Else",
        "lang": "fra",
        "offset": 250,
        "synced": True,
        "line": [
            {"start": 200, "value": "Chorus & <refrain>"},
            {"start": 1500, "value": "Second line"},
            {"start": 3000, "value": "Chorus & <refrain>"},
        ],
    }
]
VORBIS_TEXT = '\nFirst verse, line one\nline two\n\nThe chorus: "quoted" & <b>\n\n'
VORBIS = [
    {
        "lang": "xxx",
        "offset": 0,
        "synced": False,
        "line": [
            {"value": "First verse, line one"},
            {"value": "line two"},
            {"value": ""},
            {"value": 'The chorus: "quoted" & <b>'},
        ],
    }
]
FLAC = [
    {
        "lang": "xxx",
        "offset": 0,
        "synced": True,
        "line": [{"start": 1000, "value": "Eins"}, {"start": 2500, "value": "Zwei"}],
    }
]
MP3 = [
    {
        "lang": "deu",
        "offset": 0,
        "synced": True,
        "line": [{"start": 500, "value": "Hallo"}, {"start": 1750, "value": "Welt"}],
    },
    {
        "lang": "eng",
        "offset": 0,
        "synced": False,
        "line": [{"value": "Hello"}, {"value": "World"}],
    },
]
M4A = [{"lang": "xxx", "offset": 0, "synced": False, "line": [{"value": "Plain MP4 words"}]}]
EXPECTED = {"opus": OPUS, "vorbis": VORBIS, "flac": FLAC, "mp3": MP3, "m4a": M4A}


def add_lyrics(path: Path, fmt: str) -> None:
    """The lyrics tags of ``EXPECTED[fmt]``, written with mutagen."""
    audio = mutagen.File(path)
    assert audio is not None, path
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    if fmt == "opus":
        tags["LYRICS"] = [OPUS_LRC]
        tags["LANGUAGE"] = ["fra"]
    elif fmt == "vorbis":
        tags["UNSYNCEDLYRICS"] = [VORBIS_TEXT]
    elif fmt == "flac":
        tags["LYRICS"] = ["[00:01.00]Eins\n[00:02.5]Zwei\n"]
    elif fmt == "mp3":
        tags.add(USLT(encoding=3, lang="eng", desc="", text="Hello\nWorld\n"))
        tags.add(
            SYLT(
                encoding=3,
                lang="deu",
                format=2,
                type=1,
                desc="",
                text=[("Hallo", 500), ("Welt", 1750)],
            )
        )
    elif fmt == "m4a":
        tags["\xa9lyr"] = ["Plain MP4 words"]
    audio.save()


@dataclass
class Song:
    id: str
    format: str
    title: str
    artist: str


@dataclass
class LyricsArchive:
    root: Path
    songs: list[Song]
    creds: SubsonicCredentials


@pytest.fixture(scope="module")
def lyrics_archive(tmp_path_factory: pytest.TempPathFactory) -> LyricsArchive:
    base = tmp_path_factory.mktemp("lyrics")
    root = base / "lyrics"
    catalog, audio = base / "catalog.jsonl", base / "audio"
    _run("synth", "catalog", "--tracks", "60", str(catalog))
    _run(
        "synth", "audio", "--catalog", str(catalog), "--tracks", "20", str(audio),
        "--min-seconds", "1", "--max-seconds", "2",
    )  # fmt: skip
    formats: dict[str, str] = {}
    for line in (audio / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["broken"] is None:
            add_lyrics(audio / entry["path"], entry["format"])
            formats[str((audio / entry["path"]).resolve())] = entry["format"]
    _run("init", str(root), "--name", "lyrics")
    _run("import", "jsonl", "--archive", str(root), str(catalog))
    _run(
        "import", "files", "--archive", str(root), "--workers", "0", "--no-fingerprints",
        str(audio),
    )  # fmt: skip
    _run("plan", "--archive", str(root), "--budget", "1GB", "--exclude-tier", "opus")
    _run("build", "--archive", str(root), "--workers", "0")
    conn = open_archive(root).connect(readonly=True)
    try:
        rows = conn.execute(
            "SELECT t.public_id, t.title, t.artist_credit, s.path FROM ledger l"
            " JOIN tracks t ON t.id = l.track_id JOIN source_files s ON s.id = l.source_file_id"
            " WHERE l.status = 'packed' ORDER BY t.id"
        ).fetchall()
    finally:
        conn.close()
    songs = [
        Song(f"tr-{pid}", formats[str(Path(path).resolve())], title, artist)
        for pid, title, artist, path in rows
    ]
    assert {s.format for s in songs} >= {"opus", "vorbis", "flac", "mp3"}, songs
    shutil.rmtree(audio)  # the lyrics can only come from the tar volumes now
    store = StateStore(root / "state.sqlite3")
    store.add_user("carol", "long enough password")
    creds = store.rotate_subsonic_credentials("carol")
    store.close()
    return LyricsArchive(root, songs, creds)


@pytest.fixture(scope="module")
def lyrics_server(lyrics_archive: LyricsArchive) -> Iterator[LiveServer]:
    server = LiveServer(lyrics_archive.root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(lyrics_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lyrics_server.url, timeout=30) as c:
        yield c


def key(creds: SubsonicCredentials) -> dict[str, str]:
    return {"apiKey": creds.api_key, "v": "1.16.1", "c": "test"}


def expected(song: Song) -> list[dict[str, Any]]:
    return [
        {"displayArtist": song.artist, "displayTitle": song.title, **lyrics}
        for lyrics in EXPECTED[song.format]
    ]


def test_structured_lyrics_of_every_format_json(
    client: httpx.Client, lyrics_archive: LyricsArchive
) -> None:
    for song in lyrics_archive.songs:
        body = json_call(client, "getLyricsBySongId", id=song.id, **key(lyrics_archive.creds))
        assert body["status"] == "ok", body
        assert body["lyricsList"]["structuredLyrics"] == expected(song), song.format


def _xml_lyrics(element: ET.Element) -> dict[str, Any]:
    """A ``structuredLyrics`` element in the JSON shape, to compare."""
    out: dict[str, Any] = dict(element.attrib)
    out["offset"] = int(out["offset"])
    out["synced"] = {"true": True, "false": False}[out["synced"]]
    lines = []
    for line in children(element, "line"):
        item: dict[str, Any] = {"value": line.text or ""}
        if "start" in line.attrib:
            item = {"start": int(line.attrib["start"]), **item}
        lines.append(item)
    out["line"] = lines
    return out


def test_structured_lyrics_xml(client: httpx.Client, lyrics_archive: LyricsArchive) -> None:
    for song in lyrics_archive.songs:
        root = xml_call(client, "getLyricsBySongId.view", id=song.id, **key(lyrics_archive.creds))
        (found,) = children(root, "lyricsList")
        got = [_xml_lyrics(e) for e in children(found, "structuredLyrics")]
        assert got == expected(song), song.format


def test_get_lyrics_by_artist_and_title(
    lyrics_server: LiveServer, client: httpx.Client, lyrics_archive: LyricsArchive
) -> None:
    creds = lyrics_archive.creds
    sonic = connect(lyrics_server, creds.user, creds.password, legacy=False)
    vorbis = next(s for s in lyrics_archive.songs if s.format == "vorbis")
    found = sonic.getLyrics(artist=vorbis.artist, title=vorbis.title)["lyrics"]
    text = 'First verse, line one\nline two\n\nThe chorus: "quoted" & <b>'
    assert found == {"artist": vorbis.artist, "title": vorbis.title, "value": text}
    # Synced lyrics come as their text; the title alone finds the song, in any case.
    opus = next(s for s in lyrics_archive.songs if s.format == "opus" and s.artist)
    found = sonic.getLyrics(title=opus.title.upper())["lyrics"]
    assert found["value"] == "Chorus & <refrain>\nSecond line\nChorus & <refrain>"
    assert found["artist"] == opus.artist and found["title"] == opus.title
    (element,) = children(
        xml_call(client, "getLyrics", artist=vorbis.artist, title=vorbis.title, **key(creds)),
        "lyrics",
    )
    assert element.get("artist") == vorbis.artist and element.get("title") == vorbis.title
    assert element.text == text
    # Nothing of that name: an empty answer, as Subsonic gives.
    assert sonic.getLyrics(artist="Nobody at all", title=vorbis.title)["lyrics"] == {}
    body = json_call(client, "getLyrics", title="no such song title", **key(creds))
    assert body["status"] == "ok" and body["lyrics"] == {}
    (element,) = children(xml_call(client, "getLyrics", title="zzz", **key(creds)), "lyrics")
    assert element.attrib == {} and not element.text
    with pytest.raises(ParameterError):
        sonic.getLyrics(artist=vorbis.artist)
    body = json_call(client, "getLyrics", **key(creds))
    assert body["status"] == "failed" and body["error"]["code"] == 10


def test_lyrics_errors(client: httpx.Client, lyrics_archive: LyricsArchive) -> None:
    creds = key(lyrics_archive.creds)
    album = "al-" + lyrics_archive.songs[0].id[3:]
    for params, code in (({}, 10), ({"id": "tr-no:such:track"}, 70), ({"id": album}, 70)):
        body = json_call(client, "getLyricsBySongId", **creds, **params)
        assert body["status"] == "failed" and body["error"]["code"] == code, params
        root = xml_call(client, "getLyricsBySongId", **creds, **params)
        assert children(root, "error")[0].get("code") == str(code)


def test_no_lyrics_is_an_empty_list(live: LiveServer, archive_fixture: Fixture) -> None:
    """The other archive's files have no lyrics; its absent torrent's tracks no bytes."""
    params = {"apiKey": archive_fixture.creds.api_key, "c": "test"}
    with httpx.Client(base_url=live.url, timeout=30) as c:
        for packed in (archive_fixture.present[0], archive_fixture.absent):
            body = json_call(c, "getLyricsBySongId", id=f"tr-{packed.public_id}", **params)
            assert body["status"] == "ok" and body["lyricsList"] == {"structuredLyrics": []}
            root = xml_call(c, "getLyricsBySongId", id=f"tr-{packed.public_id}", **params)
            (found,) = children(root, "lyricsList")
            assert len(found) == 0 and found.tag == f"{NS}lyricsList"


def test_song_lyrics_extension_is_announced(client: httpx.Client) -> None:
    body = json_call(client, "getOpenSubsonicExtensions")
    assert {"name": "songLyrics", "versions": [1]} in body["openSubsonicExtensions"]


def test_lrc_parsing() -> None:
    parsed = parse_lyrics("[ti:Title]\n[la:en]\n[01:02.3]a\n[00:05:07]b\n[100:00]c\n[offset:-40]")
    assert parsed is not None and parsed.synced and parsed.offset == -40
    assert parsed.lines == [(5070, "b"), (62300, "a"), (6_000_000, "c")]
    assert parsed.lang == "en" and parsed.title == "Title"
    assert parse_lyrics("\n \n") is None
    plain = parse_lyrics("[not a tag\n[]\ntext")
    assert plain is not None and not plain.synced and len(plain.lines) == 3
