"""Settings from ``ARCHIVE/phonotheca.toml``: typed, validated, passed explicitly.

There is no global settings object: commands load :class:`Settings` once and hand
it to the functions that need it. CLI flags override what the file says.

Every table is optional and every key has a default (docs/FORMAT.md, "Settings").
Unknown keys in a known table are an error, since a misspelt key must not be
ignored silently; unknown tables are kept in :attr:`Settings.extra` so that a file
written for a newer version still loads.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from phonotheca.plan.sizes import parse_size

SETTINGS_FILE = "phonotheca.toml"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_URL = re.compile(r"(https?|udp|wss?)://[^\s]+")
_WEB_SEED = re.compile(r"https?://[^\s]+/")

GIB = 1 << 30


class SettingsError(ValueError):
    """phonotheca.toml is missing a value, has a wrong type, or an unknown key."""


@dataclass(frozen=True)
class BuildSettings:
    """``[build]``: how collections are cut and what fixed values their files carry."""

    bands: tuple[int, ...] = (50, 30, 20, 10, 0)
    """Lower popularity bounds of the bands, highest first, ending in 0. The default gives
    bands 50-100, 30-49, 20-29, 10-19 and 0-9; the most popular band is packed first."""
    collection_size: int = 100 * GIB
    """Target payload size of one collection (one torrent), in bytes."""
    volume_size: int = 4 * GIB
    """Largest tar volume, in bytes (docs/FORMAT.md §9.2)."""
    date: dt.date = dt.date(2026, 1, 1)
    """Fixed date of the build: ``Bagging-Date`` and the tar members' mtime (midnight UTC).
    Never the clock, so that a rebuild gives the same bytes."""
    torrent_format: str = "v1"
    """``v1`` (BEP 3) or ``hybrid`` (v1+v2, BEP 52)."""
    opus_kbps: int | None = None
    """Opus bitrate when the plan did not record one (the plan's own value wins)."""

    @property
    def mtime(self) -> int:
        return int(dt.datetime.combine(self.date, dt.time(), tzinfo=dt.UTC).timestamp())

    def band_of(self, popularity: int | None) -> tuple[int, int]:
        """The ``(low, high)`` band holding ``popularity`` (None counts as 0)."""
        p = 0 if popularity is None else popularity
        high = 100
        for low in self.bands:
            if p >= low:
                return low, high
            high = low - 1
        raise AssertionError("bands end in 0")


@dataclass(frozen=True)
class TorrentSettings:
    """``[torrents]``: what every ``.torrent`` and ``torrents.json`` entry announces."""

    trackers: tuple[tuple[str, ...], ...] = ()
    """Tracker tiers (BEP 12); in the file, a list of URLs (one tier each) or of lists."""
    web_seeds: tuple[str, ...] = ()
    """BEP 19 web seed URLs, each naming the directory that holds the collections
    and ending in ``/``."""
    base_url: str | None = None
    """Where ``torrents/`` is published over HTTP; ``.torrent`` URLs are relative to it."""


@dataclass(frozen=True)
class ServeSettings:
    """``[serve]``: the web server and Subsonic API."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_catalog: bool = True
    """Browsing and search without signing in."""
    public_audio: bool = False
    """Streaming and downloading without signing in."""
    signin_failures: int = 10
    """Failed sign-ins allowed from one client address per ``signin_window`` seconds;
    further attempts get 429 until the oldest failure is that old. Failures of the sign-in
    form, the Subsonic API and the JSON API count together, across all server processes."""
    signin_window: int = 600
    password_cost: int = 17
    """log2 of scrypt's N for web password hashes (17: 128 MiB and about 0.3 s a hash);
    older hashes are raised to it at the next sign-in. 10-20; below 14 only for tests."""
    query_budget_ms: int = 2000
    """Milliseconds of catalog queries one request may take; past them the request is
    answered 503 (Subsonic: error 0) and its worker thread is free again."""
    subsonic_library: str = "playable"
    """What a Subsonic app lists when it names no music folder: ``playable`` (the tracks
    this server plays; the whole catalog while it holds none) or ``catalog``."""
    on_demand: bool = False
    """Play a packed track this server does not hold by fetching it when played, from the
    web seeds its collection's torrent names (``serve --on-demand``)."""
    cache_budget: int = 10 * 1000**3
    """Bytes of tracks fetched on demand kept for replay (least recently played dropped
    first)."""
    cache_dir: str | None = None
    """Where they are kept; default ``ARCHIVE/.ondemand-cache``."""
    on_demand_timeout: float = 20.0
    """Seconds a fetch may take to deliver the bytes a client waits for before the client
    gets a clear error."""
    on_demand_random: bool = False
    """Whether Subsonic ``getRandomSongs`` may draw tracks played from the swarm."""
    on_demand_peers: bool = True
    """Ask BitTorrent peers too (a libtorrent session with the ``[mirror]`` discovery
    settings, on an ephemeral port), not only web seeds."""


@dataclass(frozen=True)
class PublishSettings:
    """``[publish]``: what a signed ``torrents.json`` promises."""

    valid_days: int = 30
    """Days a published listing stays valid: mirrors refuse it after ``expires``, so a host
    cannot keep serving an old listing forever (publish at least this often)."""


@dataclass(frozen=True)
class DeleteCap:
    """``[mirror] max_delete``: a share of the held bytes (``"10%"``) or a size (``"50GB"``)."""

    share: float | None = 0.10
    size: int | None = None

    def limit(self, held_bytes: int) -> int:
        """Bytes one run may delete when this mirror holds ``held_bytes``."""
        if self.size is not None:
            return self.size
        return int(held_bytes * (self.share or 0.0))

    def __str__(self) -> str:
        return f"{self.size} bytes" if self.size is not None else f"{(self.share or 0) * 100:g} %"


@dataclass(frozen=True)
class MirrorSettings:
    """``[mirror]``: the volunteer's BitTorrent session, and whom it trusts."""

    listen: str = "0.0.0.0:6881"
    dht: bool = True
    lsd: bool = True
    upnp: bool = True
    natpmp: bool = True
    publisher_key: str | None = None
    """The publisher's minisign public key (``RW…``) or a file holding it; without it the
    first signed listing's key is pinned."""
    max_delete: DeleteCap = field(default_factory=DeleteCap)
    """Most a run deletes without ``--yes-delete-more``."""


@dataclass(frozen=True)
class Settings:
    """Everything an archive can be configured with (see docs/FORMAT.md, "Settings")."""

    name: str = "phonotheca"
    """Archive name: the prefix of collection and torrent names (lower case, no spaces)."""
    build: BuildSettings = field(default_factory=BuildSettings)
    torrents: TorrentSettings = field(default_factory=TorrentSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    mirror: MirrorSettings = field(default_factory=MirrorSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    extra: dict[str, Any] = field(default_factory=dict)
    """Tables this version does not interpret; kept so that a newer file still loads."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = SETTINGS_FILE) -> Settings:
        archive = _table(data, "archive", source)
        _no_unknown(archive, {"name"}, "archive", source)
        name = archive.get("name", cls.name)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SettingsError(
                f"{source}: archive.name {name!r} must be 1-64 characters"
                " of a-z, 0-9, '.', '_', '-'"
            )
        known = {"archive", "build", "torrents", "serve", "mirror", "publish"}
        return cls(
            name=name,
            build=_parse(BuildSettings, _table(data, "build", source), "build", source),
            torrents=_parse(TorrentSettings, _table(data, "torrents", source), "torrents", source),
            serve=_parse(ServeSettings, _table(data, "serve", source), "serve", source),
            mirror=_parse(MirrorSettings, _table(data, "mirror", source), "mirror", source),
            publish=_parse(PublishSettings, _table(data, "publish", source), "publish", source),
            extra={k: v for k, v in data.items() if k not in known},
        )


def _table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{source}: [{key}] must be a table")
    return table


def _no_unknown(table: Mapping[str, Any], known: set[str], name: str, source: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise SettingsError(
            f"{source}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}"
            f" (known: {', '.join(sorted(known))})"
        )


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError('expected a size such as "4GiB" or a number of bytes')
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if isinstance(value, str):
        size = parse_size(value)
        if size <= 0:
            raise ValueError("must be positive")
        return size
    raise ValueError('expected a size such as "4GiB" or a number of bytes')


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _bands(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError("expected a list of integers, e.g. [50, 30, 20, 10, 0]")
    bands = tuple(value)
    if not bands or bands[-1] != 0 or any(not 0 <= b <= 100 for b in bands):
        raise ValueError("bands are popularity bounds from 100 down to 0 and must end in 0")
    if any(a <= b for a, b in itertools.pairwise(bands)):
        raise ValueError("bands must be strictly decreasing")
    return bands


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise ValueError("expected a date such as 2026-01-01")


def _torrent_format(value: Any) -> str:
    if value not in ("v1", "hybrid"):
        raise ValueError('expected "v1" or "hybrid"')
    return str(value)


def _subsonic_library(value: Any) -> str:
    if value not in ("playable", "catalog"):
        raise ValueError('expected "playable" or "catalog"')
    return str(value)


def _kbps(value: Any) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 6 <= value <= 510:
        raise ValueError("expected an Opus bitrate in kbit/s from 6 to 510")
    return value


def _trackers(value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of tracker URLs or of lists of them (tiers)")
    tiers: list[tuple[str, ...]] = []
    for tier in value:
        urls = tier if isinstance(tier, list) else [tier]
        for url in urls:
            if not isinstance(url, str) or not _URL.fullmatch(url):
                raise ValueError(f"{url!r} is not an http(s)://, udp:// or ws(s):// URL")
        tiers.append(tuple(urls))
    return tuple(tiers)


def _web_seeds(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of URLs")
    for url in value:
        if not isinstance(url, str) or not _WEB_SEED.fullmatch(url):
            raise ValueError(f"{url!r} is not an http(s):// URL ending in '/'")
    return tuple(value)


def _optional_url(value: Any) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s]+", value):
        raise ValueError("expected an http(s):// URL")
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a host name or address")
    return value


def _port(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _password_cost(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 20:
        raise ValueError("must be an integer from 10 to 20 (log2 of scrypt's N; default 17)")
    return value


def _listen(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^\s]+:\d{1,5}", value):
        raise ValueError('expected HOST:PORT, e.g. "0.0.0.0:6881"')
    return value


def _publisher_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a minisign public key (RW…) or the path of a key file")
    return value


def _delete_cap(value: Any) -> DeleteCap:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError('expected a share such as "10%" or a size such as "50GB"') from None
        if not 0 <= share <= 1:
            raise ValueError("a share must be from 0% to 100%")
        return DeleteCap(share=share)
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return DeleteCap(share=None, size=0)
    try:
        return DeleteCap(share=None, size=_size(value))
    except ValueError:
        raise ValueError('expected a share such as "10%" or a size such as "50GB"') from None


def _directory(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a directory path")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError("expected a number of seconds above 0, at most 3600")
    return float(value)


def _days(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3660:
        raise ValueError("expected a number of days from 1 to 3660")
    return value


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "build.bands": _bands,
    "build.collection_size": _size,
    "build.volume_size": _size,
    "build.date": _date,
    "build.torrent_format": _torrent_format,
    "build.opus_kbps": _kbps,
    "torrents.trackers": _trackers,
    "torrents.web_seeds": _web_seeds,
    "torrents.base_url": _optional_url,
    "serve.host": _host,
    "serve.port": _port,
    "serve.public_catalog": _bool,
    "serve.public_audio": _bool,
    "serve.signin_failures": _count,
    "serve.signin_window": _count,
    "serve.password_cost": _password_cost,
    "serve.query_budget_ms": _count,
    "serve.subsonic_library": _subsonic_library,
    "serve.on_demand": _bool,
    "serve.cache_budget": _size,
    "serve.cache_dir": _directory,
    "serve.on_demand_timeout": _seconds,
    "serve.on_demand_random": _bool,
    "serve.on_demand_peers": _bool,
    "mirror.listen": _listen,
    "mirror.dht": _bool,
    "mirror.lsd": _bool,
    "mirror.upnp": _bool,
    "mirror.natpmp": _bool,
    "mirror.publisher_key": _publisher_key,
    "mirror.max_delete": _delete_cap,
    "publish.valid_days": _days,
}

T = TypeVar("T")


def _parse(cls: type[T], table: dict[str, Any], name: str, source: str) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    _no_unknown(table, known, name, source)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        try:
            values[key] = _PARSERS[f"{name}.{key}"](raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {name}.{key} = {raw!r}: {exc}") from None
    return replace(cls(), **values)  # type: ignore[type-var]


def parse_serve_value(key: str, raw: Any) -> Any:
    """A ``[serve]`` value given elsewhere than the file (a command-line option)."""
    try:
        return _PARSERS[f"serve.{key}"](raw)
    except ValueError as exc:
        raise SettingsError(f"{raw!r}: {exc}") from None


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
