"""Matching a file to a catalog track: ids first, then names and durations, then sound."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonotheca.archive import Archive
from phonotheca.audio import fingerprint as chroma
from phonotheca.audio.probe import Tags
from phonotheca.sources.matching import fold, main_artist, name_key, split_credit
from tests.audio.makers import file_rows, load_catalog, make_audio, record, scan

MBID = "e91522f2-d166-41ff-87b8-f280554d586d"


def test_names_fold_case_diacritics_punctuation_and_featuring() -> None:
    assert fold("Café  Del-Mar!") == "cafe del mar"
    assert fold("Ångström & Co.") == "angstrom and co"
    assert name_key("Light Sky (feat. Pelar)", "Fenford") == ("light sky", "fenford")
    assert name_key("LIGHT SKY", "Fenford ft. Pelar") == ("light sky", "fenford")
    assert name_key("Light Sky [Featuring Pelar]", "fenford, Pelar") == ("light sky", "fenford")
    assert main_artist("Beyoncé featuring Jay-Z") == "Beyoncé"
    assert main_artist("Simon & Garfunkel") == "Simon"
    assert split_credit("A feat. B") == [("A", " feat. "), ("B", "")]
    assert split_credit("Simon & Garfunkel") == [("Simon & Garfunkel", "")]


def test_musicbrainz_id_then_isrc(archive: Archive, tmp_path: Path) -> None:
    load_catalog(
        archive,
        tmp_path,
        [
            record(1, external_ids={"musicbrainz_recording": MBID}),
            record(2, isrc="USABC0100002"),
        ],
    )
    lib = tmp_path / "lib"
    # The id wins over an ISRC that points at another track.
    make_audio(lib / "a", "flac", tags=Tags(musicbrainz_recording=MBID, isrc="USABC0100002"))
    # ISRCs are normalised before they are compared.
    make_audio(lib / "b", "mp3", tags=Tags(title="x", isrc="us-abc-01-00002"))
    summary = scan(archive, lib)
    assert file_rows(archive) == {
        "a.flac": ("test:track:1", "mbid", "ok"),
        "b.mp3": ("test:track:2", "isrc", "ok"),
    }
    assert summary.matched == {"mbid": 1, "isrc": 1, "name": 0, "fingerprint": 0, "sha256": 0}


def test_name_match_folds_forms_and_checks_duration(archive: Archive, tmp_path: Path) -> None:
    load_catalog(
        archive,
        tmp_path,
        [
            record(
                1,
                title="Café Noir (feat. Pelar)",
                artists=[{"name": "Fenford", "join_phrase": " feat. "}, {"name": "Pelar"}],
            ),
            record(2, title="Long One", artists=[{"name": "Fenford"}], duration_ms=9000),
        ],
    )
    lib = tmp_path / "lib"
    make_audio(lib / "a", "vorbis", tags=Tags(title="CAFE NOIR", artists=("fenford ft. Pelar",)))
    # An invalid ISRC is ignored for matching; the name still matches.
    make_audio(lib / "b", "opus", tags=Tags(title="Cafe noir", artists=("Fenford",), isrc="XX"))
    # Same name, but 7.5 s longer than the file: another recording.
    make_audio(lib / "c", "mp3", tags=Tags(title="Long One", artists=("Fenford",)))
    scan(archive, lib)
    rows = file_rows(archive)
    assert rows["a.ogg"] == rows["b.opus"] == ("test:track:1", "name", "ok")
    assert rows["c.mp3"][1] == "new" and rows["c.mp3"][0] != "test:track:2"


def two_songs(first: dict[str, object] | None = None) -> list[dict[str, object]]:
    """Two tracks of one name; the second is more popular, so it wins any plain tie."""
    artists = [{"name": "Fenford"}]
    return [
        record(1, title="Twin", artists=artists, popularity=10, **(first or {})),
        record(2, title="Twin", artists=artists, popularity=90),
    ]


def test_two_candidates_duration_decides(archive: Archive, tmp_path: Path) -> None:
    load_catalog(
        archive,
        tmp_path,
        [
            *two_songs()[:1],
            record(
                2, title="Twin", duration_ms=60_000, artists=[{"name": "Fenford"}], popularity=90
            ),
        ],
    )
    make_audio(tmp_path / "lib" / "a", "flac", tags=Tags(title="Twin", artists=("Fenford",)))
    scan(archive, tmp_path / "lib")
    assert file_rows(archive)["a.flac"] == ("test:track:1", "name", "ok")


def test_two_candidates_album_decides(archive: Archive, tmp_path: Path) -> None:
    load_catalog(archive, tmp_path, two_songs({"album": {"id": "test:album:x", "title": "Élan"}}))
    tags = Tags(title="Twin", artists=("Fenford",), album="elan")
    make_audio(tmp_path / "lib" / "a", "flac", tags=tags)
    scan(archive, tmp_path / "lib")
    assert file_rows(archive)["a.flac"] == ("test:track:1", "name", "ok")


@pytest.mark.skipif(not chroma.available(), reason="libchromaprint1 not installed")
def test_two_candidates_fingerprint_decides(archive: Archive, tmp_path: Path) -> None:
    ids = ["aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"]
    load_catalog(
        archive,
        tmp_path,
        [
            record(
                n,
                title="Twin",
                artists=[{"name": "Fenford"}],
                duration_ms=6000,
                popularity=100 - n,
                external_ids={"musicbrainz_recording": ids[n - 1]},
            )
            for n in (1, 2)
        ],
    )
    known = tmp_path / "known"
    for n in (1, 2):  # one file of each is known already, matched by its id
        make_audio(
            known / f"k{n}",
            "flac",
            seconds=6,
            piece=20 + n,
            tags=Tags(musicbrainz_recording=ids[n - 1]),
        )
    scan(archive, known)
    # A copy of the second piece tagged with names only: the names tie, the sound decides.
    make_audio(
        tmp_path / "new" / "x",
        "opus",
        seconds=6,
        piece=22,
        tags=Tags(title="Twin", artists=("Fenford",)),
    )
    summary = scan(archive, tmp_path / "new")
    assert summary.matched["fingerprint"] == 1
    assert file_rows(archive)["x.opus"] == ("test:track:2", "fingerprint", "ok")
    conn = archive.connect(readonly=True)
    prints = dict(conn.execute("SELECT path, chromaprint FROM source_files"))
    conn.close()
    assert all(fp and fp.startswith("AQAA") for fp in prints.values())  # stored for reuse


def test_tie_without_fingerprints_goes_to_the_most_popular(
    archive: Archive, tmp_path: Path
) -> None:
    load_catalog(archive, tmp_path, two_songs())
    make_audio(tmp_path / "lib" / "a", "flac", tags=Tags(title="Twin", artists=("Fenford",)))
    scan(archive, tmp_path / "lib", fingerprints=False)
    assert file_rows(archive)["a.flac"] == ("test:track:2", "name", "ok")


def test_files_of_one_new_track_in_one_batch_share_it(archive: Archive, tmp_path: Path) -> None:
    tags = Tags(title="Not In The Catalog", artists=("Nobody",), album="Demo", isrc="USXYZ2400001")
    make_audio(tmp_path / "lib" / "a", "flac", tags=tags)
    make_audio(
        tmp_path / "lib" / "b", "mp3", tags=Tags(title="not in the catalog", artists=("NOBODY",))
    )
    make_audio(tmp_path / "lib" / "c", "opus", tags=Tags(isrc="US-XYZ-24-00001"))
    summary = scan(archive, tmp_path / "lib")
    rows = file_rows(archive)
    assert rows["a.flac"][1] == "new"
    assert rows["b.mp3"] == (rows["a.flac"][0], "name", "ok")
    assert rows["c.opus"] == (rows["a.flac"][0], "isrc", "ok")
    assert summary.created == 1


def test_copies_without_artist_or_tags_share_the_track_they_made(
    archive: Archive, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    first = make_audio(lib / "a" / "x", "flac", piece=3)  # no tags
    (lib / "b").mkdir()
    (lib / "b" / "x.flac").write_bytes(first.read_bytes())  # the very same bytes
    make_audio(lib / "c" / "y", "mp3", tags=Tags(title="Only A Title"))
    make_audio(lib / "d" / "y", "mp3", tags=Tags(title="Only A Title"))
    summary = scan(archive, lib)
    conn = archive.connect(readonly=True)
    rows = conn.execute(
        "SELECT f.path, t.public_id, f.match FROM source_files f JOIN tracks t"
        " ON t.id = f.track_id ORDER BY f.path"
    ).fetchall()
    conn.close()
    assert [m for _, _, m in rows] == ["new", "sha256", "new", "name"]
    assert rows[0][1] == rows[1][1] and rows[2][1] == rows[3][1]
    assert summary.created == 2
