"""Rendering the envelope: XML conventions of the Subsonic XSD, text XML cannot hold."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from phonotheca.serve.subsonic.envelope import SubsonicError, render, to_xml

NS = "{http://subsonic.org/restapi}"


def test_xml_conventions() -> None:
    body = {
        "status": "ok",
        "genres": {
            "genre": [{"songCount": 2, "value": "Rock & Roll"}, {"songCount": 0, "value": "Jazz"}]
        },
        "song": {
            "id": "tr-x",
            "isDir": False,
            "isrc": ["A", "B"],
            "artists": [{"id": "ar-1"}],
            "year": None,
        },
    }
    root = ET.fromstring(to_xml(body))
    genres = root.findall(f"{NS}genres/{NS}genre")
    assert [(g.text, g.get("songCount")) for g in genres] == [("Rock & Roll", "2"), ("Jazz", "0")]
    song = root.find(f"{NS}song")
    assert song is not None and song.get("isDir") == "false" and "year" not in song.attrib
    assert [e.text for e in song.findall(f"{NS}isrc")] == ["A", "B"]
    assert song.find(f"{NS}artists").get("id") == "ar-1"  # type: ignore[union-attr]


def test_text_xml_cannot_hold_is_replaced() -> None:
    root = ET.fromstring(to_xml({"song": {"title": "bell\x07 tab\t nul\x00"}}))
    assert root.find(f"{NS}song").get("title") == "bell\ufffd tab\t nul\ufffd"  # type: ignore[union-attr]


def test_errors_are_failed_and_json_drops_nulls() -> None:
    failed = json.loads(render(None, "json", error=SubsonicError(70, "gone")).body)
    assert failed["subsonic-response"]["status"] == "failed"
    assert failed["subsonic-response"]["error"] == {"code": 70, "message": "gone"}
    ok = json.loads(render({"song": {"id": "tr-1", "year": None}}, "json").body)
    assert ok["subsonic-response"]["song"] == {"id": "tr-1"}
    # An unknown format falls back to XML, the Subsonic default.
    assert render({}, "yaml").media_type.startswith("application/xml")  # type: ignore[union-attr]
