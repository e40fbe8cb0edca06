import datetime as dt

import pytest

from phonotheca.config import Settings, SettingsError


def test_defaults_and_bands() -> None:
    s = Settings.from_mapping({})
    assert s.build.bands == (50, 30, 20, 10, 0)
    assert s.build.collection_size == 100 << 30
    assert s.build.band_of(100) == (50, 100)
    assert s.build.band_of(50) == (50, 100)
    assert s.build.band_of(49) == (30, 49)
    assert s.build.band_of(None) == (0, 9)
    assert s.build.mtime == int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())


def test_tables_parsed() -> None:
    s = Settings.from_mapping(
        {
            "build": {"bands": [60, 0], "collection_size": "5MB", "date": dt.date(2025, 2, 3)},
            "torrents": {
                "trackers": ["udp://127.0.0.1:6969/announce", ["http://a/x", "http://b/x"]],
                "web_seeds": ["http://127.0.0.1:8080/torrents/"],
            },
            "serve": {
                "port": 9000,
                "public_audio": True,
                "signin_failures": 5,
                "subsonic_library": "catalog",
            },
            "mirror": {"dht": False},
            "future": {"x": 1},
        }
    )
    assert s.build.collection_size == 5_000_000
    assert s.build.band_of(59) == (0, 59)
    assert s.torrents.trackers == (("udp://127.0.0.1:6969/announce",), ("http://a/x", "http://b/x"))
    assert s.serve.port == 9000 and s.serve.public_audio
    assert (s.serve.signin_failures, s.serve.signin_window) == (5, 600)
    assert s.serve.subsonic_library == "catalog"
    assert Settings.from_mapping({}).serve.subsonic_library == "playable"
    assert not s.mirror.dht and s.mirror.lsd
    assert s.extra == {"future": {"x": 1}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"build": {"bandz": [0]}}, "unknown key(s) in [build]: bandz"),
        ({"build": {"bands": [10, 20, 0]}}, "strictly decreasing"),
        ({"build": {"bands": [50, 10]}}, "must end in 0"),
        ({"build": {"volume_size": "lots"}}, "build.volume_size"),
        ({"build": {"torrent_format": "v2"}}, '"v1" or "hybrid"'),
        ({"torrents": {"web_seeds": ["http://x/no-slash"]}}, "ending in '/'"),
        ({"torrents": {"trackers": ["ftp://x"]}}, "not an http(s)://"),
        ({"serve": {"port": "80"}}, "serve.port"),
        ({"serve": {"signin_failures": 0}}, "serve.signin_failures"),
        ({"serve": {"signin_window": True}}, "at least 1"),
        ({"mirror": {"dht": "no"}}, "true or false"),
        ({"serve": {"subsonic_library": "all"}}, '"playable" or "catalog"'),
        ({"serve": {"cache_budget": "lots"}}, "serve.cache_budget"),
        ({"serve": {"on_demand_timeout": 0}}, "above 0"),
        ({"serve": {"cache_dir": ""}}, "a directory path"),
        ({"serve": []}, "[serve] must be a table"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_mapping(data, "x/phonotheca.toml")
    assert message in str(err.value)
    assert "x/phonotheca.toml" in str(err.value)


def test_on_demand_settings() -> None:
    s = Settings.from_mapping({})
    assert not s.serve.on_demand and not s.serve.on_demand_random
    assert s.serve.cache_budget == 10 * 1000**3 and s.serve.on_demand_timeout == 20.0
    t = Settings.from_mapping(
        {
            "serve": {
                "on_demand": True,
                "cache_budget": "2GiB",
                "cache_dir": "/var/cache/p",
                "on_demand_timeout": 5,
                "on_demand_random": True,
            }
        }
    )
    assert t.serve.on_demand and t.serve.on_demand_random
    assert t.serve.cache_budget == 2 << 30 and t.serve.cache_dir == "/var/cache/p"
    assert t.serve.on_demand_timeout == 5.0
