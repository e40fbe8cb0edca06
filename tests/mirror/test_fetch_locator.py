"""fetch through the track locator: among 50 collections, no index read, only the track's pieces.

The archive is served by the project's own web seed (``serve-files``' server), which counts
every request and byte it sends; the fetching session has no peer, only that web seed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import pytest
from click.testing import CliRunner

from phonotheca.build import read_index
from phonotheca.build.tarvolume import BLOCK
from phonotheca.cli import main
from phonotheca.torrents import minisign
from phonotheca.torrents.keys import ArchiveKeys, generate_keys, load_secret, verify_file
from phonotheca.torrents.layout import INDEX_PATH, parse_layout
from phonotheca.torrents.listing import LocatorRef, read_listing, write_listing
from phonotheca.torrents.locator import LOCATOR_FILE, TRACK, LocatorEntry, write_locator
from phonotheca.torrents.webseed import make_server
from tests.mirror.swarm import MIRROR_TOML, PIECE, Published, publish_archive
from tests.peers import free_port

COLLECTIONS = 50


@dataclass
class Counts:
    requests: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, path: str, offset: int, n: int) -> None:
        with self.lock:
            self.sent[path] = self.sent.get(path, 0) + n
            self.ranges.setdefault(path, []).append((offset, offset + n))

    def bytes_of(self, suffix: str) -> int:
        """Bytes sent for the paths ending in ``suffix``, a range sent twice counted twice."""
        return sum(n for p, n in self.sent.items() if p.endswith(suffix))

    def distinct_bytes_of(self, suffix: str) -> int:
        """Bytes of those files that were sent at least once."""
        total = 0
        for path, spans in self.ranges.items():
            if path.endswith(suffix):
                end = 0
                for a, b in sorted(spans):
                    total += max(0, b - max(a, end))
                    end = max(end, b)
        return total


@dataclass
class Served:
    published: Published
    url: str
    counts: Counts


def _locator_of(published: Published) -> None:
    """tracks.locator beside torrents.json, from the collections' own indexes, and listed."""
    entries = []
    for name, entry in published.entries.items():
        if entry.kind != "audio":
            continue
        for line in read_index((published.torrents / name / "data/index.jsonl").read_bytes()):
            e = line.entry
            assert e is not None
            volume = int(e.volume.removeprefix(f"{name}.").removesuffix(".tar"))
            digest = bytes.fromhex(e.sha256)
            entries.append(
                LocatorEntry(e.id, TRACK, name, volume, e.offset, e.length, digest, e.codec)
            )
    entries.sort(key=lambda e: (e.id.encode(), e.kind))
    summary = write_locator(entries, published.root / LOCATOR_FILE)
    listing = read_listing(published.listing)
    listing.locator = LocatorRef(
        url=LOCATOR_FILE,
        size=summary.size,
        sha256=summary.sha256,
        block_size=summary.block_size,
        top_index=summary.top_index,  # as publish lists it
    )
    write_listing(listing, published.listing)
    # Rewritten, so no longer what the publisher signed: these listings are unsigned.
    published.listing.with_name(published.listing.name + ".minisig").unlink(missing_ok=True)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    port = free_port()
    published = publish_archive(
        tmp_path / "publisher",
        collections=[(f"pop-050-100_{i + 1:04d}", 4, 20_000) for i in range(COLLECTIONS)],
        web_seeds=[f"http://127.0.0.1:{port}/torrents/"],
        metadata=False,
    )
    _locator_of(published)
    counts = Counts()
    server = make_server(published.root, port=port)
    base: Any = server.RequestHandlerClass

    class Counting(base):  # type: ignore[misc, valid-type]
        def _serve(self) -> None:
            with counts.lock:
                counts.requests.append(self.path)
            super()._serve()

        def _copy(self, f: BinaryIO, offset: int, length: int) -> None:
            super()._copy(f, offset, length)
            counts.add(self.path, offset, length)

    server.RequestHandlerClass = Counting
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    work = tmp_path / "work"
    work.mkdir()
    (work / "phonotheca.toml").write_text(MIRROR_TOML.format(port=free_port()))
    monkeypatch.chdir(work)
    try:
        yield Served(published, f"http://127.0.0.1:{port}/torrents.json", counts)
    finally:
        server.shutdown()
        server.server_close()


def _fetch(*args: str) -> dict[str, Any]:
    """The fetch command's report. The listings these tests rewrite are unsigned: the
    locator is what is tested here (signed releases: tests/mirror/test_tamper.py, and the
    real publish below)."""
    if "--publisher-key" not in args:
        args = (*args, "--allow-unsigned")
    result = CliRunner().invoke(main, ["fetch", *args, "--timeout", "60", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_fetch_reads_no_index_among_50_collections(served: Served) -> None:
    published, counts = served.published, served.counts
    track = "demo:track:demo_pop-050-100_0037:1"
    collection, data = published.tracks[track]
    # The track shares no piece with its collection's index (else the web seed would send
    # that piece's part of the index as well).
    layout = parse_layout((published.torrents / f"{collection}.torrent").read_bytes())
    bag = published.torrents / collection
    line = next(
        ln.entry
        for ln in read_index((bag / "data/index.jsonl").read_bytes())
        if ln.entry and ln.entry.id == track
    )
    start, length = layout.track_span(line)
    assert not set(layout.pieces(start - BLOCK, length + BLOCK)) & set(
        layout.file_pieces(INDEX_PATH)
    )
    report = _fetch(track, "--torrents", served.url)
    assert Path(report["path"]).name == f"{track}.opus"
    assert Path(report["path"]).read_bytes() == data
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert report["collection"] == collection and report["found_by"] == "locator"
    # Not one collection index, one .torrent (the track's), at most two locator reads.
    assert not [p for p in counts.requests if p.endswith("index.jsonl")]
    assert [p for p in counts.requests if p.endswith(".torrent")] == [
        f"/torrents/{collection}.torrent"
    ]
    locator_requests = [p for p in counts.requests if p == f"/{LOCATOR_FILE}"]
    assert len(locator_requests) == report["locator_reads"] <= 2
    assert counts.bytes_of(LOCATOR_FILE) == report["locator_bytes"] <= 2 * 64 * 1024
    # The volumes: the track, its 512-byte tar header and at most 2 pieces around them,
    # and nothing else of the collection.
    bound = len(data) + BLOCK + 2 * PIECE
    assert counts.distinct_bytes_of(".tar") <= bound
    assert counts.distinct_bytes_of("") == counts.distinct_bytes_of(".tar") + sum(
        counts.distinct_bytes_of(name)
        for name in ("torrents.json", LOCATOR_FILE, f"{collection}.torrent")
    )
    # libtorrent asks again for a time-critical piece that is late (on a loaded machine):
    # at most once per piece wanted.
    resent = report["pieces"] * PIECE
    assert report["downloaded"] <= bound + resent
    assert counts.bytes_of(".tar") <= bound + resent


def test_fetch_with_a_local_locator_and_a_missing_track(served: Served) -> None:
    published = served.published
    track = "demo:track:demo_pop-050-100_0050:0"  # the last collection
    report = _fetch(
        track, "--torrents", served.url, "--locator", str(published.root / LOCATOR_FILE)
    )
    assert Path(report["path"]).read_bytes() == published.tracks[track][1]
    assert report["locator_reads"] <= 2
    assert f"/{LOCATOR_FILE}" not in served.counts.requests  # read from the local copy
    assert not [p for p in served.counts.requests if p.endswith("index.jsonl")]
    result = CliRunner().invoke(
        main,
        ["fetch", "demo:track:nope", "--torrents", served.url, "--allow-unsigned"],
    )
    assert result.exit_code == 1
    assert "track demo:track:nope is not in the archive's locator" in result.output
    assert "Traceback" not in result.output


def test_fetch_refuses_a_corrupt_locator_with_a_clear_error(served: Served) -> None:
    path = served.published.root / LOCATOR_FILE
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first block
    path.write_bytes(bytes(data))
    track = next(iter(sorted(served.published.tracks)))
    result = CliRunner().invoke(
        main, ["fetch", track, "--torrents", served.url, "--allow-unsigned"]
    )
    assert result.exit_code == 1
    assert "tracks.locator: block at offset 16 is corrupt" in result.output
    assert not [p for p in served.counts.requests if p.endswith((".torrent", ".tar"))]


def test_listing_without_a_locator_is_read_as_before() -> None:
    """Listings written before locators existed still decode (the key is optional)."""
    text = {
        "archive": "demo",
        "generated_at": "2026-01-01T00:00:00Z",
        "totals": {
            "tracks": 0,
            "bytes": 0,
            "listens_covered": 0,
            "listens_total": 0,
            "share_of_listens": 0.0,
        },
        "torrents": [],
    }
    from phonotheca.torrents.listing import decode_listing

    assert decode_listing(msgspec.json.encode(text)).locator is None


def test_fetch_from_a_real_publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """publish (locator from the catalog, listed with its top index) -> serve-files -> fetch."""
    import datetime as dt

    from phonotheca.torrents.publish import publish
    from tests.peers import PIECE_LENGTH, build_archive

    port = free_port()
    fx = build_archive(tmp_path / "archive", web_seeds=[f"http://127.0.0.1:{port}/torrents/"])
    keys = ArchiveKeys(fx.root)
    public = generate_keys(keys, None, cost=minisign.INTERACTIVE)
    conn = fx.archive.connect()
    try:
        secret = load_secret(keys, lambda: b"")
        now = dt.datetime.now(dt.UTC)  # a signed listing expires: not a fixed date
        publish(fx.archive, conn, now=now, secret=secret)
        track, sha, length = conn.execute(
            "SELECT t.public_id, l.sha256, l.length FROM ledger l JOIN tracks t"
            " ON t.id = l.track_id WHERE l.status = 'packed' ORDER BY t.public_id LIMIT 1 OFFSET 3"
        ).fetchone()
    finally:
        conn.close()
    counts = Counts()
    server = make_server(fx.root, port=port)
    base: Any = server.RequestHandlerClass

    class Counting(base):  # type: ignore[misc, valid-type]
        def _copy(self, f: BinaryIO, offset: int, length: int) -> None:
            super()._copy(f, offset, length)
            counts.add(self.path, offset, length)

    server.RequestHandlerClass = Counting
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tmp_path / "work"
    work.mkdir()
    (work / "phonotheca.toml").write_text(MIRROR_TOML.format(port=free_port()))
    monkeypatch.chdir(work)
    try:
        report = _fetch(
            track,
            "--torrents",
            f"http://127.0.0.1:{port}/torrents.json",
            "--publisher-key",
            public.to_base64(),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert report["found_by"] == "locator" and report["sha256"] == sha
    # The locator is signed too, for whoever holds a whole copy of it.
    assert verify_file(fx.root / LOCATOR_FILE, public).prehashed
    assert hashlib.sha256(Path(report["path"]).read_bytes()).hexdigest() == sha
    assert 1 <= report["locator_reads"] <= 2
    assert counts.bytes_of(LOCATOR_FILE) == report["locator_bytes"]
    # The collection's files: the track's pieces at most (its header, 2 partial pieces).
    assert (
        counts.distinct_bytes_of("")
        - sum(
            counts.distinct_bytes_of(name) for name in ("torrents.json", LOCATOR_FILE, ".torrent")
        )
        <= length + BLOCK + 2 * PIECE_LENGTH
    )
