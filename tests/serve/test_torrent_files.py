"""``serve`` answers torrents.json and torrents/ as ``serve-files`` does, in a builder's
archive only; the web pages under /torrents keep working."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.serve.conftest import LiveServer, copy_archive, make_app


def _volume(root: Path) -> tuple[str, bytes]:
    listing = json.loads((root / "torrents.json").read_text())
    name = next(e["name"] for e in listing["torrents"] if e["kind"] == "audio")
    volume = sorted((root / "torrents" / name / "data").glob("*.tar"))[0]
    return f"/torrents/{name}/data/{volume.name}", volume.read_bytes()


def test_a_builders_site_is_its_web_seed(client: httpx.Client, built_archive: Path) -> None:
    r = client.get("/torrents.json")
    assert r.status_code == 200 and r.content == (built_archive / "torrents.json").read_bytes()
    path, data = _volume(built_archive)
    r = client.get(path, headers={"Range": "bytes=512-1535"})
    assert r.status_code == 206 and r.content == data[512:1536]
    assert r.headers["Content-Range"] == f"bytes 512-1535/{len(data)}"
    # The headers every answer of the site carries.
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    head = client.head(path)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    name = path.split("/")[2]
    torrent = client.get(f"/torrents/{name}.torrent")
    assert torrent.content == (built_archive / "torrents" / f"{name}.torrent").read_bytes()
    for refused in (f"/torrents/{name}/", f"/torrents/{name}/../../catalog.sqlite3"):
        assert client.get(refused).status_code == 404, refused
    # The pages are still the web app's.
    assert "text/html" in client.get("/torrents").headers["Content-Type"]


def test_a_mirror_is_no_web_seed(built_archive: Path, tmp_path: Path) -> None:
    """A mirror root may hold pieces it has not verified: its payload is not handed out;
    the listed .torrent files still are (by the web app's route)."""
    root = copy_archive(built_archive, tmp_path / "mirror")
    (root / ".mirror" / "verified").mkdir(parents=True)
    path, _ = _volume(root)
    name = path.split("/")[2]
    with LiveServer(make_app(root)) as server, httpx.Client(base_url=server.url) as c:
        assert c.get(path).status_code == 404
        torrent = c.get(f"/torrents/{name}.torrent")
        assert torrent.status_code == 200
        assert torrent.content == (root / "torrents" / f"{name}.torrent").read_bytes()


def test_a_private_site_is_no_web_seed(built_archive: Path) -> None:
    """With public_catalog = false the torrents stay behind the sign-in like every page."""
    path, _ = _volume(built_archive)
    app = make_app(built_archive, public_catalog=False)
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as c:
        for refused in ("/torrents.json", path):
            r = c.get(refused, follow_redirects=False)
            assert r.status_code in (303, 404), refused


def test_the_listings_signature_is_served_beside_it(built_archive: Path, tmp_path: Path) -> None:
    """A mirror refuses an unsigned listing: the site that is its own web seed also serves
    ``torrents.json.minisig``, byte for byte (the mirror verifies it, not the server)."""
    root = copy_archive(built_archive, tmp_path / "signed")
    signature = b"untrusted comment: stand-in\nRUQ=\ntrusted comment: x\nAA==\n"
    (root / "torrents.json.minisig").write_bytes(signature)
    with LiveServer(make_app(root)) as server, httpx.Client(base_url=server.url) as c:
        r = c.get("/torrents.json.minisig")
        assert r.status_code == 200 and r.content == signature
        assert c.get("/torrents.json.sig").status_code == 404
