"""``make demo``: the whole chain on synthetic data, ending in a server you can open.

A synthetic catalog (100,000 tracks by default) and generated music for a few hundred
of them are imported; a plan with a small budget keeps some originals and re-encodes
some to Opus; the build packs them into collections and torrents; publish writes the
metadata release and ``torrents.json`` with the demo's own URL as base URL and web seed;
a demo user is created and the web site, the Subsonic API and the torrents (a BEP 19 web
seed) are served on http://127.0.0.1:8080 until you press Ctrl-C. It prints how to
mirror them, and how to run a second server with no audio that plays every track from
the demo's web seed (a metadata-only mirror served with ``--on-demand``).

Running it again on the same folder reuses what is there: steps already done (imports,
the plan with the same options) are skipped, the build and publish find nothing new, so
the torrents and the metadata release stay as they are, and it serves within seconds.
A run killed at any point goes on where it stopped when run again.

Signals: while a step runs, Ctrl-C or SIGTERM stops the step's process and the demo
with one line; when serving, the demo *is* the server (it replaces itself with
``phonotheca serve``), so a signal sent to the demo's process id reaches the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from phonotheca.durable import write_atomically
from phonotheca.plan.sizes import parse_size
from phonotheca.torrents.keys import ArchiveKeys
from phonotheca.torrents.minisign import read_public_key

PLAN_OPTIONS = {"min_original_popularity": 60, "opus_kbps": 64.0}
"""The demo's plan: the most popular tracks keep their original, the next ones Opus."""

SETTINGS_MARK = "# -- make demo: the settings below are rewritten by every demo run --"
_OLD_SETTINGS_START = '\n[build]\ncollection_size = "12MB"'
"""Where the block that earlier demo versions appended without a mark begins."""


def demo_settings(host: str, port: int) -> str:
    """The demo's part of ``phonotheca.toml``: small collections, and its own URL as the
    torrents' web seed (the server answers ``/torrents/`` as ``serve-files`` does)."""
    url = f"http://{host}:{port}/"
    return f"""
{SETTINGS_MARK}
[build]
collection_size = "12MB"      # the demo's collections are small; the default is 100 GiB
volume_size = "4MB"

[torrents]
web_seeds = ["{url}torrents/"]
base_url = "{url}"

[serve]
host = "{host}"
port = {port}
"""


class StepFailed(Exception):
    """A step's command failed; it has said why on its own output."""


def _phonotheca(*args: str) -> list[str]:
    return [sys.executable, "-m", "phonotheca", *args]


def _on_term(signum: int, frame: object) -> None:
    """SIGTERM (``kill PID``, a service manager) stops the demo as Ctrl-C does."""
    raise KeyboardInterrupt


def _run(*args: str, stdin: str | None = None, quiet: bool = False) -> None:
    """Run one ``phonotheca`` command; on Ctrl-C or SIGTERM stop it before giving up.

    The step runs in a process group of its own, so that Ctrl-C in the terminal reaches
    only the demo, which then kills the step's whole group (its worker processes and
    multiprocessing's resource tracker too, which would outlive a SIGTERM and print
    warnings): no step prints its own interruption or a worker's traceback, the demo says
    in one line what happened. Every step may be killed at any point (the commands are
    crash-safe): run again, it goes on where it stopped.
    """
    print("$ phonotheca " + shlex.join(args), flush=True)
    process = subprocess.Popen(
        _phonotheca(*args),
        stdin=subprocess.PIPE if stdin is not None else None,
        stdout=subprocess.DEVNULL if quiet else None,
        text=True,
        start_new_session=True,
    )
    try:
        process.communicate(stdin)
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if sys.stderr.isatty():  # a killed progress bar leaves its line and hides the cursor
            sys.stderr.write("\r\x1b[2K\x1b[?25h")
        raise
    if process.returncode != 0:
        raise StepFailed(f"'phonotheca {shlex.join(args)}' failed (exit {process.returncode})")


def write_settings(root: Path, host: str, port: int) -> None:
    """Put the demo's settings in ``phonotheca.toml``, replacing those of an earlier run;
    the file is left untouched when they are the same."""
    path = root / "phonotheca.toml"
    text = path.read_text(encoding="utf-8")
    start = text.find("\n" + SETTINGS_MARK)
    if start < 0:
        start = text.find(_OLD_SETTINGS_START)
    base = text if start < 0 else text[:start]
    new = base.rstrip("\n") + "\n" + demo_settings(host, port)
    if new != text:
        write_atomically(path, new.encode("utf-8"))


class Done:
    """What the archive's catalog says is already done (read-only; no catalog, nothing)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "catalog.sqlite3"

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # an archive from before these tables
            return []
        finally:
            conn.close()

    def imported(self, kind: str, path: Path) -> bool:
        """Whether an import of ``path`` (as given, or absolute) finished."""
        rows = self._query(
            "SELECT 1 FROM imports WHERE kind = ? AND path IN (?, ?) AND finished_at IS NOT NULL",
            (kind, str(path), str(path.resolve())),
        )
        return bool(rows)

    def planned(self, budget: int) -> bool:
        """Whether the latest plan was made with the demo's options and this budget."""
        rows = self._query("SELECT settings FROM plans ORDER BY id DESC LIMIT 1", ())
        if not rows:
            return False
        settings = json.loads(str(rows[0][0]))
        wanted: dict[str, object] = {"budget": budget, **PLAN_OPTIONS}
        return all(settings.get(k) == v for k, v in wanted.items())

    def user(self, root: Path, name: str) -> bool:
        """Whether the archive has a user ``name`` (users live in the state database)."""
        listing = subprocess.run(
            _phonotheca("user", "list", "--json", "--archive", str(root)),
            capture_output=True,
            text=True,
            start_new_session=True,  # as the steps: Ctrl-C is the demo's to handle
        )
        if listing.returncode != 0:
            sys.stderr.write(listing.stderr)
            raise StepFailed(f"'phonotheca user list' failed (exit {listing.returncode})")
        return any(u.get("name") == name for u in json.loads(listing.stdout))


def mirror_command(url: str, mirror_dir: Path, publisher_key: str) -> str:
    """The command that mirrors the demo from its web seed, as a user pastes it; it pins
    the demo's publisher key, so the mirror refuses a listing anyone else signed."""
    script = Path(sys.executable).with_name("phonotheca")
    program = str(script) if script.exists() else "phonotheca"
    return shlex.join(
        [
            program,
            "mirror",
            str(mirror_dir),
            "--torrents",
            f"{url}torrents.json",
            "--budget",
            "1GB",
            "--listen",
            "127.0.0.1:0",
            "--publisher-key",
            publisher_key,
        ]
    )


def second_server_commands(
    url: str, directory: Path, publisher_key: str, port: int, host: str = "127.0.0.1"
) -> list[str]:
    """The commands that make a second server with no audio at all: a metadata-only
    mirror of the demo, a user, and ``serve --on-demand``, which plays every packed track
    from the demo's web seed."""
    script = Path(sys.executable).with_name("phonotheca")
    program = str(script) if script.exists() else "phonotheca"
    d = str(directory)
    return [
        shlex.join(
            [
                *(program, "mirror", "run", d, "--torrents", f"{url}torrents.json"),
                *("--metadata-only", "--listen", f"{host}:0", "--publisher-key", publisher_key),
            ]
        ),
        shlex.join([program, "user", "add", "demo", "--archive", d]),
        shlex.join(
            [program, "serve", "--archive", d, "--on-demand", "--host", host, "--port", str(port)]
        ),
    ]


def publisher_key(root: Path) -> str:
    """The demo's public key as mirror operators pin it (``RW…``)."""
    keys = ArchiveKeys(root)
    return read_public_key(str(keys.public)).to_base64()


def prepare(args: argparse.Namespace) -> str:
    """Every step up to serving; returns the demo user's new password."""
    root: Path = args.dir
    sources = root / "sources"
    catalog = sources / f"synthetic-{args.tracks}-{args.seed}.jsonl.zst"
    audio = sources / f"audio-{args.audio_tracks}-{args.seed}"
    a = ["--archive", str(root)]
    url = f"http://{args.host}:{args.port}/"
    done = Done(root)
    budget = parse_size(args.budget)

    _run("init", str(root), "--name", "demo")
    write_settings(root, args.host, args.port)
    sources.mkdir(parents=True, exist_ok=True)
    if not catalog.exists():
        _run(
            "synth", "catalog", "--tracks", str(args.tracks), "--seed", str(args.seed), str(catalog)
        )
    changed = False
    if not done.imported("jsonl", catalog):
        _run("import", "jsonl", str(catalog), *a)
        changed = True
    if not ((audio / "manifest.jsonl").exists() and (audio / "catalog.jsonl").exists()):
        _run(
            "synth",
            "audio",
            "--catalog",
            str(catalog),
            "--tracks",
            str(args.audio_tracks),
            "--seed",
            str(args.seed),
            "--min-seconds",
            "8",
            "--max-seconds",
            "20",
            str(audio),
        )
    # The generated pieces last seconds, not minutes: their tracks take the files' lengths.
    if not done.imported("jsonl", audio / "catalog.jsonl"):
        _run("import", "jsonl", str(audio / "catalog.jsonl"), *a)
        changed = True
    if not done.imported("files", audio):
        _run("import", "files", str(audio), *a)
        changed = True
    _run("stats", *a)
    for query in ("love", "night lo"):
        _run("search", query, "--limit", "3", *a)
    if changed or not done.planned(budget):
        _run(
            "plan",
            "--budget",
            args.budget,
            "--min-original-popularity",
            str(PLAN_OPTIONS["min_original_popularity"]),
            "--opus-kbps",
            f"{PLAN_OPTIONS['opus_kbps']:g}",
            *a,
        )
    # A build with nothing left to pack changes nothing; a killed one resumes.
    _run("build", *a)
    _run("validate", str(root / "torrents"), quiet=True)
    # Releases are signed, as a real archive's are: a key without a passphrase, since the
    # demo publishes unattended (a real publisher keeps one, and the key offline).
    if not ArchiveKeys(root).exists():
        _run("key", "generate", "--no-passphrase", *a)
    # Publishing an unchanged catalog keeps its metadata release and infohashes.
    _run("publish", "--base-url", url, *a)
    _run("torrents", "health", *a)

    password = secrets.token_urlsafe(9)
    verb = "passwd" if done.user(root, "demo") else "add"
    _run("user", verb, "demo", "--password-stdin", *a, stdin=password + "\n")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phonotheca.demo",
        description="The whole chain on synthetic data, then serve it (make demo). Running"
        " it again on the same folder reuses what is there and publishes nothing new.",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("demo-archive"), help="Demo folder (demo-archive)."
    )
    parser.add_argument(
        "--tracks", type=int, default=100_000, help="Tracks of the synthetic catalog (100000)."
    )
    parser.add_argument(
        "--audio-tracks", type=int, default=240, help="Tracks given generated music (240)."
    )
    parser.add_argument("--seed", type=int, default=1, help="Seed of the synthetic data (1).")
    parser.add_argument("--budget", default="15MB", help="The plan's budget (15MB).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (127.0.0.1).")
    parser.add_argument(
        "--port", type=int, default=8080, help="Port to serve on, also in the web seed (8080)."
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Server processes (default: one per CPU)."
    )
    parser.add_argument("--no-serve", action="store_true", help="Stop before serving.")
    args = parser.parse_args(argv)
    try:
        parse_size(args.budget)
    except ValueError as exc:
        parser.error(f"--budget: {exc}")
    root: Path = args.dir

    signal.signal(signal.SIGTERM, _on_term)
    try:
        password = prepare(args)
    except KeyboardInterrupt:
        print(f"demo stopped; run it again to go on where it stopped ({root}/)", file=sys.stderr)
        return 130
    except StepFailed as exc:
        print(f"demo: {exc}; the message above says why", file=sys.stderr)
        return 1
    url = f"http://{args.host}:{args.port}/"
    mirror_dir = root.resolve().with_name(root.resolve().name + "-mirror")
    print(
        f"\nThe demo archive is ready in {root}/\n"
        f"  web site:     {url}\n"
        f"  sign in as:   demo / {password}\n"
        f"  Subsonic app: server {url} (run"
        f" 'phonotheca user token demo --archive {root}' for the app password)\n"
        f"  torrents:     {url}torrents.json (this server is their web seed)\n"
        "  mirror them, from another shell (Ctrl-C when 'mirror status' says done, then"
        f" 'phonotheca verify {mirror_dir}'):\n"
        f"    {mirror_command(url, mirror_dir, publisher_key(root))}\n"
        "  a second server with no audio, playing from this web seed (another shell):\n"
        + "".join(
            f"    {line}\n"
            for line in second_server_commands(
                url,
                root.resolve().with_name(root.resolve().name + "-ondemand"),
                publisher_key(root),
                args.port + 1,
                args.host,
            )
        ),
        flush=True,
    )
    if args.no_serve:
        return 0
    serve = ["serve", "--archive", str(root), "--host", args.host, "--port", str(args.port)]
    if args.workers is not None:
        serve += ["--workers", str(args.workers)]
    print("$ phonotheca " + shlex.join(serve), flush=True)
    # Become the server: Ctrl-C, SIGTERM or kill of this process id stop it and its
    # worker processes, and it ends with one line and exit status 0.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(sys.executable, _phonotheca(*serve))
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
