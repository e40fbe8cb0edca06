"""Music folders (the two libraries a server lists) and page sizes of list calls."""

from __future__ import annotations

from phonotheca.catalog.library import CATALOG
from phonotheca.serve.library import FOLDERS, ServerLibrary
from phonotheca.serve.subsonic.call import Call
from phonotheca.serve.subsonic.envelope import GENERIC, NOT_FOUND, SubsonicError

MAX_LIST = 500
"""The largest page of a list call (the Subsonic docs' maximum for ``size``/``count``)."""


def server_library(call: Call) -> ServerLibrary:
    library: ServerLibrary = call.ctx.library
    return library


def library_of(call: Call) -> int:
    """The library a call lists: its ``musicFolderId``, else the server's default."""
    folder = call.integer("musicFolderId")
    if folder is None:
        return server_library(call).default()
    if folder not in dict(FOLDERS):
        raise SubsonicError(
            NOT_FOUND,
            f"no music folder {folder}: use "
            + " or ".join(f"{i} ({name})" for i, name in FOLDERS)
            + " (see getMusicFolders)",
        )
    return folder


def named_library(call: Call) -> int:
    """The library of a call the API gives no music folder (``getSimilarSongs``,
    ``getTopSongs``): the ``musicFolderId`` an app passes all the same, else the whole
    catalog (those calls list what this server plays first anyway)."""
    return library_of(call) if call.get("musicFolderId") is not None else CATALOG


def page_size(call: Call, name: str, default: int) -> int:
    """A ``size``/``count`` parameter from 0 to :data:`MAX_LIST`; an error beyond."""
    value = call.integer(name, default, low=0)
    assert value is not None
    if value > MAX_LIST:
        raise SubsonicError(GENERIC, f"parameter '{name}' is at most {MAX_LIST}, not {value}")
    return value


def offset_of(call: Call, name: str = "offset") -> int:
    """A list offset (any size: pages are read by position, never by skipping rows)."""
    value = call.integer(name, 0, low=0, high=1 << 62)
    assert value is not None
    return value
