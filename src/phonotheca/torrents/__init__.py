"""Torrents: make v1 and hybrid v1+v2 ``.torrent`` files, hashing pieces while data is written."""

from phonotheca.torrents.bencode import BencodeError
from phonotheca.torrents.make import (
    CREATED_BY,
    Torrent,
    TorrentFile,
    Trackers,
    assemble_torrent,
    list_payload,
    make_torrent,
    write_torrent,
)
from phonotheca.torrents.pieces import (
    FileHashes,
    PieceHasher,
    PieceHashes,
    order_key,
    piece_length_for,
)

__all__ = [
    "CREATED_BY",
    "BencodeError",
    "FileHashes",
    "PieceHasher",
    "PieceHashes",
    "Torrent",
    "TorrentFile",
    "Trackers",
    "assemble_torrent",
    "list_payload",
    "make_torrent",
    "order_key",
    "piece_length_for",
    "write_torrent",
]
