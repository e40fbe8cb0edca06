"""``phonotheca import files`` as a user runs it: JSON summary, text summary, rescans."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from phonotheca.audio.probe import Tags
from phonotheca.cli import main
from tests.audio.makers import FULL, make_audio


def test_import_files_json_and_text(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_audio(lib / "a", "flac", tags=FULL)
    make_audio(lib / "b", "mp3", tags=Tags(title="B", artists=("X",)))
    (lib / "c.ogg").write_bytes(b"")
    arc = str(tmp_path / "arc")
    runner = CliRunner()
    result = runner.invoke(main, ["import", "files", str(lib), "--archive", arc, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {k: summary[k] for k in ("files", "scanned", "skipped_unchanged", "created")} == {
        "files": 3,
        "scanned": 3,
        "skipped_unchanged": 0,
        "created": 2,
    }
    assert summary["errors"] == 1 and Path(summary["rejects_file"]).exists()
    assert set(summary["matched"]) == {"mbid", "isrc", "name", "fingerprint", "sha256"}
    again = runner.invoke(main, ["import", "files", str(lib), "--archive", arc])
    assert again.exit_code == 0, again.output
    assert "3 audio files: 0 read, 3 unchanged" in again.output
    hits = json.loads(runner.invoke(main, ["search", "light", "--archive", arc, "--json"]).output)
    assert hits[0]["title"] == FULL.title


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["import", "files", str(tmp_path / "nope"), "--archive", str(tmp_path / "a")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
