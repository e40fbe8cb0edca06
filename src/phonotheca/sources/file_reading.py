"""Finding and reading audio files: the part of a scan that runs in worker processes.

:func:`walk` lists the audio files under some folders (by extension, in a stable order)
with the cover images lying beside them; :func:`read_files` probes each file
(:mod:`phonotheca.audio.probe`), hashes it (SHA-256, streamed) and stores its pictures
and folder covers in the blob store, in worker processes when there are many. A file
that cannot be used comes back with ``error`` set, never as an exception.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

import msgspec

from phonotheca.audio.probe import AUDIO_EXTENSIONS, ProbeError, StreamInfo, Tags, probe_file
from phonotheca.blobs import sniff_image, store_blob

FILES_PER_TASK = 64
POOL_MIN_FILES = 200
"""Fewer files to read than this are read in this process: a pool would cost more."""
COVER_FILES = re.compile(r"(?:cover|folder|front)\.(?:jpe?g|png|gif|webp)", re.IGNORECASE)
MAX_COVER_BYTES = 32 << 20
IN_MEMORY_BYTES = 4 << 20
"""Files up to this size are read once into memory, hashed and probed there."""


class FoundFile(msgspec.Struct, array_like=True, frozen=True):
    path: str
    size: int
    mtime_ns: int
    covers: tuple[str, ...] = ()
    """Cover images lying in the file's folder."""


class ImageRef(msgspec.Struct, array_like=True):
    sha256: str
    kind: str
    mime: str | None
    width: int | None
    height: int | None
    stored: bool
    """Written to the blob store by this scan (False: it was there already)."""


class ScannedFile(msgspec.Struct, array_like=True):
    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None
    error: str | None = None
    stream: StreamInfo | None = None
    tags: Tags | None = None
    images: list[ImageRef] = []
    loudness: MeasuredLoudness | None = None
    """Measured only when the scan was asked to (``--loudness``): it decodes the file."""


class MeasuredLoudness(msgspec.Struct, array_like=True):
    """EBU R128 figures of a file (:mod:`phonotheca.audio.loudness`)."""

    lufs: float | None
    true_peak: float | None
    lra: float | None
    blocks: bytes


# -- walking --------------------------------------------------------------------------------


@dataclass
class Walk:
    files: list[FoundFile] = field(default_factory=list)
    ignored: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of folders that cannot be listed and files that cannot be stat'ed."""
    dirs: list[str] = field(default_factory=list)
    """Folders scanned whole: what is known under them and not found is missing."""
    single: list[str] = field(default_factory=list)
    """Files given by name."""
    unlisted: list[str] = field(default_factory=list)


def walk(roots: list[Path]) -> Walk:
    """Audio files under ``roots`` in a stable order, with the cover images beside them.

    Hidden files and folders (``.name``) are skipped; symlinked files are followed,
    symlinked folders are not (no cycles).
    """
    out = Walk()
    for root in roots:
        path = Path(os.path.abspath(root))
        if path.is_file():
            out.single.append(str(path))
            st = path.stat()
            out.files.append(FoundFile(str(path), st.st_size, st.st_mtime_ns, _covers(path.parent)))
            continue
        out.dirs.append(str(path))
        stack = [str(path)]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                out.problems.append((folder, f"cannot list folder: {exc.strerror or exc}"))
                out.unlisted.append(folder)
                continue
            covers = tuple(e.path for e in entries if COVER_FILES.fullmatch(e.name))
            subdirs = []
            for e in entries:
                if e.name.startswith("."):
                    continue
                if not _utf8(e.name):
                    # The catalog stores paths as text: such a name cannot be recorded.
                    shown = os.fsencode(e.path).decode("utf-8", "backslashreplace")
                    out.problems.append((shown, "name is not valid UTF-8: rename it"))
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        subdirs.append(e.path)
                        continue
                    if os.path.splitext(e.name)[1].lower() not in AUDIO_EXTENSIONS:
                        out.ignored += e.is_file()
                        continue
                    st = e.stat()
                except OSError as exc:
                    out.problems.append((e.path, f"cannot stat: {exc.strerror or exc}"))
                    continue
                out.files.append(FoundFile(e.path, st.st_size, st.st_mtime_ns, covers))
            stack += reversed(subdirs)
    return out


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
        return False
    return True


def _covers(folder: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(str(p) for p in folder.iterdir() if COVER_FILES.fullmatch(p.name)))
    except OSError:
        return ()


# -- reading one file (worker side) -------------------------------------------------------------

_cover_cache: dict[tuple[str, int, int], ImageRef | None] = {}


def _image_ref(blobs_dir: Path, data: bytes, kind: str, mime: str | None) -> ImageRef | None:
    info = sniff_image(data)
    if info is None:
        return None  # not an image we know: never stored
    sha, stored = store_blob(blobs_dir, data)
    return ImageRef(sha, kind, mime or info.mime, info.width, info.height, stored)


def _cover_ref(blobs_dir: Path, path: str) -> ImageRef | None:
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _cover_cache:
            if len(_cover_cache) > 10_000:
                _cover_cache.clear()
            ref = None
            if st.st_size <= MAX_COVER_BYTES:
                ref = _image_ref(blobs_dir, Path(path).read_bytes(), "front", None)
            _cover_cache[key] = ref
        else:
            ref = _cover_cache[key]
            if ref is not None:
                ref = ImageRef(ref.sha256, ref.kind, ref.mime, ref.width, ref.height, False)
    except OSError:
        return None
    return ref


def _sha256(fh: io.BufferedReader) -> str:
    fh.seek(0)
    return hashlib.file_digest(fh, "sha256").hexdigest()


def measure_loudness(path: str) -> MeasuredLoudness | None:
    """Decode the file and measure its loudness; None when its audio does not decode
    (the scan's verdict on the file stays the probe's)."""
    import av

    from phonotheca.audio.loudness import measure_file

    try:
        m = measure_file(Path(path))
    except (av.FFmpegError, OSError, EOFError, ValueError):
        return None
    return MeasuredLoudness(m.integrated_lufs, m.true_peak_dbtp, m.range_lu, m.histogram)


def read_file(found: FoundFile, blobs_dir: Path, loudness: bool = False) -> ScannedFile:
    """Probe, hash and store the pictures of one file (and with ``loudness``, decode and
    measure it); failures become ``error``."""
    out = ScannedFile(found.path, found.size, found.mtime_ns)
    try:
        with open(found.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            out.size, out.mtime_ns = st.st_size, st.st_mtime_ns  # what is hashed is recorded
            if st.st_size <= IN_MEMORY_BYTES:
                # One read serves hashing and probing: mutagen's many small seeks and
                # reads then cost no system calls.
                data = fh.read()
                out.sha256 = hashlib.sha256(data).hexdigest()
                source: BinaryIO = io.BytesIO(data)
                source.name = found.path  # type: ignore[misc]  # mutagen scores names too
            else:
                out.sha256 = _sha256(fh)
                source = fh
            try:
                probe = probe_file(source, found.path, size=len(data) if source is not fh else None)
            except ProbeError as exc:
                out.error = str(exc)
                probe = None
    except OSError as exc:
        out.error = f"cannot read: {exc.strerror or exc}"
        return out
    if probe is None:
        return out
    out.stream, out.tags = probe.stream, probe.tags
    refs = [_image_ref(blobs_dir, p.data, p.kind, p.mime) for p in probe.pictures]
    refs += [_cover_ref(blobs_dir, c) for c in found.covers]
    out.images = [r for r in refs if r is not None]
    if loudness:
        out.loudness = measure_loudness(found.path)
    return out


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[ScannedFile])


def _read_chunk(blobs_dir: str, loudness: bool, files: list[FoundFile]) -> bytes:
    return _encoder.encode([read_file(f, Path(blobs_dir), loudness) for f in files])


def read_files(
    files: list[FoundFile], blobs_dir: Path, workers: int, loudness: bool = False
) -> Iterator[ScannedFile]:
    """Read files in order, in ``workers`` processes (0: in this one)."""
    if workers <= 0 or len(files) < (POOL_MIN_FILES // 20 if loudness else POOL_MIN_FILES):
        for f in files:
            yield read_file(f, blobs_dir, loudness)
        return
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        window: deque[Future[bytes]] = deque()
        for i in range(0, len(files), FILES_PER_TASK):
            chunk = files[i : i + FILES_PER_TASK]
            window.append(pool.submit(_read_chunk, str(blobs_dir), loudness, chunk))
            if len(window) > workers * 4:
                yield from _decoder.decode(window.popleft().result())
        while window:
            yield from _decoder.decode(window.popleft().result())
