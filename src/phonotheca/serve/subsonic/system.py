"""System calls: ping, license, OpenSubsonic extensions, the user's own record."""

from __future__ import annotations

from phonotheca.serve.subsonic.call import Call, Handler
from phonotheca.serve.subsonic.envelope import NOT_AUTHORIZED, NOT_FOUND, Payload, SubsonicError

# Extensions this server implements, with the versions it supports
# (https://opensubsonic.netlify.app/docs/extensions/).
EXTENSIONS: list[Payload] = [
    {"name": "apiKeyAuthentication", "versions": [1]},
    {"name": "formPost", "versions": [1]},
    {"name": "songLyrics", "versions": [1]},
]


def ping(call: Call) -> Payload:
    return {}


def get_license(call: Call) -> Payload:
    # Free software: always licensed, never expiring.
    return {"license": {"valid": True, "email": "", "licenseExpires": None}}


def get_open_subsonic_extensions(call: Call) -> Payload:
    return {"openSubsonicExtensions": EXTENSIONS}


def get_user(call: Call) -> Payload:
    """The caller's own record (``username`` must be theirs unless they are an admin)."""
    assert call.user is not None
    name = call.get("username", call.user.name) or call.user.name
    if name != call.user.name and not call.user.admin:
        raise SubsonicError(NOT_AUTHORIZED, "only an admin may look at another user")
    user = call.state.get_user(name)
    if user is None:
        raise SubsonicError(NOT_FOUND, f"no user {name!r}")
    return {
        "user": {
            "username": user.name,
            "email": "",
            "scrobblingEnabled": True,
            "adminRole": user.admin,
            "settingsRole": False,
            "downloadRole": True,
            "uploadRole": False,
            "playlistRole": True,
            "coverArtRole": True,
            "commentRole": False,
            "podcastRole": False,
            "streamRole": True,
            "jukeboxRole": False,
            "shareRole": False,
            "videoConversionRole": False,
            "folder": [1],
        }
    }


def token_info(call: Call) -> Payload:
    """Whose API key this is (OpenSubsonic ``apiKeyAuthentication``)."""
    assert call.user is not None
    return {"tokenInfo": {"username": call.user.name}}


ENDPOINTS: dict[str, Handler] = {
    "tokenInfo": token_info,
    "ping": ping,
    "getLicense": get_license,
    "getOpenSubsonicExtensions": get_open_subsonic_extensions,
    "getUser": get_user,
}

# Calls answered without credentials (OpenSubsonic: clients ask before they log in).
PUBLIC = frozenset({"getOpenSubsonicExtensions"})
