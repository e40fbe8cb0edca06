"""One Subsonic API call: its parameters (query string and form body), its user, its context.

Parameters may repeat (``id=a&id=b`` for ``star``, ``songId`` for ``createPlaylist``);
:class:`Call` keeps them all and gives typed accessors whose errors name the parameter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from phonotheca.serve.subsonic.envelope import (
    GENERIC,
    MISSING_PARAMETER,
    NOT_FOUND,
    Payload,
    SubsonicError,
)

if TYPE_CHECKING:
    from phonotheca.serve.context import ServeContext
    from phonotheca.serve.state import StateStore, User

MAX_OFFSET = 100_000
"""The largest offset of a search by words: skipping matches costs time in proportion to
the offset, and no one pages a hundred thousand items deep by hand. (Lists and the
query-less sync are read by position, at any depth: folders.offset_of.)"""
MAX_DIGITS = 30
"""An integer parameter longer than this is refused without being converted."""


@dataclass
class Call:
    ctx: ServeContext
    request: Request
    params: Sequence[tuple[str, str]]
    user: User | None = None

    # -- parameters --------------------------------------------------------------------

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return default

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SubsonicError(MISSING_PARAMETER, f"required parameter '{name}' is missing")
        return value

    def integer(
        self,
        name: str,
        default: int | None = None,
        *,
        low: int | None = None,
        high: int | None = None,
    ) -> int | None:
        """An integer parameter, clamped to [low, high]; ``default`` when absent."""
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        try:
            if len(raw) > MAX_DIGITS:  # int() of thousands of digits is slow, then refused
                raise ValueError(raw)
            value = int(raw)
        except ValueError:
            shown = raw if len(raw) <= MAX_DIGITS else raw[:MAX_DIGITS] + "..."
            raise SubsonicError(
                GENERIC, f"parameter '{name}' must be an integer, not {shown!r}"
            ) from None
        if low is not None:
            value = max(low, value)
        if high is not None:
            value = min(high, value)
        return value

    def count(self, name: str, default: int, high: int) -> int:
        value = self.integer(name, default, low=0, high=high)
        assert value is not None
        return value

    def offset(self, name: str, high: int = MAX_OFFSET) -> int:
        """A paging offset from 0 to ``high``; beyond is an error that says so (clamping
        it would answer a page the app did not ask for)."""
        value = self.count(name, 0, high + 1)
        if value > high:
            raise SubsonicError(
                GENERIC,
                f"parameter '{name}' is at most {high}: this server does not page deeper"
                " (narrow the request instead)",
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        return raw.strip().lower() in ("1", "true", "yes", "on")

    # -- context -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        return self.ctx.catalog()

    @property
    def state(self) -> StateStore:
        state: StateStore = self.ctx.state
        return state

    @property
    def user_id(self) -> int:
        assert self.user is not None, "handler needs an authenticated call"
        return self.user.id


Handler = Callable[[Call], Payload | Response]
"""An endpoint: a payload for the envelope, or a response of its own (bytes)."""


# -- ids ---------------------------------------------------------------------------------

PREFIXES = {"ar": "artist", "al": "album", "tr": "track"}


def split_id(value: str) -> tuple[str, str]:
    """``("album", public id)`` from ``al-<public id>``; a bad id is 'not found' (70)."""
    prefix, sep, public_id = value.partition("-")
    kind = PREFIXES.get(prefix)
    if not sep or kind is None or not public_id:
        raise SubsonicError(
            NOT_FOUND, f"no item with id {value!r} (ids look like ar-..., al-... or tr-...)"
        )
    return kind, public_id


def expect_id(value: str, kind: str) -> str:
    """The public id in ``value``, which must be of ``kind``."""
    got, public_id = split_id(value)
    if got != kind:
        raise SubsonicError(NOT_FOUND, f"{value!r} is not the id of a {kind}")
    return public_id
