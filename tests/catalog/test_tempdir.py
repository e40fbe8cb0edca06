"""SQLite's temporary files (big sorts, VACUUM) go to ARCHIVE/work/sqlite, not /var/tmp.

SQLite decides where temporary files go once per process, so each case runs in a fresh
interpreter: it opens the archive for writing, makes SQLite sort more than its cache
holds, and reports the directories of the temporary files it had open meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from phonotheca.archive import Archive

SORT_AND_REPORT = r"""
import json, os, sys, threading, time
from pathlib import Path
from phonotheca.archive import open_archive

conn = open_archive(Path(sys.argv[1])).connect()
conn.execute("PRAGMA cache_size = -512")  # 512 KiB: the sort below must spill to files
seen, stop = set(), threading.Event()

def watch():
    while not stop.is_set():
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if "etilqs_" in target:  # SQLite's temporary files, unlinked once open
                seen.add(os.path.dirname(target))
        time.sleep(0.01)

watcher = threading.Thread(target=watch)
watcher.start()
for _ in range(20):
    conn.execute(
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 200000)"
        " SELECT count(*) FROM (SELECT randomblob(64) AS b FROM r ORDER BY b)"
    ).fetchone()
    if seen:
        break
stop.set()
watcher.join()
print(json.dumps(sorted(seen)))
"""


def _temp_dirs(archive: Archive, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != "SQLITE_TMPDIR"} | env
    out = subprocess.run(
        [sys.executable, "-c", SORT_AND_REPORT, str(archive.root)],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=120,
    ).stdout
    return list(json.loads(out))


def test_sorts_spill_into_the_archive(archive: Archive) -> None:
    assert _temp_dirs(archive) == [str(archive.sqlite_temp_dir.resolve())]
    assert archive.sqlite_temp_dir.is_dir()
    assert list(archive.sqlite_temp_dir.iterdir()) == []  # unlinked as they are opened


def test_sqlite_tmpdir_wins(archive: Archive, tmp_path: Path) -> None:
    elsewhere = tmp_path / "fast-disk"
    elsewhere.mkdir()
    assert _temp_dirs(archive, SQLITE_TMPDIR=str(elsewhere)) == [str(elsewhere)]
