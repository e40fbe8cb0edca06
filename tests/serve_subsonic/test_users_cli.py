"""``phonotheca user ...`` as an operator runs it: prompts, JSON, the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from phonotheca.archive import init_archive
from phonotheca.cli import main
from phonotheca.serve.state import StateStore

SCRIPT = Path(sys.executable).parent / "phonotheca"


def test_user_commands(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    init_archive(root, "test")
    with open(root / "phonotheca.toml", "a", encoding="utf-8") as f:
        f.write("\n[serve]\npassword_cost = 12\n")  # the setting reaches the command
    arc = ["--archive", str(root)]
    runner = CliRunner()
    # Asked twice; a mismatch is asked again.
    added = runner.invoke(
        main,
        ["user", "add", "alice", *arc],
        input="first password\nother password\nsecret pass\nsecret pass\n",
    )
    assert added.exit_code == 0, added.output
    assert "do not match" in added.output.lower() and "secret pass" not in added.output
    store = StateStore(root / "state.sqlite3", password_cost=12)
    assert store.verify_password("alice", "secret pass")
    (stored,) = store.read().execute("SELECT password FROM users").fetchone()
    assert stored.startswith("scrypt$4096$8$1$")

    again = runner.invoke(
        main, ["user", "add", "alice", "--password-stdin", *arc], input="xxxxxxxxx\n"
    )
    assert again.exit_code == 1 and "exists already" in again.output

    token = runner.invoke(main, ["user", "token", "alice", "--json", *arc])
    assert token.exit_code == 0, token.output
    creds = json.loads(token.output)
    assert creds["user"] == "alice" and len(creds["password"]) >= 16 and creds["api_key"]
    rotated = json.loads(runner.invoke(main, ["user", "token", "alice", "--json", *arc]).output)
    store = StateStore(root / "state.sqlite3")
    assert store.user_by_api_key(creds["api_key"]) is None
    assert store.user_by_api_key(rotated["api_key"]) is not None

    listed = json.loads(runner.invoke(main, ["user", "list", "--json", *arc]).output)
    assert [(u["name"], u["subsonic"]) for u in listed] == [("alice", True)]
    assert rotated["api_key"].startswith(listed[0]["api_key_hint"])

    changed = runner.invoke(
        main, ["user", "passwd", "alice", *arc], input="new password\nnew password\n"
    )
    assert changed.exit_code == 0, changed.output
    assert StateStore(root / "state.sqlite3", password_cost=12).verify_password(
        "alice", "new password"
    )

    refused = runner.invoke(main, ["user", "remove", "alice", *arc], input="n\n")
    assert refused.exit_code == 1 and StateStore(root / "state.sqlite3").get_user("alice")
    removed = runner.invoke(main, ["user", "remove", "alice", "--yes", *arc])
    assert removed.exit_code == 0 and StateStore(root / "state.sqlite3").get_user("alice") is None
    missing = runner.invoke(main, ["user", "token", "nobody", *arc])
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


def test_console_script_reads_the_password_from_stdin(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    init_archive(root, "test")
    env = {**os.environ, "PHONOTHECA_ARCHIVE": str(root)}
    done = subprocess.run(
        [str(SCRIPT), "user", "add", "bob", "--password-stdin", "--admin", "--json"],
        input="piped password\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["admin"] is True
    assert StateStore(root / "state.sqlite3").verify_password("bob", "piped password")
    short = subprocess.run(
        [str(SCRIPT), "user", "add", "carol", "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert short.returncode == 1 and "at least 8 characters" in short.stderr


def test_user_needs_an_archive(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["user", "list", "--archive", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "init" in result.output
