"""The command line as a user meets it: help texts, documentation, JSON output, errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from phonotheca.cli import main
from tests.conftest import REPO, track


def all_commands(group: click.Group = main, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        out.append((full, cmd))
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, full + " ")
    return out


@pytest.mark.parametrize("name,cmd", all_commands(), ids=[n for n, _ in all_commands()])
def test_every_command_has_help(name: str, cmd: click.Command) -> None:
    assert cmd.help and len(cmd.help.strip()) > 20, f"'{name}' needs a help text"
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help or param.name in ("archive_dir",), f"{name} {param.opts} needs help"


@pytest.mark.parametrize("name", [n for n, c in all_commands() if not isinstance(c, click.Group)])
def test_every_command_is_in_the_readme(name: str) -> None:
    assert f"phonotheca {name}" in (REPO / "README.md").read_text()


def test_init_import_search_shuffle_stats_export(tmp_path: Path) -> None:
    runner = CliRunner()
    arc = str(tmp_path / "arc")
    assert runner.invoke(main, ["init", arc]).exit_code == 0
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(track(i)) for i in range(30)) + "\nnot json\n")
    result = runner.invoke(main, ["import", "jsonl", str(src), "--archive", arc, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {k: summary[k] for k in ("read", "loaded", "rejected", "invalid_isrc")} == {
        "read": 31,
        "loaded": 30,
        "rejected": 1,
        "invalid_isrc": 0,
    }
    assert Path(summary["rejects_file"]).exists()

    hits = json.loads(
        runner.invoke(main, ["search", "song", "2 ", "--archive", arc, "--json"]).output
    )
    # "Song 2", tracks on "Album 2" and by "Artist 2": most popular first
    pops = [h["popularity"] for h in hits]
    assert pops == sorted(pops, reverse=True) and len(hits) > 10
    hits = [h for h in hits if h["id"] == "test:track:2"]
    for key in ("id", "title", "artists", "album", "isrc", "duration_ms", "popularity"):
        assert key in hits[0]
    assert hits[0]["artists"] == ["Artist 2"]

    picks = json.loads(
        runner.invoke(main, ["shuffle", "-n", "3", "--archive", arc, "--json"]).output
    )
    assert len(picks) == 3
    stats = json.loads(runner.invoke(main, ["stats", "--archive", arc, "--json"]).output)
    assert stats["tracks"] == 30 and stats["unique_isrcs"] == 30
    out = tmp_path / "out.jsonl"
    assert runner.invoke(main, ["export", "jsonl", str(out), "--archive", arc]).exit_code == 0
    assert len(out.read_text().splitlines()) == 30


def test_strict_failure_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps(track(1)) + "\n{broken\n")
    result = CliRunner().invoke(
        main, ["import", "jsonl", str(src), "--archive", str(tmp_path / "a"), "--strict"]
    )
    assert result.exit_code == 1
    assert "bad.jsonl:2" in result.output and "nothing of this import was kept" in result.output


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["search", "x", "--archive", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a Phonotheca archive" in result.output and "Traceback" not in result.output


def test_every_command_line_in_the_readme_exists() -> None:
    """Each `phonotheca ...` example in the README names a real command."""
    import re

    lines = re.findall(r"^phonotheca ([^#\n]+)", (REPO / "README.md").read_text(), re.M)
    assert len(lines) > 10
    for line in lines:
        words = [w for w in line.split() if not w.startswith("-")]
        cmd: click.Command = main
        for w in words:
            if not isinstance(cmd, click.Group) or w not in cmd.commands:
                break
            cmd = cmd.commands[w]
        if isinstance(cmd, click.Group) and getattr(cmd, "default_command", None):
            cmd = cmd.commands[cmd.default_command]  # `mirror DIR` runs `mirror run DIR`
        assert cmd is not main and not isinstance(cmd, click.Group), line


def test_synth_catalog_writes_what_it_says(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(
        main, ["synth", "catalog", "--tracks", "500", "--seed", "3", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["tracks"] == 500 == len(out.read_text().splitlines())
    assert summary["bytes_written"] == out.stat().st_size


def test_a_damaged_catalog_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    assert CliRunner().invoke(main, ["init", str(archive)]).exit_code == 0
    # Garbage over the first pages, as a failing disk or a bad copy leaves it.
    (archive / "catalog.sqlite3").write_bytes(b"not a database, but what a bad copy left" * 200)
    result = CliRunner().invoke(main, ["stats", "--archive", str(archive)])
    assert result.exit_code == 1
    assert "the catalog is damaged" in result.output and "restore it" in result.output
    assert not isinstance(result.exception, sqlite3.DatabaseError)  # no traceback


def test_a_catalog_another_command_writes_is_a_clear_error(tmp_path: Path) -> None:
    from phonotheca.archive import init_archive
    from phonotheca.cli import failures

    archive = init_archive(tmp_path / "archive")
    db = archive.catalog_path
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another command holds the write lock
    other = sqlite3.connect(db, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as caught:
        other.execute("BEGIN IMMEDIATE")
    holder.execute("ROLLBACK")
    message = failures.explain(caught.value, archive)
    assert message is not None and "another phonotheca command is writing" in message
    # A bug is not dressed up as a failure of the machine.
    with pytest.raises(sqlite3.OperationalError) as bug:
        other.execute("SELECT * FROM no_such_table")
    assert failures.explain(bug.value, archive) is None
    assert failures.explain(ValueError("x"), archive) is None


@pytest.mark.parametrize("columns", [40, 80, 250])
def test_search_table_never_breaks_an_id(tmp_path: Path, columns: int) -> None:
    """Ids are copied from the search table into other commands: at any terminal width each
    id stands whole on one line (the other columns fold instead)."""
    arc = tmp_path / "arc"
    assert CliRunner().invoke(main, ["init", str(arc)]).exit_code == 0
    long_id = "mb:track:0a8e8d55-4b83-4f8f-9d6d-2b3f3f3a1b2c"
    records = [
        track(i, title=f"Song {i} with a rather long title that must fold") for i in range(3)
    ]
    records.append(track(3, id=long_id, title="Song of the long identifier"))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert (
        CliRunner().invoke(main, ["import", "jsonl", str(src), "--archive", str(arc)]).exit_code
        == 0
    )
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    shown = subprocess.run(
        [sys.executable, "-m", "phonotheca.cli", "search", "song", "--archive", str(arc)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    lines = shown.splitlines()
    for i in [long_id, *(f"test:track:{n}" for n in range(3))]:
        assert any(i in line for line in lines), f"{i} broken across lines at {columns}:\n{shown}"
    if columns >= 80:
        assert all(len(line.rstrip()) <= columns for line in lines), shown
