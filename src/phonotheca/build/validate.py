"""Check a collection on disk: the bag, its files, and its index against the tar headers.

:func:`validate_collection` returns problems instead of raising, so a mirror can report
everything wrong with a copy at once. More checks (e.g. the torrent against the payload)
plug in as ``extra_checks``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import bagit

from phonotheca.build.bag import (
    BAG_INFO_FILE,
    BAGIT_FILE,
    MANIFEST_FILE,
    TAG_FILES,
    TAGMANIFEST_FILE,
)
from phonotheca.build.index import INDEX_FILE, IndexEntry, read_index
from phonotheca.build.tarvolume import BLOCK, COPY_CHUNK, PARTIAL_SUFFIX, PAYLOAD_DIR

BAG = "."
"""The location of problems about the bag as a whole."""
INDEX_PATH = f"{PAYLOAD_DIR}/{INDEX_FILE}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a collection: where (a path in the bag, ``:line`` for the
    index, or ``.`` for the bag) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


CollectionCheck = Callable[[Path], Iterable[Problem]]
"""An extra check run on the bag directory, e.g. the torrent against the payload."""


def validate_collection(
    bag_dir: Path, *, extra_checks: Iterable[CollectionCheck] = ()
) -> list[Problem]:
    """Every problem found in the collection at ``bag_dir``; an empty list when valid.

    Reads every byte of the payload (twice: once for the BagIt fixity check, once for the
    per-track hashes of the index).
    """
    if not bag_dir.is_dir():
        return [Problem(BAG, f"{bag_dir} is not a directory")]
    problems: list[Problem] = []
    problems += _check_files(bag_dir)
    oxum = _check_oxum(bag_dir)
    problems += oxum
    bagit_problems = _check_bagit(bag_dir)
    if oxum:  # bagit says the same about the Payload-Oxum, less precisely
        bagit_problems = [p for p in bagit_problems if "Payload-Oxum" not in p.message]
    problems += bagit_problems
    problems += _check_index(bag_dir)
    for check in extra_checks:
        problems += check(bag_dir)
    unique: dict[Problem, None] = dict.fromkeys(problems)
    return list(unique)


_ESCAPE = re.compile("%(0A|0D|25)", re.IGNORECASE)


def _read_manifest(path: Path) -> dict[str, str]:
    """Path → sha256 of a manifest; malformed lines are left to the bagit check."""
    entries: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            name = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), parts[1])
            entries[name] = parts[0]
    return entries


def _check_files(bag_dir: Path) -> list[Problem]:
    """Missing tag files, files the manifests list but the disk lacks, and extra files."""
    problems = []
    for name in (*TAG_FILES, INDEX_PATH):
        if not (bag_dir / name).is_file():
            problems.append(Problem(name, "missing"))
    listed: set[str] = set()
    for manifest in (MANIFEST_FILE, TAGMANIFEST_FILE):
        if (bag_dir / manifest).is_file():
            for path in _read_manifest(bag_dir / manifest):
                listed.add(path)
                if not (bag_dir / path).is_file() and path not in TAG_FILES:
                    problems.append(Problem(path, f"missing (listed in {manifest})"))
    for found in sorted(bag_dir.rglob("*")):
        rel = found.relative_to(bag_dir).as_posix()
        if found.is_dir():
            if rel != PAYLOAD_DIR:
                problems.append(Problem(rel, "unexpected directory"))
        elif rel.endswith(PARTIAL_SUFFIX):
            problems.append(Problem(rel, "left over from an interrupted build (safe to delete)"))
        elif rel not in listed and rel not in TAG_FILES:
            problems.append(Problem(rel, f"unexpected file (not in {MANIFEST_FILE})"))
    return problems


def _bag_info(bag_dir: Path) -> dict[str, str]:
    tags: dict[str, str] = {}
    path = bag_dir / BAG_INFO_FILE
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            label, sep, value = line.partition(":")
            if sep and not line[:1].isspace():
                tags.setdefault(label.strip(), value.strip())
    return tags


def _check_oxum(bag_dir: Path) -> list[Problem]:
    """bagit skips a missing Payload-Oxum; we require it, and check it ourselves."""
    if not (bag_dir / BAG_INFO_FILE).is_file():
        return []
    oxum = _bag_info(bag_dir).get("Payload-Oxum")
    if oxum is None:
        return [Problem(BAG_INFO_FILE, "no Payload-Oxum")]
    count_bytes, _, count_files = oxum.partition(".")
    if not (count_bytes.isdigit() and count_files.isdigit()):
        return [Problem(BAG_INFO_FILE, f"malformed Payload-Oxum {oxum!r}")]
    files = [p for p in (bag_dir / PAYLOAD_DIR).rglob("*") if p.is_file()]
    found_bytes = sum(p.stat().st_size for p in files)
    if (int(count_bytes), int(count_files)) != (found_bytes, len(files)):
        return [
            Problem(
                BAG_INFO_FILE,
                f"Payload-Oxum {oxum} but the payload has {found_bytes} bytes"
                f" in {len(files)} files",
            )
        ]
    return []


def _check_bagit(bag_dir: Path) -> list[Problem]:
    """The Library of Congress validator: structure, completeness, fixity."""
    if not (bag_dir / BAGIT_FILE).is_file():
        return []  # already reported as missing
    # bagit logs each failure it raises; the problems below say the same.
    logger = logging.getLogger("bagit")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        bagit.Bag(str(bag_dir)).validate(processes=1)
    except bagit.BagValidationError as exc:
        if not exc.details:
            return [Problem(BAG, f"bagit: {exc.message}")]
        return [
            Problem(str(getattr(d, "path", BAG)).replace("\\", "/"), f"bagit: {d}")
            for d in exc.details
        ]
    except bagit.BagError as exc:
        return [Problem(BAG, f"bagit: {exc}")]
    except (OSError, UnicodeError, ValueError) as exc:
        return [Problem(BAG, f"bagit could not read the bag: {exc}")]
    finally:
        logger.setLevel(level)
    return []


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    offset: int
    length: int


def _tar_members(path: Path, rel: str) -> tuple[dict[int, _Member], list[Problem]]:
    """A volume's regular members by the offset of their data, read with stdlib tarfile
    (an independent reader of what our writer wrote)."""
    members: dict[int, _Member] = {}
    problems = []
    try:
        with tarfile.open(path, mode="r:", encoding="utf-8") as tar:
            for info in tar:
                if not info.isreg():
                    problems.append(Problem(rel, f"member {info.name!r} is not a regular file"))
                    continue
                members[info.offset_data] = _Member(info.name, info.offset_data, info.size)
            end = tar.offset
        # tarfile takes a damaged header after the first for the end of the archive.
        with path.open("rb") as f:
            f.seek(end)
            if f.read(2 * BLOCK) != bytes(2 * BLOCK):
                problems.append(Problem(rel, f"no valid header or end-of-archive at offset {end}"))
    except tarfile.TarError as exc:
        problems.append(Problem(rel, f"unreadable tar: {exc}"))
    return members, problems


def _sha256_at(path: Path, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(offset)
        left = length
        while left:
            chunk = f.read(min(COPY_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _check_index(bag_dir: Path) -> list[Problem]:
    """Every index line points at a member's data with the right hash, and back."""
    index_path = bag_dir / INDEX_PATH
    if not index_path.is_file():
        return []
    problems = []
    entries: list[tuple[int, IndexEntry]] = []
    ids: set[str] = set()
    for line in read_index(index_path.read_bytes()):
        where = f"{INDEX_PATH}:{line.number}"
        if line.entry is None:
            problems.append(Problem(where, f"invalid line: {line.error}"))
            continue
        if line.entry.id in ids:
            problems.append(Problem(where, f"track {line.entry.id} is listed twice"))
        ids.add(line.entry.id)
        entries.append((line.number, line.entry))
    by_volume: dict[str, list[tuple[int, IndexEntry]]] = defaultdict(list)
    for number, entry in entries:
        by_volume[entry.volume].append((number, entry))
    volumes = sorted(
        p.name for p in (bag_dir / PAYLOAD_DIR).iterdir() if p.is_file() and p.name.endswith(".tar")
    )
    for volume in sorted(set(volumes) | set(by_volume)):
        rel = f"{PAYLOAD_DIR}/{volume}"
        path = bag_dir / PAYLOAD_DIR / volume
        if volume not in volumes:
            for number, _entry in by_volume[volume]:
                problems.append(
                    Problem(f"{INDEX_PATH}:{number}", f"volume {volume} does not exist")
                )
            continue
        members, tar_problems = _tar_members(path, rel)
        problems += tar_problems
        used: set[int] = set()
        for number, entry in by_volume.get(volume, []):
            where = f"{INDEX_PATH}:{number}"
            member = members.get(entry.offset)
            if member is None:
                problems.append(
                    Problem(where, f"no member's data starts at offset {entry.offset} in {volume}")
                )
                continue
            if entry.offset in used:
                problems.append(Problem(where, f"member {member.name!r} is indexed twice"))
            used.add(entry.offset)
            if member.length != entry.length:
                problems.append(
                    Problem(
                        where,
                        f"length {entry.length} but member {member.name!r} has {member.length}",
                    )
                )
                continue
            if _sha256_at(path, entry.offset, entry.length) != entry.sha256:
                problems.append(
                    Problem(where, f"the data of member {member.name!r} does not match sha256")
                )
        for offset, member in sorted(members.items()):
            if offset not in used:
                problems.append(
                    Problem(rel, f"member {member.name!r} at offset {offset} is not in the index")
                )
    return problems
