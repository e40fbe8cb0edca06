"""The synthetic catalog: valid interchange lines, deterministic bytes, realistic shapes."""

from __future__ import annotations

import collections
import re
import unicodedata
from itertools import groupby
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zstandard

from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.record import AlbumRecord, Image, TrackRecord, parse_date
from phonotheca.sources.jsonl import open_binary
from phonotheca.synth import SynthSummary, iter_jsonl, iter_track_records, names, write_catalog
from phonotheca.synth import catalog as synth

N = 50_000
DECODE = msgspec.json.Decoder(TrackRecord)


@pytest.fixture(scope="module")
def data() -> bytes:
    return b"".join(iter_jsonl(N, 1))


@pytest.fixture(scope="module")
def records(data: bytes) -> list[TrackRecord]:
    return [DECODE.decode(line) for line in data.splitlines()]


@pytest.fixture(scope="module")
def small() -> bytes:
    return b"".join(iter_jsonl(20_000, 1))


# --- format -------------------------------------------------------------------------


def test_every_line_is_a_track_record(data: bytes, records: list[TrackRecord]) -> None:
    assert data.endswith(b"\n")
    assert len(records) == N
    assert [r.id for r in records[:3]] == ["syn:track:0", "syn:track:1", "syn:track:2"]
    assert records[-1].id == f"syn:track:{N - 1}"


def test_private_structs_use_the_format_field_names() -> None:
    # msgspec ignores unknown fields when decoding, so a misspelt name would be lost silently.
    assert set(synth._Line.__struct_fields__) <= set(TrackRecord.__struct_fields__)
    assert set(synth._Album.__struct_fields__) <= set(AlbumRecord.__struct_fields__)
    assert set(synth._Image.__struct_fields__) <= set(Image.__struct_fields__)


def test_unknown_listens_are_written_as_null(data: bytes, records: list[TrackRecord]) -> None:
    nulls = data.count(b'"listens":null')
    assert nulls == sum(r.listens is None for r in records)
    assert 0.03 < nulls / N < 0.07
    assert all(r.popularity is not None for r in records)


def test_iter_track_records_gives_plain_dicts() -> None:
    recs = list(iter_track_records(40, 3))
    assert len(recs) == 40
    assert recs[0]["id"] == "syn:track:0"
    assert isinstance(recs[0]["album"], dict)


# --- determinism ----------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(small: bytes) -> None:
    assert b"".join(iter_jsonl(20_000, 1)) == small
    other = b"".join(iter_jsonl(20_000, 2))
    assert other != small
    # Not just a shuffled copy: the first lines differ too.
    assert other.splitlines()[:100] != small.splitlines()[:100]


def test_bytes_do_not_depend_on_chunking(small: bytes) -> None:
    assert b"".join(iter_jsonl(20_000, 1, chunk_groups=1)) == small  # 3 chunks instead of 2
    assert b"".join(iter_jsonl(20_000, 1, chunk_groups=5)) == small


def test_a_smaller_catalog_is_a_prefix_up_to_its_last_album(
    small: bytes, records: list[TrackRecord]
) -> None:
    recs = [DECODE.decode(line) for line in small.splitlines()]
    last_album = recs[-1].album
    assert last_album is not None
    cut = next(i for i, r in enumerate(recs) if r.album and r.album.id == last_album.id)
    assert recs[:cut] == records[:cut]
    assert last_album.total_tracks == len(recs) - cut  # the cut album says it is short


def test_write_catalog_bytes_do_not_depend_on_workers(tmp_path: Path) -> None:
    a = write_catalog(tmp_path / "a.jsonl.zst", 40_000, 1, workers=1)
    b = write_catalog(tmp_path / "b.jsonl.zst", 40_000, 1, workers=2)
    written = (tmp_path / "a.jsonl.zst").read_bytes()
    assert (tmp_path / "b.jsonl.zst").read_bytes() == written
    assert (a.tracks, a.albums, a.artists, a.bytes_written) == (
        b.tracks,
        b.albums,
        b.artists,
        len(written),
    )
    # One zstd frame per chunk; the importer's reader goes across frames.
    stream, raw = open_binary(tmp_path / "a.jsonl.zst")
    with stream, raw:
        data = stream.read()
    assert data == b"".join(iter_jsonl(40_000, 1))
    first = zstandard.ZstdDecompressor().decompress(written)  # a frame knows its size
    assert data.startswith(first) and first.endswith(b"\n") and len(first) < len(data)


# --- write_catalog --------------------------------------------------------------------


def test_write_catalog_plain_jsonl_and_summary(tmp_path: Path, small: bytes) -> None:
    steps: list[int] = []
    out = tmp_path / "catalog.jsonl"
    summary = write_catalog(out, 20_000, 1, progress=steps.append)
    assert isinstance(summary, SynthSummary)
    assert summary.tracks == sum(steps) == 20_000
    assert len(steps) > 1
    assert out.read_bytes() == small
    recs = [DECODE.decode(line) for line in small.splitlines()]
    assert summary.albums == len({r.album.id for r in recs if r.album})
    credited = {a.id for r in recs for a in r.artists}
    credited |= {a.id for r in recs if r.album for a in r.album.artists}
    assert summary.artists == len(credited)
    assert summary.bytes_written == out.stat().st_size
    assert summary.seconds > 0
    assert list(tmp_path.iterdir()) == [out]  # no .partial left behind


def test_write_catalog_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl.zst"

    def stop(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_catalog(out, 40_000, 1, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_zero_tracks_and_bad_counts(tmp_path: Path) -> None:
    assert write_catalog(tmp_path / "empty.jsonl", 0, 1).tracks == 0
    assert (tmp_path / "empty.jsonl").read_bytes() == b""
    with pytest.raises(ValueError, match="tracks"):
        list(iter_jsonl(-1, 1))


# --- listens and popularity -----------------------------------------------------------


def test_listens_are_heavy_tailed(records: list[TrackRecord]) -> None:
    listens = np.sort([r.listens for r in records if r.listens is not None])
    assert listens[-3:].sum() > listens[: len(listens) // 5].sum()
    assert 0.65 < (listens < 1000).mean() < 0.75
    top_third = listens[-len(listens) // 3 :].sum() / listens.sum()
    assert top_third > 0.95  # the reference archive: a third of the tracks, 99.6 % of listens


def test_popularity_follows_listens_and_is_mostly_low(records: list[TrackRecord]) -> None:
    pairs = np.array(
        [(r.listens, r.popularity) for r in records if r.listens is not None], dtype=np.float64
    )
    ranks = pairs.argsort(axis=0).argsort(axis=0).astype(np.float64)
    spearman = np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1]
    assert spearman > 0.9
    popularity = np.array([r.popularity for r in records])
    assert popularity.min() >= 0 and popularity.max() <= 100
    assert np.median(popularity) < 25
    assert popularity.max() > 50


# --- names and titles -----------------------------------------------------------------

SCRIPTS = {
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "cjk": re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]"),
    "arabic": re.compile(r"[\u0600-\u06ff]"),
    "latin diacritics": re.compile(r"[À-ÖØ-öø-žÆæØøÐðÞþ]"),
}


def test_titles_and_names_use_several_scripts(records: list[TrackRecord]) -> None:
    titles = [r.title for r in records]
    artist_names = {a.name for r in records for a in r.artists}
    for script, pattern in SCRIPTS.items():
        share = sum(bool(pattern.search(t)) for t in titles) / len(titles)
        assert share > 0.01, script
        assert any(pattern.search(n) for n in artist_names), script
    ascii_titles = sum(t.isascii() for t in titles) / len(titles)
    assert ascii_titles > 0.6  # mostly Latin/English-like
    cjk = [t for t in titles if SCRIPTS["cjk"].search(t) and t.isascii() is False]
    assert any(" " in t for t in cjk)  # words are separated, so they tokenise
    assert all(unicodedata.is_normalized("NFC", t) for t in titles)


def test_vocabularies_are_clean() -> None:
    for script in names.SCRIPTS:
        vocab = names.vocabulary(script)
        assert len(set(vocab.words)) == len(vocab.words)
        for w in vocab.words:
            assert w and " " not in w and '"' not in w and "\\" not in w
            assert unicodedata.is_normalized("NFC", w)


def test_title_words_follow_a_zipf_law(records: list[TrackRecord]) -> None:
    words = collections.Counter(w.lower() for r in records for w in r.title.split())
    common = [w for w, _ in words.most_common(5)]
    assert "love" in common
    assert words["love"] > 0.03 * N
    assert words["night"] > 0.01 * N
    once = sum(1 for c in words.values() if c == 1)
    assert once > 0.25 * len(words)  # a long tail of rare words
    lengths = collections.Counter(len(r.title.split()) for r in records)
    assert set(range(1, 6)) <= set(lengths)


# --- artists ---------------------------------------------------------------------------


def test_artists_are_reused_with_stable_ids(records: list[TrackRecord]) -> None:
    by_id: dict[str, set[str]] = collections.defaultdict(set)
    uses: collections.Counter[str] = collections.Counter()
    for r in records:
        for a in r.artists:
            assert a.id is not None and re.fullmatch(r"syn:artist:\d+", a.id)
            by_id[a.id].add(a.name)
            uses[a.id] += 1
    assert all(len(v) == 1 for v in by_id.values())  # one name per id
    assert 0.4 * N / 20 < len(by_id) < 1.5 * N / 20
    counts = sorted(uses.values(), reverse=True)
    assert counts[0] > 50 * np.median(counts)  # Zipf-ish reuse
    assert any(r.artists[0].sort_name for r in records)


def test_multi_artist_credits(records: list[TrackRecord]) -> None:
    multi = [r for r in records if len(r.artists) > 1]
    assert 0.12 < len(multi) / N < 0.25
    joins = collections.Counter(a.join_phrase for r in multi for a in r.artists[:-1])
    assert {" feat. ", " & ", ", "} <= set(joins)
    assert all(r.artists[-1].join_phrase == "" for r in records)
    assert all(len({a.id for a in r.artists}) == len(r.artists) for r in multi)


# --- albums ----------------------------------------------------------------------------


def test_albums_are_consecutive_and_complete(records: list[TrackRecord]) -> None:
    seen: set[str] = set()
    sizes = []
    for album_id, group in groupby(records, key=lambda r: r.album.id if r.album else None):
        assert album_id is not None and album_id not in seen
        seen.add(album_id)
        tracks = list(group)
        album = tracks[0].album
        assert album is not None
        assert all(t.album == album for t in tracks)
        n = len(tracks)
        sizes.append(n)
        assert 1 <= n <= 30
        assert [t.track_number for t in tracks] == list(range(1, n + 1))
        assert album.total_tracks == n
        discs = [t.disc_number or 0 for t in tracks]
        assert discs == sorted(discs) and set(discs) <= ({1, 2} if n > 20 else {1})
        assert album.total_discs == max(d or 1 for d in discs)
    assert max(sizes) > 25 and min(sizes) == 1


def test_album_fields(records: list[TrackRecord]) -> None:
    albums = {r.album.id: r.album for r in records if r.album}
    precisions: collections.Counter[str] = collections.Counter()
    for album in albums.values():
        assert album.album_type in {"album", "single", "compilation", "ep"}
        assert album.release_date is not None
        _, precision = parse_date(album.release_date, album.release_date_precision)
        precisions[precision] += 1
        assert album.upc is not None and re.fullmatch(r"\d{12,13}", album.upc)
        digits = [int(c) for c in album.upc]
        weights = [3 if i % 2 == 0 else 1 for i in range(len(digits) - 1)][::-1]
        assert (
            sum(d * w for d, w in zip(digits[:-1], weights, strict=True)) + digits[-1]
        ) % 10 == 0
        assert album.label
        assert 1 <= len(album.images) <= 2
        assert all(i.url.startswith("https://") and i.width and i.height for i in album.images)
        assert album.markets and all(re.fullmatch(r"[A-Z]{2}", m) for m in album.markets)
        assert album.artists
    assert set(precisions) == {"year", "month", "day"}
    types = collections.Counter(a.album_type for a in albums.values())
    assert set(types) == {"album", "single", "compilation", "ep"}
    assert any(a.genres for a in albums.values())
    assert any(a.release_date_precision is None for a in albums.values())
    padded = [
        a
        for a in albums.values()
        if a.release_date_precision == "year" and a.release_date and len(a.release_date) == 10
    ]
    assert padded  # "1973-01-01" with precision "year", as some sources write it


def test_compilations_credit_various_artists(records: list[TrackRecord]) -> None:
    comps = [r for r in records if r.album and r.album.album_type == "compilation"]
    assert comps
    assert all(r.album and r.album.artists[0].name == "Various Artists" for r in comps)
    assert len({r.artists[0].id for r in comps}) > len(comps) / 10


# --- ISRCs, durations, flags ---------------------------------------------------------------


def test_isrcs_missing_invalid_shared_and_variously_written(records: list[TrackRecord]) -> None:
    missing = [r for r in records if r.isrc is None]
    parsed = [(r, parse_isrc(r.isrc)) for r in records if r.isrc is not None]
    invalid = [r for r, p in parsed if not p.valid]
    assert 0.04 < len(missing) / N < 0.06
    assert 0.005 < len(invalid) / N < 0.02
    written = [r.isrc for r in records if r.isrc]
    assert any("-" in i for i in written)
    assert any(i != i.upper() for i in written)
    by_value: dict[str, list[TrackRecord]] = collections.defaultdict(list)
    for r, p in parsed:
        if p.valid:
            by_value[p.value].append(r)
    shared = [rs for rs in by_value.values() if len(rs) > 1]
    assert 0.01 < sum(len(rs) for rs in shared) / N < 0.04
    # A re-release is the same recording: same title, artists, duration.
    same = sum(
        all(
            (r.title, r.artists, r.duration_ms) == (rs[0].title, rs[0].artists, rs[0].duration_ms)
            for r in rs
        )
        for rs in shared
    )
    assert same > 0.9 * len(shared)


def test_durations_explicit_and_external_ids(records: list[TrackRecord]) -> None:
    durations = np.array([r.duration_ms for r in records])
    assert durations.min() >= 60_000 and durations.max() <= 600_000
    assert 190_000 < np.median(durations) < 230_000
    explicit = collections.Counter(r.explicit for r in records)
    assert explicit[True] and explicit[False] and explicit[None]
    mbids = [r.external_ids.get("musicbrainz_recording") for r in records]
    with_id = [m for m in mbids if m]
    assert 0.3 < len(with_id) / N < 0.5
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", m)
        for m in with_id
    )
