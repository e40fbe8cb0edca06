"""What the JSON API returns (and the HTML pages render): typed, so ``/openapi.json`` says it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ArtistCredit(BaseModel):
    """One artist of a credit, in credit order: ``name`` as credited, then ``join_phrase``
    (e.g. " feat. ") before the next one."""

    id: str
    name: str
    join_phrase: str = ""


class AlbumRef(BaseModel):
    id: str
    title: str


class Availability(BaseModel):
    """Whether this server can play the track, and which torrent holds its file."""

    playable: bool
    reason: str | None = Field(
        default=None, description="not_archived, not_in_mirror or incomplete when not playable"
    )
    swarm: bool = Field(
        default=False,
        description="not held here, but played from the swarm (fetched when played)",
    )
    collection: str | None = None
    torrent: str | None = Field(
        default=None, description="file name of the .torrent holding the track"
    )
    codec: str | None = None
    bitrate: int | None = None
    size: int | None = Field(default=None, description="bytes of the archived file")
    content_type: str | None = None


class Loudness(BaseModel):
    """EBU R128 loudness of the archived audio, measured once at build (FORMAT.md §9.4),
    and the ReplayGain 2 gains (to −18 LUFS) a player applies to level tracks."""

    integrated_lufs: float
    true_peak_dbtp: float | None = None
    range_lu: float | None = None
    album_lufs: float | None = Field(
        default=None, description="the album's, gated over all its packed tracks' blocks"
    )
    album_true_peak_dbtp: float | None = None
    track_gain_db: float = Field(description="gain to −18 LUFS (ReplayGain 2)")
    album_gain_db: float | None = None


class TrackSummary(BaseModel):
    id: str
    title: str
    artist_credit: str
    artists: list[ArtistCredit]
    album: AlbumRef | None = None
    disc_number: int | None = None
    track_number: int | None = None
    duration_ms: int | None = Field(
        default=None,
        description="length of the archived file when the track is packed, else the catalog's",
    )
    catalog_duration_ms: int | None = Field(
        default=None,
        description="the catalog's length, when it differs from the file's by more than 2 s",
    )
    isrc: str | None = None
    popularity: int | None = None
    listens: int | None = None
    playable: bool = False
    swarm: bool = Field(
        default=False,
        description="not held here, but played from the swarm (fetched when played)",
    )
    audio_url: str | None = Field(
        default=None, description="where to stream it, when playable here or from the swarm"
    )
    loudness: Loudness | None = Field(
        default=None, description="when packed and measured (null for silent audio)"
    )


class Track(TrackSummary):
    explicit: bool | None = None
    genres: list[str] = Field(
        default_factory=list, description="the track's genres, else its album's (by genre id)"
    )
    availability: Availability
    cover_url: str | None = None


class AlbumSummary(BaseModel):
    id: str
    title: str
    artist_credit: str
    release_date: str | None = None
    album_type: str | None = None
    cover_url: str | None = None


class Album(AlbumSummary):
    artists: list[ArtistCredit]
    genres: list[str] = Field(default_factory=list, description="by genre id")
    label: str | None = None
    upc: str | None = None
    catalog_number: str | None = None
    country: str | None = None
    total_tracks: int | None = None
    total_discs: int | None = None
    duration_ms: int = 0
    tracks: list[TrackSummary]


class Artist(BaseModel):
    id: str
    name: str
    sort_name: str | None = None
    disambiguation: str | None = None
    album_count: int = Field(
        default=0,
        description="albums credited to the artist, or with a track crediting it (FORMAT.md §14.1)",
    )
    albums_offset: int = Field(default=0, description="position of the first album listed")
    albums: list[AlbumSummary] = Field(
        description="albums by release date, then title, from albums_offset on"
    )
    top_tracks: list[TrackSummary]


class PlaylistSummary(BaseModel):
    """A public playlist of the catalog (FORMAT.md §4.8), as its source gives it."""

    id: str = Field(description="public id, 'pl:...'")
    title: str
    creator: str | None = None
    annotation: str | None = None
    created: str | None = Field(default=None, description="the source's date, as given")
    identifier: str | None = Field(default=None, description="the source's URL or URI")
    entry_count: int
    matched_count: int = Field(description="entries matched to a catalog track")
    duration_ms: int | None = Field(
        default=None, description="sum of the entries' durations that are known"
    )


class PlaylistEntry(BaseModel):
    """One entry: what the playlist says, and the catalog track it was matched to."""

    position: int = Field(description="from 0")
    title: str | None = None
    creator: str | None = None
    album: str | None = None
    duration_ms: int | None = None
    identifier: str | None = None
    match: str | None = Field(
        default=None, description="how it was matched (mbid, isrc, name); null when not"
    )
    track: TrackSummary | None = Field(
        default=None, description="the matched track; null when no catalog track matched"
    )


class Playlist(PlaylistSummary):
    entries_offset: int = Field(default=0, description="position of the first entry listed")
    entries: list[PlaylistEntry]


class PlaylistList(BaseModel):
    """A page of the catalog's playlists in public-id order."""

    playlists: list[PlaylistSummary]
    before: str | None = Field(
        default=None, description="the page before: ?before= this id (null on the first)"
    )
    after: str | None = Field(
        default=None, description="the page after: ?after= this id (null on the last)"
    )


class SearchResults(BaseModel):
    query: str
    offset: int
    limit: int
    tracks: list[TrackSummary]
    playlists: list[PlaylistSummary] = Field(
        default_factory=list,
        description="playlists whose title or creator has every word (first page only)",
    )
    next_after: int | None = Field(
        None,
        description="the rank key to pass as `after` for the next page (any depth costs"
        " the same); null when this page is not full",
    )


class ShuffleResults(BaseModel):
    tracks: list[TrackSummary]


class CollectionCount(BaseModel):
    kind: str
    collections: int
    items: int
    bytes: int


class Stats(BaseModel):
    tracks: int
    albums: int
    artists: int
    ledger: dict[str, int] = Field(description="tracks per ledger status")
    tiers: dict[str, int] = Field(description="packed tracks per tier")
    collections: list[CollectionCount]
    playable_collections: int = Field(description="collections present on this server")
    listens_share: float | None = Field(
        default=None, description="share of listens the latest plan keeps"
    )
    plan_budget: int | None = None


class TorrentHealth(BaseModel):
    seeders: int | None = None
    leechers: int | None = None
    completed: int | None = None
    scraped_at: str | None = None
    bucket: str = Field(description="'unknown', '<4', '4-10' or '>10' seeders")


class TorrentInfo(BaseModel):
    name: str
    collection: str
    kind: str
    size: int
    files: int
    tracks: int
    band_low: int | None = None
    band_high: int | None = None
    listens: int
    share_of_listens: float
    added: str
    obsolete: bool
    magnet: str
    torrent_url: str
    infohash_v1: str
    health: TorrentHealth
    here: bool = Field(description="this server holds the collection's files")


class TorrentList(BaseModel):
    archive: str | None = None
    generated_at: str | None = None
    total_bytes: int
    total_tracks: int
    share_of_listens: float
    health: dict[str, int] = Field(description="torrents per seeder bucket")
    torrents: list[TorrentInfo]


class ErrorMessage(BaseModel):
    detail: str
