"""Whether a mirror may act on a ``torrents.json``: signature, pinned key, rollback, expiry.

A listing is read over plain HTTP from whoever hosts it, so a mirror checks it before it
downloads, serves or deletes anything (docs/FORMAT.md §11.5 and §16):

- With a publisher key (``--publisher-key`` or ``[mirror] publisher_key``), the listing's
  ``torrents.json.minisig`` must verify with it. Without one, the key of the first signed
  listing is *pinned* in ``DIR/.mirror/trust.json``, and a listing signed by any other key
  is refused until the operator re-pins with ``--publisher-key``.
- A signed listing needs ``seq`` and ``expires``: a ``seq`` lower than the last one
  accepted (an old listing replayed) or an ``expires`` in the past (a listing frozen by
  its host) is refused.
- An unsigned listing is read only with ``--allow-unsigned``, and it never causes a
  deletion (:attr:`CheckedListing.verified` is False).

:func:`check_listing` decides and writes nothing; :func:`accept_listing` records what a
run accepted (the listing's bytes and signature as ``DIR/torrents.json`` and
``.minisig``: the last good listing, the pin and the ``seq``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from phonotheca.durable import write_atomically
from phonotheca.mirror.state import MirrorDir, MirrorError, read_json, utc_now, write_json
from phonotheca.torrents import minisign
from phonotheca.torrents.listing import LISTING_FILE, Listing, ListingError, decode_listing
from phonotheca.torrents.minisign import PublicKey, SignatureError
from phonotheca.torrents.remote import MAX_LISTING_BYTES, FetchError, fetch_bytes

SIGNATURE_SUFFIX = minisign.SIGNATURE_SUFFIX
MAX_SIGNATURE_BYTES = 64 << 10
"""Largest ``.minisig`` read: a real one is under 1 KiB (two lines of base64, a comment)."""


class ListingRefused(MirrorError):
    """The listing must not be acted on; the message names the reason."""


@dataclass(frozen=True)
class TrustPolicy:
    """What the operator said: the publisher's key, and whether unsigned listings do."""

    publisher_key: PublicKey | None = None
    allow_unsigned: bool = False

    @classmethod
    def from_options(
        cls, key: str | None, allow_unsigned: bool, base: Path | None = None
    ) -> TrustPolicy:
        """``key``: an ``RW…`` string or a key file (flag, else setting); None for none.
        A relative file name is looked up in ``base`` (the settings' directory) first."""
        if key and base is not None and not key.strip().startswith("RW"):
            candidate = base / key
            key = str(candidate) if candidate.exists() else key
        try:
            public = minisign.read_public_key(key) if key else None
        except SignatureError as exc:
            raise MirrorError(f"--publisher-key: {exc}") from None
        return cls(public, allow_unsigned)


@dataclass(frozen=True)
class Pin:
    """``DIR/.mirror/trust.json``: the key this mirror trusts and the last ``seq`` it took."""

    key: PublicKey
    pinned_at: str
    pinned_by: str
    """``operator`` (``--publisher-key``) or ``first use``."""
    seq: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "publisher_key": self.key.to_base64(),
            "key_id": self.key.id_text,
            "pinned_at": self.pinned_at,
            "pinned_by": self.pinned_by,
            "seq": self.seq,
        }


def read_pin(mirror: MirrorDir) -> Pin | None:
    data = read_json(mirror.trust_file)
    if not isinstance(data, dict):
        return None
    try:
        key = minisign.parse_public_key(str(data["publisher_key"]))
        return Pin(key, str(data["pinned_at"]), str(data["pinned_by"]), int(data["seq"]))
    except (KeyError, ValueError, TypeError, SignatureError):
        return None


@dataclass(frozen=True)
class CheckedListing:
    """A listing a run may use, and how far it may be trusted."""

    listing: Listing
    source: str
    raw: bytes
    signature: str | None
    verified: bool
    """Signed by the trusted key, not rolled back, not expired: may cause deletions."""
    pin: Pin | None = None
    """The pin to record when the run goes ahead (None: leave trust.json as it is)."""
    notes: list[str] = field(default_factory=list)
    """What the operator should know (a key pinned, an unsigned listing allowed, ...)."""
    refused: str | None = None
    """Set when this is the last good listing, used because the new one was refused."""


def fetch_listing(source: str) -> tuple[bytes, str | None]:
    """The bytes of ``torrents.json`` at ``source`` and of its signature (None if absent),
    each read within its size limit and timeouts."""
    try:
        raw = fetch_bytes(source, limit=MAX_LISTING_BYTES, what=LISTING_FILE)
    except FetchError as exc:
        raise ListingError(str(exc)) from None
    location = source + SIGNATURE_SUFFIX
    try:
        data = fetch_bytes(location, limit=MAX_SIGNATURE_BYTES, what="the signature")
    except FetchError as exc:
        if exc.missing:
            return raw, None
        raise ListingError(str(exc)) from None
    return raw, data.decode("utf-8", "replace")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def check_listing(
    raw: bytes,
    signature: str | None,
    source: str,
    policy: TrustPolicy,
    pin: Pin | None,
    now: dt.datetime,
    *,
    pinning: bool = True,
) -> CheckedListing:
    """Decide whether the listing ``raw`` (with its ``.minisig`` text) may be used.

    Raises :class:`ListingRefused` with the reason; ``pin`` is the mirror's. Without
    ``pinning`` (``fetch``, ``torrents suggest``: no mirror state to write), a listing
    checked against the key it names is only said to be so.
    """
    listing = decode_listing(raw, source)
    notes: list[str] = []
    if signature is None:
        if not policy.allow_unsigned:
            raise ListingRefused(
                f"{source}: refused: not signed (no {SIGNATURE_SUFFIX} beside it); ask the"
                " publisher for a signed one, or pass --allow-unsigned to read it anyway"
                " (it will then never cause a deletion)"
            )
        notes.append(f"{source}: not signed; read because of --allow-unsigned: nothing deleted")
        return CheckedListing(listing, source, raw, None, False, None, notes)
    if policy.publisher_key is not None:
        key, by = policy.publisher_key, "operator"
        if pin is not None and pin.key != key:
            if pinning:
                notes.append(
                    f"publisher key re-pinned: {pin.key.id_text} -> {key.id_text} (--publisher-key)"
                )
            pin = None
        elif pin is None and pinning:
            notes.append(f"publisher key {key.id_text} pinned (--publisher-key)")
    elif pin is not None:
        key, by = pin.key, pin.pinned_by
    else:
        if not listing.publisher_key:
            raise ListingRefused(
                f"{source}: refused: signed, but it names no publisher_key to pin; pass"
                " --publisher-key (ask the publisher for it)"
            )
        try:
            key = minisign.parse_public_key(listing.publisher_key, f"{source}: publisher_key")
        except SignatureError as exc:
            raise ListingRefused(f"refused: {exc}") from None
        by = "first use"
        notes.append(
            f"publisher key {key.id_text} pinned on first use; check it with the publisher"
            " (later listings signed by another key are refused)"
            if pinning
            else f"{source}: checked against the key it names ({key.id_text}); pass"
            " --publisher-key to be sure it is the publisher's"
        )
    try:
        minisign.verify(raw, signature, key, source)
    except SignatureError as exc:
        hint = ""
        if pin is not None and policy.publisher_key is None and "signed by key" in str(exc):
            hint = (
                f"; this mirror pinned key {pin.key.id_text} ({pin.pinned_by}, {pin.pinned_at}):"
                " if the publisher really changed keys, re-pin with --publisher-key"
            )
        raise ListingRefused(f"refused: {exc}{hint}") from None
    if listing.seq is None or listing.expires is None:
        raise ListingRefused(f"{source}: refused: signed, but without seq or expires")
    if pin is not None and listing.seq < pin.seq:
        raise ListingRefused(
            f"{source}: refused: seq {listing.seq} is lower than {pin.seq}, the last one this"
            " mirror accepted (an old listing replayed?)"
        )
    if _parse_time(listing.expires) < now:
        raise ListingRefused(
            f"{source}: refused: expired at {listing.expires} (a stale copy, or the publisher"
            " has not published since); ask the publisher to publish again"
        )
    pinned_at = pin.pinned_at if pin is not None else utc_now()
    new_pin = Pin(key, pinned_at, by, listing.seq)
    return CheckedListing(listing, source, raw, signature, True, new_pin, notes)


def read_checked(
    source: str,
    policy: TrustPolicy,
    *,
    pin: Pin | None = None,
    now: dt.datetime | None = None,
) -> CheckedListing:
    """Fetch and check the listing at ``source`` (for ``fetch`` and ``torrents suggest``)."""
    raw, sig = fetch_listing(source)
    when = now or dt.datetime.now(dt.UTC)
    return check_listing(raw, sig, source, policy, pin, when, pinning=False)


def last_good(mirror: MirrorDir, source: str, refused: str) -> CheckedListing:
    """The listing the mirror accepted last (``DIR/torrents.json``), never trusted to delete."""
    try:
        raw = mirror.listing.read_bytes()
    except OSError:
        raise ListingRefused(
            f"{refused}; and {mirror.root} has no earlier listing to keep"
        ) from None
    listing = decode_listing(raw, str(mirror.listing))
    note = f"{refused}; keeping the last good listing ({listing.generated_at}): nothing deleted"
    return CheckedListing(listing, source, raw, None, False, None, [note], refused)


def check_for_mirror(
    mirror: MirrorDir, source: str, policy: TrustPolicy, now: dt.datetime | None = None
) -> CheckedListing:
    """The listing a mirror run uses: the one at ``source`` when it passes, else (refused,
    unreachable, not a listing) the last good one, which then causes no deletion; refused
    outright when there is none."""
    try:
        raw, sig = fetch_listing(source)
        when = now or dt.datetime.now(dt.UTC)
        return check_listing(raw, sig, source, policy, read_pin(mirror), when)
    except (ListingRefused, ListingError) as exc:  # refused, unreachable or not a listing
        if mirror.state.is_dir():  # an existing mirror; a first run creates nothing yet
            append_event(mirror, f"listing refused: {exc}")
        return last_good(mirror, source, str(exc))


def accept_listing(mirror: MirrorDir, checked: CheckedListing) -> None:
    """Record what a run goes ahead with: the listing and its signature as the mirror's
    copy (``DIR/torrents.json``, ``.minisig``) and the pin with the ``seq`` accepted."""
    if checked.refused is not None:
        return
    sig_path = mirror.listing.with_name(mirror.listing.name + SIGNATURE_SUFFIX)
    if checked.signature is not None:
        write_atomically(sig_path, checked.signature.encode("utf-8"))
    write_atomically(mirror.listing, checked.raw)
    if checked.signature is None:
        sig_path.unlink(missing_ok=True)
    if checked.pin is not None:
        write_json(mirror.trust_file, checked.pin.to_json())


def append_event(mirror: MirrorDir, message: str) -> None:
    """One line in ``DIR/.mirror/events.log`` (UTC time, message): drops and refusals."""
    mirror.state.mkdir(parents=True, exist_ok=True)
    line = f"{utc_now()} {' '.join(message.split())}\n"
    with open(mirror.events_log, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
