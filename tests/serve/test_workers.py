"""``phonotheca serve --workers N``: several processes on one socket, without Nagle's delay."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from phonotheca.serve.listener import TcpConfig
from tests.processes import cmdline, descendants
from tests.serve.conftest import copy_archive, free_port


def test_accepted_connections_send_without_delay() -> None:
    """asyncio sets TCP_NODELAY only on sockets it knows are TCP: the shared listening
    socket must say so, or each response waits for the client's delayed ACK."""
    config = TcpConfig("phonotheca.serve.app:create_app_from_environment", port=free_port())
    listener = config.bind_socket()
    nodelay: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def accept_one() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", config.port)
            for _ in range(200):
                if nodelay:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    try:
        asyncio.run(accept_one())
    finally:
        listener.close()
    assert nodelay and nodelay[0] != 0


def test_two_workers_serve_search(built_archive: Path, tmp_path: Path) -> None:
    root = copy_archive(built_archive, tmp_path / "arc")
    port = free_port()
    args = ["serve", "--archive", str(root), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "phonotheca.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while True:
                try:
                    client.get("/api/v1/search", params={"q": "a"})
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            for q in ("a", "e", "o", "qzxv"):
                r = client.get("/api/v1/search", params={"q": q, "limit": 5})
                assert r.status_code == 200 and r.json()["query"] == q
            assert client.get("/api/v1/search", params={"q": "a"}).json()["tracks"]
        workers = [pid for pid in descendants(proc.pid) if b"spawn_main" in cmdline(pid)]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert len(workers) == 2
