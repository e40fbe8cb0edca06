"""Compressed inputs cut short or damaged (issue #16, point 4): the shared reader and every
importer that reads compressed files (import jsonl, musicbrainz, listens), through the
library and the real CLI.

Every format an importer reads (.zst, .gz, .bz2, .xz) is checked three ways: whole (and
as several concatenated streams), truncated, and with damaged bytes. A break is an error
naming the file and the offset in the compressed file; what came before stays loaded, and
once the file is whole a re-run ends with the catalog of an uninterrupted import.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
import sqlite3
import subprocess
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from click.testing import CliRunner, Result

from phonotheca.archive import Archive, init_archive
from phonotheca.catalog.importer import import_lines
from phonotheca.cli import main
from phonotheca.sources.compressed import DamagedInput, SourceError, open_input
from phonotheca.sources.musicbrainz_import import import_musicbrainz
from tests.catalog import import_files
from tests.conftest import track
from tests.sources.test_musicbrainz import fixture

Compress = Callable[[bytes], bytes]


def _zstd(data: bytes) -> bytes:
    # As the zstd command writes it: with a checksum of the content.
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def _bzip2(data: bytes) -> bytes:
    # 100 kB blocks (bzip2 -1): a bzip2 decoder gives nothing of a block before its end.
    return bz2.compress(data, compresslevel=1)


FORMATS: dict[str, Compress] = {
    "zst": _zstd,
    "gz": gzip.compress,
    "bz2": _bzip2,
    "xz": lzma.compress,
}
TOOLS = {"zst": "zstd", "gz": "gzip", "bz2": "bzip2", "xz": "xz"}
"""The command-line tool of each format, to confirm what the tests call broken is broken."""


def tool_rejects(path: Path, ext: str) -> bool:
    """True when the format's own tool (``zstd -t``, ...) finds ``path`` broken."""
    result = subprocess.run([TOOLS[ext], "-t", str(path)], capture_output=True)
    return result.returncode != 0


def read_all(path: Path) -> bytes:
    with open_input(path) as stream:
        out = bytearray()
        while block := stream.read(1 << 16):
            out += block
        return bytes(out)


def read_until_error(path: Path) -> tuple[bytes, DamagedInput]:
    out = bytearray()
    with open_input(path) as stream:
        try:
            while block := stream.read(1 << 16):
                out += block
        except DamagedInput as exc:
            return bytes(out), exc
    raise AssertionError(f"{path} read without an error")


def damage(data: bytes) -> tuple[bytes, int]:
    """``data`` with 64 bytes in the middle scrambled, and where the damage starts."""
    at = len(data) // 2
    bad = bytearray(data)
    for i in range(at, at + 64):
        bad[i] ^= 0x5A
    return bytes(bad), at


def lines_of(n: int, start: int = 0) -> bytes:
    return b"".join(json.dumps(track(i)).encode() + b"\n" for i in range(start, start + n))


# -- the reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_reads_whole_and_as_concatenated_streams(tmp_path: Path, ext: str) -> None:
    data = lines_of(2000)
    path = tmp_path / f"a.jsonl.{ext}"
    compress = FORMATS[ext]
    path.write_bytes(compress(data))
    assert read_all(path) == data
    # pzstd, pigz -p, pbzip2 and cat write several streams one after the other.
    path.write_bytes(compress(data[:7000]) + compress(data[7000:]))
    assert read_all(path) == data
    with open_input(path) as stream:
        stream.read()
        assert stream.streams == 2 and stream.position == path.stat().st_size


@pytest.mark.parametrize("ext", FORMATS)
def test_a_truncated_file_gives_its_data_then_an_error_at_its_end(tmp_path: Path, ext: str) -> None:
    data = lines_of(2000)
    whole = FORMATS[ext](data)
    path = tmp_path / f"a.jsonl.{ext}"
    for cut in (len(whole) // 2, 1000, 5):
        path.write_bytes(whole[:cut])
        assert tool_rejects(path, ext)
        got, exc = read_until_error(path)
        assert data.startswith(got)  # everything decoded before the break, nothing else
        assert exc.truncated and exc.offset == cut and exc.path == path
        assert str(path) in str(exc) and f"byte {cut:,}" in str(exc)
        assert "the rest was not read" in str(exc)
    path.write_bytes(b"")
    exc = read_until_error(path)[1]
    assert exc.truncated and exc.offset == 0 and "empty" in str(exc)


@pytest.mark.parametrize("ext", FORMATS)
def test_damaged_data_is_an_error_at_or_after_the_damage(tmp_path: Path, ext: str) -> None:
    data = lines_of(2000)
    bad, at = damage(FORMATS[ext](data))
    path = tmp_path / f"a.jsonl.{ext}"
    path.write_bytes(bad)
    assert tool_rejects(path, ext)
    _, exc = read_until_error(path)
    assert not exc.truncated
    # A decoder notices some damage only at a checksum: at or after it, never before.
    assert at <= exc.offset <= len(bad)
    assert f"damaged {exc.codec} data" in str(exc) and f"byte {exc.offset:,}" in str(exc)
    assert str(path) in str(exc) and "the rest of the file was not read" in str(exc)


@pytest.mark.parametrize("ext", FORMATS)
def test_trailing_garbage_is_damage_and_zero_padding_is_not(tmp_path: Path, ext: str) -> None:
    data = lines_of(100)
    whole = FORMATS[ext](data)
    path = tmp_path / f"a.jsonl.{ext}"
    path.write_bytes(whole + b"not compressed at all")
    got, exc = read_until_error(path)
    assert got == data and exc.offset == len(whole) and not exc.truncated
    assert "after the end of stream 1" in str(exc)
    path.write_bytes(whole + b"\0" * 12)
    if ext in ("gz", "xz"):  # their tools accept zero padding (xz's format defines it)
        assert read_all(path) == data
    else:
        assert read_until_error(path)[0] == data


def test_a_file_of_another_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(gzip.compress(lines_of(10)))
    exc = read_until_error(path)[1]
    assert exc.offset == 0 and "not zstd data: it starts like gzip data" in str(exc)
    plain = tmp_path / "b.jsonl"
    plain.write_bytes(_zstd(lines_of(10)))
    with pytest.raises(
        SourceError, match=r"b\.jsonl: the file holds zstd-compressed data.*b\.jsonl\.zst"
    ):
        open_input(plain)


def test_memory_stays_bounded_on_a_highly_compressed_file(tmp_path: Path) -> None:
    path = tmp_path / "zeros.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(b"\0" * (256 << 20)))
    tracemalloc.start()
    try:
        total = 0
        with open_input(path) as stream:
            while block := stream.read(1 << 20):
                assert len(block) <= 1 << 20
                total += len(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 256 << 20
    assert peak < 48 << 20, peak  # zstd: 1 KiB fed at a time, ~32 MiB at worst


# -- import jsonl ---------------------------------------------------------------------------------


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def catalog_tables(archive: Archive) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the catalog's content, for comparing two catalogs: not the import
    bookkeeping (``imports``, ``source_chunks``, ``meta``) nor where each track's source
    line is kept (``record_ref``)."""
    conn = sqlite3.connect(archive.catalog_path)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name NOT LIKE 'track_search%' AND name NOT LIKE 'playlist_search%'"
            )
            if name not in ("imports", "source_chunks", "meta")
            and not name.startswith("library_changes")  # the library file's journal
        ]
        out = {}
        for table in tables:
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
            kept = ", ".join(c for c in columns if c != "record_ref")
            out[table] = conn.execute(f"SELECT {kept} FROM {table} ORDER BY 1, 2").fetchall()
        return out
    finally:
        conn.close()


def exported(archive: Archive, tmp_path: Path) -> bytes:
    out = tmp_path / f"{archive.root.name}-export.jsonl"
    assert cli("export", "jsonl", out, "--archive", archive.root).exit_code == 0
    return out.read_bytes()


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    import phonotheca.catalog.importer as importer

    monkeypatch.setattr(importer, "LINES_PER_BATCH", 250)


@pytest.mark.parametrize("ext", FORMATS)
def test_import_jsonl_reads_every_compression(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"t.jsonl.{ext}"
    path.write_bytes(FORMATS[ext](lines_of(300)))
    result = cli("import", "jsonl", path, "--archive", tmp_path / "arc", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["read"], summary["loaded"], summary["complete"]) == (300, 300, True)


@pytest.mark.parametrize("ext", FORMATS)
def test_a_truncated_file_keeps_what_it_loaded_and_the_whole_file_completes_the_catalog(
    tmp_path: Path, ext: str, small_batches: None
) -> None:
    data = lines_of(3000)
    whole = FORMATS[ext](data)
    path = tmp_path / f"t.jsonl.{ext}"
    cut = len(whole) // 2
    path.write_bytes(whole[:cut])
    arc = init_archive(tmp_path / "arc", "arc")

    result = cli("import", "jsonl", path, "--archive", arc.root, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["complete"] is False and 0 < summary["read"] < 3000
    assert summary["read"] == summary["loaded"]  # the summary counts what was read, no more
    message = result.stderr
    assert f"{path}: truncated" in message and f"at byte {cut:,}" in message
    assert "the rest was not read" in message and "run the command again" in message
    loaded = sorted(
        int(pid.rsplit(":", 1)[1])
        for (pid,) in sqlite3.connect(arc.catalog_path).execute("SELECT public_id FROM tracks")
    )
    assert loaded == list(range(summary["read"]))  # the lines before the break, all of them

    # The same truncated file again: it resumes, and breaks at the same byte.
    again = cli("import", "jsonl", path, "--archive", arc.root, "--json")
    assert again.exit_code == 1 and f"at byte {cut:,}" in again.stderr
    assert json.loads(again.stdout)["resumed_at_line"] == summary["read"]

    # Downloaded again, whole: the catalog of an uninterrupted import.
    path.write_bytes(whole)
    done = cli("import", "jsonl", path, "--archive", arc.root)
    assert done.exit_code == 0, done.output
    fresh = init_archive(tmp_path / "fresh", "fresh")
    assert cli("import", "jsonl", path, "--archive", fresh.root).exit_code == 0
    assert exported(arc, tmp_path) == exported(fresh, tmp_path)
    assert catalog_tables(arc) == catalog_tables(fresh)


@pytest.mark.parametrize("ext", FORMATS)
def test_damaged_input_stops_with_an_error_naming_file_and_offset(tmp_path: Path, ext: str) -> None:
    bad, _ = damage(FORMATS[ext](lines_of(3000)))
    path = tmp_path / f"t.jsonl.{ext}"
    path.write_bytes(bad)
    result = cli("import", "jsonl", path, "--archive", tmp_path / "arc")
    assert result.exit_code == 1
    assert (
        f"{path}: damaged" in result.stderr and "the rest of the file was not read" in result.stderr
    )
    assert "before the file broke off" in result.stdout


def test_the_first_kilobyte_of_a_file_is_not_an_empty_import(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(_zstd(lines_of(3000))[:1000])
    result = cli("import", "jsonl", path, "--archive", tmp_path / "arc")
    assert result.exit_code == 1
    assert "truncated zstd file: it ends at byte 1,000" in result.stderr


def test_other_names_are_refused_before_anything_is_imported(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(lines_of(10))
    for name in ("t.json", "t.csv", "t.jsonl.lz4", "t.tar.gz"):
        other = tmp_path / name
        other.write_bytes(lines_of(10))
        result = cli("import", "jsonl", good, other, "--archive", tmp_path / "arc")
        assert result.exit_code == 1
        assert f"{other}: not a file name import jsonl reads" in result.stderr
        assert ".jsonl.zst, .jsonl.gz, .jsonl.bz2, .jsonl.xz" in result.stderr
    assert not (tmp_path / "arc").exists()  # nothing was imported, not even the good file


def test_a_jsonl_file_holding_compressed_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(gzip.compress(lines_of(10)))
    result = cli("import", "jsonl", path, "--archive", tmp_path / "arc")
    assert result.exit_code == 1 and "name it t.jsonl.gz" in result.stderr


def test_strict_keeps_nothing_of_a_truncated_file(tmp_path: Path, small_batches: None) -> None:
    whole = _zstd(lines_of(3000))
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(whole[: len(whole) // 2])
    arc = init_archive(tmp_path / "arc", "arc")
    result = cli("import", "jsonl", "--strict", path, "--archive", arc.root)
    assert result.exit_code == 1 and "--strict: nothing of this import was kept" in result.stderr
    assert sqlite3.connect(arc.catalog_path).execute("SELECT count(*) FROM tracks").fetchone() == (
        0,
    )


def test_the_files_after_a_broken_one_are_named_as_not_imported(tmp_path: Path) -> None:
    first = tmp_path / "a.jsonl.gz"
    first.write_bytes(gzip.compress(lines_of(100)))
    broken = tmp_path / "b.jsonl.gz"
    broken.write_bytes(gzip.compress(lines_of(100, 100))[:-9])
    last = tmp_path / "c.jsonl.gz"
    last.write_bytes(gzip.compress(lines_of(100, 200)))
    result = cli("import", "jsonl", first, broken, last, "--archive", tmp_path / "arc", "--json")
    assert result.exit_code == 1
    summaries = json.loads(result.stdout)
    assert [(s["path"], s["complete"]) for s in summaries] == [
        (str(first), True),
        (str(broken), False),
    ]
    assert f"The files after it were not imported: {last}" in result.stderr


def test_worker_processes_load_every_batch_read_before_the_break(
    archive: Archive, tmp_path: Path, small_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phonotheca.catalog.importer as importer

    monkeypatch.setattr(importer, "POOL_THRESHOLD", 0)  # worker processes for a small file
    whole = lzma.compress(lines_of(3000))
    path = tmp_path / "t.jsonl.xz"
    path.write_bytes(whole[: len(whole) * 3 // 4])
    with pytest.raises(DamagedInput) as info:
        import_files(archive, import_lines, (path,), workers=2)
    summary = info.value.summary
    assert summary is not None and summary.complete is False and summary.read > 1000
    conn = sqlite3.connect(archive.catalog_path)
    assert conn.execute("SELECT count(*) FROM tracks").fetchone() == (summary.read,)
    assert conn.execute("SELECT lines_done FROM imports").fetchone() == (summary.read,)


# -- import musicbrainz -------------------------------------------------------------------------


def releases(count: int) -> bytes:
    """``count`` distinct releases (the real multi-disc document with new ids), one a line.

    Each has an annotation of random text, as real documents differ: copies of one
    document compress so well that a cut anywhere falls in the first compressed block.
    """
    out = []
    rng = random.Random(count)
    for i in range(count):
        doc = fixture("release_multidisc.json")
        doc["annotation"] = rng.randbytes(3000).hex()
        doc["id"] = f"00000000-0000-4000-8000-{i:012d}"
        for m, medium in enumerate(doc["media"]):
            for t, tr in enumerate(medium["tracks"]):
                tr["id"] = f"00000000-0000-4000-9{m}{t}0-{i:012d}"
        out.append(json.dumps(doc).encode() + b"\n")
    return b"".join(out)


def dump_archive(path: Path, member: str, data: bytes, ext: str) -> Path:
    """A MusicBrainz dump archive (``release.tar.xz``...) holding ``member``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in (("COPYING", b"CC0"), ("TIMESTAMP", b"2024"), (member, data)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path.write_bytes(FORMATS[ext](buf.getvalue()))
    return path


@pytest.mark.parametrize("ext", FORMATS)
def test_a_truncated_dump_archive_is_an_error_and_the_whole_one_completes_it(
    tmp_path: Path, ext: str, small_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import phonotheca.catalog.importer as importer

    monkeypatch.setattr(importer, "LINES_PER_BATCH", 5)
    path = dump_archive(tmp_path / f"release.tar.{ext}", "mbdump/release", releases(60), ext)
    whole = path.read_bytes()
    cut = len(whole) * 2 // 3
    path.write_bytes(whole[:cut])
    arc = init_archive(tmp_path / "arc", "arc")
    result = cli("import", "musicbrainz", path, "--archive", arc.root, "--json")
    assert result.exit_code == 1
    assert f"{path}: truncated" in result.stderr and f"at byte {cut:,}" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] is False and 0 < summary["loaded"] < 60
    conn = sqlite3.connect(arc.catalog_path)
    assert conn.execute("SELECT count(*) FROM albums").fetchone() == (summary["loaded"],)
    conn.close()
    path.write_bytes(whole)
    assert cli("import", "musicbrainz", path, "--archive", arc.root).exit_code == 0
    fresh = init_archive(tmp_path / "fresh", "fresh")
    assert cli("import", "musicbrainz", path, "--archive", fresh.root).exit_code == 0
    assert exported(arc, tmp_path) == exported(fresh, tmp_path)
    assert catalog_tables(arc) == catalog_tables(fresh)


@pytest.mark.parametrize("ext", FORMATS)
def test_damaged_musicbrainz_files_name_file_and_offset(tmp_path: Path, ext: str) -> None:
    lines = tmp_path / f"releases.jsonl.{ext}"
    lines.write_bytes(damage(FORMATS[ext](releases(40)))[0])
    dump = dump_archive(tmp_path / f"release.tar.{ext}", "mbdump/release", releases(40), ext)
    dump.write_bytes(damage(dump.read_bytes())[0])
    for path in (lines, dump):
        result = cli("import", "musicbrainz", path, "--archive", tmp_path / "arc")
        assert result.exit_code == 1, result.output
        assert f"{path}: damaged" in result.stderr and "at byte" in result.stderr


def test_a_dump_whose_tar_ends_early_is_truncated(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = releases(3)
        info = tarfile.TarInfo("mbdump/release")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "release.tar.xz"
    path.write_bytes(lzma.compress(buf.getvalue()[:3000]))  # a whole xz stream of a cut tar
    result = cli("import", "musicbrainz", path, "--archive", tmp_path / "arc")
    assert result.exit_code == 1
    assert "the tar archive ends inside mbdump/release" in result.stderr


def test_a_truncated_recording_file_keeps_what_it_applied(archive: Archive, tmp_path: Path) -> None:
    doc = fixture("recording.json")
    docs = []
    for i in range(400):
        doc["id"] = f"00000000-0000-4000-8000-{i:012d}"
        docs.append(json.dumps(doc).encode() + b"\n")
    whole = bz2.compress(b"".join(docs))
    path = tmp_path / "recording.jsonl.bz2"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedInput) as info:
        import_files(archive, import_musicbrainz, (path,))
    summary = info.value.summary
    assert summary.documents == "recording" and summary.complete is False
    assert 0 < summary.standalone == summary.loaded < 400
    count = sqlite3.connect(archive.catalog_path).execute("SELECT count(*) FROM tracks")
    assert count.fetchone() == (summary.standalone,)


# -- import listens -------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", FORMATS)
def test_a_truncated_listens_file_applies_the_rows_before_the_break(
    tmp_path: Path, ext: str
) -> None:
    arc = tmp_path / "arc"
    catalog = tmp_path / "c.jsonl"
    catalog.write_bytes(lines_of(3000))
    assert cli("import", "jsonl", catalog, "--archive", arc).exit_code == 0
    rng = random.Random(1)  # a column of noise: several compressed blocks, as real files have
    rows = "".join(f"USABC01{i:05d},{i},{rng.randbytes(32).hex()}\n" for i in range(3000))
    whole = FORMATS[ext](("isrc,listen_count,note\n" + rows).encode())
    path = tmp_path / f"listens.csv.{ext}"
    path.write_bytes(whole[: len(whole) * 3 // 4])  # past the first zstd block (128 KiB)
    result = cli("import", "listens", path, "--archive", arc, "--json")
    assert result.exit_code == 1
    assert f"{path}: truncated" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] is False and 0 < summary["read"] < 3000
    assert summary["matched_isrc"] == summary["read"]
    path.write_bytes(whole)
    done = cli("import", "listens", path, "--archive", arc, "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["matched_isrc"] == 3000


def test_a_damaged_parquet_file_names_the_row_group(archive: Archive, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from phonotheca.sources.listens import import_listens

    path = tmp_path / "listens.parquet"
    table = pa.table(
        {"isrc": [f"USABC01{i:05d}" for i in range(4000)], "listen_count": list(range(4000))}
    )
    pq.write_table(table, path, row_group_size=1000, compression="zstd")
    meta = pq.ParquetFile(path).metadata
    third = meta.row_group(2).column(0)
    data = bytearray(path.read_bytes())
    start = third.data_page_offset
    data[start + 20 : start + 60] = b"\xff" * 40
    path.write_bytes(bytes(data))
    conn = archive.connect()
    try:
        with pytest.raises(DamagedInput, match="row group 2") as info:
            import_listens(conn, path, archive.rejects_dir)
    finally:
        conn.close()
    assert info.value.summary.read == 2000 and info.value.offset == third.file_offset


def test_padding_between_streams_may_span_reads(tmp_path: Path) -> None:
    from phonotheca.sources import compressed

    data = lines_of(50)
    first = lzma.compress(data)
    # Reads are FEED bytes from the file's start: zero padding up to 2 bytes before a
    # read's end puts the next stream's magic number across two reads.
    boundary = (len(first) // compressed.FEED + 2) * compressed.FEED
    path = tmp_path / "a.jsonl.xz"
    path.write_bytes(first + b"\0" * (boundary - 2 - len(first)) + lzma.compress(data))
    assert read_all(path) == data + data
