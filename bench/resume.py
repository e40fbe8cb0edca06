"""Restart of a fully downloaded mirror: seeding from resume data, without re-hashing.

    .venv/bin/python bench/resume.py               # 1 GB mirror
    .venv/bin/python bench/resume.py --size 200MB  # quick run

Builds (once, cached under $PHONOTHECA_BENCH_DIR) a mirror directory holding one 1 GB
torrent as if downloaded, then measures, with the mirror's own session code on 127.0.0.1:

- first start without resume data: libtorrent hashes every piece (the baseline: a forced
  recheck), then resume data is saved by a graceful stop;
- restart with the resume data: time until libtorrent reports seeding, and whether it
  entered checking_files (it must not);
- a forced recheck of the same data from the running session.

Target: the restart reaches seeding in <= 5 s without re-hashing. The recheck reads from the
page cache when the data was just written; cold disks make it slower, the restart is not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import libtorrent as lt
from bench.common import DEFAULT_WORKDIR

from phonotheca.mirror.session import MirrorSession, SessionOptions
from phonotheca.mirror.state import MirrorDir
from phonotheca.plan.sizes import format_size, parse_size
from phonotheca.torrents import make_torrent

NAME = "bench_pop-050-100_0001"
OPTIONS = SessionOptions(listen="127.0.0.1:0", dht=False, lsd=False, upnp=False, natpmp=False)


def build(root: Path, size: int) -> MirrorDir:
    """A mirror directory holding one torrent's payload: 4 tar-sized files of random bytes."""
    mirror = MirrorDir(root)
    payload = mirror.payload(NAME)
    marker = root / f".built-{size}"
    if marker.exists():
        return mirror
    mirror.create()
    (payload / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    part = size // 4
    for i in range(4):
        with open(payload / "data" / f"{NAME}.{i + 1:04d}.tar", "wb") as f:
            for _ in range(part // (1 << 24)):
                f.write(os.urandom(1 << 24))
            f.write(os.urandom(part % (1 << 24)))
    (payload / "data" / "index.jsonl").write_text("{}\n")
    make_torrent(payload, output=mirror.torrent_file(NAME))
    marker.touch()
    print(f"  built a {format_size(size)} mirror in {time.monotonic() - t0:.1f} s", flush=True)
    return mirror


def time_to_seeding(session: MirrorSession) -> float:
    held = session.held[NAME]
    t0 = time.monotonic()
    while not held.handle.status().is_seeding:
        session.session.wait_for_alert(20)
        session._handle_alerts()
    return time.monotonic() - t0


def start(mirror: MirrorDir) -> tuple[MirrorSession, float]:
    session = MirrorSession(mirror, OPTIONS)
    t0 = time.monotonic()
    session.add(NAME, "audio", mirror.torrent_file(NAME).read_bytes())
    time_to_seeding(session)
    return session, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GB", help="payload size (default 1GB)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    size = parse_size(args.size)
    mirror = build(args.workdir / f"resume-{size}", size)
    mirror.resume_file(NAME).unlink(missing_ok=True)

    print(f"mirror restart, one {format_size(size)} torrent:")
    session, first = start(mirror)
    print(f"  first start, no resume data (full hash): {first:6.2f} s")
    session.close()  # graceful stop: resume data saved
    del session

    session, restart = start(mirror)
    checks = session.held[NAME].checks
    print(
        f"  restart from resume data:               {restart:6.3f} s  (checking_files entered:"
        f" {checks} time(s); target <= 5 s, 0 checks)"
    )
    t0 = time.monotonic()
    session.held[NAME].handle.force_recheck()
    time.sleep(0.2)
    time_to_seeding(session)
    print(f"  forced recheck (baseline):              {time.monotonic() - t0:6.2f} s")
    session.close()
    ok = restart <= 5.0 and checks == 0
    print(f"  restart {'meets' if ok else 'MISSES'} the target; lt {lt.__version__}")


if __name__ == "__main__":
    main()
