"""An archive directory: where each of its parts lives (docs/DESIGN.md, "An archive on disk")."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from phonotheca.catalog import schema
from phonotheca.catalog.search import refresh_search
from phonotheca.config import SETTINGS_FILE, Settings, default_settings_text, load_settings


class ArchiveError(Exception):
    """The directory is not an archive, or cannot become one."""


@dataclass(frozen=True)
class Archive:
    root: Path
    settings: Settings

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite3"

    @property
    def state_path(self) -> Path:
        return self.root / "state.sqlite3"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def sqlite_temp_dir(self) -> Path:
        """Where SQLite's temporary files go (schema.use_temp_dir); they are deleted as
        they are opened, so the directory looks empty."""
        return self.work_dir / "sqlite"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def torrents_dir(self) -> Path:
        return self.root / "torrents"

    def connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        """A catalog connection; a writable one is migrated to the current schema first."""
        conn = schema.connect(self.catalog_path, readonly=readonly)
        if readonly:
            version = schema.schema_version(conn)
            if version != schema.SCHEMA_VERSION:
                conn.close()
                raise ArchiveError(
                    f"{self.catalog_path} has schema v{version}, this phonotheca needs "
                    f"v{schema.SCHEMA_VERSION}: run any import or 'phonotheca init' to migrate"
                    if version < schema.SCHEMA_VERSION
                    else f"{self.catalog_path} is newer than this phonotheca: upgrade it"
                )
        else:
            schema.use_temp_dir(conn, self.sqlite_temp_dir)
            schema.migrate(conn)
        return conn


def _default_name(root: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", root.resolve().name.lower()).strip("-._")
    return name[:64] or "phonotheca"


def init_archive(root: Path, name: str | None = None) -> Archive:
    """Create (or complete) an archive in ``root``; safe to run on an existing one."""
    root.mkdir(parents=True, exist_ok=True)
    settings_path = root / SETTINGS_FILE
    if not settings_path.exists():
        text = default_settings_text(name or _default_name(root))
        tmp = settings_path.with_suffix(".toml.partial")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(settings_path)
    archive = Archive(root, load_settings(root))
    for d in (archive.rejects_dir, archive.work_dir, archive.blobs_dir, archive.torrents_dir):
        d.mkdir(exist_ok=True)
    conn = archive.connect()
    try:
        refresh_search(conn)  # an empty index, so that search works before any import
    finally:
        conn.close()
    return archive


def open_archive(root: Path, *, create: bool = False) -> Archive:
    """The archive in ``root``. With ``create``, a missing one is initialised."""
    if not root.is_dir():
        if create:
            return init_archive(root)
        raise ArchiveError(f"{root} is not a directory: run 'phonotheca init {root}' first")
    if create and not (root / "catalog.sqlite3").exists():
        return init_archive(root)
    if not (root / "catalog.sqlite3").exists() and not (root / SETTINGS_FILE).exists():
        raise ArchiveError(
            f"{root} is not a Phonotheca archive (no catalog.sqlite3): "
            f"run 'phonotheca init {root}' or pass --archive DIR"
        )
    return Archive(root, load_settings(root))
