"""Audio streams and cover images: ``/tracks/{id}/audio`` and ``/albums/{id}/cover``.

Audio needs a signed-in user unless ``[serve] public_audio`` is true; covers follow
``public_catalog``. A track this server does not hold answers ``404`` with the reason
and the torrent that has it, so a client can say "not in this mirror". With ``[serve]
on_demand`` such a track is fetched from the swarm as it is played; a fetch that fails or
cannot start in time answers ``503`` (``504`` for the time) naming the torrent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from phonotheca.serve.context import ServeContext
from phonotheca.serve.media import MediaLibrary, ranged_response
from phonotheca.serve.ondemand import OnDemandError
from phonotheca.serve.security import Sessions

NOT_FOUND_REASONS = {
    "not_archived": "this track's audio is not in the archive (metadata only)",
    "not_in_mirror": "this track's collection is not in this mirror",
    "incomplete": "this mirror has not verified the pieces that hold this track yet",
}


def create_router(ctx: ServeContext, sessions: Sessions) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    library: MediaLibrary = ctx.media

    @router.api_route("/tracks/{track_id:path}/audio", methods=["GET", "HEAD"])
    def track_audio(
        request: Request,
        track_id: str,
        download: Annotated[bool, Query()] = False,
    ) -> Response:
        """The track's file as archived, with Range support."""
        if not ctx.settings.serve.public_audio and sessions.current_user(request) is None:
            return JSONResponse(
                {"error": "sign in to play or download audio", "signin": "/signin"},
                status_code=401,
            )
        media = library.locate(track_id)
        if media is None:
            return JSONResponse({"error": "no track with this id"}, status_code=404)
        if not media.playable and not media.swarm:
            return JSONResponse(
                {
                    "error": NOT_FOUND_REASONS.get(media.reason or "", "not available"),
                    "reason": media.reason,
                    "torrent": media.torrent,
                },
                status_code=404,
            )
        try:
            return library.response(request, media, attachment=download)
        except OnDemandError as exc:
            return JSONResponse(
                {"error": str(exc), "reason": "swarm", "torrent": media.torrent},
                status_code=504 if exc.timeout else 503,
                headers={"Retry-After": "30"},
            )

    @router.api_route("/albums/{album_id:path}/cover", methods=["GET", "HEAD"])
    def album_cover(request: Request, album_id: str) -> Response:
        """The album's front cover; immutable, so browsers cache it for good."""
        if not ctx.settings.serve.public_catalog and sessions.current_user(request) is None:
            return JSONResponse({"error": "sign in to browse"}, status_code=401)
        cover = library.cover(album_id)
        if cover is None:
            return JSONResponse({"error": "no cover for this album here"}, status_code=404)
        return ranged_response(request, cover)

    return router
