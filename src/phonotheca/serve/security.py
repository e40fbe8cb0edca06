"""Sign-in sessions and CSRF tokens for the web UI.

A session is a signed cookie (HMAC-SHA256 with the server's key): the user's id and name,
their session epoch and when it was issued; it is ``HttpOnly``, ``SameSite=Lax``, and
``Secure`` when the request came over https. Each request checks the user against
``state.sqlite3``: deleting a user, or changing their password (which raises their
session epoch), ends their sessions.

Every state-changing form carries a CSRF token (double submit): a random value in an
``HttpOnly`` cookie and the same value in a hidden field. A cross-site page can make the
browser send the cookie but cannot read it to fill in the field. A request whose
``Origin`` header names another host is refused as well.

Failed sign-ins are counted per client address (:class:`SignInThrottle`), in
``state.sqlite3`` so that every server process counts against the same limit, and the
web form, the Subsonic API and the JSON API's API keys count together: past it, they
answer 429 (Subsonic: an error) without checking credentials, so guessing is slow and
cannot keep the CPU busy with scrypt. Per address, not per user name: counting per name
would let anyone lock a user out.

The key lives in ``ROOT/session.key`` (32 random bytes, mode 0600, never published);
when the root is read-only a key is made per process, and sessions end at restart.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from phonotheca.catalog.schema import transaction
from phonotheca.serve.state import SIGNIN_FAILURES_SQL, StateStore

SESSION_COOKIE = "phonotheca_session"
CSRF_COOKIE = "phonotheca_csrf"
CSRF_FIELD = "csrf_token"
KEY_FILE = "session.key"
SESSION_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SessionUser:
    """The signed-in user as the session names them."""

    id: int
    name: str
    epoch: int = 0
    """The user's session epoch when they signed in."""


def load_key(root: Path) -> bytes:
    """The server's signing key: read ``ROOT/session.key``, or create it (atomically)."""
    path = root / KEY_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except OSError:
        pass
    key = secrets.token_bytes(32)
    partial = path.with_name(f"{KEY_FILE}.{os.getpid()}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        # Another worker may have won the race: keep whichever key is in place.
        with contextlib.suppress(FileExistsError):
            os.link(partial, path)
        os.unlink(partial)
        return path.read_bytes()
    except OSError:
        return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes, state: Any) -> None:
        self._key = key
        self._state = state

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def encode(self, user: SessionUser, now: float | None = None) -> str:
        body = json.dumps(
            {"id": user.id, "name": user.name, "ep": user.epoch, "iat": int(now or time.time())},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{self._sign(body)}"

    def decode(self, value: str | None, now: float | None = None) -> SessionUser | None:
        """The user of a valid, unexpired cookie; None for anything else."""
        if not value or len(value) > 4096 or value.count(".") != 1:
            return None
        body_text, signature = value.split(".")
        try:
            body = _unb64(body_text)
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            doc = json.loads(body)
            user = SessionUser(int(doc["id"]), str(doc["name"]), int(doc.get("ep", 0)))
            issued = int(doc["iat"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if (now or time.time()) - issued > SESSION_SECONDS:
            return None
        return user

    def current_user(self, request: Request) -> SessionUser | None:
        """The signed-in user of this request (cached on the request), checked against
        ``state.sqlite3``."""
        if "phonotheca_user" in request.scope:
            found: SessionUser | None = request.scope["phonotheca_user"]
            return found
        user = self.decode(request.cookies.get(SESSION_COOKIE))
        if user is not None and self._state is not None:
            stored = self._state.get_user(user.name)
            if stored is None or stored.id != user.id or stored.session_epoch != user.epoch:
                user = None
        request.scope["phonotheca_user"] = user
        return user

    def sign_in(self, request: Request, response: Response, user: SessionUser) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.encode(user),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        # A new session gets a new CSRF token (no fixation of one set before sign-in).
        set_csrf_cookie(request, response, secrets.token_urlsafe(32))

    def sign_out(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )


def csrf_token(request: Request) -> str:
    """This client's CSRF token (made now if it has none; the page response sets it)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 32 or len(token) > 128:
        token = request.scope.get("phonotheca_new_csrf") or secrets.token_urlsafe(32)
        request.scope["phonotheca_new_csrf"] = token
    return token


def set_csrf_cookie(request: Request, response: Response, token: str | None = None) -> None:
    """Send the CSRF cookie if this response made a new token (or ``token`` is given)."""
    value = token or request.scope.get("phonotheca_new_csrf")
    if value:
        response.set_cookie(
            CSRF_COOKIE,
            value,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )


def csrf_valid(request: Request, submitted: str | None) -> bool:
    """The form's token matches the cookie, and the request did not come from another site."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            return False
    return True


def client_address(request: Request) -> str:
    """Where the request came from (the proxy's ``X-Forwarded-For`` when uvicorn is told
    to trust it): what failed sign-ins are counted by."""
    return request.client.host if request.client else "unknown"


def retry_text(seconds: int) -> str:
    """``try again in N minutes``, for people."""
    minutes = -(-seconds // 60)
    return f"try again in {'1 minute' if minutes == 1 else f'{minutes} minutes'}"


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in; anything else (other sites,
    ``//host``, ``/\\host``, schemes) becomes ``/``."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or target.startswith("/\\")
        or any(ord(c) < 0x20 for c in target)
    ):
        return "/"
    return target


@contextlib.contextmanager
def _same(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    yield conn


class Throttled(Exception):
    """Too many failed sign-ins from one address: no credentials were checked."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins: try again in {retry_after} s")
        self.retry_after = retry_after


T = TypeVar("T")


class SignInThrottle:
    """Counts failed sign-ins per client address in a sliding window.

    Failures are rows of the ``signin_failures`` table of ``state.sqlite3`` (``store``),
    so every server process (``serve --workers N``) counts against one limit, and a
    restart does not reset it; a server without a state store keeps them in memory.
    Bounded: rows older than the window go, each address keeps its latest
    ``failures``, and past ``max_addresses × failures`` rows the oldest go first.
    The clock is wall time, which processes share.

    Counting is atomic (:meth:`attempt`): attempts made in parallel, by threads or by
    processes, cannot pass the limit between a check of the count and the count.
    """

    def __init__(
        self,
        failures: int,
        window: float,
        *,
        store: StateStore | None = None,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.failures = failures
        self.window = window
        self.max_rows = max_addresses * failures
        self._clock = clock
        self._lock = threading.Lock()
        self._store = store
        self._memory: sqlite3.Connection | None = None
        if store is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._memory.isolation_level = None
            self._memory.executescript(SIGNIN_FAILURES_SQL)

    @contextlib.contextmanager
    def _db(self, write: bool) -> Iterator[sqlite3.Connection]:
        if self._store is None:  # one connection for every thread: one at a time
            assert self._memory is not None
            with self._lock, transaction(self._memory) if write else _same(self._memory):
                yield self._memory
        elif write:  # each thread has its own connection; SQLite orders the writers
            with self._store.write() as conn:
                yield conn
        else:
            yield self._store.read()

    def _wait(self, conn: sqlite3.Connection, address: str, now: float) -> int | None:
        times = [
            at
            for (at,) in conn.execute(
                "SELECT at FROM signin_failures WHERE address = ? AND at > ?"
                " ORDER BY at DESC LIMIT ?",
                (address, now - self.window, self.failures),
            )
        ]
        if len(times) < self.failures:
            return None
        return max(1, math.ceil(float(times[-1]) + self.window - now))

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        with self._db(write=False) as conn:
            return self._wait(conn, address, self._clock())

    def attempt(self, address: str, check: Callable[[], T | None], *, expensive: bool) -> T | None:
        """Run ``check`` (credentials: a user, or None when wrong) as one counted attempt.

        Raises :class:`Throttled` when ``address`` is past the limit: before ``check``
        when it is already, or after it, instead of its answer, when parallel attempts
        reached the limit meanwhile. A None from ``check`` counts as a failure.

        Atomic either way. ``expensive`` (scrypt): the attempt is counted as a failure
        first, in one write transaction with the check of the limit, and uncounted when
        it succeeds, so no more than the limit of them run at once. Otherwise the check
        runs first; a failure is then counted only if the limit still allows it (one
        write transaction), and a success is given only if a read made after the check
        finds the address within the limit: in the order of the database's commits,
        that success came before the limit was reached. A success writes nothing.
        """
        if expensive:
            with self._db(write=True) as conn:
                now = self._clock()
                wait = self._wait(conn, address, now)
                if wait is not None:
                    raise Throttled(wait)
                counted = self._record(conn, address, now)
            found = check()
            if found is not None:
                with self._db(write=True) as conn:
                    conn.execute("DELETE FROM signin_failures WHERE rowid = ?", (counted,))
            return found
        wait = self.retry_after(address)
        if wait is not None:
            raise Throttled(wait)
        found = check()
        if found is not None:
            wait = self.retry_after(address)
            if wait is not None:
                raise Throttled(wait)
            return found
        with self._db(write=True) as conn:
            now = self._clock()
            wait = self._wait(conn, address, now)
            if wait is not None:
                raise Throttled(wait)
            self._record(conn, address, now)
        return None

    def failed(self, address: str) -> None:
        """Count a failure of ``address``."""
        with self._db(write=True) as conn:
            self._record(conn, address, self._clock())

    def _record(self, conn: sqlite3.Connection, address: str, now: float) -> int:
        cursor = conn.execute(
            "INSERT INTO signin_failures(address, at) VALUES (?, ?)", (address, now)
        )
        conn.execute("DELETE FROM signin_failures WHERE at <= ?", (now - self.window,))
        conn.execute(
            "DELETE FROM signin_failures WHERE address = ? AND rowid NOT IN"
            " (SELECT rowid FROM signin_failures WHERE address = ?"
            "  ORDER BY at DESC, rowid DESC LIMIT ?)",
            (address, address, self.failures),
        )
        (rows,) = conn.execute("SELECT count(*) FROM signin_failures").fetchone()
        if rows > self.max_rows:
            conn.execute(
                "DELETE FROM signin_failures WHERE rowid IN"
                " (SELECT rowid FROM signin_failures ORDER BY at, rowid LIMIT ?)",
                (rows - self.max_rows,),
            )
        return int(cursor.lastrowid or 0)
