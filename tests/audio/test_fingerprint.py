"""Chromaprint fingerprints computed locally: same recording in two codecs, other music."""

from __future__ import annotations

from pathlib import Path

import pytest

from phonotheca.audio import fingerprint as chroma
from tests.audio.makers import make_audio

pytestmark = pytest.mark.skipif(not chroma.available(), reason="libchromaprint1 not installed")


def test_same_piece_in_two_codecs_matches_and_other_music_does_not(tmp_path: Path) -> None:
    a_flac = chroma.fingerprint_file(make_audio(tmp_path / "a", "flac", seconds=6, piece=11))
    a_opus = chroma.fingerprint_file(make_audio(tmp_path / "b", "opus", seconds=6, piece=11))
    other = chroma.fingerprint_file(make_audio(tmp_path / "c", "vorbis", seconds=6, piece=12))
    assert a_flac and a_opus and other
    assert a_flac.startswith("AQAA")  # Chromaprint's compressed text, as fpcalc prints it
    assert chroma.similarity(a_flac, a_opus) > 0.9
    assert chroma.similarity(a_flac, other) < chroma.SAME_RECORDING
    assert len(chroma.decode(a_flac)) >= chroma.MIN_ITEMS


def test_too_short_to_fingerprint(tmp_path: Path) -> None:
    assert chroma.fingerprint_file(make_audio(tmp_path / "a", "flac", seconds=1.5)) is None
    assert chroma.similarity("", "") == 0.0


def test_undecodable_file_is_a_fingerprint_error(tmp_path: Path) -> None:
    path = tmp_path / "x.ogg"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(chroma.FingerprintError):
        chroma.fingerprint_file(path)
