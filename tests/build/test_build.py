"""`phonotheca build` and `phonotheca validate` end to end, with real audio and real tools."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from phonotheca.torrents import bencode
from tests.build.conftest import phonotheca, tree_bytes
from tests.conftest import SmallDisk


def build(arc: Path, *args: str) -> dict[str, object]:
    out = phonotheca("build", "--archive", str(arc), "--json", *args)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def catalog(arc: Path) -> sqlite3.Connection:
    return sqlite3.connect(arc / "catalog.sqlite3")


def test_build_packs_the_plan_into_valid_deterministic_collections(
    archive: Path, tmp_path: Path
) -> None:
    result = build(archive, "--workers", "2")
    collections = result["collections"]
    assert isinstance(collections, list) and len(collections) >= 3
    assert result["cover_collections"] == ["demo_covers_0001"]
    db = catalog(archive)
    planned = dict(
        db.execute(
            "SELECT tier, count(*) FROM ledger WHERE tier != 'metadata' GROUP BY tier"
        ).fetchall()
    )
    assert planned["original"] > 0 and planned["opus"] > 0
    assert db.execute("SELECT count(*) FROM ledger WHERE status = 'planned'").fetchone()[0] == 0
    assert result["tracks"] == sum(planned.values())

    # Names: bands from the most popular down, numbered within the band.
    assert collections[0] == "demo_pop-050-100_0001"
    assert collections == sorted(collections, key=lambda n: (-int(n[9:12]), n))

    # Originals are copied bit-exact; every member is where the ledger says.
    rows = db.execute(
        "SELECT l.tier, l.collection, l.volume, l.offset, l.length, l.sha256, s.path, l.codec"
        " FROM ledger l JOIN source_files s ON s.id = l.source_file_id"
        " WHERE l.status = 'packed'"
    ).fetchall()
    for tier, coll, volume, offset, length, sha, source, codec in rows:
        with open(archive / "torrents" / coll / "data" / volume, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        assert hashlib.sha256(data).hexdigest() == sha
        if tier == "original":
            assert sha == hashlib.sha256(Path(source).read_bytes()).hexdigest()
        else:
            assert codec == "opus" and data[:4] == b"OggS" and b"OpusHead" in data[:64]

    # The Library of Congress validator, tar, and our validate accept every collection.
    for name in [*collections, "demo_covers_0001"]:
        bag = archive / "torrents" / name
        checked = subprocess.run(
            [str(Path(sys.executable).parent / "bagit.py"), "--validate", str(bag)],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
        for volume in sorted((bag / "data").glob("*.tar")):
            listing = subprocess.run(
                ["tar", "-tvf", str(volume)], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            assert listing and all(line.startswith("-rw-r--r-- 0/0") for line in listing)
    valid = phonotheca("validate", str(archive / "torrents"), "--json")
    assert json.loads(valid.stdout)["ok"] is True

    # One worker gives the very same bytes.
    other = tmp_path / "one-worker"
    shutil.copytree(archive.parent / "arc", other, ignore=shutil.ignore_patterns("torrents"))
    reset(other)
    build(other, "--workers", "1")
    assert tree_bytes(other / "torrents") == tree_bytes(archive / "torrents")


def reset(arc: Path) -> None:
    """Forget a build (as if the copied archive had never been built)."""
    shutil.rmtree(arc / "torrents", ignore_errors=True)
    (arc / "torrents").mkdir()
    shutil.rmtree(arc / "work" / "build", ignore_errors=True)
    db = catalog(arc)
    with db:
        db.execute("DELETE FROM collections")
        db.execute("DELETE FROM packed_images")
        db.execute(
            "UPDATE ledger SET status = 'planned', collection = NULL, volume = NULL,"
            " offset = NULL, length = NULL, sha256 = NULL, size = NULL, codec = NULL,"
            " bitrate = NULL WHERE status = 'packed' OR status LIKE 'error_%'"
        )


def test_cover_index_is_keyed_by_sha256_and_names_albums(archive: Path) -> None:
    build(archive, "--workers", "0")
    bag = archive / "torrents" / "demo_covers_0001"
    lines = [json.loads(x) for x in (bag / "data" / "index.jsonl").read_text().splitlines()]
    assert lines == sorted(lines, key=lambda x: x["id"])
    db = catalog(archive)
    for line in lines:
        assert line["id"] == line["sha256"]
        assert line["mime"] in ("image/jpeg", "image/png")
        albums = {
            r[0]
            for r in db.execute(
                "SELECT a.public_id FROM images i JOIN albums a ON a.id = i.album_id"
                " WHERE i.blob_sha256 = ?",
                (line["sha256"],),
            )
        }
        assert set(line["albums"]) == albums
        with open(bag / "data" / line["volume"], "rb") as f:
            f.seek(line["offset"])
            assert hashlib.sha256(f.read(line["length"])).hexdigest() == line["sha256"]


@pytest.mark.skipif(not shutil.which("mktorrent"), reason="needs mktorrent")
def test_v1_infohash_equals_mktorrent(archive: Path, tmp_path: Path) -> None:
    build(archive, "--workers", "0")
    name = "demo_pop-050-100_0001"
    ours = bencode.decode((archive / "torrents" / f"{name}.torrent").read_bytes())
    info = ours[b"info"]  # type: ignore[index]
    log2 = int(info[b"piece length"]).bit_length() - 1  # type: ignore[index]
    out = tmp_path / "mk.torrent"
    subprocess.run(
        ["mktorrent", "-l", str(log2), "-o", str(out), str(archive / "torrents" / name)],
        check=True,
        capture_output=True,
    )
    theirs = bencode.decode(out.read_bytes())
    assert (
        hashlib.sha1(bencode.encode(theirs[b"info"])).digest()
        == hashlib.sha1(  # type: ignore[index]
            bencode.encode(info)
        ).digest()
    )
    assert b"private" not in info  # type: ignore[operator]


def test_hybrid_torrents_load_in_libtorrent(archive: Path) -> None:
    lt = pytest.importorskip("libtorrent")
    build(archive, "--workers", "0", "--torrent-format", "hybrid")
    db = catalog(archive)
    for name, v1, v2 in db.execute(
        "SELECT name, infohash_v1, infohash_v2 FROM collections WHERE status = 'published'"
    ):
        ti = lt.torrent_info(str(archive / "torrents" / f"{name}.torrent"))
        assert str(ti.info_hashes().v1) == v1
        assert str(ti.info_hashes().v2) == v2


def test_a_later_build_adds_collections_and_never_rewrites_published_ones(
    archive: Path,
) -> None:
    first = build(archive, "--workers", "0")
    before = tree_bytes(archive / "torrents")
    # A bigger budget plans more tracks: the next build packs them into new collections.
    phonotheca("plan", "--budget", "2MB", "--opus-kbps", "32", "--archive", str(archive))
    second = build(archive, "--workers", "0")
    assert second["tracks"] > 0
    assert not set(second["collections"]) & set(first["collections"])  # type: ignore[arg-type]
    after = tree_bytes(archive / "torrents")
    assert {k: v for k, v in after.items() if k in before} == before
    assert build(archive, "--workers", "0")["collections"] == []


def test_changed_and_missing_sources_are_set_aside(archive: Path) -> None:
    db = catalog(archive)
    originals = db.execute(
        "SELECT l.track_id, s.path FROM ledger l JOIN source_files s ON s.id = l.source_file_id"
        " WHERE l.status = 'planned' AND l.tier = 'original' ORDER BY l.track_id LIMIT 2"
    ).fetchall()
    opus = db.execute(
        "SELECT l.track_id, s.path FROM ledger l JOIN source_files s ON s.id = l.source_file_id"
        " WHERE l.status = 'planned' AND l.tier = 'opus' ORDER BY l.track_id LIMIT 1"
    ).fetchall()
    (gone_id, gone), (changed_id, changed) = originals
    (gone_opus_id, gone_opus) = opus[0]
    moved = {}
    for path in (gone, gone_opus):
        moved[path] = Path(path).read_bytes()
        os.unlink(path)
    original = Path(changed).read_bytes()
    try:
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0xFF
        Path(changed).write_bytes(bytes(flipped))
        os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
        result = build(archive, "--workers", "2")
    finally:
        for path, data in moved.items():
            Path(path).write_bytes(data)
        Path(changed).write_bytes(original)
    assert result["errors"] == {"error_source_missing": 2, "error_source_changed": 1}
    problems = "\n".join(result["problems"])  # type: ignore[arg-type]
    assert gone in problems and changed in problems and gone_opus in problems
    status = dict(
        db.execute(
            "SELECT track_id, status FROM ledger WHERE track_id IN (?, ?, ?)",
            (gone_id, changed_id, gone_opus_id),
        ).fetchall()
    )
    assert status == {
        gone_id: "error_source_missing",
        changed_id: "error_source_changed",
        gone_opus_id: "error_source_missing",
    }
    assert db.execute("SELECT count(*) FROM ledger WHERE status = 'planned'").fetchone()[0] == 0
    assert json.loads(phonotheca("validate", str(archive / "torrents"), "--json").stdout)["ok"]


def test_killed_builds_resume_to_the_same_bytes(
    archive: Path, planned_archive: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(planned_archive, reference)
    build(reference, "--workers", "2")
    expected = tree_bytes(reference / "torrents")
    # Kill -9 at growing delays until a run gets to the end on its own.
    delay = 0.2
    for _ in range(40):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phonotheca.cli",
                "build",
                "--archive",
                str(archive),
                "--workers",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=delay)
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        delay *= 1.4
    build(archive, "--workers", "2")  # whatever is left
    assert tree_bytes(archive / "torrents") == expected
    db = catalog(archive)
    assert db.execute("SELECT count(*) FROM ledger WHERE status = 'planned'").fetchone()[0] == 0
    assert not list((archive / "torrents").glob("*.partial"))


def test_a_build_that_runs_out_of_disk_stops_clearly_and_resumes_to_the_same_bytes(
    planned_archive: Path, tmp_path: Path, small_disk: Callable[[int], SmallDisk]
) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(planned_archive, reference)
    build(reference, "--workers", "2")
    expected = tree_bytes(reference / "torrents")
    needed = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    before = sum(p.stat().st_size for p in planned_archive.rglob("*") if p.is_file())
    # Room for the archive and about half of what the build writes.
    disk = small_disk(before + (needed - before) // 2)
    archive = disk.path / "arc"
    shutil.copytree(planned_archive, archive)
    failed = phonotheca("build", "--archive", str(archive), "--workers", "2", check=False)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert "out of disk space" in failed.stderr and "run the same command again" in failed.stderr
    disk.resize(needed * 4)  # the operator frees space
    build(archive, "--workers", "2")
    assert tree_bytes(archive / "torrents") == expected
    db = catalog(archive)
    assert db.execute("SELECT count(*) FROM ledger WHERE status = 'planned'").fetchone()[0] == 0
    errors = "SELECT count(*) FROM ledger WHERE status LIKE 'error%'"
    assert db.execute(errors).fetchone() == catalog(reference).execute(errors).fetchone()
    assert not list((archive / "torrents").glob("*.partial"))


def test_validate_reports_damage_with_its_location(archive: Path) -> None:
    build(archive, "--workers", "0")
    bag = archive / "torrents" / "demo_pop-050-100_0001"
    assert phonotheca("validate", str(bag)).returncode == 0
    volume = sorted((bag / "data").glob("*.tar"))[0]
    data = bytearray(volume.read_bytes())
    data[1000] ^= 0x01
    volume.write_bytes(bytes(data))
    flipped = phonotheca("validate", str(bag), check=False)
    assert flipped.returncode == 1
    assert f"data/{volume.name}" in flipped.stdout and "piece 0 does not match" in flipped.stdout
    data[1000] ^= 0x01
    volume.write_bytes(bytes(data))

    index = bag / "data" / "index.jsonl"
    good = index.read_bytes()
    lines = good.decode().splitlines()
    entry = json.loads(lines[1])
    entry["offset"] += 512
    lines[1] = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    index.write_text("\n".join(lines) + "\n")
    wrong = phonotheca("validate", str(bag), check=False)
    assert wrong.returncode == 1 and "data/index.jsonl:2" in wrong.stdout
    index.write_bytes(good)

    volume.rename(volume.with_suffix(".gone"))
    missing = phonotheca("validate", str(bag), "--json", check=False)
    assert missing.returncode == 1
    problems = json.loads(missing.stdout)["collections"][str(bag)]
    assert any(p.startswith(f"data/{volume.name}") for p in problems)


def test_dask_cluster_builds_the_same_bytes(
    archive: Path, planned_archive: Path, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    reference = tmp_path / "reference"
    shutil.copytree(planned_archive, reference)
    build(reference, "--workers", "1")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    ) as cluster:
        build(archive, "--scheduler", cluster.scheduler_address)
    assert tree_bytes(archive / "torrents") == tree_bytes(reference / "torrents")


def test_build_without_a_plan_says_what_to_do(tmp_path: Path) -> None:
    arc = tmp_path / "empty"
    phonotheca("init", str(arc))
    out = phonotheca("build", "--archive", str(arc), check=False)
    assert out.returncode == 1 and "phonotheca plan --budget" in out.stderr


def test_tar_members_have_fixed_headers(archive: Path) -> None:
    build(archive, "--workers", "0")
    for volume in (archive / "torrents").glob("*/data/*.tar"):
        with tarfile.open(volume) as tar:
            for m in tar.getmembers():
                assert (m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, "", "", 0o644)
                assert m.mtime == 1767225600  # 2026-01-01T00:00:00Z from the settings
