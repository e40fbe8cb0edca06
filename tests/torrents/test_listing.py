from pathlib import Path

import msgspec
import pytest

from phonotheca.torrents.listing import (
    Band,
    Listing,
    ListingError,
    TorrentEntry,
    Totals,
    decode_listing,
    read_listing,
    resolve_url,
    write_listing,
)


def _listing() -> Listing:
    entry = TorrentEntry(
        name="demo_pop-050-100_0001",
        collection="demo_pop-050-100_0001",
        kind="audio",
        infohash_v1="a" * 40,
        magnet="magnet:?xt=urn:btih:" + "a" * 40 + "&dn=demo_pop-050-100_0001",
        torrent_url="torrents/demo_pop-050-100_0001.torrent",
        size=123,
        files=5,
        tracks=2,
        band=Band(low=50, high=100),
        listens=10,
        share_of_listens=0.5,
        added="2026-01-01",
    )
    return Listing(
        archive="demo",
        generated_at="2026-11-21T00:00:00Z",
        totals=Totals(
            tracks=2, bytes=123, listens_covered=10, listens_total=20, share_of_listens=0.5
        ),
        torrents=[entry],
    )


def test_round_trip_and_relative_urls(tmp_path: Path) -> None:
    path = tmp_path / "torrents.json"
    write_listing(_listing(), path)
    back = read_listing(path)
    assert back == _listing()
    assert back.torrents[0].health.seeders is None
    assert resolve_url(path, back, back.torrents[0].torrent_url) == str(
        tmp_path / "torrents/demo_pop-050-100_0001.torrent"
    )
    assert resolve_url("http://127.0.0.1:1/x/torrents.json", back, "torrents/a.torrent") == (
        "http://127.0.0.1:1/x/torrents/a.torrent"
    )


def test_newer_version_and_garbage_refused(tmp_path: Path) -> None:
    with pytest.raises(ListingError, match="newer"):
        decode_listing(
            b'{"format":"phonotheca-torrents","version":2,"archive":"a","generated_at":"x",'
            b'"totals":{"tracks":0,"bytes":0,"listens_covered":0,"listens_total":0,'
            b'"share_of_listens":0},"torrents":[]}'
        )
    with pytest.raises(ListingError, match="not a valid"):
        decode_listing(b"[1, 2]")
    with pytest.raises(ListingError, match="cannot read"):
        read_listing(tmp_path / "missing.json")


def test_values_out_of_range_refused() -> None:
    """The model's constraints (also in torrents.schema.json) hold when reading."""
    good = msgspec.json.encode(_listing())
    decode_listing(good)
    for old, new in [
        (b'"infohash_v1":"' + b"a" * 40, b'"infohash_v1":"' + b"A" * 40),
        (b'"kind":"audio"', b'"kind":"video"'),
        (b'"added":"2026-01-01"', b'"added":"January"'),
        (b'"share_of_listens":0.5', b'"share_of_listens":1.5'),
        (b'"size":123', b'"size":-1'),
    ]:
        assert old in good, old
        with pytest.raises(ListingError, match="not a valid"):
            decode_listing(good.replace(old, new, 1))


@pytest.mark.parametrize(
    "torrent_url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.org/a.torrent",
        "data:,x",
        "/etc/passwd",
        "../secret.torrent",
        "torrents/../../secret.torrent",
        "torrents/%2e%2e/%2E%2E/secret.torrent",
        "torrents/..%2fsecret.torrent",
        "//example.org/a.torrent",
        "torrents\\..\\secret.torrent",
        "",
    ],
)
def test_a_listing_names_only_http_urls_or_paths_under_its_directory(
    torrent_url: str, tmp_path: Path
) -> None:
    listing = _listing()
    for source in (str(tmp_path / "torrents.json"), "http://127.0.0.1:1/x/torrents.json"):
        with pytest.raises(ListingError, match="refused"):
            resolve_url(source, listing, torrent_url)


def test_http_urls_and_paths_under_the_directory_resolve(tmp_path: Path) -> None:
    listing = _listing()
    local = str(tmp_path / "torrents.json")
    assert resolve_url(local, listing, "https://example.org/t/a.torrent") == (
        "https://example.org/t/a.torrent"
    )
    assert resolve_url(local, listing, "torrents/a%20b.torrent") == str(
        tmp_path / "torrents" / "a b.torrent"
    )
    published = msgspec.structs.replace(listing, base_url="https://example.org/demo/")
    assert resolve_url(local, published, "torrents/a.torrent") == (
        "https://example.org/demo/torrents/a.torrent"
    )
    for base_url in ("file:///etc/", "ftp://example.org/", "/etc/"):
        hostile = msgspec.structs.replace(listing, base_url=base_url)
        with pytest.raises(ListingError, match="base_url"):
            resolve_url("http://127.0.0.1:1/x/torrents.json", hostile, "torrents/a.torrent")
