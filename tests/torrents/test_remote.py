"""Bounded fetches against real HTTP servers on 127.0.0.1: limits, timeouts, hostile replies.

The servers misbehave on purpose: an endless body, a huge declared length, silence, a
redirect to a local file, a tracker reply nested 100,000 lists deep.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phonotheca.torrents import bencode
from phonotheca.torrents.listing import LISTING_FILE, ListingError, read_listing
from phonotheca.torrents.remote import MAX_LISTING_BYTES, FetchError, Timeouts, fetch_bytes
from phonotheca.torrents.scrape import Stats, scrape_all

GOOD_HASH = b"\x11" * 20
QUICK = Timeouts(connect=2.0, read=0.5, total=30.0)


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event
    sent: dict[str, int]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/ok":
            self._send(b"hello")
        elif path == "/good/scrape":
            files = {GOOD_HASH: {"complete": 3, "incomplete": 1, "downloaded": 5}}
            self._send(bencode.encode({"files": files}))
        elif path == "/unsorted/scrape":  # trackers need not sort keys
            self._send(b"d5:filesd20:" + GOOD_HASH + b"d10:incompletei1e8:completei2eeee")
        elif path == "/deep/scrape":
            self._send(b"l" * 100_000 + b"e" * 100_000)
        elif path == "/endless":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body runs until the connection ends
            self.sent["endless"] = 0
            chunk = b"x" * 65_536
            try:
                while not self.release.is_set():
                    self.wfile.write(chunk)
                    self.sent["endless"] += len(chunk)
            except OSError:
                pass  # the client stopped reading and closed
        elif path == "/declared":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.release.wait(30)
        elif path == "/silent":
            self.release.wait(30)
        elif path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("http://phonotheca-proxied.invalid/"):  # as a proxy
            self.sent["proxied"] = 1
            assert self.headers["Proxy-Authorization"] == "Basic dXNlcjpwYXNz"  # user:pass
            self._send(b"via the proxy")
        elif path == "/missing":
            self._send(b"no", status=404)
        else:
            self._send(b"?", status=500)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, int]]]:
    release = threading.Event()
    sent: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"release": release, "sent": sent})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", sent
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


def test_a_plain_fetch(server: tuple[str, dict[str, int]]) -> None:
    url, _ = server
    assert fetch_bytes(f"{url}/ok", limit=5, what="x", timeouts=QUICK) == b"hello"
    with pytest.raises(FetchError, match="larger than 4 bytes"):
        fetch_bytes(f"{url}/ok", limit=4, what="x", timeouts=QUICK)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_bytes(f"{url}/missing", limit=5, what="x", timeouts=QUICK)


def test_an_endless_body_is_cut_at_the_limit(server: tuple[str, dict[str, int]]) -> None:
    url, sent = server
    with pytest.raises(FetchError, match=r"cannot fetch the thing: larger than 1 MiB") as caught:
        fetch_bytes(f"{url}/endless", limit=1 << 20, what="the thing", timeouts=QUICK)
    assert str(caught.value).startswith(f"{url}/endless: ")
    # The server had more to give (its count is updated after each write returns: give
    # its thread a moment to record the write the client read the last byte of).
    deadline = time.monotonic() + 5
    while sent["endless"] <= 1 << 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent["endless"] > 1 << 20


def test_a_declared_length_past_the_limit_is_refused_before_reading(
    server: tuple[str, dict[str, int]],
) -> None:
    url, _ = server
    # The server sends no body: a client that waited for one would time out instead.
    with pytest.raises(FetchError, match="larger than 64 MiB"):
        fetch_bytes(f"{url}/declared", limit=MAX_LISTING_BYTES, what="x", timeouts=QUICK)


def test_a_silent_server_times_out(server: tuple[str, dict[str, int]]) -> None:
    url, _ = server
    with pytest.raises(FetchError, match=r"no data within 0\.5 s"):
        fetch_bytes(f"{url}/silent", limit=10, what="x", timeouts=QUICK)


def test_a_server_that_never_accepts_times_out_connecting() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        backlog = []
        for _ in range(8):  # fill the accept queue: later SYNs go unanswered
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            backlog.append(s)
        try:
            with pytest.raises(FetchError, match=r"no connection within 0\.3 s"):
                fetch_bytes(
                    f"http://127.0.0.1:{port}/",
                    limit=10,
                    what="x",
                    timeouts=Timeouts(connect=0.3, read=30),
                )
        finally:
            for s in backlog:
                s.close()


def test_redirects_and_schemes_other_than_http_are_refused(
    server: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    url, _ = server
    with pytest.raises(FetchError, match="only http"):
        fetch_bytes(f"{url}/to-file", limit=1 << 20, what="x", timeouts=QUICK)
    with pytest.raises(FetchError, match="only http"):
        fetch_bytes("ftp://127.0.0.1/x", limit=10, what="x")
    local = tmp_path / "local"
    local.write_bytes(b"12345")
    assert fetch_bytes(str(local), limit=5, what="x") == b"12345"
    assert fetch_bytes(local.as_uri(), limit=5, what="x") == b"12345"
    with pytest.raises(FetchError, match="larger than 4 bytes"):
        fetch_bytes(str(local), limit=4, what="x")


def test_a_listing_past_64_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / LISTING_FILE
    with open(path, "wb") as f:
        f.truncate(MAX_LISTING_BYTES + 1)  # sparse
    with pytest.raises(ListingError, match="larger than 64 MiB"):
        read_listing(path)


def test_a_deeply_nested_tracker_reply_fails_that_tracker_only(
    server: tuple[str, dict[str, int]],
) -> None:
    """100,000 nested lists from one tracker: its error, not a RecursionError that stops
    the whole scrape; the other trackers' figures are kept."""
    url, _ = server
    trackers = [f"{url}/deep/announce", f"{url}/good/announce", f"{url}/unsorted/announce"]
    combined, results = scrape_all([([GOOD_HASH], trackers)], timeout=5)
    by_url = {r.url: r for r in results}
    deep = by_url[f"{url}/deep/announce"]
    assert deep.error is not None and "nested more than" in deep.error and deep.stats == {}
    assert by_url[f"{url}/good/announce"].stats == {GOOD_HASH: Stats(3, 1, 5)}
    assert by_url[f"{url}/unsorted/announce"].stats == {GOOD_HASH: Stats(2, 1, 0)}
    assert combined == [Stats(3, 1, 5)]


def test_the_proxy_of_the_environment_is_used(
    server: tuple[str, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As urllib did: http_proxy (with its credentials) unless no_proxy names the host."""
    url, sent = server
    monkeypatch.setenv("http_proxy", url.replace("http://", "http://user:pass@"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    target = "http://phonotheca-proxied.invalid/x.torrent"
    assert fetch_bytes(target, limit=100, what="x", timeouts=QUICK) == b"via the proxy"
    assert sent["proxied"] == 1
    assert fetch_bytes(f"{url}/ok", limit=5, what="x", timeouts=QUICK) == b"hello"
