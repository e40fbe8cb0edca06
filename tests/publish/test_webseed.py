"""``serve-files`` and ``serve``'s torrents/: Range requests as RFC 9110 says, nothing
served outside torrents/. Every test runs against both servers (one answer function)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from pathlib import Path

import pytest
import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from phonotheca.serve.torrent_files import TorrentFiles
from phonotheca.torrents.webseed import make_server
from tests.conftest import REPO
from tests.peers import free_port, wait_until
from tests.processes import start_in_a_terminal_group, stop_all, stop_with

DATA = bytes(range(256)) * 40  # 10240 bytes


async def _web_app(scope: Scope, receive: Receive, send: Send) -> None:
    """What ``serve``'s web app answers for paths the torrent files layer passes on."""
    await PlainTextResponse("web app", status_code=404)(scope, receive, send)


@contextmanager
def _asgi_server(root: Path) -> Iterator[int]:
    """``serve``'s torrents layer in front of a stand-in web app, under uvicorn."""
    port = free_port()
    config = uvicorn.Config(
        TorrentFiles(_web_app, [root]), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "uvicorn to start")
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _serve_files(root: Path) -> Iterator[int]:
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(params=["serve-files", "serve"])
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "archive"
    (root / "torrents" / "col" / "data").mkdir(parents=True)
    (root / "torrents" / "col" / "data" / "a.tar").write_bytes(DATA)
    (root / "torrents" / "col" / "empty").write_bytes(b"")
    (root / "torrents" / "col.torrent").write_bytes(b"d4:infode")
    (root / "torrents" / "col" / "data" / "b.tar.partial").write_bytes(b"unfinished")
    (root / "torrents.json").write_text("{}")
    (root / "torrents.json.minisig").write_text("untrusted comment: signature\n")
    (root / "keys").mkdir()
    (root / "keys" / "publisher.key").write_bytes(b"secret")
    (root / "catalog.sqlite3").write_bytes(b"secret")
    (tmp_path / "outside").write_bytes(b"secret")
    os.symlink(tmp_path / "outside", root / "torrents" / "col" / "link")
    os.symlink(tmp_path, root / "torrents" / "dirlink")
    run = _serve_files if request.param == "serve-files" else _asgi_server
    with run(root) as port:
        yield root, port


def get(port: int, path: str, method: str = "GET", **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    response.read_body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def body(response: http.client.HTTPResponse) -> bytes:
    return response.read_body  # type: ignore[attr-defined,no-any-return]


URL = "/torrents/col/data/a.tar"


def test_whole_file_and_head(served: tuple[Path, int]) -> None:
    _, port = served
    r = get(port, URL)
    assert r.status == 200 and body(r) == DATA
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Length"] == str(len(DATA))
    assert r.headers["ETag"].startswith('"') and r.headers["Last-Modified"].endswith("GMT")
    h = get(port, URL, "HEAD")
    assert h.status == 200 and body(h) == b"" and h.headers["Content-Length"] == str(len(DATA))
    assert get(port, "/torrents/col.torrent").headers["Content-Type"] == "application/x-bittorrent"
    assert body(get(port, "/torrents.json")) == b"{}"
    assert body(get(port, "/torrents.json.minisig")).startswith(b"untrusted comment:")
    assert get(port, "/torrents/col/empty").headers["Content-Length"] == "0"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-5", 10235, 10239),
        ("bytes=10200-99999", 10200, 10239),  # clamped to the end
        ("bytes=-99999", 0, 10239),
        ("bytes=0-99,100-199", 0, 199),  # adjacent ranges are merged
    ],
)
def test_single_range(served: tuple[Path, int], header: str, first: int, last: int) -> None:
    _, port = served
    r = get(port, URL, Range=header)
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert body(r) == DATA[first : last + 1]
    assert r.headers["Content-Length"] == str(last - first + 1)


def test_multiple_ranges_are_multipart(served: tuple[Path, int]) -> None:
    _, port = served
    r = get(port, URL, Range="bytes=0-9, 5000-5009, -3")
    assert r.status == 206
    kind = r.headers["Content-Type"]
    assert kind.startswith("multipart/byteranges; boundary=")
    assert int(r.headers["Content-Length"]) == len(body(r))
    message = BytesParser().parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + body(r))
    parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.get_payload()]  # type: ignore[union-attr,index]
    assert parts == [
        ("bytes 0-9/10240", DATA[0:10]),
        ("bytes 5000-5009/10240", DATA[5000:5010]),
        ("bytes 10237-10239/10240", DATA[10237:]),
    ]


def test_unsatisfiable_and_ignored_ranges(served: tuple[Path, int]) -> None:
    _, port = served
    r = get(port, URL, Range="bytes=10240-")
    assert r.status == 416 and r.headers["Content-Range"] == "bytes */10240"
    r = get(port, "/torrents/col/empty", Range="bytes=0-0")
    assert r.status == 416 and r.headers["Content-Range"] == "bytes */0"
    # Malformed or in another unit: ignored, the whole file is sent.
    for header in ("bytes=5-1", "bytes=abc", "items=0-1"):
        r = get(port, URL, Range=header)
        assert r.status == 200 and body(r) == DATA, header


def test_hostile_ranges_are_416_never_500(served: tuple[Path, int]) -> None:
    _, port = served
    for header in (
        "bytes=" + "9" * 4000 + "-",  # a position too long to convert
        "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2000, 2)),  # 1,000 ranges
        "bytes=0-99,50-149",  # overlapping
    ):
        r = get(port, URL, Range=header)
        assert r.status == 416 and r.headers["Content-Range"] == "bytes */10240", header[:20]
    r = get(port, URL, Range="bytes=10000-" + "9" * 4000)  # clamped to the file
    assert r.status == 206 and body(r) == DATA[10000:]


def test_conditional_requests(served: tuple[Path, int]) -> None:
    _, port = served
    first = get(port, URL)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    r = get(port, URL, Range="bytes=0-3", **{"If-Range": etag})
    assert r.status == 206 and body(r) == DATA[:4]
    r = get(port, URL, Range="bytes=0-3", **{"If-Range": modified})
    assert r.status == 206
    r = get(port, URL, Range="bytes=0-3", **{"If-Range": '"other"'})
    assert r.status == 200 and body(r) == DATA  # changed since: the whole new file
    assert get(port, URL, **{"If-None-Match": etag}).status == 304
    assert get(port, URL, **{"If-Modified-Since": modified}).status == 304
    assert get(port, URL, **{"If-None-Match": '"other"'}).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/torrents/../catalog.sqlite3",
        "/torrents/%2e%2e/catalog.sqlite3",
        "/torrents/col/..%2f..%2fcatalog.sqlite3",
        "/torrents/col/%2e%2e%2f%2e%2e%2fcatalog.sqlite3",
        "/catalog.sqlite3",
        "/keys/publisher.key",
        "/torrents/../keys/publisher.key",
        "/torrents/col/link",
        "/torrents/dirlink/outside",
        "/torrents/col/data/b.tar.partial",
        "/torrents/col/data",
        "/torrents/",
        "/torrents//col.torrent",
        "/torrents/col/data/a.tar%00",
        "/torrents/col/%ff",
        "/torrents/col/data/missing",
        "//etc/passwd",
    ],
)
def test_nothing_outside_torrents(served: tuple[Path, int], path: str) -> None:
    _, port = served
    r = get(port, path)
    assert r.status == 404, path
    assert b"secret" not in body(r)


def test_only_get_and_head(served: tuple[Path, int], request: pytest.FixtureRequest) -> None:
    _, port = served
    r = get(port, URL, "POST")
    if "serve-files" in request.node.callspec.id:
        assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
    else:  # other methods are the web app's to answer
        assert r.status == 404 and body(r) == b"web app"


def test_keep_alive_serves_several_requests(served: tuple[Path, int]) -> None:
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for first in (0, 4096, 8192):
            conn.request("GET", URL, headers={"Range": f"bytes={first}-{first + 99}"})
            response = conn.getresponse()
            assert response.status == 206 and response.read() == DATA[first : first + 100]
    finally:
        conn.close()


def test_cli_serve_files(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    (root / "torrents").mkdir(parents=True)
    (root / "phonotheca.toml").write_text('[archive]\nname = "t"\n')
    (root / "torrents" / "x.torrent").write_bytes(b"d4:infode")
    port = free_port()
    command = [str(REPO / ".venv" / "bin" / "phonotheca"), "serve-files", "--archive", str(root)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def up() -> bool:
            assert server.poll() is None, "serve-files exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_until(up, 20, "serve-files listening")
        r = get(port, "/torrents/x.torrent", Range="bytes=1-4")
        assert r.status == 206 and body(r) == b"4:in"
        # The port is taken now: a clear error, not a traceback.
        busy = subprocess.run([*command, "--port", str(port)], capture_output=True, text=True)
        assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    finally:
        # SIGTERM, as a service manager sends: a shell that runs the tests in the
        # background starts them with SIGINT ignored, and Python then keeps it so.
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_serve_files_stops_with_one_line(tmp_path: Path, how: str) -> None:
    root = tmp_path / "archive"
    (root / "torrents").mkdir(parents=True)
    (root / "phonotheca.toml").write_text('[archive]\nname = "t"\n')
    port = free_port()
    command = [sys.executable, "-m", "phonotheca.cli", "serve-files", "--archive", str(root)]
    server = start_in_a_terminal_group([*command, "--port", str(port)], subprocess.PIPE)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()  # printed once it listens
        assert f"http://127.0.0.1:{port}/torrents/" in first
        stop_with(server, how)
        rest, _ = server.communicate(timeout=20)
    finally:
        stop_all(server, set())
    assert server.returncode == 0, first + rest
    assert rest.splitlines() == [f"stopped serving http://127.0.0.1:{port}/torrents/"]


def test_a_client_that_goes_away_mid_answer_is_no_error(
    served: tuple[Path, int], caplog: pytest.LogCaptureFixture
) -> None:
    """BitTorrent clients drop connections mid-piece all the time: the server carries on
    and logs no error."""
    root, port = served
    big = root / "torrents" / "col" / "data" / "big.tar"
    big.write_bytes(bytes(8 << 20))
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /torrents/col/data/big.tar HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    r = get(port, URL, Range="bytes=0-9")
    assert r.status == 206 and body(r) == DATA[:10]
    assert not [rec for rec in caplog.records if rec.levelname in ("ERROR", "CRITICAL")]
