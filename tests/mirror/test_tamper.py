"""The tamper matrix: no listing a host can serve makes a mirror delete or trust anything.

One mirror holds three torrents (the metadata release and two audio collections) from a
signed listing, its key pinned on first use. Each case serves it another listing; each is
refused (one line naming the reason, the last good listing kept) or changes nothing:
zero bytes deleted, and the mirror seeds all three again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.torrents import minisign
from phonotheca.torrents.listing import Listing, read_listing, write_listing
from tests.mirror.conftest import all_seeding, mirror_dir, mirror_until
from tests.mirror.swarm import Published, RangeServer, Seeder, Tracker, publish_archive
from tests.peers import free_port

META = "demo_metadata_0001"
AUDIO = ("demo_pop-050-100_0001", "demo_pop-030-049_0001")


@dataclass
class Held:
    published: Published
    directory: Path
    old: Path
    """A listing signed with seq 1, before the one the mirror accepted (seq 2)."""
    work: Path

    def serve(self, name: str) -> Path:
        """A directory to put a listing in, beside the publisher's torrents/."""
        d = self.work / name
        d.mkdir()
        (d / "torrents").symlink_to(self.published.torrents)
        return d / "torrents.json"


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Held]:
    tmp = tmp_path_factory.mktemp("tamper")
    tracker = Tracker(tmp / "tracker", free_port())
    published = publish_archive(
        tmp / "publisher",
        collections=(("pop-050-100_0001", 4, 20_000), ("pop-030-049_0001", 4, 20_000)),
        trackers=[tracker.url],
    )
    old = tmp / "old" / "torrents.json"
    old.parent.mkdir()
    (old.parent / "torrents").symlink_to(published.torrents)
    published.write(read_listing(published.listing), old, seq=1)
    published.write(read_listing(published.listing), seq=2)
    seeder = Seeder()
    try:
        tracker.start([e.infohash_v1 for e in published.entries.values()])
        seeder.seed(published)
        directory = mirror_dir(tmp)
        events: list[str] = []
        mirror_until(directory, published.listing, all_seeding, on_event=events.append)
        yield Held(published, directory, old, tmp)
    finally:
        seeder.close()
        tracker.stop()


def _snapshot(directory: Path) -> dict[str, str]:
    """Every payload file and .torrent of the mirror with the sha256 of its bytes."""
    torrents = directory / "torrents"
    return {
        str(p.relative_to(torrents)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(torrents.rglob("*"))
        if p.is_file()
    }


def _resign(held: Held, listing: Listing, name: str, **kwargs: object) -> Path:
    return held.published.write(listing, held.serve(name), **kwargs)  # type: ignore[arg-type]


def edited_by_one_byte(held: Held) -> Path:
    path = held.serve("edited")
    data = bytearray(held.published.listing.read_bytes())
    at = data.index(b'"listens": ') + len(b'"listens": ')
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    sig = held.published.listing.with_name("torrents.json.minisig")
    path.with_name("torrents.json.minisig").write_bytes(sig.read_bytes())
    return path


def other_key(held: Held) -> Path:
    listing = read_listing(held.published.listing)
    return _resign(held, listing, "other-key", secret=minisign.generate(), seq=50)


def replayed(held: Held) -> Path:
    return held.old


def expired(held: Held) -> Path:
    listing = read_listing(held.published.listing)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return _resign(held, listing, "expired", seq=60, expires=past)


def unsigned(held: Held) -> Path:
    path = held.serve("unsigned")
    listing = read_listing(held.published.listing)
    for e in listing.torrents:
        e.obsolete = True  # an unsigned listing saying "delete everything"
    write_listing(listing, path)
    return path


def drops_two_held(held: Held) -> Path:
    listing = read_listing(held.published.listing)
    kept = [e for e in listing.torrents if e.name not in AUDIO]
    return _resign(held, msgspec.structs.replace(listing, torrents=kept), "drops-two")


def all_obsolete(held: Held) -> Path:
    listing = read_listing(held.published.listing)
    for e in listing.torrents:
        e.obsolete = True
    return _resign(held, listing, "all-obsolete")


CASES: list[tuple[Callable[[Held], Path], str | None]] = [
    (edited_by_one_byte, "bad signature"),
    (other_key, "re-pin with --publisher-key"),
    (replayed, "seq 1 is lower than 2"),
    (expired, "expired at"),
    (unsigned, "not signed"),
    (drops_two_held, None),
    (all_obsolete, None),
]


@pytest.mark.parametrize(("make", "refusal"), CASES, ids=[c[0].__name__ for c in CASES])
def test_no_listing_deletes_anything(
    held: Held, make: Callable[[Held], Path], refusal: str | None
) -> None:
    directory = held.directory
    before = _snapshot(directory)
    trust = json.loads((directory / ".mirror" / "trust.json").read_text())
    good = (directory / "torrents.json").read_bytes()
    listing = make(held)

    dry = CliRunner().invoke(
        main, ["mirror", str(directory), "--torrents", str(listing), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    if refusal is not None:
        [line] = [x for x in dry.output.splitlines() if "refused" in x]
        assert refusal in line and "keeping the last good listing" in line
    assert " x " not in dry.output  # nothing to delete

    events: list[str] = []
    status = mirror_until(directory, listing, all_seeding, on_event=events.append)
    assert {t.name for t in status.torrents} == {META, *AUDIO}
    assert _snapshot(directory) == before  # zero bytes deleted or changed
    log = (directory / ".mirror" / "events.log").read_text()
    assert "dropped" not in log
    after = json.loads((directory / ".mirror" / "trust.json").read_text())
    assert after["publisher_key"] == trust["publisher_key"]
    if refusal is not None:
        assert refusal in log.splitlines()[-1]
        assert (directory / "torrents.json").read_bytes() == good  # the last good one kept
        assert after == trust


def test_first_use_pin_and_operator_re_pin(held: Held) -> None:
    directory = held.directory
    trust = json.loads((directory / ".mirror" / "trust.json").read_text())
    assert trust["pinned_by"] == "first use"
    assert trust["publisher_key"] == held.published.public_key
    # The operator re-pins to a new key: accepted, said so, and recorded.
    new = minisign.generate()
    listing = _resign(held, read_listing(held.published.listing), "new-key", secret=new, seq=1)
    result = CliRunner().invoke(
        main,
        [
            "mirror",
            str(directory),
            "--torrents",
            str(listing),
            "--publisher-key",
            new.public.to_base64(),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "re-pinned" in result.output and new.public.id_text in result.output
    mirror_until(directory, listing, all_seeding, publisher_key=new.public.to_base64())
    trust = json.loads((directory / ".mirror" / "trust.json").read_text())
    assert trust["publisher_key"] == new.public.to_base64()
    assert trust["pinned_by"] == "operator" and trust["seq"] == 1


def test_over_http_the_signature_is_fetched_beside_the_listing(held: Held) -> None:
    signed = RangeServer(held.published.root)
    unsigned_dir = held.work / "http-unsigned"
    unsigned_dir.mkdir()
    (unsigned_dir / "torrents.json").write_bytes(held.published.listing.read_bytes())
    unsigned = RangeServer(unsigned_dir)  # no torrents.json.minisig: 404
    try:
        for server, refusal in ((signed, None), (unsigned, "not signed")):
            url = f"http://127.0.0.1:{server.port}/torrents.json"
            result = CliRunner().invoke(
                main,
                [
                    "mirror",
                    str(held.directory),
                    "--torrents",
                    url,
                    "--dry-run",
                    "--publisher-key",
                    held.published.public_key,
                ],
            )
            assert result.exit_code == 0, result.output
            refused = [x for x in result.output.splitlines() if "refused" in x]
            if refusal is None:
                assert refused == [], result.output
            else:
                assert len(refused) == 1 and refusal in refused[0], result.output
    finally:
        signed.close()
        unsigned.close()


def test_an_allowed_unsigned_listing_never_deletes(held: Held) -> None:
    directory = held.directory
    before = _snapshot(directory)
    listing = read_listing(held.published.listing)
    meta = next(e for e in listing.torrents if e.kind == "metadata")
    for e in listing.torrents:
        e.obsolete = e is not meta
        e.replaced_by = [meta.name] if e is not meta else []
    path = held.serve("unsigned-allowed")
    write_listing(listing, path)
    args = ["mirror", str(directory), "--torrents", str(path), "--dry-run", "--allow-unsigned"]
    dry = CliRunner().invoke(main, args)
    assert dry.exit_code == 0, dry.output
    assert "not signed; read because of --allow-unsigned" in dry.output
    assert " x " not in dry.output and "the listing is not verified: kept" in dry.output
    status = mirror_until(directory, path, all_seeding, allow_unsigned=True)
    assert {t.name for t in status.torrents} == {META, *AUDIO}
    assert _snapshot(directory) == before
    assert "dropped" not in (directory / ".mirror" / "events.log").read_text()
