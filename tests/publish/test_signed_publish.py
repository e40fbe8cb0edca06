"""A publish with the archive's key: numbered, dated, signed listings that minisign checks."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from phonotheca.torrents import minisign
from phonotheca.torrents.keys import ArchiveKeys, generate_keys, load_secret, verify_file
from phonotheca.torrents.listing import read_listing
from phonotheca.torrents.publish import publish
from tests.peers import FixtureArchive, build_archive

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@pytest.fixture
def fixture(tmp_path: Path) -> FixtureArchive:
    return build_archive(tmp_path / "archive")


def test_publish_signs_with_increasing_seq_and_an_expiry(fixture: FixtureArchive) -> None:
    keys = ArchiveKeys(fixture.root)
    public = generate_keys(keys, None)
    secret = load_secret(keys, lambda: b"")
    path = fixture.root / "torrents.json"
    seqs = []
    for day in range(3):
        conn = fixture.archive.connect()
        try:
            publish(fixture.archive, conn, now=NOW + dt.timedelta(days=day), secret=secret)
        finally:
            conn.close()
        listing = read_listing(path)
        seqs.append(listing.seq)
        assert listing.expires == (NOW + dt.timedelta(days=day + 30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert listing.publisher_key == public.to_base64()
        assert verify_file(path, public).prehashed
    assert seqs == [1, 2, 3]
    # A lost torrents.json does not restart the numbering (the catalog keeps it).
    path.unlink()
    conn = fixture.archive.connect()
    try:
        publish(fixture.archive, conn, now=NOW, secret=secret)
    finally:
        conn.close()
    assert read_listing(path).seq == 4
    if shutil.which("minisign"):
        done = subprocess.run(
            ["minisign", "-V", "-p", str(keys.public), "-m", str(path)], capture_output=True
        )
        assert done.returncode == 0, done.stderr
    # The key never goes out: not in the metadata release, not served.
    assert not list((fixture.root / "torrents").rglob("publisher.key"))
    # A signed archive whose key is gone does not silently publish unsigned.
    keys.secret.rename(fixture.root / "key-backup")
    before = path.read_bytes()
    lost = CliRunner().invoke(main, ["publish", "--archive", str(fixture.root)])
    assert lost.exit_code == 1 and "restore it from your backup" in lost.output
    assert path.read_bytes() == before


def test_cli_publish_and_scrape_sign_with_an_encrypted_key(fixture: FixtureArchive) -> None:
    root = str(fixture.root)
    runner = CliRunner()
    made = runner.invoke(
        main,
        ["key", "generate", "--archive", root, "--passphrase-stdin", "--weak-kdf", "--json"],
        input="pass phrase\n",
    )
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)["public_key"]
    # Without the passphrase (no terminal here): refused, nothing written.
    refused = runner.invoke(main, ["publish", "--archive", root])
    assert refused.exit_code == 1 and "--passphrase-stdin" in refused.output
    assert not (fixture.root / "torrents.json").exists()
    wrong = runner.invoke(main, ["publish", "--archive", root, "--passphrase-stdin"], input="x\n")
    assert wrong.exit_code == 1 and "wrong passphrase" in wrong.output
    done = runner.invoke(
        main, ["publish", "--archive", root, "--passphrase-stdin", "--json"], input="pass phrase\n"
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["signed"] and report["seq"] == 1
    checked = runner.invoke(
        main, ["key", "verify", str(fixture.root / "torrents.json"), "--publisher-key", key]
    )
    assert checked.exit_code == 0, checked.output
    # scrape rewrites the listing: signed again, with the next seq.
    scraped = runner.invoke(
        main,
        ["torrents", "scrape", "--archive", root, "--passphrase-stdin", "--timeout", "0.2"],
        input="pass phrase\n",
    )
    assert scraped.exit_code == 0, scraped.output
    assert read_listing(fixture.root / "torrents.json").seq == 2
    public = minisign.parse_public_key(key)
    assert verify_file(fixture.root / "torrents.json", public).trusted_comment.endswith("hashed")


def test_obsolete_metadata_names_its_replacement(fixture: FixtureArchive) -> None:
    conn = fixture.archive.connect()
    try:
        publish(fixture.archive, conn, now=NOW)
        conn.execute("INSERT INTO meta(key, value) VALUES ('changed', '1')")
        conn.commit()
        publish(fixture.archive, conn, now=NOW)
    finally:
        conn.close()
    listing = read_listing(fixture.root / "torrents.json")
    old, new = (
        [e for e in listing.torrents if e.kind == "metadata" and e.obsolete],
        [e for e in listing.torrents if e.kind == "metadata" and not e.obsolete],
    )
    assert len(new) == 1 and old and all(e.replaced_by == [new[0].name] for e in old)
    # Unsigned: no seq, no expiry, no signature beside it.
    assert listing.seq is None and listing.expires is None
    assert not (fixture.root / "torrents.json.minisig").exists()


def test_suggest_checks_the_archive_listing_with_its_own_key(fixture: FixtureArchive) -> None:
    keys = ArchiveKeys(fixture.root)
    generate_keys(keys, None)
    conn = fixture.archive.connect()
    try:
        publish(fixture.archive, conn, secret=load_secret(keys, lambda: b""))
    finally:
        conn.close()
    args = ["torrents", "suggest", "--archive", str(fixture.root), "--budget", "1GB", "--json"]
    ok = CliRunner().invoke(main, args)
    assert ok.exit_code == 0, ok.output
    assert len(json.loads(ok.stdout)["torrents"]) == 3
    path = fixture.root / "torrents.json"
    path.write_bytes(path.read_bytes().replace(b'"obsolete": false', b'"obsolete": true ', 1))
    tampered = CliRunner().invoke(main, args)
    assert tampered.exit_code == 1 and "bad signature" in tampered.output
