"""What the machine can do to a command (a full disk, a lock held by another command, a
failing disk, a damaged file), said as one clear line with what to do, instead of a
traceback.

Every command commits its work in steps that a re-run carries on from, so the advice is
the same everywhere: fix the cause, then run the same command again.
"""

from __future__ import annotations

import errno
import sqlite3

from phonotheca.archive import Archive

# SQLite primary result codes (an extended code keeps its primary one in the low byte).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_AGAIN = "then run the same command again: what it committed is kept, and it carries on"


def _where(archive: Archive | None) -> str:
    return f" (archive {archive.root})" if archive is not None else ""


def explain(exc: BaseException, archive: Archive | None) -> str | None:
    """The message for a failure that comes from the machine, not from a bug; or None."""
    if isinstance(exc, sqlite3.Error):
        return _explain_sqlite(exc, archive)
    if isinstance(exc, OSError):
        return _explain_os(exc, archive)
    return None


def _explain_sqlite(exc: sqlite3.Error, archive: Archive | None) -> str | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    name = getattr(exc, "sqlite_errorname", "") or str(code)
    primary = code & 0xFF
    where = _where(archive)
    temp = (
        f"; SQLite's temporary files go to {archive.sqlite_temp_dir} unless"
        " SQLITE_TMPDIR says otherwise"
        if archive is not None
        else ""
    )
    if primary == _SQLITE_FULL:
        return (
            f"out of disk space writing the catalog{where} ({exc}{temp})."
            f" Free some space, {_AGAIN}."
        )
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return (
            f"the catalog is locked{where} ({exc}): another phonotheca command is writing to"
            " this archive. Wait for it to finish (or stop it), then run this command again."
        )
    if primary == _SQLITE_IOERR:
        return (
            f"disk I/O error on the catalog{where} ({name}: {exc}). Check the disk (free space,"
            f" the kernel log), {_AGAIN}."
        )
    if primary in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
        return (
            f"cannot write the catalog{where} ({name}: {exc}). Check that this user may write"
            f" to the archive directory and its files, {_AGAIN}."
        )
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return (
            f"the catalog is damaged{where} ({name}: {exc}). Keep a copy of it, then restore it"
            " from a backup or from the archive's latest metadata release (docs/FORMAT.md,"
            " metadata releases); 'sqlite3 catalog.sqlite3 .recover' may save what is newer."
        )
    return None


def _explain_os(exc: OSError, archive: Archive | None) -> str | None:
    # The file when the error names it (copies inside the kernel do not), else the archive.
    if exc.filename:
        target = f" {exc.filename}"
    elif archive is not None:
        target = f" in the archive {archive.root}"
    else:
        target = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"out of disk space writing{target} ({exc.strerror}). Free some space, {_AGAIN}."
    if exc.errno == errno.EFBIG:
        return (
            f"a file grew past what this filesystem or the process's limit allows, writing"
            f"{target} ({exc.strerror}). Raise the limit (ulimit -f) or move the archive, {_AGAIN}."
        )
    if exc.errno == errno.EIO:
        return (
            f"disk I/O error{target} ({exc.strerror}). Check the disk (the kernel log), {_AGAIN}."
        )
    if exc.errno == errno.EROFS:
        return f"cannot write{target}: the filesystem is read-only. Remount it writable, {_AGAIN}."
    return None
