"""MusicBrainz release documents (WS/2 JSON, as in the JSON data dumps) as a source.

One document is one release: it becomes an album, its media's tracks become tracks
(``mb:track:<track id>``), its artist credits artists with their aliases. Parsing is
lenient about what is missing (a null artist credit, no date, media without tracks):
what is there is loaded, and only a document that is not JSON, not a release, or has no
id or title is rejected. The mapping is specified in docs/FORMAT.md §6.

Recording documents (``mbdump/recording``) are parsed here too: :func:`parse_recording`
reads what a recording changes in the tracks of its releases, :func:`prepare_recordings`
maps a recording on no loaded release to a track without an album (``mb:recording:<id>``);
:mod:`phonotheca.sources.musicbrainz_import` applies them to the catalog.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
import zstandard

from phonotheca.catalog.batch import (
    RECORD_REF_LINES,
    AlbumRow,
    ArtistRow,
    Batch,
    Reject,
    fingerprint,
    fingerprint_bytes,
)
from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.record import RecordError, derived_id, parse_date

STANDALONE_PREFIX = "mb:recording:"
"""Public id prefix of the track of a recording on no loaded release (docs/FORMAT.md §6.4)."""
MAX_DOCUMENT_BYTES = 16 << 20
"""A release of a large box set with every alias runs to a few MiB; this is far above."""
RECORDS_PER_CHUNK = 100  # documents are ~10 KiB: chunks of ~1 MiB keep export lookups cheap
CHUNK_LEVEL = 1
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
CAA_URL = "https://coverartarchive.org/release/{}/{}"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# -- the documents, as far as we read them (unknown fields are skipped) ---------------------


class _Alias(msgspec.Struct, rename="kebab"):
    name: str | None = None
    sort_name: str | None = None
    locale: str | None = None


class _Artist(msgspec.Struct, rename="kebab"):
    id: str | None = None
    name: str | None = None
    sort_name: str | None = None
    disambiguation: str | None = None
    aliases: list[_Alias] | None = None


class _Credit(msgspec.Struct):
    name: str | None = None
    joinphrase: str | None = None
    artist: _Artist | None = None


class _Named(msgspec.Struct):
    name: str | None = None


class _Recording(msgspec.Struct, rename="kebab"):
    id: str | None = None
    title: str | None = None
    length: int | None = None
    isrcs: list[str] | None = None
    artist_credit: list[_Credit] | None = None
    genres: list[_Named] | None = None


class _Track(msgspec.Struct, rename="kebab"):
    id: str | None = None
    title: str | None = None
    position: int | None = None
    length: int | None = None
    recording: _Recording | None = None
    artist_credit: list[_Credit] | None = None


class _Medium(msgspec.Struct, rename="kebab"):
    position: int | None = None
    track_count: int | None = None
    pregap: _Track | None = None
    tracks: list[_Track] | None = None
    data_tracks: list[_Track] | None = None


class _Area(msgspec.Struct, rename={"iso_codes": "iso-3166-1-codes"}):
    iso_codes: list[str] | None = None


class _Event(msgspec.Struct):
    date: str | None = None
    area: _Area | None = None


class _LabelInfo(msgspec.Struct, rename="kebab"):
    catalog_number: str | None = None
    label: _Named | None = None


class _CoverArt(msgspec.Struct):
    front: bool | None = None
    back: bool | None = None
    count: int | None = None
    darkened: bool | None = None


class _ReleaseGroup(msgspec.Struct, rename="kebab"):
    id: str | None = None
    first_release_date: str | None = None
    primary_type: str | None = None
    secondary_types: list[str] | None = None
    genres: list[_Named] | None = None


class _Release(msgspec.Struct, rename="kebab"):
    id: str | None = None
    title: str | None = None
    date: str | None = None
    country: str | None = None
    status: str | None = None
    packaging: str | None = None
    barcode: str | None = None
    asin: str | None = None
    disambiguation: str | None = None
    artist_credit: list[_Credit] | None = None
    release_group: _ReleaseGroup | msgspec.UnsetType | None = msgspec.UNSET
    label_info: list[_LabelInfo] | None = None
    release_events: list[_Event] | None = None
    cover_art_archive: _CoverArt | None = None
    media: list[_Medium] | msgspec.UnsetType | None = msgspec.UNSET
    genres: list[_Named] | None = None
    # Only recording documents have these: they tell the two kinds apart.
    video: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    isrcs: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class RecordingDocument(msgspec.Struct, rename="kebab"):
    """What a recording document (``mbdump/recording``) changes in its releases' tracks."""

    id: str | None = None
    length: int | None = None
    isrcs: list[str] | None = None
    aliases: list[_Alias] | None = None
    media: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    release_group: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class _StandaloneRecording(RecordingDocument, rename="kebab"):
    """A recording document read whole: it becomes a track of its own (§6.4)."""

    title: str | None = None
    artist_credit: list[_Credit] | None = None
    genres: list[_Named] | None = None


_release_decoder = msgspec.json.Decoder(_Release)
_recording_decoder = msgspec.json.Decoder(RecordingDocument)
_standalone_decoder = msgspec.json.Decoder(_StandaloneRecording)

DocumentKind = Literal["release", "recording"]


def _is_recording(doc: _Release) -> bool:
    """A recording has ``video`` and usually ``isrcs``; a release has media and a group."""
    has_recording_keys = doc.video is not msgspec.UNSET or doc.isrcs is not msgspec.UNSET
    has_release_keys = doc.media is not msgspec.UNSET or doc.release_group is not msgspec.UNSET
    return has_recording_keys and not has_release_keys


def document_kind(data: bytes) -> DocumentKind | None:
    """Whether a document is a release or a recording; None when it is not a JSON object."""
    try:
        doc = _release_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return "recording" if _is_recording(doc) else "release"


# -- mapping --------------------------------------------------------------------------------


def _uuid(value: str | None) -> str | None:
    """A MusicBrainz id (UUID) in its canonical lower-case form, or None."""
    if value is None:
        return None
    if _UUID.fullmatch(value):  # as MusicBrainz writes them: the common case
        return value
    value = value.strip().lower()
    return value if _UUID.fullmatch(value) else None


def _date(text: str | None) -> tuple[str | None, str | None]:
    """A MusicBrainz partial date; unknown or malformed dates are left out, not rejected."""
    if not text:
        return None, None
    try:
        return parse_date(text, None)
    except RecordError:
        return None, None


def _duration(*lengths: int | None) -> int | None:
    for ms in lengths:
        if ms is not None and 0 <= ms <= MAX_DURATION_MS:
            return ms
    return None


def _names(*lists: list[_Named] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g.name for gs in lists if gs for g in gs if g.name))


Credits = tuple[tuple[str, str | None, str], ...]


def _artist_row(a: _Artist, name: str) -> ArtistRow:
    aliases: dict[str, tuple[str, str | None, str | None]] = {}
    for al in a.aliases or ():
        if al.name and al.name not in aliases:
            aliases[al.name] = (al.name, al.sort_name or None, al.locale or None)
    return ArtistRow(
        name,
        a.sort_name or None,
        a.disambiguation or None,
        tuple(sorted(aliases.values())),  # sorted: the fingerprint ignores alias order
    )


def _credits(
    credits: list[_Credit] | None, artists: dict[str, tuple[int, ArtistRow]]
) -> tuple[Credits, str]:
    """(artist public id, credited as, join phrase) per credit, and the printed credit."""
    if not credits:
        return (), ""
    out: list[tuple[str, str | None, str]] = []
    printed: list[str] = []
    for c in credits:
        a = c.artist
        name = (a.name if a is not None else None) or c.name
        if not name:
            continue
        aid = _uuid(a.id) if a is not None else None
        pid = f"mb:artist:{aid}" if aid else derived_id("artist", name)
        if pid not in artists:
            row = _artist_row(a, name) if a is not None else ArtistRow(name)
            artists[pid] = (fingerprint(row), row)
        shown = c.name or name
        join = c.joinphrase or ""
        out.append((pid, shown if shown != name else None, join))
        printed += (shown, join)
    text = "".join(printed)
    return tuple(out), text.rstrip() if out and out[-1][2] else text


def _album(
    doc: _Release, rid: str, artists: dict[str, tuple[int, ArtistRow]]
) -> tuple[AlbumRow, Credits]:
    credits, credit = _credits(doc.artist_credit, artists)
    group = doc.release_group if isinstance(doc.release_group, _ReleaseGroup) else None
    media = doc.media if isinstance(doc.media, list) else []
    date, precision = _date(doc.date)
    original, original_precision = _date(group.first_release_date if group else None)
    album_type = None
    if group is not None:
        if "Compilation" in (group.secondary_types or ()):
            album_type = "compilation"
        elif group.primary_type:
            album_type = group.primary_type.lower()
    label = catalog_number = None
    for info in doc.label_info or ():
        if label is None and info.label is not None and info.label.name:
            label = info.label.name
        if catalog_number is None and info.catalog_number:
            catalog_number = info.catalog_number
    markets = dict.fromkeys(
        code
        for e in doc.release_events or ()
        if e.area is not None
        for code in e.area.iso_codes or ()
    )
    caa = doc.cover_art_archive
    images: list[tuple[str, str | None, int | None, int | None]] = []
    if caa is not None and not caa.darkened:
        images += [
            (kind, CAA_URL.format(rid, kind), None, None)
            for kind in ("front", "back")
            if getattr(caa, kind)
        ]
    external = [("asin", doc.asin)] if doc.asin else []  # in scheme order, as loaded
    external.append(("musicbrainz_release", rid))
    gid = _uuid(group.id) if group else None
    if gid:
        external.append(("musicbrainz_release_group", gid))
    return (
        AlbumRow(
            title=doc.title or "",
            artist_credit=credit,
            credits=credits,
            album_type=album_type,
            release_date=date,
            release_date_precision=precision,
            label=label,
            upc=doc.barcode or None,
            total_tracks=sum(m.track_count or len(m.tracks or ()) for m in media) or None,
            total_discs=len(media) or None,
            markets=" ".join(markets) or None,
            status=doc.status.lower() if doc.status else None,
            packaging=doc.packaging or None,
            country=doc.country or None,
            genres=_names(doc.genres, group.genres if group else None),
            images=tuple(images),
            external_ids=tuple(external),
            original_release_date=original,
            original_release_date_precision=original_precision,
            catalog_number=catalog_number,
            disambiguation=doc.disambiguation or None,
            cover_art_count=caa.count if caa is not None else None,
        ),
        credits,
    )


def _medium_tracks(m: _Medium) -> list[_Track]:
    """The tracks of a medium in order: the pregap (hidden) track, tracks, data tracks."""
    if m.pregap is None and not m.data_tracks:
        return m.tracks or []
    return [*((m.pregap,) if m.pregap else ()), *(m.tracks or ()), *(m.data_tracks or ())]


def _add_tracks(
    batch: Batch,
    doc: _Release,
    album_id: str,
    album_credits: Credits,
    album_credit: str,
    fp: int,
    record_ref: int,
    seen: set[str],
) -> None:
    """Append a release's tracks and their links to ``batch``. A track id already taken
    in this batch by another release keeps the first (the other is ``superseded``)."""
    tracks = batch.tracks
    out_credits = batch.credits
    out_genres = batch.genres
    out_ext = batch.external_ids
    artists = batch.artists
    media = doc.media if isinstance(doc.media, list) else []
    for index, m in enumerate(media):
        disc = m.position if m.position and m.position > 0 else index + 1
        for t in _medium_tracks(m):
            tid = _uuid(t.id)
            if tid is None:
                continue  # without an id a track has no stable public id
            pid = "mb:track:" + tid
            if pid in seen:
                batch.superseded += 1
                continue
            seen.add(pid)
            rec = t.recording or _NO_RECORDING
            if t.artist_credit:
                credits, credit = _credits(t.artist_credit, artists)
            elif rec.artist_credit:
                credits, credit = _credits(rec.artist_credit, artists)
            else:
                credits, credit = album_credits, album_credit
            i = len(tracks)
            rid = _uuid(rec.id)
            if rid:
                out_ext.append((i, "musicbrainz_recording", rid))
                # The first track of a recording takes over its standalone track (§6.4).
                batch.claims.append((i, STANDALONE_PREFIX + rid))
            isrc: str | None = None
            valid: bool | None = None
            if rec.isrcs:
                codes = rec.isrcs if len(rec.isrcs) == 1 else dict.fromkeys(rec.isrcs)
                for value, ok in dict.fromkeys(parse_isrc(raw) for raw in codes):
                    out_ext.append((i, "isrc", value))
                    if isrc is None or (ok and not valid):
                        isrc, valid = value, ok
                if valid is False:
                    batch.invalid_isrc += 1
            tracks.append(
                (
                    pid,
                    t.title or rec.title or "",
                    credit,
                    album_id,
                    disc,
                    t.position or None,  # a pregap track (position 0) has no number
                    _duration(t.length, rec.length),
                    isrc,
                    None,
                    None,
                    None,
                    None,
                    None,
                    fp,
                    record_ref,
                )
            )
            for pos, (aid, credited_as, join) in enumerate(credits):
                out_credits.append((i, pos, aid, credited_as, join))
            if rec.genres:
                out_genres += [(i, g) for g in _names(rec.genres)]


_NO_RECORDING = _Recording()


def _checked_id(doc: _Release) -> str:
    rid = _uuid(doc.id)
    if rid is None:
        raise RecordError(f"release id {doc.id!r} is not a MusicBrainz id (a UUID)")
    if not doc.title:
        raise RecordError("release has no title")
    return rid


def _reject_reason(line: bytes, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8: {exc.reason} at byte {exc.start}"
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid release: {exc}"
    if isinstance(exc, msgspec.DecodeError):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid UTF-8"
        return f"invalid JSON: {exc}"
    return f"invalid release: {exc}"


def _track_count(doc: _Release) -> int:
    media = doc.media if isinstance(doc.media, list) else []
    return sum(_uuid(t.id) is not None for m in media for t in _medium_tracks(m))


def prepare_releases(first_line: int, lines: list[bytes]) -> Batch:
    """Decode and map a block of release documents into a :class:`Batch`.

    Within a block a later document of the same release replaces an earlier one; a track
    id that two different releases claim keeps the first (the other is ``superseded``).
    Each loaded document is kept in a zstd chunk; all tracks of a release point at it.
    """
    batch = Batch(first_line=first_line, last_line=first_line + len(lines) - 1, read=len(lines))
    docs: list[tuple[bytes, _Release, str] | None] = []
    where: dict[str, int] = {}  # release id -> its index in docs
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            batch.read -= 1  # blank lines are not records
            continue
        if len(line) > MAX_DOCUMENT_BYTES:
            batch.rejects.append(
                Reject(n, f"document longer than {MAX_DOCUMENT_BYTES} bytes", line[:4096])
            )
            continue
        try:
            doc = _release_decoder.decode(line)
            if _is_recording(doc):
                raise RecordError(
                    "a recording document, not a release: import recording files on their own"
                )
            rid = _checked_id(doc)
        except (msgspec.DecodeError, UnicodeDecodeError, RecordError) as exc:
            batch.rejects.append(Reject(n, _reject_reason(line, exc), line))
            continue
        earlier = where.get(rid)
        if earlier is not None:
            batch.superseded += _track_count(docs[earlier][1])  # type: ignore[index]
            docs[earlier] = None
        where[rid] = len(docs)
        docs.append((line, doc, rid))
    cctx = zstandard.ZstdCompressor(level=CHUNK_LEVEL)
    chunk: list[bytes] = []
    seen: set[str] = set()
    for entry in docs:
        if entry is None:
            continue
        line, doc, rid = entry
        album_id = "mb:release:" + rid
        album, credits = _album(doc, rid, batch.artists)
        batch.albums[album_id] = (fingerprint(album), album)
        record_ref = len(batch.chunks) * RECORD_REF_LINES + len(chunk)
        chunk.append(line)
        if len(chunk) == RECORDS_PER_CHUNK:
            batch.chunks.append(cctx.compress(b"\n".join(chunk)))
            chunk = []
        fp = fingerprint_bytes(line)
        _add_tracks(batch, doc, album_id, credits, album.artist_credit, fp, record_ref, seen)
    if chunk:
        batch.chunks.append(cctx.compress(b"\n".join(chunk)))
    return batch


# -- recording documents ---------------------------------------------------------------------


AliasRow = tuple[str, str | None, str | None]


class Recording(msgspec.Struct, frozen=True):
    """A recording document reduced to what it changes in the tracks of its releases."""

    mbid: str
    isrc: str | None
    """The ISRC for ``tracks.isrc``: the first valid one, else the first."""
    isrcs: tuple[str, ...]
    """Every ISRC, normalised (``external_ids``)."""
    isrc_valid: bool | None
    length: int | None
    aliases: tuple[AliasRow, ...] | None = None
    """(name, sort name, locale) of each alias, one per name, sorted; None when the
    document does not list aliases (then the tracks keep theirs)."""


def _aliases(aliases: list[_Alias] | None) -> tuple[AliasRow, ...] | None:
    if aliases is None:
        return None
    out: dict[str, AliasRow] = {}
    for al in aliases:
        if al.name and al.name not in out:
            out[al.name] = (al.name, al.sort_name or None, al.locale or None)
    return tuple(sorted(out.values()))


def _decode_recording(data: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    try:
        doc = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise RecordError(f"invalid recording: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RecordError(_reject_reason(data, exc)) from exc
    if doc.media is not msgspec.UNSET or doc.release_group is not msgspec.UNSET:
        raise RecordError("a release document, not a recording: import release files on their own")
    if _uuid(doc.id) is None:
        raise RecordError(f"recording id {doc.id!r} is not a MusicBrainz id (a UUID)")
    return doc


def _isrcs(raw: list[str] | None) -> tuple[str | None, tuple[str, ...], bool | None]:
    """(the ISRC for ``tracks.isrc``, every one normalised, whether the first is valid)."""
    isrcs = [parse_isrc(code) for code in raw or ()]
    best = next((i for i in isrcs if i.valid), isrcs[0] if isrcs else None)
    return (
        best.value if best else None,
        tuple(dict.fromkeys(i.value for i in isrcs)),
        best.valid if best else None,
    )


def parse_recording(data: bytes) -> Recording:
    """Parse a recording document; raises ``RecordError`` with the reason when it is not one."""
    doc = _decode_recording(data, _recording_decoder)
    isrc, isrcs, valid = _isrcs(doc.isrcs)
    return Recording(
        mbid=_uuid(doc.id) or "",
        isrc=isrc,
        isrcs=isrcs,
        isrc_valid=valid,
        length=_duration(doc.length),
        aliases=_aliases(doc.aliases),
    )


def prepare_recordings(documents: list[tuple[int, bytes]]) -> Batch:
    """Map recording documents, (line, document) each, to tracks without an album: the
    tracks of recordings on no release in the catalog (docs/FORMAT.md §6.4).

    Each becomes ``mb:recording:<id>`` with the recording's title, artist credits,
    length, ISRCs, genres and aliases; the document is kept in a zstd chunk as the
    track's source record. A document that does not parse is a reject.
    """
    first = documents[0][0] if documents else 0
    last = documents[-1][0] if documents else 0
    batch = Batch(first_line=first, last_line=last, read=len(documents))
    cctx = zstandard.ZstdCompressor(level=CHUNK_LEVEL)
    chunk: list[bytes] = []
    for n, data in documents:
        try:
            doc: _StandaloneRecording = _decode_recording(data, _standalone_decoder)
        except RecordError as exc:
            batch.rejects.append(Reject(n, str(exc), data))
            continue
        mbid = _uuid(doc.id) or ""
        i = len(batch.tracks)
        credits, credit = _credits(doc.artist_credit, batch.artists)
        isrc, isrcs, valid = _isrcs(doc.isrcs)
        if valid is False:
            batch.invalid_isrc += 1
        batch.external_ids.append((i, "musicbrainz_recording", mbid))
        batch.external_ids += [(i, "isrc", code) for code in isrcs]
        batch.genres += [(i, g) for g in _names(doc.genres)]
        batch.aliases += [(i, *alias) for alias in _aliases(doc.aliases) or ()]
        for pos, (aid, credited_as, join) in enumerate(credits):
            batch.credits.append((i, pos, aid, credited_as, join))
        record_ref = len(batch.chunks) * RECORD_REF_LINES + len(chunk)
        chunk.append(data)
        if len(chunk) == RECORDS_PER_CHUNK:
            batch.chunks.append(cctx.compress(b"\n".join(chunk)))
            chunk = []
        batch.tracks.append(
            (
                STANDALONE_PREFIX + mbid,
                doc.title or "",
                credit,
                None,
                None,
                None,
                _duration(doc.length),
                isrc,
                None,
                None,
                None,
                None,
                None,
                fingerprint_bytes(data),
                record_ref,
            )
        )
    if chunk:
        batch.chunks.append(cctx.compress(b"\n".join(chunk)))
    return batch
