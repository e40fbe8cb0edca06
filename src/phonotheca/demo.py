"""``make demo``: the whole chain on synthetic data, ending in a server you can open.

A synthetic catalog (100,000 tracks by default) and generated music for a few hundred
of them are imported; a plan with a small budget keeps some originals and re-encodes
some to Opus; the build packs them into collections and torrents; publish writes the
metadata release and ``torrents.json``; a demo user is created and the web site and
Subsonic API are served on http://127.0.0.1:8080 until you press Ctrl-C.

Re-running reuses what is already there (every step is idempotent or resumable).
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from pathlib import Path

DEMO_SETTINGS = """
[build]
collection_size = "12MB"      # the demo's collections are small; the default is 100 GiB
volume_size = "4MB"

[serve]
host = "127.0.0.1"
port = 8080
"""


def _run(*args: str, stdin: str | None = None, quiet: bool = False) -> None:
    cmd = [sys.executable, "-m", "phonotheca.cli", *args]
    print("$ phonotheca " + " ".join(args), flush=True)
    subprocess.run(
        cmd,
        check=True,
        input=stdin,
        text=True,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def _user_exists(root: Path, name: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "phonotheca.cli", "user", "list", "--json", "--archive", str(root)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return f'"{name}"' in out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo-archive"))
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--audio-tracks", type=int, default=240)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", default="15MB")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--no-serve", action="store_true", help="Stop before serving.")
    args = parser.parse_args(argv)
    root: Path = args.dir
    sources = root / "sources"
    catalog = sources / f"synthetic-{args.tracks}-{args.seed}.jsonl.zst"
    audio = sources / f"audio-{args.audio_tracks}-{args.seed}"
    a = ["--archive", str(root)]

    fresh = not (root / "phonotheca.toml").exists()
    _run("init", str(root), "--name", "demo")
    if fresh:
        settings = root / "phonotheca.toml"
        settings.write_text(settings.read_text() + DEMO_SETTINGS, encoding="utf-8")
    sources.mkdir(parents=True, exist_ok=True)
    if not catalog.exists():
        _run(
            "synth", "catalog", "--tracks", str(args.tracks), "--seed", str(args.seed), str(catalog)
        )
    _run("import", "jsonl", str(catalog), *a)
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
    _run("import", "jsonl", str(audio / "catalog.jsonl"), *a)
    _run("import", "files", str(audio), *a)
    _run("stats", *a)
    for query in ("love", "night lo"):
        _run("search", query, "--limit", "3", *a)
    # A small budget: the most popular tracks keep their original, the next ones Opus.
    _run(
        "plan", "--budget", args.budget, "--min-original-popularity", "60", "--opus-kbps", "64", *a
    )
    _run("build", *a)
    _run("validate", str(root / "torrents"), quiet=True)
    _run("publish", "--base-url", f"http://{args.host}:{args.port}/", *a)
    _run("torrents", "health", *a)

    password = secrets.token_urlsafe(9)
    if _user_exists(root, "demo"):
        _run("user", "passwd", "demo", "--password-stdin", *a, stdin=password + "\n")
    else:
        _run("user", "add", "demo", "--password-stdin", *a, stdin=password + "\n")
    print(
        "\nThe demo archive is ready in"
        f" {root}/\n"
        f"  web site:     http://{args.host}:{args.port}/\n"
        f"  sign in as:   demo / {password}\n"
        f"  Subsonic app: server http://{args.host}:{args.port}/ (run"
        f" 'phonotheca user token demo --archive {root}' for the app password)\n",
        flush=True,
    )
    if args.no_serve:
        return 0
    _run("serve", *a, "--host", args.host, "--port", str(args.port))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
