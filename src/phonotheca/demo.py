"""``make demo``: build a small synthetic archive and show what it can do.

For now the demo covers the catalog stage: a synthetic catalog is generated, imported,
searched and shuffled. Later stages (plan, build, publish, serve) join as they land.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def _run(*args: str) -> None:
    cmd = [sys.executable, "-m", "phonotheca.cli", *args]
    print("$ phonotheca " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo-archive"))
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    root: Path = args.dir
    catalog = root / "sources" / f"synthetic-{args.tracks}-{args.seed}.jsonl.zst"
    catalog.parent.mkdir(parents=True, exist_ok=True)
    a = ["--archive", str(root)]
    _run("init", str(root), "--name", "demo")
    if not catalog.exists():
        _run(
            "synth",
            "catalog",
            "--tracks",
            str(args.tracks),
            "--seed",
            str(args.seed),
            str(catalog),
        )
    _run("import", "jsonl", str(catalog), *a)
    _run("stats", *a)
    for query in ("love", "night lo", "traume"):  # "traume" finds "Träume"
        _run("search", query, "--limit", "5", *a)
    _run("shuffle", "-n", "5", *a)
    print(f"\ndemo archive ready in {root}/ - try: phonotheca search WORDS --archive {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
