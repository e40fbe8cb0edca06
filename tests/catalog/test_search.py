"""Search ranking, normalisation, prefixes, hostile text; true shuffle."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonotheca.archive import Archive
from phonotheca.catalog import search as search_mod
from phonotheca.catalog.search import fts_query, rebuild_search, search, shuffle
from tests.catalog.test_import import load
from tests.conftest import track


@pytest.fixture
def catalog(archive: Archive, write_jsonl: Callable[..., Path]) -> Archive:
    recs = [
        track(
            1,
            title="Wish You Were Here",
            popularity=70,
            artists=[{"id": "pf", "name": "Pink Floyd"}],
        ),
        track(2, title="Wishing Well", popularity=40, artists=[{"id": "x", "name": "Terence"}]),
        track(3, title="Café del Mar", popularity=90, artists=[{"id": "e", "name": "Energy 52"}]),
        track(4, title="CAFE CULTURE", popularity=10, artists=[{"id": "y", "name": "Someone"}]),
        track(5, title="Шоколад", popularity=50, artists=[{"id": "z", "name": "Звери"}]),
        track(6, title="東京 タワー", popularity=60, artists=[{"id": "j", "name": "テスト"}]),
        track(7, title="Wish", popularity=None, artists=[{"id": "pf", "name": "Pink Floyd"}]),
        track(
            8,
            title='He said "NEAR" (OR) -not *star*',
            popularity=5,
            artists=[{"id": "q", "name": "Quoter"}],
        ),
    ]
    for i, r in enumerate(recs):
        r["album"] = {"id": f"al{i}", "title": "The Album" if i != 0 else "Wish You Were Here"}
    load(archive, write_jsonl("s.jsonl", recs))
    return archive


def ids(archive: Archive, text: str, limit: int = 20) -> list[str]:
    conn = archive.connect(readonly=True)
    try:
        return [h.id.split(":")[-1] for h in search(conn, text, limit)]
    finally:
        conn.close()


def test_results_come_most_popular_first(catalog: Archive) -> None:
    assert ids(catalog, "wish") == ["1", "2", "7"]  # "wish" matches "wishing" as a prefix
    assert ids(catalog, "wish ") == ["1", "7"]  # a trailing space ends the word
    assert ids(catalog, "wish", limit=1) == ["1"]


def test_case_and_diacritics_do_not_matter(catalog: Archive) -> None:
    assert ids(catalog, "cafe") == ["3", "4"]
    assert ids(catalog, "CAFÉ") == ["3", "4"]
    assert ids(catalog, "шоколад") == ["5"]
    assert ids(catalog, "ЗВЕРИ") == ["5"]


def test_all_words_must_match_across_fields(catalog: Archive) -> None:
    assert ids(catalog, "pink wish") == ["1", "7"]
    assert ids(catalog, "floyd here") == ["1"]
    assert ids(catalog, "pink mar") == []


def test_prefix_on_the_last_word_only(catalog: Archive) -> None:
    assert ids(catalog, "w") == ["1", "2", "7"]
    assert ids(catalog, "pin wish") == []  # "pin" is a whole word here
    assert ids(catalog, "東京") == ["6"]


@pytest.mark.parametrize(
    "text",
    [
        '"',
        '"unbalanced',
        "*",
        "-",
        "NEAR",
        "NEAR(a b)",
        "a OR b",
        "(",
        ")",
        "title:wish",
        "^wish",
        "wish AND",
        "'; DROP TABLE tracks; --",
        "\x00",
        "   ",
        "",
        "...",
        "🎵",
        "a" * 5000,
        " ".join(["w"] * 100),
    ],
)
def test_hostile_text_is_searched_as_text(catalog: Archive, text: str) -> None:
    ids(catalog, text)  # must not raise
    assert ids(catalog, "cafe") == ["3", "4"]  # and nothing was harmed


def test_fts_operators_in_text_match_literally(catalog: Archive) -> None:
    assert ids(catalog, "near or not") == ["8"]
    assert ids(catalog, '"near" (or) -not *star*') == ["8"]


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_any_text_gives_a_valid_query(text: str) -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute(search_mod.FTS_DDL)
    query = fts_query(text)
    if query is not None:
        conn.execute(
            f"SELECT rowid FROM {search_mod.FTS_TABLE} WHERE {search_mod.FTS_TABLE} MATCH ?",
            (query,),
        ).fetchall()


def test_rebuild_gives_the_same_answers(catalog: Archive) -> None:
    before = {q: ids(catalog, q) for q in ("wish", "cafe", "pink", "w", "the album")}
    conn = catalog.connect()
    rebuild_search(conn)
    # The rebuild writes one segment: terms are held in memory up to FTS_HASH_SIZE.
    hashsize = conn.execute(
        f"SELECT v FROM {search_mod.FTS_TABLE}_config WHERE k = 'hashsize'"
    ).fetchone()
    assert hashsize == (search_mod.FTS_HASH_SIZE,)
    conn.close()
    assert {q: ids(catalog, q) for q in before} == before


def test_bulk_load_and_incremental_load_answer_alike(
    archive: Archive,
    tmp_path: Path,
    write_jsonl: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from phonotheca.archive import init_archive
    from phonotheca.catalog import importer

    recs = [
        track(i, title=f"{random.Random(i).choice(['love', 'night', 'rain'])} {i}")
        for i in range(3000)
    ]
    path = write_jsonl("many.jsonl", recs)
    load(archive, path)  # small: maintained batch by batch
    bulk = init_archive(tmp_path / "bulk")
    monkeypatch.setattr(importer, "BULK_MIN_BYTES", 0)
    monkeypatch.setattr(importer, "LINES_PER_BATCH", 500)
    load(bulk, path)
    for q in ("love", "night 1", "rain 29", "l", "song"):
        assert ids(archive, q, 50) == ids(bulk, q, 50), q


def test_shuffle_is_uniform_over_all_tracks(
    archive: Archive, write_jsonl: Callable[..., Path]
) -> None:
    # Popularity must not weigh in: half the tracks are very popular, half not at all.
    recs = [track(i, popularity=100 if i % 2 else 0) for i in range(20)]
    load(archive, write_jsonl("u.jsonl", recs))
    conn = archive.connect(readonly=True)
    rng = random.Random(42)
    counts = Counter(h.id for h in shuffle(conn, 20_000, rng))
    assert len(counts) == 20
    # Each of 20 tracks expects 1000 picks; 6 standard deviations is ~184.
    assert all(800 < c < 1200 for c in counts.values()), counts
    assert shuffle(conn, 1, rng)[0].id.startswith("test:track:")


def test_shuffle_on_an_empty_catalog(archive: Archive) -> None:
    conn = archive.connect(readonly=True)
    assert shuffle(conn, 5) == []
    assert search(conn, "anything") == []


@pytest.mark.parametrize("scan", [2048, 3], ids=["walk", "fallback"])
def test_long_prefixes_match_like_the_plain_query(
    archive: Archive, write_jsonl: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, scan: int
) -> None:
    words = ["love", "lovely", "loved", "lover", "lost", "long", "lovf", "Lövé", "night"]
    rng = random.Random(3)
    recs = [
        track(i, title=" ".join(rng.sample(words, 2)), popularity=rng.randint(0, 100))
        for i in range(400)
    ]
    load(archive, write_jsonl("p.jsonl", recs))
    monkeypatch.setattr(search_mod, "LONG_PREFIX_SCAN", scan)
    conn = archive.connect(readonly=True)
    for text in ("love", "lovel", "lover", "night love", "LOVÉ", "lovf", "lovz", "long"):
        plain = [
            r[0]
            for r in conn.execute(
                f"{search_mod.TRACK_INDEX.match_sql} LIMIT 50", (fts_query(text),)
            )
        ]
        assert search_mod.search_keys(conn, text, 50) == plain, text
        assert search_mod.search_keys(conn, text, 5, offset=3) == plain[3:8], text
        # Keyset pages: after a key, and before one (returned in rank order all the same).
        every = [r[0] for r in conn.execute(search_mod.TRACK_INDEX.match_sql, (fts_query(text),))]
        for at in range(0, len(every), 7):
            after = search_mod.Bound(every[at])
            assert search_mod.search_keys(conn, text, 5, bound=after) == every[at + 1 : at + 6]
            before = search_mod.Bound(every[at], after=False)
            expected = every[max(0, at - 5) : at]
            assert search_mod.search_keys(conn, text, 5, bound=before) == expected, text
    conn.close()


@pytest.fixture
def compat_catalog(archive: Archive, write_jsonl: Callable[..., Path]) -> Archive:
    """Titles whose characters a compatibility decomposition (NFKD) would change, which
    the index's tokenizer keeps as they are."""
    titles = ["안녕하세요 세상", "L¼öeÌúÊ", "ﬁnale ﬁxed", "Ｆｕｌｌ ｗｉｄｔｈ", "x² y³ zⁿ"]
    recs = [track(i, title=t, popularity=50 - i) for i, t in enumerate(titles)]
    load(archive, write_jsonl("c.jsonl", recs))
    return archive


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("안", ["0"]),
        ("안녕", ["0"]),  # 2 syllables, 5 jamo: was looked up by its jamo and never found
        ("안녕하세", ["0"]),
        ("세상", ["0"]),
        ("l¼oe", ["1"]),  # was "l1⁄4": two tokens, a phrase query, an error
        ("L¼öeÌúÊ", ["1"]),
        ("ﬁnal", ["2"]),
        ("ﬁxed", ["2"]),
        ("ｆｕｌｌ ｗｉｄ", ["3"]),
        ("x²", ["4"]),
    ],
)
def test_characters_nfkd_would_change_are_searched_as_indexed(
    compat_catalog: Archive, text: str, expected: list[str]
) -> None:
    assert ids(compat_catalog, text) == expected


_COMPAT = "¼½²ⁿﬁﬂＡｚ안녕하한글äöÌİıßẞ⁄·-’ "


@given(st.text(alphabet=st.sampled_from(_COMPAT) | st.characters(), max_size=12))
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_text_searches_without_error(compat_catalog: Archive, text: str) -> None:
    conn = compat_catalog.connect(readonly=True)
    try:
        search_mod.search_keys(conn, text, 10)
    finally:
        conn.close()
