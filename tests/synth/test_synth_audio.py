"""``phonotheca synth audio``: deterministic, varied, real music, and scannable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from phonotheca.audio.probe import probe_file
from phonotheca.cli import main
from phonotheca.synth.audio import write_audio
from phonotheca.synth.catalog import write_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cat") / "synth.jsonl.zst"
    write_catalog(path, 400, 3)
    return path


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_music(catalog: Path, tmp_path: Path) -> None:
    a = write_audio(catalog, tmp_path / "a", 22, 5, min_seconds=1, max_seconds=1.5)
    write_audio(catalog, tmp_path / "b", 22, 5, min_seconds=1, max_seconds=1.5)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert set(a.formats) == {"vorbis", "flac", "mp3", "opus", "m4a"}
    assert set(a.tagging) == {"full", "artist_title", "none"}
    assert a.broken == 1 and a.files == 22
    write_audio(catalog, tmp_path / "c", 22, 6, min_seconds=1, max_seconds=1.5)
    assert set(digests(tmp_path / "c").values()) & set(digests(tmp_path / "a").values()) <= {
        hashlib.sha256(b"").hexdigest()
    }


def test_most_popular_first_then_a_sample_of_the_tail(catalog: Path, tmp_path: Path) -> None:
    write_audio(catalog, tmp_path / "a", 10, 1, min_seconds=1, max_seconds=1)
    manifest = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    from phonotheca.synth.catalog import iter_track_records

    records = {r["id"]: r for r in iter_track_records(400, 3)}
    pops = [records[m["track_id"]].get("popularity") or 0 for m in manifest]
    best = sorted((r.get("popularity") or 0 for r in records.values()), reverse=True)
    assert pops[:8] == best[:8]  # 80 % from the top, 20 % from the rest
    assert all(p <= best[7] for p in pops[8:])


def test_the_music_is_notes_not_silence_or_a_sine(catalog: Path, tmp_path: Path) -> None:
    write_audio(catalog, tmp_path / "a", 3, 1, min_seconds=3, max_seconds=3)
    entries = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    spectra = []
    for e in entries:
        with av.open(str(tmp_path / "a" / e["path"])) as f:
            pcm = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(audio=0)])
        assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 0.03
        spectrum = np.abs(np.fft.rfft(pcm[: 1 << 16]))
        peaks = np.sort(spectrum)[-40:]
        assert peaks[0] > spectrum.mean() * 5  # many strong partials, not one sine
        spectra.append(np.argmax(spectrum))
    assert len(set(spectra)) > 1  # different music per track


def test_cli_writes_files_that_import_files_reads(catalog: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "audio"
    args = ["synth", "audio", str(out), "--catalog", str(catalog), "--tracks", "12"]
    result = runner.invoke(main, [*args, "--min-seconds", "1", "--max-seconds", "1.2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"] == 12
    arc = str(tmp_path / "arc")
    assert runner.invoke(main, ["import", "jsonl", str(catalog), "--archive", arc]).exit_code == 0
    result = runner.invoke(main, ["import", "files", str(out), "--archive", arc, "--json"])
    summary = json.loads(result.output)
    assert summary["files"] == 12 and summary["errors"] == 1
    assert summary["matched"]["mbid"] + summary["matched"]["isrc"] >= 4


def test_catalog_jsonl_gives_the_tracks_the_lengths_of_their_files(
    catalog: Path, tmp_path: Path
) -> None:
    """The pieces last seconds where the catalog says minutes: ``catalog.jsonl`` is the
    chosen tracks' records with their files' lengths, the rest of each record unchanged."""
    out = tmp_path / "audio"
    write_audio(catalog, out, 26, 2, min_seconds=1, max_seconds=3)
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    records = [json.loads(x) for x in (out / "catalog.jsonl").read_text().splitlines()]
    from phonotheca.synth.catalog import iter_track_records

    original = {r["id"]: r for r in iter_track_records(400, 3)}
    with_audio = [m for m in manifest if m["broken"] not in ("empty", "garbage")]
    assert [r["id"] for r in records] == [m["track_id"] for m in with_audio]
    for rec, entry in zip(records, with_audio, strict=True):
        assert rec == original[rec["id"]] | {"duration_ms": round(entry["seconds"] * 1000)}
        assert abs(original[rec["id"]]["duration_ms"] - rec["duration_ms"]) > 50_000
        if entry["broken"] is None:
            with (out / entry["path"]).open("rb") as f:
                measured = probe_file(f, entry["path"]).stream.duration_ms
            assert abs(measured - rec["duration_ms"]) < 100, entry


def test_with_catalog_jsonl_files_tagged_by_name_find_their_tracks(
    catalog: Path, tmp_path: Path
) -> None:
    """Names match within 3 s: against the catalog's minutes no file tagged with an artist
    and a title only finds its track; against its file's length each one does."""
    runner = CliRunner()
    out = tmp_path / "audio"
    write_audio(catalog, out, 26, 2, min_seconds=1, max_seconds=3)
    named = sum(
        json.loads(x)["tagging"] == "artist_title" and json.loads(x)["broken"] is None
        for x in (out / "manifest.jsonl").read_text().splitlines()
    )
    assert named > 0
    for extra, expected in (([], 0), ([str(out / "catalog.jsonl")], named)):
        arc = str(tmp_path / f"arc{len(extra)}")
        imported = runner.invoke(main, ["import", "jsonl", str(catalog), *extra, "--archive", arc])
        assert imported.exit_code == 0, imported.output
        result = runner.invoke(
            main, ["import", "files", str(out), "--archive", arc, "--json", "--no-fingerprints"]
        )
        assert json.loads(result.output)["matched"]["name"] == expected
