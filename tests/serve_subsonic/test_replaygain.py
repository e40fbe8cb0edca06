"""OpenSubsonic ``replayGain`` on songs, as py-sonic and a raw XML client read it."""

from __future__ import annotations

import hashlib
import sqlite3
import xml.etree.ElementTree as ET

import httpx
import libsonic
import pytest

from tests.serve_subsonic.conftest import Fixture, LiveServer


def expected(fixture: Fixture, public_id: str) -> dict[str, float]:
    conn = sqlite3.connect(fixture.root / "catalog.sqlite3")
    try:
        lufs, peak, album_lufs, album_peak = conn.execute(
            "SELECT l.loudness_lufs, l.true_peak_dbtp, a.loudness_lufs, a.true_peak_dbtp"
            " FROM tracks t JOIN ledger l ON l.track_id = t.id"
            " LEFT JOIN album_loudness a ON a.album_id = t.album_id WHERE t.public_id = ?",
            (public_id,),
        ).fetchone()
    finally:
        conn.close()
    want = {"trackGain": round(-18 - lufs, 2), "trackPeak": round(10 ** (peak / 20), 6)}
    if album_lufs is not None:  # tracks made from files without an album tag have none
        want["albumGain"] = round(-18 - album_lufs, 2)
        want["albumPeak"] = round(10 ** (album_peak / 20), 6)
    return {**want, "baseGain": 0}


def test_pysonic_sees_replaygain(live: LiveServer, archive_fixture: Fixture) -> None:
    creds = archive_fixture.creds
    sonic = libsonic.Connection(
        "http://127.0.0.1", creds.user, creds.password, port=live.port, serverPath="/rest",
        appName="phonotheca-tests", apiVersion="1.16.1", insecure=True,
    )  # fmt: skip
    albums = 0
    for packed in [*archive_fixture.present, archive_fixture.absent]:
        song = sonic.getSong(f"tr-{packed.public_id}")["song"]
        albums += "albumGain" in song["replayGain"]
        want = expected(archive_fixture, packed.public_id)
        assert song["replayGain"] == pytest.approx(want), packed.public_id
        assert -30 < song["replayGain"]["trackGain"] < 30
        assert 0 < song["replayGain"]["trackPeak"] <= 2
    assert albums >= 3


def test_xml_has_a_replaygain_element(live: LiveServer, archive_fixture: Fixture) -> None:
    creds = archive_fixture.creds
    salt = "c0ffee"
    token = hashlib.md5((creds.password + salt).encode()).hexdigest()
    packed = next(p for p in archive_fixture.present if p.public_id.startswith("syn:"))
    reply = httpx.get(
        f"{live.url}/rest/getSong",
        params={"u": creds.user, "t": token, "s": salt, "v": "1.16.1", "c": "t",
                "id": f"tr-{packed.public_id}"},
    )  # fmt: skip
    root = ET.fromstring(reply.content)
    gain = root.find("{http://subsonic.org/restapi}song/{http://subsonic.org/restapi}replayGain")
    assert gain is not None
    want = expected(archive_fixture, packed.public_id)
    assert float(gain.attrib["trackGain"]) == pytest.approx(want["trackGain"])
    assert float(gain.attrib["albumPeak"]) == pytest.approx(want["albumPeak"])
    assert gain.attrib["baseGain"] == "0"
