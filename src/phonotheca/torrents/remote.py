"""Bounded fetches: what a listing names is read with a size limit and timeouts.

A mirror acts on files other people publish: ``torrents.json``, ``.torrent`` files,
tracker replies. Each is read through :func:`fetch_bytes`, which stops reading one byte
past its limit (never buffering an unbounded response), gives up on a server that does
not connect or send within its timeouts, and refuses locations that are neither
``http(s)://`` nor a local path. Where a ``.torrent`` may be is decided by
:func:`phonotheca.torrents.listing.resolve_url`.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MAX_LISTING_BYTES = 64 << 20
"""Largest ``torrents.json`` read (64 MiB): about 100,000 torrents' entries."""
CHUNK = 1 << 16
MAX_REDIRECTS = 5
USER_AGENT = "phonotheca"


class FetchError(OSError):
    """A location could not be read within its limits; the message names it and why."""

    def __init__(
        self, location: str, what: str, reason: str, verb: str = "fetch", missing: bool = False
    ) -> None:
        super().__init__(f"{location}: cannot {verb} {what}: {reason}")
        self.reason = reason
        self.missing = missing
        """True when there is nothing at ``location`` (HTTP 404 or 410, no such file): an
        optional file (a signature) is then absent, not unreadable."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait: for a connection (TCP and TLS), for each read, for the whole fetch."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 600.0


DEFAULT_TIMEOUTS = Timeouts()


def fetch_bytes(
    location: str,
    *,
    limit: int,
    what: str,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> bytes:
    """The bytes at ``location``: an ``http(s)://`` URL, a ``file:`` URL or a path.

    Raises :class:`FetchError` naming ``location`` and ``what`` (e.g. ``torrents.json``)
    when it cannot be read, when the server does not answer in time, or when it holds more
    than ``limit`` bytes (reading stops there).
    """
    scheme = urllib.parse.urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_http(location, limit, what, timeouts)
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(location).path))
    elif "://" in location:
        raise FetchError(location, what, "only http(s) URLs and paths are read")
    else:
        path = Path(location)  # a path, even with a ':' in a name
    return _read_file(path, location, limit, what)


def _too_big(location: str, what: str, limit: int) -> FetchError:
    return FetchError(location, what, f"larger than {_size(limit)}, more than any valid one")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"


def _read_file(path: Path, location: str, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        raise FetchError(location, what, str(exc.strerror or exc), "read", missing) from None
    if len(data) > limit:
        raise _too_big(location, what, limit)
    return data


def _fetch_http(url: str, limit: int, what: str, timeouts: Timeouts) -> bytes:
    deadline = time.monotonic() + timeouts.total
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise FetchError(url, what, "only http(s) URLs are followed")
        connection, target, headers = _connect(parts, timeouts.connect)
        response: http.client.HTTPResponse | None = None
        try:
            try:
                connection.connect()
            except TimeoutError:
                raise FetchError(
                    url, what, f"no connection within {timeouts.connect:g} s"
                ) from None
            except OSError as exc:
                raise FetchError(url, what, _reason(exc)) from None
            # Kept: the connection hands its socket to the response when the server closes
            # after the body, and each read below sets the socket's timeout.
            sock = connection.sock
            assert sock is not None
            try:
                sock.settimeout(timeouts.read)
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(url, what, _reason(exc, timeouts)) from None
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(url, what, "a redirect without Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                missing = response.status in (404, 410)
                reason = f"HTTP {response.status} {response.reason}"
                raise FetchError(url, what, reason, missing=missing)
            return _read_body(response, sock, url, limit, what, timeouts, deadline)
        finally:
            if response is not None:
                response.close()
            connection.close()
    raise FetchError(url, what, f"more than {MAX_REDIRECTS} redirects")


def _connect(
    parts: urllib.parse.SplitResult, timeout: float
) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """A connection for the URL, its request target and headers: straight to the server,
    or through the proxy that ``http_proxy`` / ``https_proxy`` name (not for the hosts of
    ``no_proxy``), as ``urllib`` would."""
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": USER_AGENT}
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        if scheme == "https":
            context = ssl.create_default_context()
            return (
                http.client.HTTPSConnection(host, port, timeout=timeout, context=context),
                target,
                headers,
            )
        return http.client.HTTPConnection(host, port, timeout=timeout), target, headers
    via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    auth: dict[str, str] = {}
    if via.username is not None:
        pair = f"{urllib.parse.unquote(via.username)}:{urllib.parse.unquote(via.password or '')}"
        auth["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    if scheme == "https":  # a CONNECT tunnel; TLS with the server itself
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(
            via.hostname or "", via.port or 8080, timeout=timeout, context=context
        )
        connection.set_tunnel(host, port, headers=auth)
        return connection, target, headers
    plain = http.client.HTTPConnection(via.hostname or "", via.port or 8080, timeout=timeout)
    absolute = urllib.parse.urlunsplit(("http", parts.netloc, parts.path or "/", parts.query, ""))
    return plain, absolute, {**headers, **auth}


def _read_body(
    response: http.client.HTTPResponse,
    sock: socket.socket,
    url: str,
    limit: int,
    what: str,
    timeouts: Timeouts,
    deadline: float,
) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_big(url, what, limit)
    chunks: list[bytes] = []
    got = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(url, what, f"not received within {timeouts.total:g} s")
        sock.settimeout(min(timeouts.read, left))
        try:
            chunk = response.read1(min(CHUNK, limit + 1 - got))
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(url, what, _reason(exc, timeouts)) from None
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
        if got > limit:
            raise _too_big(url, what, limit)
    return b"".join(chunks)


def _reason(exc: BaseException, timeouts: Timeouts | None = None) -> str:
    if isinstance(exc, TimeoutError) and timeouts is not None:
        return f"no data within {timeouts.read:g} s"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the end"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(reason)
