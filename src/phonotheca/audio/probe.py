"""Read an audio file's tags and stream properties with mutagen, and check it is whole.

Every format mutagen reads is supported: Ogg Vorbis/Opus/FLAC/Speex, FLAC, MP3, MP4
(AAC, ALAC), ASF (WMA), WavPack, Monkey's Audio, Musepack, TrueAudio, OptimFROG, TAK,
AIFF, WAV, DSF, DSDIFF, AAC (ADTS) and AC-3. Tags are read from the tag system the
file carries (Vorbis comments, ID3, MP4 atoms, ASF attributes, APEv2) into one
:class:`Tags` shape, with the MusicBrainz Picard key names for ids.

Nothing is decoded: a probe reads headers, tags and a few KiB at the end of the file
(:mod:`phonotheca.audio.integrity`), so a scan runs at the speed of mutagen itself.
A file that cannot be used raises :class:`ProbeError` whose message says why.
"""

from __future__ import annotations

import base64
import importlib
import os
import re
import struct
from typing import Any, BinaryIO

import msgspec
import mutagen

from phonotheca.audio.integrity import truncation

# mutagen class name -> (container, codec, lossless). MP4 and ASF codecs come from the stream.
_KINDS: dict[str, tuple[str, str, bool]] = {
    "OggVorbis": ("ogg", "vorbis", False),
    "OggOpus": ("ogg", "opus", False),
    "OggFLAC": ("ogg", "flac", True),
    "OggSpeex": ("ogg", "speex", False),
    "FLAC": ("flac", "flac", True),
    "MP3": ("mp3", "mp3", False),
    "MP4": ("mp4", "aac", False),
    "ASF": ("asf", "wma", False),
    "WavPack": ("wavpack", "wavpack", True),
    "MonkeysAudio": ("ape", "ape", True),
    "Musepack": ("mpc", "musepack", False),
    "TrueAudio": ("tta", "tta", True),
    "OptimFROG": ("ofr", "optimfrog", True),
    "TAK": ("tak", "tak", True),
    "AIFF": ("aiff", "pcm", True),
    "WAVE": ("wav", "pcm", True),
    "DSF": ("dsf", "dsd", True),
    "DSDIFF": ("dff", "dsd", True),
    "AAC": ("aac", "aac", False),
    "AC3": ("ac3", "ac3", False),
}
# Extensions scanned as audio; anything else in a music folder (images, cue sheets, logs)
# is left alone.
_EXTENSIONS = """
    .ogg .oga .opus .spx .flac .mp3 .mp2 .m4a .m4b .mp4 .aac .adts .ac3 .wma .asf .wv .ape
    .mpc .tta .ofr .ofs .tak .aif .aiff .aifc .wav .wave .dsf .dff .mka .webm .weba .mid
"""
AUDIO_EXTENSIONS = frozenset(_EXTENSIONS.split())
_PICTURE_KIND = {3: "front", 4: "back", 6: "medium", 0: "other"}


class ProbeError(Exception):
    """A file that is not usable audio: empty, unreadable, truncated or unsupported."""


class Tags(msgspec.Struct, array_like=True, omit_defaults=True):
    """What a file's tags say, in one shape whatever the tag system."""

    title: str | None = None
    artists: tuple[str, ...] = ()
    album: str | None = None
    album_artists: tuple[str, ...] = ()
    track_number: int | None = None
    track_total: int | None = None
    disc_number: int | None = None
    disc_total: int | None = None
    date: str | None = None
    isrc: str | None = None
    musicbrainz_recording: str | None = None
    musicbrainz_release: str | None = None

    def is_empty(self) -> bool:
        return self == _NO_TAGS


_NO_TAGS = Tags()


class StreamInfo(msgspec.Struct, array_like=True):
    container: str
    codec: str
    lossless: bool
    bitrate: int | None
    """Bits per second: the stream's own figure for lossy codecs, the file's average
    (size × 8 / duration) for lossless ones and when the stream gives none."""
    sample_rate: int | None
    channels: int | None
    duration_ms: int


class Picture(msgspec.Struct, array_like=True):
    data: bytes
    kind: str
    """``front``, ``back``, ``medium`` or ``other`` (from the picture type)."""
    mime: str | None = None


class Probe(msgspec.Struct, array_like=True):
    stream: StreamInfo
    tags: Tags
    pictures: list[Picture] = []


def probe_file(
    fileobj: BinaryIO, name: str, *, size: int | None = None, pictures: bool = True
) -> Probe:
    """Probe an open file (``name`` is its path, for format guessing and messages).

    ``fileobj`` may be an in-memory copy (``io.BytesIO``) when ``size`` is given.
    """
    if size is None:
        size = os.fstat(fileobj.fileno()).st_size
    if size == 0:
        raise ProbeError("empty file")
    try:
        f = _open(fileobj, name)
    except mutagen.MutagenError as exc:
        raise ProbeError(f"unreadable: {_reason(exc)}") from exc
    except (ValueError, IndexError, KeyError, TypeError, struct.error, OverflowError) as exc:
        # mutagen's parsers raise plain exceptions on some malformed headers.
        raise ProbeError(f"unreadable: malformed header ({type(exc).__name__}: {exc})") from exc
    if f is None:
        raise ProbeError("unsupported or unrecognised format")
    kind = _KINDS.get(type(f).__name__)
    if kind is None:
        raise ProbeError(f"unsupported format ({type(f).__name__})")
    info = f.info
    length = float(getattr(info, "length", 0) or 0)
    if not length > 0:
        raise ProbeError("no audio: zero duration")
    container, codec, lossless = kind
    if container == "mp4":
        codec, lossless = _mp4_codec(str(getattr(info, "codec", "") or ""))
    elif container == "asf":
        lossless = "lossless" in str(getattr(info, "codec_name", "")).lower()
    elif container == "mp3":
        codec = {1: "mp1", 2: "mp2"}.get(int(getattr(info, "layer", 3)), "mp3")
    problem = truncation(fileobj, type(f).__name__, info, size)
    if problem:
        raise ProbeError(problem)
    bitrate = int(getattr(info, "bitrate", 0) or 0)
    if lossless or bitrate <= 0:
        bitrate = round(size * 8 / length)
    stream = StreamInfo(
        container=container,
        codec=codec,
        lossless=lossless,
        bitrate=bitrate,
        sample_rate=_sample_rate(info, codec),
        channels=int(getattr(info, "channels", 0) or 0) or None,
        duration_ms=round(length * 1000),
    )
    raw = f.tags
    try:
        tags = read_tags(raw) if raw is not None else Tags()
        pics = _pictures(f, raw) if pictures else []
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ProbeError(f"unreadable tags: {exc}") from exc
    return Probe(stream, tags, pics)


_ASF_GUID = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c"
# First bytes -> (module, class) of the mutagen type; Ogg streams are told apart by their
# first packet.
_MAGIC = {
    b"fLaC": ("flac", "FLAC"),
    b"wvpk": ("wavpack", "WavPack"),
    b"MAC ": ("monkeysaudio", "MonkeysAudio"),
    b"DSD ": ("dsf", "DSF"),
    b"FRM8": ("dsdiff", "DSDIFF"),
    b"TTA1": ("trueaudio", "TrueAudio"),
    b"OFR ": ("optimfrog", "OptimFROG"),
    b"tBaK": ("tak", "TAK"),
}
_OGG = {b"\x01vorbis": "OggVorbis", b"OpusHead": "OggOpus", b"\x7fFLAC": "OggFLAC"}


def _kind(header: bytes, name: str) -> tuple[str, str] | None:
    """The mutagen type a file's first bytes name, when they are unambiguous."""
    hit = _MAGIC.get(header[:4])
    if hit is not None:
        return hit
    if header[:4] == b"OggS":
        for marker, cls in _OGG.items():
            if marker in header:
                return cls.lower(), cls
        return None
    if header[4:8] == b"ftyp":
        return "mp4", "MP4"
    if header[:4] == b"RIFF" and header[8:12] == b"WAVE":
        return "wave", "WAVE"
    if header[:4] == b"FORM" and header[8:12] in (b"AIFF", b"AIFC"):
        return "aiff", "AIFF"
    if header[:16] == _ASF_GUID:
        return "asf", "ASF"
    if name.lower().endswith((".mp3", ".mp2")) and (
        header[:3] == b"ID3" or (len(header) > 1 and header[0] == 0xFF and header[1] >= 0xE0)
    ):
        return "mp3", "MP3"
    return None


def _open(fileobj: BinaryIO, name: str) -> Any:
    """Open with mutagen; the type is picked from the magic bytes when they name one.

    ``mutagen.File`` asks each of its two dozen types to score the header, which costs
    about a quarter of opening a small file; the magic bytes usually settle it at once.
    """
    header = fileobj.read(128)
    fileobj.seek(0)
    kind = _kind(header, name)
    if kind is None:
        return mutagen.File(fileobj)
    module = importlib.import_module(f"mutagen.{kind[0]}")
    return getattr(module, kind[1])(fileobj)


def _sample_rate(info: Any, codec: str) -> int | None:
    rate = int(getattr(info, "sample_rate", 0) or 0)
    return rate or (48000 if codec == "opus" else None)  # Opus always decodes at 48 kHz


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _mp4_codec(codec: str) -> tuple[str, bool]:
    c = codec.lower()
    if c.startswith("mp4a.40"):
        return "aac", False
    if c in ("mp4a.69", "mp4a.6b"):
        return "mp3", False
    if c in ("alac", "flac"):
        return c, True
    return (c or "unknown"), False


# -- tags -------------------------------------------------------------------------------------

# Our field -> keys in each tag system (upper case for the case-insensitive ones).
_VORBIS = {
    "title": ("TITLE",),
    "artists": ("ARTISTS", "ARTIST"),
    "album": ("ALBUM",),
    "album_artists": ("ALBUMARTIST", "ALBUM ARTIST", "ALBUM_ARTIST"),
    "track": ("TRACKNUMBER",),
    "track_total": ("TRACKTOTAL", "TOTALTRACKS"),
    "disc": ("DISCNUMBER",),
    "disc_total": ("DISCTOTAL", "TOTALDISCS"),
    "date": ("DATE", "ORIGINALDATE", "YEAR"),
    "isrc": ("ISRC",),
    "musicbrainz_recording": ("MUSICBRAINZ_TRACKID",),
    "musicbrainz_release": ("MUSICBRAINZ_ALBUMID",),
}
_APE = {
    **_VORBIS,
    "album_artists": ("ALBUM ARTIST", "ALBUMARTIST"),
    "track": ("TRACK",),
    "disc": ("DISC",),
    "date": ("YEAR", "DATE"),
}
_ID3 = {
    "title": ("TIT2",),
    "artists": ("TXXX:ARTISTS", "TPE1"),
    "album": ("TALB",),
    "album_artists": ("TPE2",),
    "track": ("TRCK",),
    "disc": ("TPOS",),
    "date": ("TDRC", "TDOR", "TYER"),
    "isrc": ("TSRC",),
    "musicbrainz_recording": ("UFID:http://musicbrainz.org",),
    "musicbrainz_release": ("TXXX:MusicBrainz Album Id",),
}
_ITUNES = "----:com.apple.iTunes:"
_MP4 = {
    "title": ("\xa9nam",),
    "artists": (_ITUNES + "ARTISTS", "\xa9ART"),
    "album": ("\xa9alb",),
    "album_artists": ("aART",),
    "track": ("trkn",),
    "disc": ("disk",),
    "date": ("\xa9day",),
    "isrc": (_ITUNES + "ISRC",),
    "musicbrainz_recording": (_ITUNES + "MusicBrainz Track Id",),
    "musicbrainz_release": (_ITUNES + "MusicBrainz Album Id",),
}
_ASF = {
    "title": ("Title",),
    "artists": ("WM/ARTISTS", "Author"),
    "album": ("WM/AlbumTitle",),
    "album_artists": ("WM/AlbumArtist",),
    "track": ("WM/TrackNumber",),
    "disc": ("WM/PartOfSet",),
    "date": ("WM/OriginalReleaseYear", "WM/Year"),
    "isrc": ("WM/ISRC",),
    "musicbrainz_recording": ("MusicBrainz/Track Id",),
    "musicbrainz_release": ("MusicBrainz/Album Id",),
}
_NUMBER = re.compile(r"\s*(\d+)\s*(?:/\s*(\d+))?")


def _texts(value: Any) -> list[str]:
    """The text values of one tag entry, whatever mutagen made of it."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for v in items:
        if type(v) is str:  # Vorbis comments, most MP4 and ASF text: the common case
            if "\x00" not in v:
                out.append(v)
                continue
        elif isinstance(v, tuple):  # MP4 trkn/disk
            out.append("/".join(str(x) for x in v if x))
            continue
        text = getattr(v, "text", None)  # ID3 text frames
        if text is not None:
            out += [str(t) for t in text]
            continue
        data = getattr(v, "data", None)  # ID3 UFID
        if isinstance(data, bytes):
            v = data
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif not isinstance(v, str):
            v = str(getattr(v, "value", v))  # ASF attributes, APE text values
        out += v.split("\x00")  # APEv2 separates several values with NUL
    return [t for t in (x.strip() for x in out) if t]


def _lookup(raw: Any, mapping: dict[str, tuple[str, ...]], fold: bool) -> dict[str, list[str]]:
    if fold:
        keyed: dict[str, Any] = {}
        # A Vorbis comment is a list of (key, value) pairs: read them once, rather than
        # through its dict view, which scans the list for every key.
        pairs = list.__iter__(raw) if isinstance(raw, list) else raw.items()
        for k, v in pairs:
            keyed.setdefault(k.upper(), []).append(v)
    else:
        keyed = raw
    found: dict[str, list[str]] = {}
    for field, keys in mapping.items():
        for key in keys:
            if key in keyed:
                values = _texts(keyed[key])
                if values:
                    found[field] = values
                    break
    return found


def read_tags(raw: Any) -> Tags:
    """Tags from any mutagen tag object (Vorbis comment, ID3, MP4, ASF, APEv2)."""
    name = type(raw).__name__
    if name in ("VCFLACDict", "OggVCommentDict", "VCommentDict") or hasattr(raw, "vendor"):
        found = _lookup(raw, _VORBIS, fold=True)
    elif hasattr(raw, "getall"):  # ID3 and its AIFF/WAVE/DSF variants
        found = _lookup(raw, _ID3, fold=False)
    elif name == "MP4Tags":
        found = _lookup(raw, _MP4, fold=False)
    elif name == "ASFTags":
        found = _lookup(raw, _ASF, fold=False)
    elif name == "APEv2":
        found = _lookup(raw, _APE, fold=True)
    else:
        return Tags()
    track, track_total = _numbers(found.get("track"))
    disc, disc_total = _numbers(found.get("disc"))
    return Tags(
        title=_one(found, "title"),
        artists=tuple(dict.fromkeys(found.get("artists", ()))),
        album=_one(found, "album"),
        album_artists=tuple(dict.fromkeys(found.get("album_artists", ()))),
        track_number=track,
        track_total=track_total or _numbers(found.get("track_total"))[0],
        disc_number=disc,
        disc_total=disc_total or _numbers(found.get("disc_total"))[0],
        date=_one(found, "date"),
        isrc=_one(found, "isrc"),
        musicbrainz_recording=_mbid(_one(found, "musicbrainz_recording")),
        musicbrainz_release=_mbid(_one(found, "musicbrainz_release")),
    )


def _one(found: dict[str, list[str]], field: str) -> str | None:
    values = found.get(field)
    return values[0][:2000] if values else None


def _numbers(values: list[str] | None) -> tuple[int | None, int | None]:
    """``"3"``, ``"3/12"`` -> (3, 12); out-of-range or unparsable values -> None."""
    if not values:
        return None, None
    m = _NUMBER.match(values[0])
    if m is None:
        return None, None
    n = int(m.group(1))
    total = int(m.group(2)) if m.group(2) else None
    return (n if 1 <= n <= 100_000 else None), (total if total and total <= 100_000 else None)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _mbid(value: str | None) -> str | None:
    """A MusicBrainz id in canonical lower-case form; anything else is dropped."""
    if value is None:
        return None
    v = value.strip().lower()
    return v if _UUID.fullmatch(v) else None


# -- pictures ---------------------------------------------------------------------------------


def _pictures(f: Any, raw: Any) -> list[Picture]:
    out: list[Picture] = []
    for pic in getattr(f, "pictures", None) or ():  # FLAC
        out.append(Picture(bytes(pic.data), _PICTURE_KIND.get(pic.type, "other"), pic.mime))
    if raw is None:
        return out
    name = type(raw).__name__
    if hasattr(raw, "vendor"):  # Ogg: base64 FLAC picture blocks
        from mutagen.flac import Picture as FlacPicture

        for value in raw.get("metadata_block_picture", ()):
            try:
                pic = FlacPicture(base64.b64decode(value))  # type: ignore[no-untyped-call]
            except (ValueError, mutagen.MutagenError):
                continue
            out.append(Picture(bytes(pic.data), _PICTURE_KIND.get(pic.type, "other"), pic.mime))
    elif hasattr(raw, "getall"):  # ID3 APIC
        for frame in raw.getall("APIC"):
            kind = _PICTURE_KIND.get(int(frame.type), "other")
            out.append(Picture(bytes(frame.data), kind, frame.mime))
    elif name == "MP4Tags":
        for cover in raw.get("covr", ()):
            mime = "image/png" if getattr(cover, "imageformat", 13) == 14 else "image/jpeg"
            out.append(Picture(bytes(cover), "front", mime))
    elif name == "ASFTags":
        for attr in raw.get("WM/Picture", ()):
            pic = _asf_picture(bytes(attr.value))
            if pic is not None:
                out.append(pic)
    elif name == "APEv2":
        for key, value in raw.items():
            if key.lower().startswith("cover art") and getattr(value, "kind", 0) == 1:
                data = bytes(value.value)
                data = data.split(b"\x00", 1)[1] if b"\x00" in data[:256] else data
                kind = "back" if "back" in key.lower() else "front"
                out.append(Picture(data, kind))
    return [p for p in out if p.data]


def _asf_picture(data: bytes) -> Picture | None:
    """WM/Picture: type (1 byte), size (4), MIME and description (UTF-16, NUL-ended), data."""
    if len(data) < 9:
        return None
    kind = _PICTURE_KIND.get(data[0], "other")
    (size,) = struct.unpack_from("<I", data, 1)
    pos = 5
    strings: list[str] = []
    for _ in range(2):
        end = pos
        while end + 1 < len(data) and data[end : end + 2] != b"\x00\x00":
            end += 2
        strings.append(data[pos:end].decode("utf-16-le", "replace"))
        pos = end + 2
    body = data[pos : pos + size]
    return Picture(body, kind, strings[0] or None) if body else None
