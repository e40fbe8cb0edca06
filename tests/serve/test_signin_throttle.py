"""Failed sign-ins are limited per client address; the limit forgets old failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from phonotheca.serve.security import SignInThrottle, Throttled
from phonotheca.serve.state import StateStore
from tests.serve.conftest import PASSWORD, USER, LiveServer, copy_archive, csrf_from, make_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_counts_failures_per_address_in_a_sliding_window() -> None:
    clock = Clock()
    throttle = SignInThrottle(3, 60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") is None
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1") == 30  # the first failure leaves the window then
    assert throttle.retry_after("10.0.0.2") is None, "other addresses are not affected"
    clock.now += 30
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 10


def test_the_throttle_forgets_the_least_recent_address_past_its_bound() -> None:
    throttle = SignInThrottle(1, 60, max_addresses=2, clock=Clock())
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert throttle.retry_after("a") is None
    assert throttle.retry_after("b") is not None and throttle.retry_after("c") is not None


def test_server_processes_share_one_count_through_the_state_store(tmp_path: Path) -> None:
    """Each worker process has its own StateStore on the same file: 3 failures spread
    over two of them reach a limit of 3, and a restarted process still knows them."""
    clock = Clock()
    path = tmp_path / "state.sqlite3"
    first, second = StateStore(path), StateStore(path)
    a = SignInThrottle(3, 60, store=first, clock=clock)
    b = SignInThrottle(3, 60, store=second, clock=clock)
    a.failed("10.0.0.1")
    b.failed("10.0.0.1")
    assert a.retry_after("10.0.0.1") is None and b.retry_after("10.0.0.1") is None
    clock.now += 5
    a.failed("10.0.0.1")
    assert b.retry_after("10.0.0.1") == 55
    first.close()
    restarted = SignInThrottle(3, 60, store=StateStore(path), clock=clock)
    assert restarted.retry_after("10.0.0.1") == 55
    clock.now += 55
    assert restarted.retry_after("10.0.0.1") is None


def test_stored_failures_stay_bounded(tmp_path: Path) -> None:
    clock = Clock()
    store = StateStore(tmp_path / "state.sqlite3")
    throttle = SignInThrottle(2, 60, store=store, max_addresses=3, clock=clock)
    for _ in range(5):  # an address keeps only its latest 2
        throttle.failed("a")
        clock.now += 1
    assert store.read().execute("SELECT count(*) FROM signin_failures").fetchone() == (2,)
    for address in ("b", "c", "d"):  # past 3 addresses x 2 rows, the oldest rows go
        throttle.failed(address)
        throttle.failed(address)
        clock.now += 1
    rows = store.read().execute("SELECT address FROM signin_failures").fetchall()
    assert sorted(r[0] for r in rows) == ["b", "b", "c", "c", "d", "d"]
    clock.now += 61
    throttle.failed("e")  # failures older than the window go
    assert store.read().execute("SELECT address FROM signin_failures").fetchall() == [("e",)]


def _sign_in(client: httpx.Client, password: str) -> httpx.Response:
    token = csrf_from(client.get("/signin").text)
    return client.post(
        "/signin",
        data={"username": USER, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )


def test_the_sign_in_form_refuses_guessing_after_the_limit(
    built_archive: Path, tmp_path: Path
) -> None:
    # Failures are kept in state.sqlite3, and other tests sign in wrongly too: a copy,
    # without them.
    root = copy_archive(built_archive, tmp_path / "arc")
    store = StateStore(root / "state.sqlite3")
    with store.write() as conn:
        conn.execute("DELETE FROM signin_failures")
    store.close()
    app = make_app(root, signin_failures=3, signin_window=3600)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert _sign_in(client, PASSWORD).status_code == 303, "successes are not counted"
        client.cookies.clear()
        for _ in range(3):
            assert _sign_in(client, "wrong").status_code == 401
        refused = _sign_in(client, PASSWORD)  # even the right password: it is not checked
        assert refused.status_code == 429
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
        assert "Too many failed sign-ins" in refused.text and "60 minutes" in refused.text
        assert client.get("/").status_code == 200, "browsing goes on"


@pytest.mark.parametrize("expensive", [False, True])
def test_an_attempt_counts_failures_only_and_checks_nothing_past_the_limit(
    expensive: bool, tmp_path: Path
) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    throttle = SignInThrottle(2, 60, store=store, clock=Clock())
    checked: list[str] = []

    def check(answer: str | None) -> Callable[[], str | None]:
        def run() -> str | None:
            checked.append(str(answer))
            return answer

        return run

    assert throttle.attempt("a", check("alice"), expensive=expensive) == "alice"
    assert store.read().execute("SELECT count(*) FROM signin_failures").fetchone() == (0,)
    for _ in range(2):
        assert throttle.attempt("a", check(None), expensive=expensive) is None
    with pytest.raises(Throttled) as caught:
        throttle.attempt("a", check("alice"), expensive=expensive)
    assert caught.value.retry_after == 60
    assert checked == ["alice", "None", "None"], "nothing is checked past the limit"
    assert throttle.attempt("b", check("bob"), expensive=expensive) == "bob"
