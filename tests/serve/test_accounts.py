"""Accounts: the scrypt cost and its upgrades, sessions that end with a password change,
an API key for the JSON API, and a sign-in throttle that parallel attempts cannot pass."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from phonotheca.config import ServeSettings, Settings, SettingsError, load_settings
from phonotheca.serve.passwords import DEFAULT_COST
from phonotheca.serve.state import StateStore
from tests.serve.conftest import (
    FAST_COST,
    PASSWORD,
    USER,
    LiveServer,
    copy_archive,
    csrf_from,
    free_port,
    make_app,
    packed_tracks,
    sign_in,
)

LIMIT = 3
PARALLEL = 12


def _stored_hash(path: Path, name: str) -> str:
    (stored,) = (
        StateStore(path)
        .read()
        .execute("SELECT password FROM users WHERE name = ?", (name,))
        .fetchone()
    )
    return str(stored)


def test_the_default_cost_is_2_17_and_older_hashes_are_upgraded_at_sign_in(
    tmp_path: Path,
) -> None:
    assert ServeSettings().password_cost == DEFAULT_COST == 17
    path = tmp_path / "state.sqlite3"
    # N = 2^14: what earlier versions of phonotheca stored.
    StateStore(path, password_cost=14).add_user("alice", "correct horse")
    assert _stored_hash(path, "alice").startswith("scrypt$16384$8$1$")
    current = StateStore(path)  # the default cost, as a server without the setting
    assert current.verify_password("alice", "wrong horse") is None
    assert _stored_hash(path, "alice").startswith("scrypt$16384$"), "no upgrade on a failure"
    before = current.get_user("alice")
    assert before is not None
    assert current.verify_password("alice", "correct horse") == before, "no session ends"
    upgraded = _stored_hash(path, "alice")
    assert upgraded.startswith("scrypt$131072$8$1$")
    assert current.verify_password("alice", "correct horse") == before
    # A server set to a lower cost keeps the stronger hash.
    assert StateStore(path, password_cost=FAST_COST).verify_password("alice", "correct horse")
    assert _stored_hash(path, "alice") == upgraded


@pytest.mark.parametrize("value", [9, 21, True, "17", 17.0])
def test_the_password_cost_setting_is_checked(value: object) -> None:
    with pytest.raises(SettingsError, match=r"serve\.password_cost"):
        Settings.from_mapping({"serve": {"password_cost": value}})
    assert Settings.from_mapping({"serve": {"password_cost": 14}}).serve.password_cost == 14


def _audio_url(root: Path) -> str:
    track = packed_tracks(root)[0]
    return f"/tracks/{quote(str(track['id']), safe='')}/audio"


def test_changing_the_password_ends_that_users_sessions(
    built_archive: Path, tmp_path: Path
) -> None:
    root = copy_archive(built_archive, tmp_path / "arc")
    store = StateStore(root / "state.sqlite3", password_cost=FAST_COST)
    store.add_user("bob", "bob's password")
    audio = _audio_url(root)
    with (
        LiveServer(make_app(root)) as server,
        httpx.Client(base_url=server.url, timeout=30) as alice,
        httpx.Client(base_url=server.url, timeout=30) as bob,
    ):
        sign_in(alice)
        sign_in(bob, "bob", "bob's password")
        assert alice.get(audio).status_code == 200 and bob.get(audio).status_code == 200
        store.set_password(USER, "a new password")
        assert alice.get(audio).status_code == 401, "alice's session ended"
        assert bob.get(audio).status_code == 200, "other users' sessions go on"
        alice.cookies.clear()
        with pytest.raises(AssertionError):
            sign_in(alice)  # the old password
        alice.cookies.clear()
        sign_in(alice, USER, "a new password")
        assert alice.get(audio).status_code == 200


def test_the_api_takes_an_api_key_and_throttles_wrong_ones(
    built_archive: Path, tmp_path: Path
) -> None:
    root = copy_archive(built_archive, tmp_path / "arc")
    key = StateStore(root / "state.sqlite3").rotate_subsonic_credentials(USER).api_key
    app = make_app(root, public_catalog=False, signin_failures=LIMIT, signin_window=3600)
    with (
        LiveServer(app) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):

        def stats(api_key: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            return client.get("/api/v1/stats", headers=headers)

        assert stats(None).status_code == 401
        assert stats(key).status_code == 200
        for _ in range(LIMIT):
            wrong = stats("pk_wrong")
            assert wrong.status_code == 401 and "wrong API key" in wrong.json()["detail"]
            assert wrong.headers["www-authenticate"].startswith("Bearer")
        refused = stats(key)  # the right key too: past the limit nothing is checked
        assert refused.status_code == 429 and "too many failed" in refused.json()["detail"]
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
        # One count per address for every way in: the sign-in form is closed as well.
        token = csrf_from(client.get("/signin").text)
        form = {"username": USER, "password": PASSWORD, "csrf_token": token, "next": "/"}
        assert client.post("/signin", data=form).status_code == 429


def test_covers_are_private_when_the_catalog_is(built_archive: Path, tmp_path: Path) -> None:
    from phonotheca.catalog import schema

    conn = schema.connect(built_archive / "catalog.sqlite3", readonly=True)
    (album,) = conn.execute(
        "SELECT a.public_id FROM albums a JOIN images i ON i.album_id = a.id"
        " WHERE i.blob_sha256 IS NOT NULL LIMIT 1"
    ).fetchone()
    conn.close()
    url = f"/albums/{quote(album, safe='')}/cover"
    root = copy_archive(built_archive, tmp_path / "arc")
    for public, expected in [(True, "public"), (False, "private")]:
        with (
            LiveServer(make_app(root, public_catalog=public)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            if not public:
                assert client.get(url).status_code == 401
                sign_in(client)
            r = client.get(url)
            assert r.status_code == 200
            assert r.headers["cache-control"] == f"{expected}, max-age=31536000, immutable"


# -- parallel attempts against a real server of two worker processes ----------------------


class Workers:
    """``phonotheca serve --workers 2`` over a copy of the archive, with a low limit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""

    def clear(self) -> None:
        with StateStore(self.root / "state.sqlite3").write() as conn:
            conn.execute("DELETE FROM signin_failures")


@pytest.fixture(scope="module")
def workers(built_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    root = copy_archive(built_archive, tmp_path_factory.mktemp("workers") / "arc")
    name = load_settings(root).name
    (root / "phonotheca.toml").write_text(
        f'[archive]\nname = "{name}"\n\n[serve]\npassword_cost = {FAST_COST}\n'
        f"signin_failures = {LIMIT}\nsignin_window = 3600\n",
        encoding="utf-8",
    )
    StateStore(root / "state.sqlite3").rotate_subsonic_credentials(USER)
    server = Workers(root)
    port = free_port()
    server.url = f"http://127.0.0.1:{port}"
    args = ["serve", "--archive", str(root), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "phonotheca.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while True:
                try:
                    client.get("/signin")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode in (0, -signal.SIGTERM), out.decode()


def _all_at_once(
    url: str, attempt: Callable[[httpx.Client, Callable[[], object]], str]
) -> Counter[str]:
    """Run ``attempt`` in :data:`PARALLEL` threads, each with its own connection; each
    calls the function it is given when ready, and all go on together. Count the outcomes."""
    barrier = threading.Barrier(PARALLEL)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                outcomes.append(attempt(client, barrier.wait))
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return Counter(outcomes)


def test_parallel_sign_ins_cannot_pass_the_limit(workers: Workers) -> None:
    workers.clear()

    def attempt(client: httpx.Client, ready: Callable[[], object]) -> str:
        token = csrf_from(client.get("/signin").text)
        form = {"username": USER, "password": "wrong password", "csrf_token": token}
        ready()
        return str(client.post("/signin", data=form).status_code)

    outcomes = _all_at_once(workers.url, attempt)
    assert outcomes == Counter({"401": LIMIT, "429": PARALLEL - LIMIT})
    with httpx.Client(base_url=workers.url, timeout=30) as client:
        token = csrf_from(client.get("/signin").text)
        form = {"username": USER, "password": PASSWORD, "csrf_token": token}
        assert client.post("/signin", data=form).status_code == 429


def test_parallel_subsonic_and_api_failures_cannot_pass_the_limit(workers: Workers) -> None:
    workers.clear()

    def subsonic(client: httpx.Client, ready: Callable[[], object]) -> str:
        client.get("/rest/ping", params={"f": "json"})  # connected, nothing counted
        ready()
        params = {"u": USER, "t": "0" * 32, "s": "salt", "f": "json", "v": "1.16.1", "c": "t"}
        r = client.get("/rest/ping", params=params)
        error = r.json()["subsonic-response"]["error"]
        if error["code"] == 0:
            assert "too many failed sign-ins" in error["message"]
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        else:
            assert r.status_code == 200
        return str(error["code"])

    assert _all_at_once(workers.url, subsonic) == Counter({"40": LIMIT, "0": PARALLEL - LIMIT})
    workers.clear()

    def api(client: httpx.Client, ready: Callable[[], object]) -> str:
        client.get("/api/v1/stats")
        ready()
        r = client.get("/api/v1/stats", headers={"Authorization": "Bearer pk_wrong"})
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) > 0
        return str(r.status_code)

    assert _all_at_once(workers.url, api) == Counter({"401": LIMIT, "429": PARALLEL - LIMIT})
