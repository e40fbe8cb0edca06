"""Ogg Opus framing (RFC 7845): read pages, build the OpusTags header, rewrite header pages.

FFmpeg's Ogg muxer writes the stream; these helpers replace its two header pages with
ours (the OpusHead with the source's sample rate, and an OpusTags comment header with
repeated keys, which FFmpeg's one-value-per-key metadata cannot express) and read back
what the pages say. Header pages are small, so the pure-Python page checksum is cheap.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

OPUS_RATE = 48_000
"""Opus granule positions count samples at 48 kHz, whatever the input rate."""
MAX_PAGE_PACKET = 255 * 255 - 1
"""The largest packet that fits one Ogg page (254 lacing values of 255 and one of 254)."""
_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, n
FLAG_CONTINUED, FLAG_BOS, FLAG_EOS = 0x01, 0x02, 0x04

_CRC_TABLE = []
for _i in range(256):
    _r = _i << 24
    for _ in range(8):
        _r = ((_r << 1) ^ 0x04C11DB7) if _r & 0x80000000 else (_r << 1)
    _CRC_TABLE.append(_r & 0xFFFFFFFF)


def ogg_crc(data: bytes | bytearray | memoryview) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, no reflection, zero start)."""
    crc = 0
    table = _CRC_TABLE
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) ^ b) & 0xFF]
    return crc


@dataclass(frozen=True)
class Page:
    offset: int
    length: int
    flags: int
    granule: int
    serial: int
    sequence: int
    segments: tuple[int, ...]
    """Lacing values: a value below 255 ends a packet."""

    @property
    def body(self) -> slice:
        return slice(self.offset + 27 + len(self.segments), self.offset + self.length)


def iter_pages(data: bytes | bytearray | memoryview) -> Iterator[Page]:
    """The pages of an Ogg stream held in memory; ValueError where one is malformed."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 27:
            raise ValueError(f"a partial Ogg page header at byte {pos}")
        capture, version, flags, granule, serial, seq, _crc, n = _PAGE_HEADER.unpack_from(data, pos)
        if capture != b"OggS" or version != 0:
            raise ValueError(f"no Ogg page at byte {pos}")
        segments = tuple(data[pos + 27 : pos + 27 + n])
        length = 27 + n + sum(segments)
        if pos + length > end:
            raise ValueError(f"the Ogg page at byte {pos} runs past the end")
        yield Page(pos, length, flags, granule, serial, seq, segments)
        pos += length


def build_page(
    packet: bytes, *, serial: int, sequence: int, granule: int = 0, flags: int = 0
) -> bytes:
    """One Ogg page holding exactly one whole packet."""
    if len(packet) > MAX_PAGE_PACKET:
        raise ValueError(f"a {len(packet)}-byte packet does not fit one Ogg page")
    full, rest = divmod(len(packet), 255)
    lacing = bytes([255] * full + [rest])
    header = _PAGE_HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing))
    page = bytearray(header + lacing + packet)
    struct.pack_into("<I", page, 22, ogg_crc(page))
    return bytes(page)


@dataclass(frozen=True)
class OpusHead:
    """The identification header (RFC 7845 section 5.1)."""

    version: int
    channels: int
    pre_skip: int
    input_sample_rate: int
    output_gain: int
    mapping_family: int

    @classmethod
    def parse(cls, packet: bytes | bytearray | memoryview) -> OpusHead:
        if len(packet) < 19 or bytes(packet[:8]) != b"OpusHead":
            raise ValueError("not an OpusHead packet")
        version, channels, pre_skip, rate, gain, family = struct.unpack_from("<BBHIhB", packet, 8)
        return cls(version, channels, pre_skip, rate, gain, family)


def opus_tags_packet(vendor: str, comments: Sequence[tuple[str, str]]) -> bytes:
    """The comment header (RFC 7845 section 5.2): vendor string and ``KEY=value`` fields,
    repeated keys allowed, in the given order."""
    parts = [b"OpusTags", _string(vendor.encode()), struct.pack("<I", len(comments))]
    parts += [_string(f"{key}={value}".encode()) for key, value in comments]
    return b"".join(parts)


def _string(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def replace_headers(
    data: bytes | bytearray | memoryview, *, tags_packet: bytes, input_sample_rate: int
) -> tuple[bytes, OpusHead, list[Page]]:
    """The stream with its OpusHead input rate set and its OpusTags page replaced.

    Returns the new header pages (both), the parsed OpusHead and the pages of the rest of
    the stream, which are kept byte for byte (the comment header stays one page, so page
    sequence numbers do not move). ValueError when the stream is not one Ogg Opus stream
    laid out as FFmpeg writes it.
    """
    pages = list(iter_pages(data))
    if len(pages) < 3:
        raise ValueError("an Ogg Opus stream needs two header pages and audio")
    head_page, tags_page = pages[0], pages[1]
    if not head_page.flags & FLAG_BOS or head_page.granule != 0 or head_page.sequence != 0:
        raise ValueError("the first page is not a beginning-of-stream header page")
    for page in (head_page, tags_page):  # one whole packet each
        if page.segments[-1] == 255 or any(s < 255 for s in page.segments[:-1]):
            raise ValueError(f"header page {page.sequence} does not hold exactly one packet")
    if bytes(data[tags_page.body][:8]) != b"OpusTags" or tags_page.sequence != 1:
        raise ValueError("the second page is not the OpusTags header")
    head_packet = bytearray(data[head_page.body])
    head = OpusHead.parse(head_packet)
    struct.pack_into("<I", head_packet, 12, input_sample_rate)
    serial = head_page.serial
    headers = build_page(bytes(head_packet), serial=serial, sequence=0, flags=FLAG_BOS)
    headers += build_page(tags_packet, serial=serial, sequence=1)
    return headers, replace(head, input_sample_rate=input_sample_rate), pages[2:]
