"""Sign-in, sessions, CSRF, access settings, hostile input, path traversal, escaping."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.serve.conftest import (
    HOSTILE_ALBUM,
    HOSTILE_TITLE,
    PASSWORD,
    USER,
    LiveServer,
    copy_archive,
    csrf_from,
    make_app,
    packed_tracks,
    sign_in,
)


@pytest.fixture(scope="module")
def audio_url(built_archive: Path) -> str:
    entry = packed_tracks(built_archive)[0]
    return f"/tracks/{quote(str(entry['id']), safe='')}/audio"


def test_audio_needs_sign_in_by_default(client: httpx.Client, audio_url: str) -> None:
    r = client.get(audio_url)
    assert r.status_code == 401
    assert client.head(audio_url).status_code == 401
    # Browsing stays public.
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/search", params={"q": "a"}).status_code == 200
    sign_in(client)
    assert client.get(audio_url).status_code == 200


def test_public_audio_setting(built_archive: Path, audio_url: str) -> None:
    with (
        LiveServer(make_app(built_archive, public_audio=True)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert c.get(audio_url).status_code == 200


def test_private_catalog_redirects_and_refuses(built_archive: Path) -> None:
    with (
        LiveServer(make_app(built_archive, public_catalog=False)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        r = c.get("/albums/x?y=1", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/signin?next=%2Falbums%2Fx%3Fy%3D1"
        assert c.get("/api/v1/search", params={"q": "a"}).status_code == 401
        assert c.get("/api/v1/stats").status_code == 401
        sign_in(c)
        assert c.get("/api/v1/stats").status_code == 200
        assert c.get("/stats").status_code == 200


def _signin_form(c: httpx.Client) -> str:
    return csrf_from(c.get("/signin").text)


def test_sign_in_requires_csrf_token(client: httpx.Client, audio_url: str) -> None:
    token = _signin_form(client)
    form = {"username": USER, "password": PASSWORD, "next": "/"}
    assert client.post("/signin", data=form).status_code == 403
    assert client.post("/signin", data={**form, "csrf_token": "x" * 43}).status_code == 403
    # The right token from another site (Origin) is refused too.
    r = client.post(
        "/signin", data={**form, "csrf_token": token}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    # A fresh client that never got the cookie cannot reuse someone's token.
    with httpx.Client(base_url=str(client.base_url)) as other:
        assert other.post("/signin", data={**form, "csrf_token": token}).status_code == 403
    assert client.get(audio_url).status_code == 401
    r = client.post("/signin", data={**form, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(audio_url).status_code == 200


def test_session_cookie_flags(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as c:
        token = _signin_form(c)
        r = c.post(
            "/signin",
            data={"username": USER, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        cookie = next(v for v in r.headers.get_list("set-cookie") if "phonotheca_session=" in v)
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert "Secure" not in cookie
    # Behind a trusted proxy that says the request came over https, cookies are Secure.
    with httpx.Client(base_url=live_server.url, headers={"X-Forwarded-Proto": "https"}) as c:
        page = c.get("/signin")
        token = csrf_from(page.text)
        # The CSRF cookie is Secure now: httpx, talking plain http, would not send it.
        c.cookies.set("phonotheca_csrf", token)
        r = c.post(
            "/signin",
            data={"username": USER, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        cookie = next(v for v in r.headers.get_list("set-cookie") if "phonotheca_session=" in v)
        assert "Secure" in cookie


def test_wrong_password_and_tampered_cookie(client: httpx.Client, audio_url: str) -> None:
    token = _signin_form(client)
    r = client.post("/signin", data={"username": USER, "password": "wrong", "csrf_token": token})
    assert r.status_code == 401
    assert "wrong password" in r.text
    sign_in(client)
    session = client.cookies["phonotheca_session"]
    body, signature = session.split(".")
    client.cookies.set("phonotheca_session", body + "." + signature[::-1])
    assert client.get(audio_url).status_code == 401


def test_sign_out_requires_csrf(client: httpx.Client, audio_url: str) -> None:
    sign_in(client)
    assert client.post("/signout").status_code == 403
    assert client.get(audio_url).status_code == 200
    token = csrf_from(client.get("/").text)
    r = client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(audio_url).status_code == 401


def test_no_open_redirect_after_sign_in(client: httpx.Client) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/ok?x=1"):
        token = _signin_form(client)
        r = client.post(
            "/signin",
            data={"username": USER, "password": PASSWORD, "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert r.headers["location"] == ("/ok?x=1" if target == "/ok?x=1" else "/")


HOSTILE_SEARCHES = [
    '"',
    '""',
    "'",
    "a' OR '1'='1",
    "'; DROP TABLE tracks; --",
    "NEAR(a b)",
    "title:foo",
    "foo AND bar OR NOT baz",
    "*",
    "a*",
    "^a",
    "(((",
    "-a",
    "a\x00b",
    "\x00",
    "x" * 10_000,
    "a " * 5_000,
    "🎵 ♫ 𝄞",
    "%",
    "\\",
    "{a b}",
    "+",
]


def test_hostile_search_text_never_fails(client: httpx.Client) -> None:
    for text in HOSTILE_SEARCHES:
        api = client.get("/api/v1/search", params={"q": text})
        assert api.status_code == 200, (text[:40], api.text[:200])
        assert isinstance(api.json()["tracks"], list)
        page = client.get("/", params={"q": text})
        assert page.status_code == 200, text[:40]
    # Bytes that are not UTF-8 (a lone surrogate, 0xFF) in the query string.
    for raw in ("%ED%A0%80", "%FF%FE", "%00%00", "a%C3"):
        assert client.get(f"/api/v1/search?q={raw}").status_code == 200, raw
        assert client.get(f"/?q={raw}").status_code == 200, raw
    # The words inside the syntax are still searched for.
    assert client.get("/api/v1/search", params={"q": '(Night"*'}).json()["tracks"]


def test_path_traversal_refused(client: httpx.Client, built_archive: Path) -> None:
    sign_in(client)
    for path in (
        "/tracks/..%2F..%2Fcatalog.sqlite3/audio",
        "/tracks/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio",
        "/tracks/../../catalog.sqlite3/audio",
        "/albums/..%2F..%2Fcatalog.sqlite3/cover",
        "/static/../catalog.sqlite3",
        "/static/%2e%2e/catalog.sqlite3",
        "/static/..%2Fcatalog.sqlite3",
        "/torrents/..%2Fcatalog.sqlite3.torrent",
        "/torrents/%2e%2e%2ftorrents.torrent",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert b"SQLite format 3" not in r.content
    # A real track whose id looks like a path: its page works, it has no audio.
    path_like = quote("test:track:../../etc/passwd", safe="")
    page = client.get(f"/tracks/{path_like}")
    assert page.status_code == 200
    assert "Path-like id" in page.text
    assert client.get(f"/tracks/{path_like}/audio").status_code == 404


def test_hostile_volume_names_in_the_catalog_are_not_read(
    built_archive: Path, tmp_path: Path
) -> None:
    """Even a tampered catalog cannot make the server read outside a collection."""
    root = copy_archive(built_archive, tmp_path / "arc")
    (tmp_path / "secret.tar").write_bytes(b"secret" * 100)
    entries = packed_tracks(root)
    conn = sqlite3.connect(root / "catalog.sqlite3")
    ids = [str(e["id"]) for e in entries[:3]]
    bad_volumes = [
        "../../../secret.tar",
        f"{entries[0]['collection']}/../x.0001.tar",
        "/etc/passwd",
    ]
    with conn:
        for public_id, volume in zip(ids, bad_volumes, strict=True):
            conn.execute(
                "UPDATE ledger SET volume = ?, offset = 0, length = 10"
                " WHERE track_id = (SELECT id FROM tracks WHERE public_id = ?)",
                (volume, public_id),
            )
        conn.execute(
            "UPDATE ledger SET collection = '../..' WHERE track_id ="
            " (SELECT id FROM tracks WHERE public_id = ?)",
            (str(entries[3]["id"]),),
        )
    conn.close()
    with (
        LiveServer(make_app(root, public_audio=True)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for public_id in [*ids, str(entries[3]["id"])]:
            r = c.get(f"/tracks/{quote(public_id, safe='')}/audio")
            assert r.status_code == 404, public_id
            assert b"secret" not in r.content
        # The untouched tracks still play.
        ok = entries[4]
        assert c.get(f"/tracks/{quote(str(ok['id']), safe='')}/audio").status_code == 200


def test_text_is_escaped(client: httpx.Client) -> None:
    album = client.get("/albums/" + quote("test:album:evil", safe=""))
    assert album.status_code == 200
    assert HOSTILE_ALBUM not in album.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in album.text
    assert "<img src=x" not in album.text
    track = client.get("/tracks/" + quote("test:track:evil", safe=""))
    assert "<b>bold</b>" not in track.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in track.text
    results = client.get("/", params={"q": "script alert"})
    assert HOSTILE_ALBUM not in results.text
    assert "&lt;script&gt;" in results.text
    # The JSON API returns the text as it is (a client escapes it for its own output).
    api = client.get("/api/v1/albums/" + quote("test:album:evil", safe="")).json()
    assert api["title"] == HOSTILE_ALBUM
    assert api["tracks"][0]["title"] in (HOSTILE_TITLE, "Path-like id")
    # The search page reflects the query escaped.
    reflected = client.get("/", params={"q": '"><script>alert(3)</script>'})
    assert "<script>alert(3)" not in reflected.text


def test_security_headers(client: httpx.Client) -> None:
    r = client.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
