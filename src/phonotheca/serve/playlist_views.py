"""Catalog playlists as the web pages and the JSON API show them (the models of
:mod:`phonotheca.serve.models`), read by :mod:`phonotheca.serve.playlists`.

An entry matched to a catalog track carries that track's summary, with whether this
server can play it, exactly as on an album page; an unmatched one only what the
playlist says of it.
"""

from __future__ import annotations

from phonotheca.serve import playlists as catalog
from phonotheca.serve.browse import Browser
from phonotheca.serve.models import Playlist, PlaylistEntry, PlaylistList, PlaylistSummary


def summary(playlist: catalog.CatalogPlaylist) -> PlaylistSummary:
    return PlaylistSummary(
        id=playlist.public_id,
        title=playlist.title,
        creator=playlist.creator,
        annotation=playlist.annotation,
        created=playlist.created,
        identifier=playlist.identifier,
        entry_count=playlist.entries,
        matched_count=playlist.matched,
        duration_ms=playlist.duration_ms,
    )


class PlaylistViews:
    """Builds the playlist models for one server."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    def playlist(self, public_id: str, at: int, size: int) -> Playlist | None:
        """The playlist with its entries at positions ``[at, at + size)``."""
        conn = self.browser.conn()
        found = catalog.by_public_id(conn, public_id)
        if found is None:
            return None
        page = catalog.entries(conn, found, at, size)
        matched = [e.track_id for e in page if e.track_id is not None]
        tracks = self.browser.summaries_by_rowid(matched)
        entries = [
            PlaylistEntry(
                position=e.position,
                title=e.title,
                creator=e.creator,
                album=e.album,
                duration_ms=e.duration_ms,
                identifier=e.identifier,
                match=e.match,
                track=tracks.get(e.track_id) if e.track_id is not None else None,
            )
            for e in page
        ]
        return Playlist(**summary(found).model_dump(), entries_offset=at, entries=entries)

    def page(
        self, after: str | None, before: str | None, size: int = catalog.PLAYLISTS_PER_PAGE
    ) -> PlaylistList:
        found = catalog.page(self.browser.conn(), after=after, before=before, size=size)
        return PlaylistList(
            playlists=[summary(p) for p in found.playlists],
            before=found.before,
            after=found.after,
        )

    def search(self, text: str, limit: int = catalog.SEARCH_HITS) -> list[PlaylistSummary]:
        return [summary(p) for p in catalog.search(self.browser.conn(), text, limit)]
