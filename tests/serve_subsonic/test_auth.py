"""Subsonic authentication does not tell which user names exist."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from phonotheca.serve.state import StateStore
from tests.serve_subsonic.conftest import Fixture, LiveServer


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def _error(client: httpx.Client, **params: str) -> tuple[int, str]:
    r = client.get("/rest/ping", params={"f": "json", "v": "1.16.1", "c": "test", **params})
    body = r.json()["subsonic-response"]
    assert r.status_code == 200 and body["status"] == "failed"
    return int(body["error"]["code"]), str(body["error"]["message"])


def test_unknown_users_and_wrong_passwords_get_the_same_answer(
    client: httpx.Client, archive_fixture: Fixture
) -> None:
    store = StateStore(archive_fixture.root / "state.sqlite3", password_cost=12)
    if store.get_user("nosubsonic") is None:
        store.add_user("nosubsonic", "a web password")  # no 'user token' yet
    salt = "5a1t"
    wrong_token = hashlib.md5(("not the password" + salt).encode()).hexdigest()
    user = archive_fixture.creds.user
    answers = {
        "wrong token": _error(client, u=user, t=wrong_token, s=salt),
        "unknown user, token": _error(client, u="nobody-here", t=wrong_token, s=salt),
        "no Subsonic password, token": _error(client, u="nosubsonic", t=wrong_token, s=salt),
        "wrong password": _error(client, u=user, p="not the password"),
        "unknown user, password": _error(client, u="nobody-here", p="not the password"),
        "no Subsonic password, password": _error(client, u="nosubsonic", p="a web password"),
        "a token that is not hex": _error(client, u=user, t="é" * 32, s=salt),
    }
    assert len(set(answers.values())) == 1, answers
    code, message = answers["wrong token"]
    assert code == 40 and "wrong username or password" in message
    assert "nobody-here" not in message and "nosubsonic" not in message
