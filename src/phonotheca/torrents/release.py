"""Writing ``torrents.json`` as a release: numbered, dated and signed (docs/FORMAT.md §11.5).

``publish`` and ``torrents scrape`` both rewrite the listing; both go through
:func:`write_release` so that every listing an archive with a key puts out carries a
``seq`` higher than any before it, an ``expires`` time and a ``torrents.json.minisig``.
An archive without a key writes unsigned listings; one whose listing was signed and whose
key is gone stops with what to do, rather than silently unsign it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import msgspec

from phonotheca.catalog import schema
from phonotheca.torrents.keys import sign_file, signature_path
from phonotheca.torrents.listing import Listing, ListingError, read_listing, write_listing
from phonotheca.torrents.minisign import SecretKey


class ReleaseError(ListingError):
    """The listing cannot be released as the archive's previous ones were."""


SEQ_KEY = "publish.listing_seq"
"""``meta`` key: the ``seq`` of the last signed listing (survives a lost torrents.json)."""


def previous_seq(path: Path) -> int:
    """The ``seq`` of the listing at ``path``, 0 when there is none or it cannot be read."""
    if not path.exists():
        return 0
    try:
        return read_listing(path).seq or 0
    except ListingError:
        return 0


def next_seq(conn: sqlite3.Connection, path: Path) -> int:
    """One more than the highest ``seq`` the catalog or the current listing knows; recorded
    in the catalog first, so a crash never lets a later listing reuse a number."""
    recorded = schema.get_meta(conn, SEQ_KEY)
    seq = max(int(recorded) if recorded and recorded.isdigit() else 0, previous_seq(path)) + 1
    with conn:
        schema.set_meta(conn, SEQ_KEY, str(seq))
    return seq


def write_release(
    listing: Listing,
    path: Path,
    *,
    conn: sqlite3.Connection,
    secret: SecretKey | None,
    valid_days: int,
    now: dt.datetime,
) -> Listing:
    """Write ``listing`` to ``path``; with ``secret``, numbered, dated and signed.

    Returns the listing as written. The signature is written after the listing: a crash
    in between leaves a pair that does not verify, which mirrors refuse (keeping what they
    have) until the command is run again.
    """
    sig = signature_path(path)
    if secret is None and sig.exists():
        raise ReleaseError(
            f"{path} is signed, but this archive has no publisher key any more"
            " (keys/publisher.key): restore it from your backup; an unsigned listing would"
            " make every mirror refuse it"
        )
    if secret is None:
        unsigned = msgspec.structs.replace(listing, seq=None, expires=None, publisher_key=None)
        write_listing(unsigned, path)
        sig.unlink(missing_ok=True)
        return unsigned
    signed = msgspec.structs.replace(
        listing,
        seq=next_seq(conn, path),
        expires=(now + dt.timedelta(days=valid_days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        publisher_key=secret.public.to_base64(),
    )
    write_listing(signed, path)
    sign_file(path, secret, now=now)
    return signed
