"""Tracker scrapes: how many seeders, leechers and completed downloads each torrent has.

HTTP trackers are scraped per BEP 48 (the announce URL's last ``announce`` becomes
``scrape``; ``info_hash`` repeated, many torrents per request; a bencoded ``files``
dictionary back), UDP trackers per BEP 15 (a connect exchange, then scrapes of up to
:data:`UDP_BATCH` infohashes per packet, each exchange retried with a doubling timeout).
A tracker that cannot be reached is reported with its reason and never stops the others;
the answers of several trackers are combined by taking the largest figures, since each
tracker sees only the peers that announce to it. Replies are read with a size limit and
timeouts, and decoded by the one bencode decoder (lenient about key order, strict about
everything else, depth-limited): a hostile reply is that tracker's error, nothing more.
"""

from __future__ import annotations

import random
import socket
import struct
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from phonotheca.torrents import bencode
from phonotheca.torrents.remote import FetchError, Timeouts, fetch_bytes

HTTP_BATCH = 50
"""Infohashes per HTTP scrape request: about 3 KB of URL, which every server accepts."""
MAX_REPLY_BYTES = 1 << 20
"""Largest HTTP scrape reply read: 50 torrents' figures take about 3 KB."""
UDP_BATCH = 70
"""Infohashes per UDP scrape packet (BEP 15 allows about 74 in one datagram)."""
_UDP_PROTOCOL_ID = 0x41727101980
_CONNECTION_LIFETIME = 60.0  # BEP 15: a connection id may be used for one minute


class ScrapeError(Exception):
    """One tracker could not be scraped; the message says why."""


@dataclass(frozen=True, slots=True)
class Stats:
    seeders: int
    leechers: int
    completed: int

    def combine(self, other: Stats) -> Stats:
        return Stats(
            max(self.seeders, other.seeders),
            max(self.leechers, other.leechers),
            max(self.completed, other.completed),
        )


@dataclass
class TrackerResult:
    """What one tracker said: figures per infohash, or why it could not be asked."""

    url: str
    stats: dict[bytes, Stats] = field(default_factory=dict)
    error: str | None = None


def scrape_url(announce: str) -> str | None:
    """The BEP 48 scrape URL of an HTTP announce URL, or None when it has none."""
    parts = urllib.parse.urlsplit(announce)
    head, _, last = parts.path.rpartition("/")
    if not last.startswith("announce"):
        return None
    return urllib.parse.urlunsplit(parts._replace(path=f"{head}/scrape{last[8:]}"))


def scrape(
    url: str, hashes: Sequence[bytes], *, timeout: float = 5.0, retries: int = 2
) -> TrackerResult:
    """Scrape ``hashes`` (20-byte infohashes) from one tracker; errors go into the result."""
    result = TrackerResult(url)
    scheme = urllib.parse.urlsplit(url).scheme
    try:
        if scheme in ("http", "https"):
            result.stats = scrape_http(url, hashes, timeout=timeout)
        elif scheme == "udp":
            result.stats = scrape_udp(url, hashes, timeout=timeout, retries=retries)
        else:
            raise ScrapeError(f"{scheme}:// trackers cannot be scraped")
    except ScrapeError as exc:
        result.error = str(exc)
    return result


def scrape_http(
    announce: str, hashes: Sequence[bytes], *, timeout: float = 5.0
) -> dict[bytes, Stats]:
    """BEP 48 scrape of an HTTP(S) tracker given its announce URL."""
    base = scrape_url(announce)
    if base is None:
        raise ScrapeError(
            f"{announce}: the announce URL does not end in 'announce', so it has no scrape URL"
        )
    found: dict[bytes, Stats] = {}
    for start in range(0, len(hashes), HTTP_BATCH):
        batch = hashes[start : start + HTTP_BATCH]
        query = "&".join(f"info_hash={urllib.parse.quote_from_bytes(h, safe='')}" for h in batch)
        url = f"{base}{'&' if '?' in base else '?'}{query}"
        try:
            body = fetch_bytes(
                url,
                limit=MAX_REPLY_BYTES,
                what="the scrape reply",
                timeouts=Timeouts(connect=timeout, read=timeout, total=4 * timeout),
            )
        except FetchError as exc:
            http_error = exc.reason.startswith("HTTP ")
            raise ScrapeError(exc.reason if http_error else f"cannot reach: {exc.reason}") from None
        found.update(_parse_http_reply(body, batch))
    return found


def _parse_http_reply(body: bytes, batch: Sequence[bytes]) -> dict[bytes, Stats]:
    try:
        reply = bencode.decode(body, canonical=False)
    except bencode.BencodeError as exc:
        raise ScrapeError(f"the reply is not valid bencoding: {exc}") from None
    if not isinstance(reply, dict):
        raise ScrapeError("the reply is not a bencoded dictionary")
    if b"failure reason" in reply:
        raise ScrapeError(f"tracker says: {_text(reply[b'failure reason'])}")
    files = reply.get(b"files")
    if not isinstance(files, dict):
        raise ScrapeError("the reply has no 'files' dictionary")
    found: dict[bytes, Stats] = {}
    for h in batch:
        item = files.get(h)
        if isinstance(item, dict):
            found[h] = Stats(
                _count(item.get(b"complete")),
                _count(item.get(b"incomplete")),
                _count(item.get(b"downloaded")),
            )
        else:
            # Left out: the tracker knows no peer of it (opentracker, for instance).
            found[h] = Stats(0, 0, 0)
    return found


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def scrape_udp(
    announce: str, hashes: Sequence[bytes], *, timeout: float = 5.0, retries: int = 2
) -> dict[bytes, Stats]:
    """BEP 15 scrape of a UDP tracker.

    Each exchange waits ``timeout × 2ⁿ`` seconds for attempt ``n`` (BEP 15 uses 15 s and
    up to 8 retries; a report for people wants an answer sooner), ``retries`` times.
    """
    parts = urllib.parse.urlsplit(announce)
    if not parts.hostname or not parts.port:
        raise ScrapeError("a UDP tracker URL needs a host and a port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            parts.hostname, parts.port, type=socket.SOCK_DGRAM
        )[0]
    except OSError as exc:
        raise ScrapeError(f"cannot resolve {parts.hostname}: {exc}") from None
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.connect(address)  # so that an ICMP "port unreachable" is reported at once
        except OSError as exc:
            raise ScrapeError(f"cannot reach: {exc.strerror or exc}") from None
        session = _UdpSession(sock, timeout, retries)
        found: dict[bytes, Stats] = {}
        for start in range(0, len(hashes), UDP_BATCH):
            batch = list(hashes[start : start + UDP_BATCH])
            reply = session.request(2, b"".join(batch))
            if len(reply) < 12 * len(batch):
                raise ScrapeError(f"scrape reply of {len(reply)} bytes for {len(batch)} torrents")
            for i, h in enumerate(batch):
                seeders, completed, leechers = struct.unpack_from(">iii", reply, 12 * i)
                found[h] = Stats(max(0, seeders), max(0, leechers), max(0, completed))
        return found


class _UdpSession:
    """A BEP 15 exchange: connection ids obtained and renewed as needed, retries, errors."""

    def __init__(self, sock: socket.socket, timeout: float, retries: int) -> None:
        self.sock = sock
        self.timeout = timeout
        self.retries = max(0, retries)
        self.connection_id: int | None = None
        self.connected_at = 0.0

    def request(self, action: int, payload: bytes) -> bytes:
        if (
            self.connection_id is None
            or time.monotonic() - self.connected_at > _CONNECTION_LIFETIME
        ):
            reply = self._exchange(_UDP_PROTOCOL_ID, 0, b"")
            if len(reply) < 8:
                raise ScrapeError("connect reply too short")
            self.connection_id = struct.unpack_from(">Q", reply)[0]
            self.connected_at = time.monotonic()
        return self._exchange(self.connection_id, action, payload)

    def _exchange(self, connection_id: int, action: int, payload: bytes) -> bytes:
        for attempt in range(self.retries + 1):
            transaction = random.getrandbits(32)
            packet = struct.pack(">QII", connection_id, action, transaction) + payload
            try:
                self.sock.send(packet)
            except OSError as exc:
                raise ScrapeError(f"cannot send: {exc.strerror or exc}") from None
            deadline = time.monotonic() + self.timeout * 2**attempt
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    raise ScrapeError(
                        "cannot reach: connection refused (no tracker on that port)"
                    ) from None
                except OSError as exc:
                    raise ScrapeError(f"cannot reach: {exc.strerror or exc}") from None
                if len(data) < 8:
                    continue
                got_action, got_transaction = struct.unpack_from(">II", data)
                if got_transaction != transaction:
                    continue  # a late answer to an earlier attempt
                if got_action == 3:
                    raise ScrapeError(f"tracker says: {_text(data[8:])}")
                if got_action != action:
                    raise ScrapeError(f"reply with action {got_action}, expected {action}")
                return data[8:]
        total = sum(self.timeout * 2**n for n in range(self.retries + 1))
        raise ScrapeError(f"no answer within {total:g} s ({self.retries + 1} attempts)")


def scrape_all(
    torrents: Iterable[tuple[Sequence[bytes], Sequence[str]]],
    *,
    timeout: float = 5.0,
    retries: int = 2,
) -> tuple[list[Stats | None], list[TrackerResult]]:
    """Scrape every tracker once for all the torrents it serves.

    ``torrents`` gives, per torrent, the infohashes it is known by (v1, and the truncated
    v2 of a hybrid torrent) and its tracker URLs. Returns per torrent the combined
    figures (None when no tracker answered for it) and per tracker its result.
    """
    items = [(list(hashes), list(dict.fromkeys(urls))) for hashes, urls in torrents]
    wanted: dict[str, list[bytes]] = {}
    for hashes, urls in items:
        for url in urls:
            wanted.setdefault(url, [])
            wanted[url] += [h for h in hashes if h not in wanted[url]]
    results = {
        url: scrape(url, hashes, timeout=timeout, retries=retries) for url, hashes in wanted.items()
    }
    combined: list[Stats | None] = []
    for hashes, urls in items:
        best: Stats | None = None
        for url in urls:
            for h in hashes:
                stats = results[url].stats.get(h)
                if stats is not None:
                    best = stats if best is None else best.combine(stats)
        combined.append(best)
    return combined, list(results.values())
