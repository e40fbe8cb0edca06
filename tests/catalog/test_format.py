"""Property tests of the interchange format: any line is loaded or rejected, never an
exception; any valid record survives import and export unchanged."""

from __future__ import annotations

import json
import sqlite3

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from phonotheca.catalog import schema
from phonotheca.catalog.export import iter_export_lines
from phonotheca.catalog.load import Loader
from phonotheca.catalog.record import TrackRecord
from phonotheca.sources.jsonl import prepare_lines

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
ident = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
artist = st.fixed_dictionaries(
    {"name": text},
    optional={"id": ident, "join_phrase": text, "sort_name": text},
)
album = st.fixed_dictionaries(
    {"title": text},
    optional={
        "id": ident,
        "artists": st.lists(artist, max_size=3),
        "release_date": st.sampled_from(["1999", "1999-12", "2001-02-03"]),
        "label": text,
        "genres": st.lists(text, max_size=3),
        "markets": st.lists(st.sampled_from(["GB", "US", "JP"]), max_size=3),
    },
)
record = st.fixed_dictionaries(
    {"id": ident, "title": text, "artists": st.lists(artist, max_size=4)},
    optional={
        "album": album,
        "isrc": text,
        "popularity": st.integers(0, 100),
        "listens": st.one_of(st.none(), st.integers(0, 10**12)),
        "duration_ms": st.integers(0, 10**7),
        "explicit": st.booleans(),
        "track_number": st.integers(1, 99),
        "external_ids": st.dictionaries(text, text, max_size=2),
    },
)


@given(
    st.lists(
        st.one_of(st.binary(max_size=80), record.map(lambda r: json.dumps(r).encode())), max_size=20
    )
)
@settings(max_examples=300, deadline=None)
def test_every_line_is_loaded_or_rejected(lines: list[bytes]) -> None:
    lines = [line.replace(b"\n", b" ") for line in lines]
    batch = prepare_lines(1, lines)
    blank = sum(1 for line in lines if not line.strip())
    assert batch.read == len(lines) - blank
    assert len(batch.tracks) + batch.superseded + len(batch.rejects) == batch.read
    for r in batch.rejects:
        assert r.reason and 1 <= r.line <= len(lines)


@given(st.lists(record, min_size=1, max_size=8, unique_by=lambda r: r["id"]))
@settings(max_examples=100, deadline=None)
def test_valid_records_load_and_export_unchanged(records: list[dict[str, object]]) -> None:
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    for line in lines:
        msgspec.json.decode(line, type=TrackRecord)  # the strategy only makes valid records
    conn = sqlite3.connect(":memory:")
    conn.isolation_level = None
    schema.migrate(conn)
    conn.execute(
        "INSERT INTO imports(id, kind, path, fingerprint, started_at)"
        " VALUES (1, 'jsonl', '-', '-', '-')"
    )
    batch = prepare_lines(1, lines)
    assert not batch.rejects, batch.rejects
    conn.execute("BEGIN")
    Loader(conn, 1, "jsonl").write(batch)
    conn.execute("COMMIT")
    out = [json.loads(x) for x in iter_export_lines(conn)]
    assert sorted(records, key=repr) == sorted(out, key=repr)
