"""A collection on disk: a BagIt bag (RFC 8493) of tar volumes and their index.

:func:`pack_collection` writes the volumes, ``data/index.jsonl`` and the tag files, each
with deterministic bytes, each under its final name only once complete, in torrent order,
every byte through an optional :class:`ByteSink` (the torrent's piece hasher), so no file
is read twice. :func:`plan_payload` gives every size before any audio is read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from phonotheca import __version__
from phonotheca.build.index import (
    INDEX_FILE,
    IndexEntry,
    encode_entry,
    encode_index,
    index_entry,
)
from phonotheca.build.tarvolume import (
    COPY_CHUNK,
    DEFAULT_VOLUME_SIZE,
    PARTIAL_SUFFIX,
    PAYLOAD_DIR,
    ByteSink,
    PackedMember,
    PackError,
    PlannedVolume,
    VolumeFile,
    VolumeWriter,
    plan_volumes,
)
from phonotheca.durable import sync_directory

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
BAGIT_FILE = "bagit.txt"
BAG_INFO_FILE = "bag-info.txt"
MANIFEST_FILE = "manifest-sha256.txt"
TAGMANIFEST_FILE = "tagmanifest-sha256.txt"
TAG_FILES = (BAGIT_FILE, BAG_INFO_FILE, MANIFEST_FILE, TAGMANIFEST_FILE)
SOFTWARE_AGENT = f"phonotheca {__version__}"

_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ZERO_SHA256 = "0" * 64
_ZERO_MEMBER = PackedMember("", "", 0, 0, _ZERO_SHA256)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_collection_name(collection: str) -> None:
    if not _COLLECTION.fullmatch(collection):
        raise PackError(
            f"collection name {collection!r} must be 1-128 characters of A-Z, a-z, 0-9,"
            " '.', '_', '-', starting with a letter or digit"
        )


@dataclass(frozen=True, slots=True)
class BagInfo:
    """What ``bag-info.txt`` says besides ``Payload-Oxum``; the date comes from settings."""

    bagging_date: dt.date
    software_agent: str = SOFTWARE_AGENT
    external_description: str | None = None
    external_identifier: str | None = None

    def text(self, payload_bytes: int, payload_files: int) -> bytes:
        """The file's bytes: one ``Label: value`` line per field, labels sorted."""
        tags = {
            "Bag-Software-Agent": self.software_agent,
            "Bagging-Date": self.bagging_date.isoformat(),
            "External-Description": self.external_description,
            "External-Identifier": self.external_identifier,
            "Payload-Oxum": f"{payload_bytes}.{payload_files}",
        }
        lines = []
        for label, value in sorted(tags.items()):
            if value is None:
                continue
            if not value.strip() or value != value.strip() or not value.isprintable():
                raise PackError(
                    f"bag-info.txt {label} {value!r} must be one line of printable text"
                    " without leading or trailing spaces"
                )
            lines.append(f"{label}: {value}\n")
        return "".join(lines).encode("utf-8")


class TrackSpec(Protocol):
    """What planning needs of a track: no data."""

    @property
    def public_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def metadata(self) -> Mapping[str, object]: ...


@dataclass(frozen=True, slots=True)
class PackItem:
    """One track to pack: its id, member name (:func:`member_name`), size, data, metadata.

    ``data`` is bytes, a path (opened when the track is written: the way to pack many
    files) or a binary stream at its start; exactly ``size`` bytes are read.
    ``metadata`` holds index fields (:data:`METADATA_FIELDS`). ``sha256`` (hex), when
    known (the ledger has it), is checked against the data as it is copied.
    """

    public_id: str
    name: str
    size: int
    data: bytes | BinaryIO | Path
    metadata: Mapping[str, object] = field(default_factory=dict)
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class BagFile:
    """A file of the bag: path relative to the bag (``/``-separated), size, sha256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class PackedCollection:
    path: Path
    collection: str
    volumes: list[VolumeFile]
    entries: list[IndexEntry]
    files: list[BagFile]
    """Every file of the bag, sorted by path."""
    payload_oxum: str
    torrent_order: bool
    """Whether the sink saw the files in torrent order (see :func:`pack_collection`)."""


@dataclass(frozen=True, slots=True)
class PayloadPlan:
    """Sizes known before any data is read: volumes, the index and ``bag-info.txt``."""

    volumes: list[PlannedVolume]
    index_size: int
    payload_oxum: str
    bag_info: bytes


def plan_payload(
    collection: str,
    tracks: Iterable[TrackSpec],
    info: BagInfo,
    *,
    max_volume_size: int = DEFAULT_VOLUME_SIZE,
    entry_type: type[msgspec.Struct] = IndexEntry,
) -> PayloadPlan:
    """What :func:`pack_collection` will write for these tracks, except hashes.

    Index lines have the same length whatever the sha256, so every file's size, and so
    where each file starts in a torrent, is known before the audio is read.
    """
    check_collection_name(collection)
    specs = list(tracks)
    volumes = plan_volumes(collection, ((t.name, t.size) for t in specs), max_volume_size)
    locations = (m for v in volumes for m in v.members)
    index_size = 0
    for spec, loc in zip(specs, locations, strict=True):
        member = PackedMember(loc.name, loc.volume, loc.offset, loc.length, _ZERO_SHA256)
        entry = index_entry(spec.public_id, member, spec.metadata, entry_type)
        index_size += len(encode_entry(entry))
    payload_bytes = sum(v.size for v in volumes) + index_size
    payload_files = len(volumes) + 1
    return PayloadPlan(
        volumes,
        index_size,
        f"{payload_bytes}.{payload_files}",
        info.text(payload_bytes, payload_files),
    )


def bag_size(collection: str, plan: PayloadPlan) -> int:
    """Bytes of the whole bag (tag files included) that ``plan`` describes: the torrent's
    payload size, known before anything is written, so the piece length can be chosen."""
    payload = [f"{PAYLOAD_DIR}/{v.name}" for v in plan.volumes]
    payload.append(f"{PAYLOAD_DIR}/{INDEX_FILE}")
    manifest = sum(64 + 1 + len(_manifest_path(p).encode()) + 1 for p in payload)
    tags = (BAG_INFO_FILE, BAGIT_FILE, MANIFEST_FILE)
    tagmanifest = sum(64 + 1 + len(p) + 1 for p in tags)
    payload_bytes = int(plan.payload_oxum.split(".")[0])
    return payload_bytes + len(plan.bag_info) + len(BAGIT_TXT) + manifest + tagmanifest


def _manifest_path(path: str) -> str:
    # RFC 8493 §2.1.3: CR, LF and % in a path are percent-encoded. Our own paths never
    # contain them (collection names are restricted); this keeps the writer correct anyway.
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def manifest_text(files: Iterable[BagFile]) -> bytes:
    """``<sha256> <path>`` lines sorted by the path's UTF-8 bytes."""
    ordered = sorted(files, key=lambda f: f.path.encode("utf-8"))
    return "".join(f"{f.sha256} {_manifest_path(f.path)}\n" for f in ordered).encode("utf-8")


def _write_partial(
    bag_dir: Path, relpath: str, data: bytes, sink: ByteSink | None
) -> tuple[BagFile, Path]:
    """Write a small file as ``<name>.partial`` and fsync it; the caller renames it."""
    path = bag_dir / relpath
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    if sink is not None:
        sink.start_file(relpath)
    with partial.open("wb") as f:
        for start in range(0, len(data), COPY_CHUNK):
            chunk = data[start : start + COPY_CHUNK]
            f.write(chunk)
            if sink is not None:
                sink.update(chunk)
        f.flush()
        os.fsync(f.fileno())
    if sink is not None:
        sink.end_file()
    return BagFile(relpath, len(data), hashlib.sha256(data).hexdigest()), partial


def _publish(partial: Path) -> None:
    os.replace(partial, partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX)))


def _write_file(bag_dir: Path, relpath: str, data: bytes, sink: ByteSink | None) -> BagFile:
    """Write a small file as ``.partial``, fsync it and rename it into place."""
    written, partial = _write_partial(bag_dir, relpath, data, sink)
    _publish(partial)
    return written


def _prepare(bag_dir: Path, collection: str) -> None:
    """Delete what a killed run left (``*.partial``); refuse files that are not ours."""
    data_dir = bag_dir / PAYLOAD_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    volume = re.compile(re.escape(collection) + r"\.\d{4}\.tar")
    foreign = []
    for entry in sorted([*bag_dir.iterdir(), *data_dir.iterdir()]):
        if entry.is_file() and entry.name.endswith(PARTIAL_SUFFIX):
            entry.unlink()
            continue
        if entry.parent == data_dir:
            ours = entry.is_file() and (entry.name == INDEX_FILE or volume.fullmatch(entry.name))
        else:
            ours = entry.name in TAG_FILES or entry == data_dir
        if not ours:
            foreign.append(str(entry))
    if foreign:
        raise PackError(
            f"{bag_dir} holds files that are not part of collection {collection}:"
            f" {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''};"
            " move them away or pack into an empty directory"
        )


def _check_tracks(tracks: Sequence[PackItem], entry_type: type[msgspec.Struct]) -> None:
    """Refuse bad tracks before any data is written."""
    seen: set[str] = set()
    for track in tracks:
        if track.public_id in seen:
            raise PackError(f"track {track.public_id} is packed twice")
        seen.add(track.public_id)
        index_entry(track.public_id, _ZERO_MEMBER, track.metadata, entry_type)
        if track.sha256 is not None and not _SHA256.fullmatch(track.sha256):
            raise PackError(
                f"track {track.public_id}: sha256 {track.sha256!r} is not 64 lower-case hex"
            )


def pack_collection(
    bag_dir: Path,
    collection: str,
    items: Iterable[PackItem],
    *,
    info: BagInfo,
    mtime: int,
    max_volume_size: int = DEFAULT_VOLUME_SIZE,
    sink: ByteSink | None = None,
    entry_type: type[msgspec.Struct] = IndexEntry,
) -> PackedCollection:
    """Pack tracks, in the order given, into the bag ``bag_dir``; return what was written.

    Files are written in torrent order (by the UTF-8 bytes of their paths), so ``sink``
    can be the torrent's piece hasher: ``bag-info.txt`` (its sizes are planned up front),
    ``bagit.txt``, the payload, ``manifest-sha256.txt``, ``tagmanifest-sha256.txt``. When
    ``data/index.jsonl`` sorts before the volumes (a collection name after ``index.jsonl``,
    e.g. ``phonotheca-…``), the index is written first, which needs every track's
    ``sha256``; without them it comes after the volumes and ``torrent_order`` is False.
    Re-running with the same inputs rewrites the same bytes: leftovers of a killed run are
    deleted first, volumes beyond the new count afterwards.
    """
    check_collection_name(collection)
    tracks = list(items)
    _check_tracks(tracks, entry_type)
    plan = plan_payload(
        collection, tracks, info, max_volume_size=max_volume_size, entry_type=entry_type
    )
    _prepare(bag_dir, collection)
    data_dir = bag_dir / PAYLOAD_DIR
    index_path = f"{PAYLOAD_DIR}/{INDEX_FILE}"
    locations = [m for v in plan.volumes for m in v.members]
    index_sorts_first = bool(plan.volumes) and (
        index_path.encode() < f"{PAYLOAD_DIR}/{plan.volumes[0].name}".encode()
    )
    early_index = index_sorts_first and all(t.sha256 is not None for t in tracks)
    pending: list[Path] = []  # written early, renamed once the payload is complete
    try:
        info_file, partial = _write_partial(bag_dir, BAG_INFO_FILE, plan.bag_info, sink)
        pending.append(partial)
        bagit_file, partial = _write_partial(bag_dir, BAGIT_FILE, BAGIT_TXT, sink)
        pending.append(partial)
        if early_index:
            entries = [
                index_entry(
                    t.public_id,
                    PackedMember(loc.name, loc.volume, loc.offset, loc.length, t.sha256 or ""),
                    t.metadata,
                    entry_type,
                )
                for t, loc in zip(tracks, locations, strict=True)
            ]
            index_file, partial = _write_partial(bag_dir, index_path, encode_index(entries), sink)
            pending.append(partial)
        packed = []
        with VolumeWriter(
            data_dir, collection, mtime=mtime, max_volume_size=max_volume_size, sink=sink
        ) as writer:
            for track, loc in zip(tracks, locations, strict=True):
                member = writer.add(track.name, track.size, track.data, track.sha256)
                assert (member.volume, member.offset) == (loc.volume, loc.offset), "plan drift"
                packed.append(index_entry(track.public_id, member, track.metadata, entry_type))
        if not early_index:
            entries = packed
            index_file = _write_file(bag_dir, index_path, encode_index(entries), sink)
    except BaseException:
        for partial in pending:
            partial.unlink(missing_ok=True)
        raise
    for partial in pending:
        _publish(partial)
    volumes = writer.volumes
    written = {v.name for v in volumes}
    stale = re.compile(re.escape(collection) + r"\.\d{4}\.tar")
    for entry in data_dir.iterdir():
        if stale.fullmatch(entry.name) and entry.name not in written:
            entry.unlink()
    sync_directory(data_dir)
    payload = [BagFile(f"{PAYLOAD_DIR}/{v.name}", v.size, v.sha256) for v in volumes]
    payload.append(index_file)
    oxum = f"{sum(f.size for f in payload)}.{len(payload)}"
    assert oxum == plan.payload_oxum, "plan drift"
    manifest = _write_file(bag_dir, MANIFEST_FILE, manifest_text(payload), sink)
    tags = [info_file, bagit_file, manifest]
    tags.append(_write_file(bag_dir, TAGMANIFEST_FILE, manifest_text(tags), sink))
    sync_directory(bag_dir)
    return PackedCollection(
        bag_dir,
        collection,
        volumes,
        entries,
        sorted(payload + tags, key=lambda f: f.path.encode("utf-8")),
        oxum,
        torrent_order=early_index or not index_sorts_first,
    )


def write_tag_files(
    bag_dir: Path, payload: Sequence[BagFile], info: BagInfo, sink: ByteSink | None = None
) -> list[BagFile]:
    """(Re)write bag-info.txt, bagit.txt and both manifests for ``payload``; return them."""
    payload_bytes = sum(f.size for f in payload)
    tags = [
        _write_file(bag_dir, BAG_INFO_FILE, info.text(payload_bytes, len(payload)), sink),
        _write_file(bag_dir, BAGIT_FILE, BAGIT_TXT, sink),
        _write_file(bag_dir, MANIFEST_FILE, manifest_text(payload), sink),
    ]
    tags.append(_write_file(bag_dir, TAGMANIFEST_FILE, manifest_text(tags), sink))
    sync_directory(bag_dir)
    return tags
