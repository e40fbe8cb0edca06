"""Settings from ``ARCHIVE/phonotheca.toml``: typed, validated, passed explicitly.

There is no global settings object: commands load :class:`Settings` once and hand
it to the functions that need it. CLI flags override what the file says.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SETTINGS_FILE = "phonotheca.toml"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class SettingsError(ValueError):
    """phonotheca.toml is missing a value, has a wrong type, or an unknown key."""


@dataclass(frozen=True)
class Settings:
    """Everything an archive can be configured with (see docs/FORMAT.md, "Settings")."""

    name: str = "phonotheca"
    """Archive name: the prefix of collection and torrent names (lower case, no spaces)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Sections this version does not interpret yet; kept so that a newer file still loads."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = SETTINGS_FILE) -> Settings:
        archive = data.get("archive", {})
        if not isinstance(archive, dict):
            raise SettingsError(f"{source}: [archive] must be a table")
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = set(archive) - known
        if unknown:
            raise SettingsError(
                f"{source}: unknown key(s) in [archive]: {', '.join(sorted(unknown))}"
            )
        name = archive.get("name", cls.name)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SettingsError(
                f"{source}: archive.name {name!r} must be 1-64 characters"
                " of a-z, 0-9, '.', '_', '-'"
            )
        extra = {k: v for k, v in data.items() if k != "archive"}
        return cls(name=name, extra=extra)


def load_settings(archive_dir: Path) -> Settings:
    """Read ``phonotheca.toml`` in ``archive_dir``; defaults when there is none."""
    path = archive_dir / SETTINGS_FILE
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    return Settings.from_mapping(data, str(path))


def default_settings_text(name: str) -> str:
    return (
        f'# Phonotheca archive settings (docs/FORMAT.md, "Settings").\n[archive]\nname = "{name}"\n'
    )
