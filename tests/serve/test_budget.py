"""The query time budget: a request whose catalog queries run too long is stopped, is
answered 503 (Subsonic: error 0), and its worker thread serves the next request."""

from __future__ import annotations

import contextvars
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import Response

from phonotheca.serve import budget
from phonotheca.serve.app import HANDLER_THREADS
from phonotheca.serve.subsonic import ENDPOINTS, system
from phonotheca.serve.subsonic.call import Call
from phonotheca.serve.subsonic.envelope import Payload
from tests.serve.conftest import LiveServer, make_app

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
"""A query that never ends by itself: only the budget can stop it."""
BUDGET_MS = 200


def test_the_budget_interrupts_a_statement_and_leaves_the_connection_usable(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite3")
    budget.install(conn)

    def request() -> None:
        with budget.request_budget(50) as spent:
            budget.start_clock()
            with pytest.raises(sqlite3.OperationalError) as err:
                conn.execute(ENDLESS).fetchone()
            assert spent.expired and budget.budget_exceeded(err.value)
            assert not budget.budget_exceeded(sqlite3.OperationalError("no such table: x"))

    contextvars.copy_context().run(request)
    # Outside a request, and in a new one, queries run as usual.
    assert budget.current() is None
    assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    with budget.request_budget(50):
        budget.start_clock()
        assert conn.execute("SELECT 2 * 21").fetchone() == (42,)
        with pytest.raises(sqlite3.OperationalError) as err:
            conn.execute("SELECT * FROM no_such_table")
        assert not budget.budget_exceeded(err.value)  # an ordinary error
    conn.close()


def _slow_song(call: Call) -> Payload:
    call.conn.execute(ENDLESS).fetchone()
    return {}


@pytest.fixture(scope="module")
def slow_app(built_archive: Path) -> Iterator[FastAPI]:
    """The real app with a 200 ms budget, plus one route and one Subsonic call that run
    an endless query on the server's own catalog connection."""
    app = make_app(built_archive, query_budget_ms=BUDGET_MS, public_audio=True)
    ctx = app.state.ctx

    def endless() -> Response:
        ctx.catalog().execute(ENDLESS).fetchone()
        return Response("never")

    app.add_api_route("/test/endless", endless)
    mp = pytest.MonkeyPatch()
    mp.setitem(ENDPOINTS, "testEndless", _slow_song)
    mp.setattr(system, "PUBLIC", system.PUBLIC | {"testEndless"})
    yield app
    mp.undo()


@pytest.fixture(scope="module")
def slow_server(slow_app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(slow_app) as server:
        yield server


def test_a_request_past_its_budget_is_503_and_frees_its_thread(slow_server: LiveServer) -> None:
    with httpx.Client(base_url=slow_server.url, timeout=30) as client:
        # Twice as many at once as there are handler threads: each one must let go of its
        # thread for the others to be answered at all.
        with ThreadPoolExecutor(2 * HANDLER_THREADS) as pool:
            answers = list(pool.map(lambda _: client.get("/test/endless"), range(8)))
        for r in answers:
            assert r.status_code == 503
            assert r.headers["retry-after"] == str(budget.RETRY_AFTER)
            assert f"{BUDGET_MS} ms budget" in r.json()["error"]
        page = client.get("/test/endless", headers={"Accept": "text/html"})
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert "budget" in page.text
        # The next requests are served as usual.
        assert client.get("/api/v1/stats").status_code == 200
        assert client.get("/api/v1/search", params={"q": "a"}).status_code == 200
        assert client.get("/").status_code == 200


def test_a_subsonic_call_past_its_budget_is_error_0(slow_server: LiveServer) -> None:
    with httpx.Client(base_url=slow_server.url, timeout=30) as client:
        for fmt in ("json", "xml"):
            r = client.get("/rest/testEndless", params={"f": fmt})
            assert r.status_code == 200
            if fmt == "json":
                body = r.json()["subsonic-response"]
                assert body["status"] == "failed" and body["error"]["code"] == 0
                assert f"{BUDGET_MS} ms budget" in body["error"]["message"]
            else:
                assert b'status="failed"' in r.content and b'code="0"' in r.content
        r = client.get("/rest/getOpenSubsonicExtensions", params={"f": "json"})
        assert r.json()["subsonic-response"]["status"] == "ok"


def test_a_fresh_window_per_batch_and_a_spent_budget_stays_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer made in bounded batches (getArtist of a prolific artist) gets a window
    per batch: its whole cost may pass the budget, no batch may."""
    now = [1000.0]
    monkeypatch.setattr(budget.time, "monotonic", lambda: now[0])
    with budget.request_budget(100) as spent:
        budget.renew()  # before the clock starts: nothing to renew
        assert spent.started is None
        budget.start_clock()
        for _ in range(5):  # 5 batches of 80 ms: 400 ms in all, each under 100 ms
            now[0] += 0.08
            assert not spent.over()
            budget.renew()
        now[0] += 0.15  # one batch past the budget
        assert spent.over()
        budget.renew()
        assert spent.over() and spent.expired  # spent stays spent
