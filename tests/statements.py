"""Every SQL statement a server under test runs, for checking query plans.

:func:`recording` patches the server's catalog and library connections so that each
statement they run is kept, with which connection ran it, until :meth:`Recorder.take`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from phonotheca.serve.context import ServeContext
from phonotheca.serve.library import ServerLibrary


class Recorder:
    """Every statement the server's catalog and library connections run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: list[tuple[str, str]] = []

    def hook(self, conn: sqlite3.Connection, where: str) -> sqlite3.Connection:
        def record(sql: str) -> None:
            with self.lock:
                self.statements.append((where, sql))

        conn.set_trace_callback(record)
        return conn

    def take(self) -> list[tuple[str, str]]:
        with self.lock:
            out, self.statements = self.statements, []
        return out


@contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """While inside, the server's connections report their statements to ``recorder``."""
    patch = pytest.MonkeyPatch()
    catalog, reader = ServeContext.catalog, ServerLibrary.reader
    patch.setattr(ServeContext, "catalog", lambda self: recorder.hook(catalog(self), "catalog"))
    patch.setattr(ServerLibrary, "reader", lambda self: recorder.hook(reader(self), "library"))
    try:
        yield
    finally:
        patch.undo()
